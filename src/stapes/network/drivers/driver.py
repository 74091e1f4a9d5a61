"""The network driver interface: a driver brings one network's host side up and down
(interfaces, addresses, DHCP/DNS, firewall) and reports its state. It never sees the database."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pyroute2 import IPRoute

from stapes.config import validate as v
from stapes.network.forwards import Dnat


@dataclass
class Policy:
    """What the database adds to a network's config: its forwards' rewrites and its ACLs'
    chains (None: no ACL applies)."""

    forwards: list[Dnat] = field(default_factory=list)
    acl_ingress: list[str] | None = None
    acl_egress: list[str] | None = None


class NetworkDriver(abc.ABC):
    TYPE: ClassVar[str]
    MANAGED: ClassVar[bool] = True
    KEYS: ClassVar[dict[str, v.Validator]] = {}

    FORWARDS: ClassVar[bool] = False
    """Whether the type takes network forwards and ACLs (``apply_policy``)."""

    def __init__(
        self, name: str, config: dict[str, str], directory: Path, policy: Policy | None = None
    ) -> None:
        self.name = name
        self.config = config
        self.directory = directory
        """Where the network keeps its files (dnsmasq's config and leases)."""
        self.policy = policy or Policy()

    @classmethod
    @abc.abstractmethod
    def probe(cls) -> None:
        """Raise MissingHostFeature when the host cannot run this type."""

    @classmethod
    @abc.abstractmethod
    def validate_name(cls, name: str) -> None:
        """A name the type can use (a bridge's is its interface name); 400 otherwise."""

    def defaults(self, config: dict[str, str]) -> dict[str, str]:
        """Keys a new network gets (``auto`` values resolved), on top of the user's. May
        block (it runs in a thread)."""
        return {}

    @property
    def host_interface(self) -> str:
        """What a NIC on this network is attached to on the host."""
        return self.name

    @abc.abstractmethod
    async def start(self) -> None:
        """Bring the network up (idempotent: also at each daemon start)."""

    @abc.abstractmethod
    async def delete(self) -> None:
        """Take down and remove everything the network made."""

    async def update(self, old: dict[str, str]) -> None:
        """Apply a new ``config`` (the previous one given): by default, start again."""
        await self.start()

    async def apply_policy(self) -> None:
        """Bring the firewall in line with ``policy`` (forwards or ACLs changed); types
        without forwards and ACLs (``FORWARDS`` false) have nothing to do."""
        return None

    @abc.abstractmethod
    def state(self) -> dict[str, Any]:
        """Addresses, counters, MTU... May block (it runs in a thread)."""

    def leases(self) -> list[dict[str, str]]:
        return []


def link_state(ifname: str) -> dict[str, Any]:
    """Incus's network state of one host interface: addresses, counters, MAC, MTU, up or down.
    (Blocking: netlink reads.)"""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return {"state": "down", "addresses": [], "counters": {}, "type": "broadcast"}
        (link,) = ipr.get_links(found[0])
        stats = link.get_attr("IFLA_STATS64") or {}
        addresses = [
            {
                "family": "inet" if a["family"] == 2 else "inet6",
                "address": a.get_attr("IFA_ADDRESS"),
                "netmask": str(a["prefixlen"]),
                "scope": {0: "global", 253: "link", 254: "local"}.get(a["scope"], "global"),
            }
            for a in ipr.get_addr(index=found[0])
        ]
    up = link.get_attr("IFLA_OPERSTATE") in ("UP", "UNKNOWN") or link["flags"] & 1
    return {
        "addresses": addresses,
        "counters": {
            "bytes_received": stats.get("rx_bytes", 0),
            "bytes_sent": stats.get("tx_bytes", 0),
            "packets_received": stats.get("rx_packets", 0),
            "packets_sent": stats.get("tx_packets", 0),
        },
        "hwaddr": link.get_attr("IFLA_ADDRESS"),
        "mtu": link.get_attr("IFLA_MTU"),
        "state": "up" if up else "down",
        "type": "broadcast",
    }


def bridge_state(ifname: str) -> dict[str, Any]:
    """``link_state`` of a bridge, with the ``bridge`` section Incus adds."""
    found = link_state(ifname)
    if "hwaddr" not in found:
        return found
    return {
        **found,
        "bridge": {
            "id": "",
            "stp": False,
            "forward_delay": 0,
            "vlan_default": 0,
            "vlan_filtering": False,
            "upper_devices": [],
        },
    }
