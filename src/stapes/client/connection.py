"""Connections to a Stapes (or Incus) daemon: HTTP over the unix socket, envelopes, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aiohttp

from stapes.api.errors import RemoteError
from stapes.host.paths import stapes_dir


def default_socket() -> Path:
    explicit = os.environ.get("STAPES_SOCKET")
    return Path(explicit) if explicit else stapes_dir() / "unix.socket"


class Connection:
    """One HTTP session to a daemon. ``request`` unwraps the Incus envelope or raises."""

    def __init__(self, socket_path: Path | str | None = None) -> None:
        self.socket_path = str(socket_path or default_socket())
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            if not os.path.exists(self.socket_path):
                raise RemoteError(f"stapesd is not running: no socket at {self.socket_path}", 503)
            connector = aiohttp.UnixConnector(path=self.socket_path)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def raw(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], str]:
        """Return (HTTP status, envelope, ETag)."""
        kwargs: dict[str, Any] = {"params": params, "headers": headers}
        if json_body is not None:
            kwargs["data"] = json.dumps(json_body)
            kwargs["headers"] = {**(headers or {}), "Content-Type": "application/json"}
        elif data is not None:
            kwargs["data"] = data
        try:
            async with self.session.request(method, "http://stapes" + path, **kwargs) as resp:
                text = await resp.text()
                etag = resp.headers.get("ETag", "").strip('"')
                status = resp.status
        except aiohttp.ClientConnectionError as exc:
            raise RemoteError(f"Cannot reach stapesd at {self.socket_path}: {exc}", 503) from None
        try:
            envelope = json.loads(text)
        except json.JSONDecodeError:
            raise RemoteError(
                f"Unexpected answer from the daemon ({status}): {text[:200]}", status
            ) from None
        return status, envelope, etag

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        _, envelope, _ = await self.raw(method, path, **kwargs)
        return unwrap(envelope)

    async def websocket(self, path: str) -> aiohttp.ClientWebSocketResponse:
        return await self.session.ws_connect("http://stapes" + path, max_msg_size=0)


def unwrap(envelope: dict[str, Any]) -> Any:
    if envelope.get("type") == "error":
        raise RemoteError(
            str(envelope.get("error", "unknown error")), int(envelope.get("error_code", 500))
        )
    if envelope.get("type") == "async":
        return envelope["metadata"]
    return envelope.get("metadata")
