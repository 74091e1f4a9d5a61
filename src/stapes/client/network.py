"""The managed networks part of the client library."""

from __future__ import annotations

from typing import Any

from stapes.client.connection import Connection, unwrap
from stapes.client.connection import segment as _q


class NetworkClient:
    conn: Connection

    def networks(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.conn.request(
            "GET", "/1.0/networks", params={"recursion": "1"}
        )
        return result

    def network(self, name: str, target: str = "") -> tuple[dict[str, Any], str]:
        """``target``: as that cluster member has it (its own values of member keys)."""
        params = {"target": target} if target else None
        _, envelope, etag = self.conn.raw("GET", f"/1.0/networks/{_q(name)}", params=params)
        return unwrap(envelope), etag

    def create_network(self, body: dict[str, Any], target: str = "") -> None:
        params = {"target": target} if target else None
        self.conn.request("POST", "/1.0/networks", json_body=body, params=params)

    def update_network(
        self, name: str, put: dict[str, Any], etag: str = "", target: str = ""
    ) -> None:
        headers = {"If-Match": etag} if etag else None
        params = {"target": target} if target else None
        self.conn.request(
            "PUT", f"/1.0/networks/{_q(name)}", json_body=put, headers=headers, params=params
        )

    def rename_network(self, name: str, new_name: str) -> None:
        self.conn.request("POST", f"/1.0/networks/{_q(name)}", json_body={"name": new_name})

    def delete_network(self, name: str) -> None:
        self.conn.request("DELETE", f"/1.0/networks/{_q(name)}")

    def network_state(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request("GET", f"/1.0/networks/{_q(name)}/state")
        return result

    def network_leases(self, name: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.conn.request("GET", f"/1.0/networks/{_q(name)}/leases")
        return result

    # -- forwards -------------------------------------------------------------------------------

    def _forwards(self, network: str) -> str:
        return f"/1.0/networks/{_q(network)}/forwards"

    def network_forwards(self, network: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.conn.request(
            "GET", self._forwards(network), params={"recursion": "1"}
        )
        return result

    def network_forward(self, network: str, address: str) -> tuple[dict[str, Any], str]:
        _, envelope, etag = self.conn.raw("GET", f"{self._forwards(network)}/{_q(address)}")
        return unwrap(envelope), etag

    def create_network_forward(self, network: str, body: dict[str, Any]) -> None:
        self.conn.request("POST", self._forwards(network), json_body=body)

    def update_network_forward(
        self, network: str, address: str, put: dict[str, Any], etag: str = ""
    ) -> None:
        headers = {"If-Match": etag} if etag else None
        url = f"{self._forwards(network)}/{_q(address)}"
        self.conn.request("PUT", url, json_body=put, headers=headers)

    def delete_network_forward(self, network: str, address: str) -> None:
        self.conn.request("DELETE", f"{self._forwards(network)}/{_q(address)}")

    # -- ACLs -----------------------------------------------------------------------------------

    def network_acls(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.conn.request(
            "GET", "/1.0/network-acls", params={"recursion": "1"}
        )
        return result

    def network_acl(self, name: str) -> tuple[dict[str, Any], str]:
        _, envelope, etag = self.conn.raw("GET", f"/1.0/network-acls/{_q(name)}")
        return unwrap(envelope), etag

    def create_network_acl(self, body: dict[str, Any]) -> None:
        self.conn.request("POST", "/1.0/network-acls", json_body=body)

    def update_network_acl(self, name: str, put: dict[str, Any], etag: str = "") -> None:
        headers = {"If-Match": etag} if etag else None
        self.conn.request("PUT", f"/1.0/network-acls/{_q(name)}", json_body=put, headers=headers)

    def rename_network_acl(self, name: str, new_name: str) -> None:
        self.conn.request("POST", f"/1.0/network-acls/{_q(name)}", json_body={"name": new_name})

    def delete_network_acl(self, name: str) -> None:
        self.conn.request("DELETE", f"/1.0/network-acls/{_q(name)}")

    # -- zones ----------------------------------------------------------------------------------

    def network_zones(self, all_projects: bool = False) -> list[dict[str, Any]]:
        params = {"recursion": "1", **({"all-projects": "true"} if all_projects else {})}
        result: list[dict[str, Any]] = self.conn.request("GET", "/1.0/network-zones", params=params)
        return result

    def network_zone(self, name: str) -> tuple[dict[str, Any], str]:
        _, envelope, etag = self.conn.raw("GET", f"/1.0/network-zones/{_q(name)}")
        return unwrap(envelope), etag

    def create_network_zone(self, body: dict[str, Any]) -> None:
        self.conn.request("POST", "/1.0/network-zones", json_body=body)

    def update_network_zone(self, name: str, put: dict[str, Any], etag: str = "") -> None:
        headers = {"If-Match": etag} if etag else None
        self.conn.request("PUT", f"/1.0/network-zones/{_q(name)}", json_body=put, headers=headers)

    def delete_network_zone(self, name: str) -> None:
        self.conn.request("DELETE", f"/1.0/network-zones/{_q(name)}")

    def _records(self, zone: str) -> str:
        return f"/1.0/network-zones/{_q(zone)}/records"

    def network_zone_records(self, zone: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.conn.request(
            "GET", self._records(zone), params={"recursion": "1"}
        )
        return result

    def network_zone_record(self, zone: str, name: str) -> tuple[dict[str, Any], str]:
        _, envelope, etag = self.conn.raw("GET", f"{self._records(zone)}/{_q(name)}")
        return unwrap(envelope), etag

    def create_network_zone_record(self, zone: str, body: dict[str, Any]) -> None:
        self.conn.request("POST", self._records(zone), json_body=body)

    def update_network_zone_record(
        self, zone: str, name: str, put: dict[str, Any], etag: str = ""
    ) -> None:
        headers = {"If-Match": etag} if etag else None
        path = f"{self._records(zone)}/{_q(name)}"
        self.conn.request("PUT", path, json_body=put, headers=headers)

    def delete_network_zone_record(self, zone: str, name: str) -> None:
        self.conn.request("DELETE", f"{self._records(zone)}/{_q(name)}")
