"""The trust store part of the client library: certificates and trust tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stapes.client.connection import Connection, unwrap
from stapes.client.connection import segment as _q

if TYPE_CHECKING:  # pydantic models: imported where used (the CLI starts faster)
    from stapes.api.certificate import TrustToken


class TrustClient:
    conn: Connection

    def certificates(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.conn.request(
            "GET", "/1.0/certificates", params={"recursion": "1"}
        )
        return result

    def certificate(self, fingerprint: str) -> tuple[dict[str, Any], str]:
        _, envelope, etag = self.conn.raw("GET", f"/1.0/certificates/{_q(fingerprint)}")
        return unwrap(envelope), etag

    def add_certificate(self, body: dict[str, Any]) -> None:
        self.conn.request("POST", "/1.0/certificates", json_body=body)

    def update_certificate(self, fingerprint: str, put: dict[str, Any], etag: str = "") -> None:
        headers = {"If-Match": etag} if etag else None
        url = f"/1.0/certificates/{_q(fingerprint)}"
        self.conn.request("PUT", url, json_body=put, headers=headers)

    def delete_certificate(self, fingerprint: str) -> None:
        self.conn.request("DELETE", f"/1.0/certificates/{_q(fingerprint)}")

    def create_token(self, body: dict[str, Any]) -> TrustToken:
        """A trust token for a new client (``body``: name, restricted, projects...)."""
        op = self.conn.request("POST", "/1.0/certificates", json_body={**body, "token": True})
        return _token_of(op["metadata"])

    def tokens(self) -> list[tuple[str, TrustToken]]:
        """(operation id, token) of every pending trust token."""
        ops = self.conn.request("GET", "/1.0/operations", params={"recursion": "1"})
        return [
            (op["id"], _token_of(op["metadata"]))
            for op in ops.get("running", [])
            if op.get("class") == "token"
        ]

    def revoke_token(self, op_id: str) -> None:
        self.conn.request("DELETE", f"/1.0/operations/{_q(op_id)}")


def _token_of(meta: dict[str, Any]) -> TrustToken:
    from stapes.api.certificate import TrustToken

    return TrustToken(
        client_name=meta["request"]["name"],
        fingerprint=meta["fingerprint"],
        addresses=meta["addresses"],
        secret=meta["secret"],
        expires_at=meta.get("expiresAt") or "0001-01-01T00:00:00Z",
    )
