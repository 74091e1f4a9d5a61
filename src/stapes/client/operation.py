"""A remote operation: wait for it, read its result, connect its websockets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stapes.api.errors import RemoteError
from stapes.client.connection import Connection

if TYPE_CHECKING:  # the connection imports it when a websocket is opened
    import websocket


class RemoteOperation:
    def __init__(self, conn: Connection, metadata: dict[str, Any]) -> None:
        self.conn = conn
        self.metadata = metadata

    @property
    def id(self) -> str:
        return str(self.metadata["id"])

    def wait(self, timeout: float = -1) -> dict[str, Any]:
        """Wait until done; return the final operation. A failed operation raises RemoteError
        with the daemon's message and status."""
        while True:
            result: dict[str, Any] = self.conn.request(
                "GET", f"/1.0/operations/{self.id}/wait", params={"timeout": str(timeout)}
            )
            self.metadata = result
            if result.get("status_code", 0) >= 200 or timeout >= 0:
                break
        if result.get("status") == "Failure" or result.get("err"):
            raise RemoteError(str(result.get("err")), 400)
        return result

    def current(self) -> dict[str, Any]:
        """The operation as the daemon holds it now (a finished one for a few seconds)."""
        result: dict[str, Any] = self.conn.request("GET", f"/1.0/operations/{self.id}")
        self.metadata = result
        return result

    def secret(self, name: str) -> str:
        return str(((self.metadata.get("metadata") or {}).get("fds") or {})[name])

    def websocket(self, name: str) -> websocket.WebSocket:
        return self.conn.websocket(
            f"/1.0/operations/{self.id}/websocket?secret={self.secret(name)}"
        )
