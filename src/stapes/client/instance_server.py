"""The client library: typed methods over the REST API that return the API's JSON objects."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from stapes.client.connection import Connection
from stapes.client.operation import RemoteOperation


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


class InstanceServer:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @classmethod
    def unix(cls, socket_path: str | Path | None = None) -> InstanceServer:
        return cls(Connection(socket_path))

    async def close(self) -> None:
        await self.conn.close()

    async def __aenter__(self) -> InstanceServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _op(self, method: str, path: str, **kwargs: Any) -> RemoteOperation:
        return RemoteOperation(self.conn, await self.conn.request(method, path, **kwargs))

    # server
    async def server(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.conn.request("GET", "/1.0")
        return result

    # instances
    async def instances(
        self, recursion: int = 1, filter: str = "", all_projects: bool = False
    ) -> list[Any]:
        params = {"recursion": str(recursion)}
        if filter:
            params["filter"] = filter
        if all_projects:
            params["all-projects"] = "true"
        result: list[Any] = await self.conn.request("GET", "/1.0/instances", params=params)
        return result

    async def instance(self, name: str, full: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = await self.conn.request(
            "GET", f"/1.0/instances/{_q(name)}", params={"recursion": "1" if full else "0"}
        )
        return result

    async def instance_state(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.conn.request("GET", f"/1.0/instances/{_q(name)}/state")
        return result

    async def create_instance(self, body: dict[str, Any]) -> RemoteOperation:
        return await self._op("POST", "/1.0/instances", json_body=body)

    async def update_state(
        self, name: str, action: str, *, force: bool = False, timeout: int = -1
    ) -> RemoteOperation:
        return await self._op(
            "PUT",
            f"/1.0/instances/{_q(name)}/state",
            json_body={"action": action, "force": force, "timeout": timeout},
        )

    async def update_instance(
        self, name: str, put: dict[str, Any], etag: str = ""
    ) -> RemoteOperation:
        headers = {"If-Match": etag} if etag else None
        return await self._op("PUT", f"/1.0/instances/{_q(name)}", json_body=put, headers=headers)

    async def rename_instance(self, name: str, new_name: str) -> RemoteOperation:
        return await self._op("POST", f"/1.0/instances/{_q(name)}", json_body={"name": new_name})

    async def delete_instance(self, name: str) -> RemoteOperation:
        return await self._op("DELETE", f"/1.0/instances/{_q(name)}")

    async def exec(self, name: str, body: dict[str, Any]) -> RemoteOperation:
        return await self._op("POST", f"/1.0/instances/{_q(name)}/exec", json_body=body)

    async def exec_output(self, path: str) -> bytes:
        async with self.conn.session.get("http://stapes" + path) as resp:
            return await resp.read()

    # images
    async def images(self, recursion: int = 1) -> list[Any]:
        result: list[Any] = await self.conn.request(
            "GET", "/1.0/images", params={"recursion": str(recursion)}
        )
        return result

    async def image(self, fingerprint: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.conn.request("GET", f"/1.0/images/{fingerprint}")
        return result

    async def upload_image(
        self, meta: Path, rootfs: Path | None = None, *, public: bool = False, filename: str = ""
    ) -> RemoteOperation:
        headers = {
            "X-Incus-public": "1" if public else "0",
            "X-Incus-filename": filename or meta.name,
        }
        if rootfs is None:
            with meta.open("rb") as f:
                headers["Content-Type"] = "application/octet-stream"
                return await self._op("POST", "/1.0/images", data=f, headers=headers)
        form = aiohttp.FormData()
        with meta.open("rb") as m, rootfs.open("rb") as r:
            form.add_field(
                "metadata", m, filename=meta.name, content_type="application/octet-stream"
            )
            form.add_field(
                "rootfs", r, filename=rootfs.name, content_type="application/octet-stream"
            )
            return await self._op("POST", "/1.0/images", data=form, headers=headers)

    async def delete_image(self, fingerprint: str) -> RemoteOperation:
        return await self._op("DELETE", f"/1.0/images/{fingerprint}")

    async def aliases(self) -> list[Any]:
        result: list[Any] = await self.conn.request(
            "GET", "/1.0/images/aliases", params={"recursion": "1"}
        )
        return result

    async def alias(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.conn.request("GET", f"/1.0/images/aliases/{_q(name)}")
        return result

    async def create_alias(self, name: str, target: str, description: str = "") -> None:
        await self.conn.request(
            "POST",
            "/1.0/images/aliases",
            json_body={"name": name, "target": target, "description": description},
        )

    async def delete_alias(self, name: str) -> None:
        await self.conn.request("DELETE", f"/1.0/images/aliases/{_q(name)}")

    # operations and events
    async def operations(self) -> dict[str, list[Any]]:
        result: dict[str, list[Any]] = await self.conn.request(
            "GET", "/1.0/operations", params={"recursion": "1"}
        )
        return result

    async def operation(self, op_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.conn.request("GET", f"/1.0/operations/{op_id}")
        return result

    async def events(self, types: list[str] | None = None) -> AsyncIterator[dict[str, Any]]:
        query = f"?type={','.join(types)}" if types else ""
        ws = await self.conn.websocket(f"/1.0/events{query}")
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    yield json.loads(msg.data)
                elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
        finally:
            await ws.close()
