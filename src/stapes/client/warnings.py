"""The warnings part of the client library."""

from __future__ import annotations

from typing import Any

from stapes.client.connection import Connection
from stapes.client.connection import segment as _q


class WarningClient:
    conn: Connection

    def warnings(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.conn.request(
            "GET", "/1.0/warnings", params={"recursion": "1"}
        )
        return result

    def warning(self, uuid: str) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request("GET", f"/1.0/warnings/{_q(uuid)}")
        return result

    def set_warning_status(self, uuid: str, status: str) -> None:
        self.conn.request("PUT", f"/1.0/warnings/{_q(uuid)}", json_body={"status": status})

    def delete_warning(self, uuid: str) -> None:
        self.conn.request("DELETE", f"/1.0/warnings/{_q(uuid)}")
