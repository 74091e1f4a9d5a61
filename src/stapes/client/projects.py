"""The projects part of the client library."""

from __future__ import annotations

from typing import Any

from stapes.client.connection import Connection, unwrap
from stapes.client.connection import segment as _q


class ProjectClient:
    conn: Connection

    def projects(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.conn.request(
            "GET", "/1.0/projects", params={"recursion": "1"}
        )
        return result

    def project(self, name: str) -> tuple[dict[str, Any], str]:
        _, envelope, etag = self.conn.raw("GET", f"/1.0/projects/{_q(name)}")
        return unwrap(envelope), etag

    def create_project(self, body: dict[str, Any]) -> None:
        self.conn.request("POST", "/1.0/projects", json_body=body)

    def update_project(self, name: str, put: dict[str, Any], etag: str = "") -> None:
        headers = {"If-Match": etag} if etag else None
        self.conn.request("PUT", f"/1.0/projects/{_q(name)}", json_body=put, headers=headers)

    def rename_project(self, name: str, new_name: str) -> None:
        self.conn.request("POST", f"/1.0/projects/{_q(name)}", json_body={"name": new_name})

    def delete_project(self, name: str) -> None:
        self.conn.request("DELETE", f"/1.0/projects/{_q(name)}")

    def project_state(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request("GET", f"/1.0/projects/{_q(name)}/state")
        return result
