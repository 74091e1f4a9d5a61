"""/1.0/network-allocations: every address the managed networks hand out, as Incus lists
them (network_allocations): each network's own subnets, the addresses its instances hold
(static, SLAAC, DHCP), and its forwards' listen addresses."""

from __future__ import annotations

import ipaddress
from typing import Any

from stapes.api.urls import forward_url, network_url
from stapes.config import validate as v
from stapes.db import network_policies as pq
from stapes.network.service import Networks


def _entry(address: str, hwaddr: str, nat: bool, kind: str, used_by: str) -> dict[str, Any]:
    return {"addresses": address, "hwaddr": hwaddr, "nat": nat, "type": kind, "used_by": used_by}


def _host_route(address: str) -> str:
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


def allocations(networks: Networks, project: str | None) -> list[dict[str, Any]]:
    """Of the networks ``project`` sees (every network for None)."""
    found = []
    for row in networks.list_networks(project):
        nat = {
            version: v.parse_bool(row.config.get(f"ipv{version}.nat", "false"))
            for version in (4, 6)
        }
        for version in (4, 6):
            value = row.config.get(f"ipv{version}.address", "")
            if value and value not in ("none", "auto"):
                found.append(_entry(value, "", nat[version], "network", network_url(row.name)))
        for address, hwaddr, url in networks.instance_addresses(row, project):
            version = ipaddress.ip_address(address).version
            found.append(_entry(_host_route(address), hwaddr, nat[version], "instance", url))
        found += [
            _entry(
                _host_route(forward.listen_address),
                "",
                False,
                "network-forward",
                forward_url(row.name, forward.listen_address),
            )
            for forward in pq.list_forwards(networks.db, row.id)
        ]
    return found
