"""The cluster API (/1.0/cluster and below), as InstanceServer's methods."""

from __future__ import annotations

import hashlib
import socket
import ssl
from typing import Any

from stapes.api import join_token
from stapes.api.errors import RemoteError
from stapes.client.connection import Connection
from stapes.client.connection import segment as _q
from stapes.client.operation import RemoteOperation


class ClusterClient:
    conn: Connection

    def cluster(self) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request("GET", "/1.0/cluster")
        return result

    def update_cluster(self, put: dict[str, Any]) -> RemoteOperation:
        return RemoteOperation(self.conn, self.conn.request("PUT", "/1.0/cluster", json_body=put))

    def members(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.conn.request(
            "GET", "/1.0/cluster/members", params={"recursion": "1"}
        )
        return result

    def member(self, name: str) -> tuple[dict[str, Any], str]:
        _, envelope, etag = self.conn.raw("GET", f"/1.0/cluster/members/{_q(name)}")
        return envelope["metadata"], etag

    def update_member(self, name: str, put: dict[str, Any], etag: str = "") -> None:
        headers = {"If-Match": etag} if etag else None
        self.conn.request("PUT", f"/1.0/cluster/members/{_q(name)}", json_body=put, headers=headers)

    def rename_member(self, name: str, new_name: str) -> None:
        self.conn.request(
            "POST", f"/1.0/cluster/members/{_q(name)}", json_body={"server_name": new_name}
        )

    def remove_member(self, name: str, force: bool = False) -> None:
        params = {"force": "1"} if force else None
        self.conn.request("DELETE", f"/1.0/cluster/members/{_q(name)}", params=params)

    def member_state(self, name: str, body: dict[str, Any]) -> RemoteOperation:
        path = f"/1.0/cluster/members/{_q(name)}/state"
        return RemoteOperation(self.conn, self.conn.request("POST", path, json_body=body))

    def join_token(self, name: str) -> RemoteOperation:
        body = {"server_name": name}
        return RemoteOperation(
            self.conn, self.conn.request("POST", "/1.0/cluster/members", json_body=body)
        )

    def cluster_groups(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.conn.request(
            "GET", "/1.0/cluster/groups", params={"recursion": "1"}
        )
        return result

    def create_cluster_group(self, name: str, description: str = "") -> None:
        body = {"name": name, "description": description}
        self.conn.request("POST", "/1.0/cluster/groups", json_body=body)

    def cluster_group(self, name: str) -> tuple[dict[str, Any], str]:
        _, envelope, etag = self.conn.raw("GET", f"/1.0/cluster/groups/{_q(name)}")
        return envelope["metadata"], etag

    def update_cluster_group(self, name: str, put: dict[str, Any], etag: str = "") -> None:
        headers = {"If-Match": etag} if etag else None
        self.conn.request("PUT", f"/1.0/cluster/groups/{_q(name)}", json_body=put, headers=headers)

    def delete_cluster_group(self, name: str) -> None:
        self.conn.request("DELETE", f"/1.0/cluster/groups/{_q(name)}")


def decode_token(text: str) -> dict[str, Any]:
    token = join_token.decode(text)
    if token is None or not token.get("addresses") or not token.get("secret"):
        raise RemoteError("Invalid join token: not the text `cluster add` printed", 400)
    return token


def certificate_at(address: str, fingerprint: str) -> str:
    """The PEM certificate the server at ``address`` presents, which must be the one of
    ``fingerprint`` (the token's: nothing else is trusted)."""
    host, _, port = address.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # pinned below
    with (
        socket.create_connection((host.strip("[]"), int(port)), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True) or b""
    if hashlib.sha256(der).hexdigest() != fingerprint:
        raise RemoteError(
            f"{address} presents a certificate other than the token's ({fingerprint[:12]})", 403
        )
    return ssl.DER_cert_to_PEM_cert(der)
