"""The client library: typed methods over the REST API that return the API's JSON objects."""

from __future__ import annotations

import json
import os
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from stapes.client.cluster import ClusterClient
from stapes.client.connection import Connection, segment, unwrap
from stapes.client.network import NetworkClient
from stapes.client.operation import RemoteOperation
from stapes.client.projects import ProjectClient
from stapes.client.storage import StorageClient, file_chunks
from stapes.client.trust import TrustClient
from stapes.client.warnings import WarningClient

_q = segment


class _Multipart:
    """A streamed multipart/form-data body of whole files, with its length known up front."""

    def __init__(self, parts: list[tuple[str, Path]]) -> None:
        self.boundary = uuid.uuid4().hex
        self.parts = parts

    def _head(self, name: str, path: Path) -> bytes:
        return (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()

    @property
    def tail(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()

    def __len__(self) -> int:
        size = sum(len(self._head(n, p)) + p.stat().st_size + 2 for n, p in self.parts)
        return size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        for name, path in self.parts:
            yield self._head(name, path)
            yield from file_chunks(path)
            yield b"\r\n"
        yield self.tail


class InstanceServer(
    StorageClient, NetworkClient, WarningClient, TrustClient, ProjectClient, ClusterClient
):
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @classmethod
    def unix(cls, socket_path: str | Path | None = None) -> InstanceServer:
        return cls(Connection(socket_path))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> InstanceServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # server
    def server(self) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request("GET", "/1.0")
        return result

    def server_with_etag(self) -> tuple[dict[str, Any], str]:
        _, envelope, etag = self.conn.raw("GET", "/1.0")
        return unwrap(envelope), etag

    def update_server(self, put: dict[str, Any], etag: str = "") -> None:
        headers = {"If-Match": etag} if etag else None
        self.conn.request("PUT", "/1.0", json_body=put, headers=headers)

    # instances
    def instances(
        self, recursion: int = 1, filter: str = "", all_projects: bool = False
    ) -> list[Any]:
        params = {"recursion": str(recursion)}
        if filter:
            params["filter"] = filter
        if all_projects:
            params["all-projects"] = "true"
        result: list[Any] = self.conn.request("GET", "/1.0/instances", params=params)
        return result

    def instance(self, name: str, full: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request(
            "GET", f"/1.0/instances/{_q(name)}", params={"recursion": "1" if full else "0"}
        )
        return result

    def instance_state(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request("GET", f"/1.0/instances/{_q(name)}/state")
        return result

    def create_instance(self, body: dict[str, Any], target: str = "") -> RemoteOperation:
        params = {"target": target} if target else None
        return self._op("POST", "/1.0/instances", json_body=body, params=params)

    def update_state(
        self, name: str, action: str, *, force: bool = False, timeout: int = -1
    ) -> RemoteOperation:
        return self._op(
            "PUT",
            f"/1.0/instances/{_q(name)}/state",
            json_body={"action": action, "force": force, "timeout": timeout},
        )

    def update_instance(self, name: str, put: dict[str, Any], etag: str = "") -> RemoteOperation:
        headers = {"If-Match": etag} if etag else None
        return self._op("PUT", f"/1.0/instances/{_q(name)}", json_body=put, headers=headers)

    def rename_instance(self, name: str, new_name: str) -> RemoteOperation:
        return self._op("POST", f"/1.0/instances/{_q(name)}", json_body={"name": new_name})

    def move_to_pool(self, name: str, pool: str) -> RemoteOperation:
        body = {"name": name, "pool": pool, "migration": True}
        return self._op("POST", f"/1.0/instances/{_q(name)}", json_body=body)

    def move_to_member(self, name: str, member: str, live: bool) -> RemoteOperation:
        """To another member of the cluster (as incus move --target)."""
        body = {"name": name, "migration": True, "live": live}
        path = f"/1.0/instances/{_q(name)}"
        return self._op("POST", path, json_body=body, params={"target": member})

    def delete_instance(self, name: str) -> RemoteOperation:
        return self._op("DELETE", f"/1.0/instances/{_q(name)}")

    # snapshots
    def snapshots(self, name: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.conn.request(
            "GET", f"/1.0/instances/{_q(name)}/snapshots", params={"recursion": "1"}
        )
        return result

    def snapshot(self, name: str, snap: str) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request(
            "GET", f"/1.0/instances/{_q(name)}/snapshots/{_q(snap)}"
        )
        return result

    def create_snapshot(
        self, name: str, snap: str = "", *, expires_at: str | None = None, stateful: bool = False
    ) -> RemoteOperation:
        body: dict[str, Any] = {"name": snap}
        if expires_at is not None:
            body["expires_at"] = expires_at
        if stateful:
            body["stateful"] = True
        return self._op("POST", f"/1.0/instances/{_q(name)}/snapshots", json_body=body)

    def rename_snapshot(self, name: str, snap: str, new_name: str) -> RemoteOperation:
        return self._op(
            "POST",
            f"/1.0/instances/{_q(name)}/snapshots/{_q(snap)}",
            json_body={"name": new_name},
        )

    def update_snapshot(self, name: str, snap: str, put: dict[str, Any]) -> RemoteOperation:
        return self._op("PUT", f"/1.0/instances/{_q(name)}/snapshots/{_q(snap)}", json_body=put)

    def delete_snapshot(self, name: str, snap: str) -> RemoteOperation:
        return self._op("DELETE", f"/1.0/instances/{_q(name)}/snapshots/{_q(snap)}")

    def restore_snapshot(self, name: str, snap: str, *, stateful: bool = False) -> RemoteOperation:
        body: dict[str, Any] = {"restore": snap}
        if stateful:
            body["stateful"] = True
        return self._op("PUT", f"/1.0/instances/{_q(name)}", json_body=body)

    # console
    def console(self, name: str, width: int, height: int, kind: str = "console") -> RemoteOperation:
        body = {"width": width, "height": height, "type": kind}
        return self._op("POST", f"/1.0/instances/{_q(name)}/console", json_body=body)

    def console_log(self, name: str) -> bytes:
        return self.conn.get_bytes(f"/1.0/instances/{_q(name)}/console")[0]

    def instance_log(self, name: str, file: str) -> bytes:
        """One of GET /1.0/instances/NAME/logs: lxc.log for a container, qemu.log for a VM."""
        return self.conn.get_bytes(f"/1.0/instances/{_q(name)}/logs/{_q(file)}")[0]

    def clear_console_log(self, name: str) -> None:
        self.conn.request("DELETE", f"/1.0/instances/{_q(name)}/console")

    def exec(self, name: str, body: dict[str, Any]) -> RemoteOperation:
        return self._op("POST", f"/1.0/instances/{_q(name)}/exec", json_body=body)

    def exec_output(self, path: str) -> bytes:
        return self.conn.get_bytes(path)[0]

    def get_file(self, name: str, path: str) -> tuple[bytes, dict[str, str]]:
        """A file's bytes (a directory's JSON listing, a symlink's target) and its X-Incus-*
        headers (Uid, Gid, Mode, Type)."""
        query = urllib.parse.urlencode({"path": path})
        body, headers = self.conn.get_bytes(f"/1.0/instances/{_q(name)}/files?{query}")
        return body, _file_info(headers)

    def pull_file(self, name: str, path: str, target: Path | BinaryIO) -> dict[str, str]:
        """``get_file`` streamed into ``target`` (a file's bytes never all in memory), a path
        or a binary stream open for writing; its X-Incus-* headers. An error leaves no
        ``target`` path."""
        query = urllib.parse.urlencode({"path": path})
        _, headers = self.conn.download_with_headers(
            f"/1.0/instances/{_q(name)}/files?{query}", target
        )
        return _file_info(headers)

    def put_file(
        self,
        name: str,
        path: str,
        content: bytes | Path = b"",
        *,
        kind: str = "file",
        uid: int = -1,
        gid: int = -1,
        mode: int = -1,
        append: bool = False,
    ) -> None:
        headers = {"X-Incus-Type": kind, "X-Incus-Write": "append" if append else "overwrite"}
        if uid >= 0:
            headers["X-Incus-Uid"] = str(uid)
        if gid >= 0:
            headers["X-Incus-Gid"] = str(gid)
        if mode >= 0:
            headers["X-Incus-Mode"] = f"{mode:04o}"
        body: bytes | Iterator[bytes] = content if isinstance(content, bytes) else b""
        if isinstance(content, Path):
            headers["Content-Length"] = str(content.stat().st_size)
            body = file_chunks(content)
        self.conn.request(
            "POST",
            f"/1.0/instances/{_q(name)}/files",
            params={"path": path},
            body=body,
            headers=headers,
        )

    def delete_file(self, name: str, path: str) -> None:
        self.conn.request("DELETE", f"/1.0/instances/{_q(name)}/files", params={"path": path})

    def instance_with_etag(self, name: str) -> tuple[dict[str, Any], str]:
        _, envelope, etag = self.conn.raw("GET", f"/1.0/instances/{_q(name)}")
        return unwrap(envelope), etag

    # profiles
    def profiles(self) -> list[Any]:
        result: list[Any] = self.conn.request("GET", "/1.0/profiles", params={"recursion": "1"})
        return result

    def profile(self, name: str) -> tuple[dict[str, Any], str]:
        _, envelope, etag = self.conn.raw("GET", f"/1.0/profiles/{_q(name)}")
        return unwrap(envelope), etag

    def create_profile(self, name: str, put: dict[str, Any] | None = None) -> None:
        self.conn.request("POST", "/1.0/profiles", json_body={**(put or {}), "name": name})

    def update_profile(self, name: str, put: dict[str, Any], etag: str = "") -> None:
        headers = {"If-Match": etag} if etag else None
        self.conn.request("PUT", f"/1.0/profiles/{_q(name)}", json_body=put, headers=headers)

    def rename_profile(self, name: str, new_name: str) -> None:
        self.conn.request("POST", f"/1.0/profiles/{_q(name)}", json_body={"name": new_name})

    def delete_profile(self, name: str) -> None:
        self.conn.request("DELETE", f"/1.0/profiles/{_q(name)}")

    # backups
    def backups(self, name: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.conn.request(
            "GET", f"/1.0/instances/{_q(name)}/backups", params={"recursion": "1"}
        )
        return result

    def export_instance(self, name: str, target: Path, body: dict[str, Any]) -> int:
        return self.export_backup(f"/1.0/instances/{_q(name)}", target, body)

    def import_backup(self, tarball: Path, name: str = "", pool: str = "") -> RemoteOperation:
        headers = {"X-Incus-pool": pool} if pool else {}
        return self.upload_backup("/1.0/instances", tarball, name, headers)

    # images
    def images(self, recursion: int = 1) -> list[Any]:
        result: list[Any] = self.conn.request(
            "GET", "/1.0/images", params={"recursion": str(recursion)}
        )
        return result

    def image(self, fingerprint: str) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request("GET", f"/1.0/images/{fingerprint}")
        return result

    def upload_image(
        self, meta: Path, rootfs: Path | None = None, *, public: bool = False, filename: str = ""
    ) -> RemoteOperation:
        headers = {
            "X-Incus-public": "1" if public else "0",
            "X-Incus-filename": filename or meta.name,
        }
        if rootfs is None:
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-Length"] = str(os.path.getsize(meta))
            return self._op("POST", "/1.0/images", body=file_chunks(meta), headers=headers)
        form = _Multipart([("metadata", meta), ("rootfs", rootfs)])
        headers["Content-Type"] = f"multipart/form-data; boundary={form.boundary}"
        headers["Content-Length"] = str(len(form))
        return self._op("POST", "/1.0/images", body=iter(form), headers=headers)

    def delete_image(self, fingerprint: str) -> RemoteOperation:
        return self._op("DELETE", f"/1.0/images/{fingerprint}")

    def aliases(self) -> list[Any]:
        result: list[Any] = self.conn.request(
            "GET", "/1.0/images/aliases", params={"recursion": "1"}
        )
        return result

    def alias(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request("GET", f"/1.0/images/aliases/{_q(name)}")
        return result

    def create_alias(self, name: str, target: str, description: str = "") -> None:
        self.conn.request(
            "POST",
            "/1.0/images/aliases",
            json_body={"name": name, "target": target, "description": description},
        )

    def delete_alias(self, name: str) -> None:
        self.conn.request("DELETE", f"/1.0/images/aliases/{_q(name)}")

    # operations and events
    def operations(self) -> dict[str, list[Any]]:
        result: dict[str, list[Any]] = self.conn.request(
            "GET", "/1.0/operations", params={"recursion": "1"}
        )
        return result

    def operation(self, op_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request("GET", f"/1.0/operations/{op_id}")
        return result

    def events(self, types: list[str] | None = None) -> Iterator[dict[str, Any]]:
        import websocket  # here: most commands listen to no events

        query = f"?type={','.join(types)}" if types else ""
        ws = self.conn.websocket(f"/1.0/events{query}")
        try:
            while True:
                try:
                    opcode, data = ws.recv_data()
                except (websocket.WebSocketConnectionClosedException, OSError):
                    return
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    yield json.loads(data)
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    return
        finally:
            ws.close()


def _file_info(headers: dict[str, str]) -> dict[str, str]:
    """A file's X-Incus-* headers (Uid, Gid, Mode, Type), named without the prefix."""
    return {
        k.removeprefix("X-Incus-").lower(): v
        for k, v in headers.items()
        if k.startswith("X-Incus-")
    }
