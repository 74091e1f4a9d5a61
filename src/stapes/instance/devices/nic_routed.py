"""nictype routed: a veth pair on no bridge. The instance gets its addresses (/32, /128) and a
default route through the host side, which answers as ``ipv4.host_address`` (169.254.0.1) and
``ipv6.host_address`` (fe80::1) and routes each address to the veth. With ``parent``, the
host answers ARP/NDP for the addresses there (proxy neighbours), so the instance shows up on
the parent's network when the host forwards packets (IP forwarding is the admin's choice)."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from stapes.config import validate as v
from stapes.host import traffic
from stapes.instance.devices.device import Device, Nic, RunConfig
from stapes.instance.devices.nic import COMMON_KEYS, LIMIT_KEYS, host_side_name, random_mac

HOST_ADDRESS = {4: "169.254.0.1", 6: "fe80::1"}


def _addresses(version: int) -> Callable[[str], None]:
    def check(value: str) -> None:
        for part in value.split(","):
            try:
                address = ipaddress.ip_address(part.strip())
            except ValueError:
                raise ValueError(f"{part.strip()!r} is not an IPv{version} address") from None
            if address.version != version:
                raise ValueError(f"{part.strip()!r} is not an IPv{version} address")

    return check


def _gateway(value: str) -> None:
    if value not in ("auto", "none"):
        raise ValueError(f"{value!r}: use auto or none")


class NicRouted(Device):
    KEYS: ClassVar = {
        **COMMON_KEYS,
        **LIMIT_KEYS,
        "host_name": v.is_ifname,
        "ipv4.address": _addresses(4),
        "ipv6.address": _addresses(6),
        "ipv4.gateway": _gateway,
        "ipv6.gateway": _gateway,
        "ipv4.host_address": _addresses(4),
        "ipv6.host_address": _addresses(6),
        "ipv4.neighbor_probe": v.is_bool,
        "ipv6.neighbor_probe": v.is_bool,
        "vlan": v.is_uint,
    }

    def validate(self) -> None:
        super().validate()
        if self.config.get("network"):
            raise self.fail("nictype routed cannot be combined with network (use parent)")
        if self.config.get("vlan"):
            raise self.fail("vlan needs 802.1q support, which this kernel lacks")
        if not (self.config.get("ipv4.address") or self.config.get("ipv6.address")):
            raise self.fail("nictype routed needs ipv4.address or ipv6.address (what to route)")

    def check_host(self) -> None:
        parent = self.config.get("parent", "")
        if parent and not Path(f"/sys/class/net/{parent}").exists():
            raise self.fail(f"parent {parent!r} does not exist on this host")

    def _list(self, key: str) -> list[str]:
        return [a.strip() for a in self.config.get(key, "").split(",") if a.strip()]

    def _rate(self, key: str) -> int:
        value = self.config.get(key) or self.config.get("limits.max", "")
        return traffic.parse_rate(value) if value else 0

    def start(self) -> RunConfig:
        prefix = f"volatile.{self.name}."
        hwaddr = self.config.get("hwaddr") or self.ctx.config.get(prefix + "hwaddr") or random_mac()
        host_name = self.config.get("host_name") or host_side_name(self.ctx, hwaddr)
        addresses, gateways, host_addresses, routes = [], [], [], []
        for version, bits in ((4, 32), (6, 128)):
            mine = self._list(f"ipv{version}.address")
            if not mine:
                continue
            host = self.config.get(f"ipv{version}.host_address") or HOST_ADDRESS[version]
            addresses += [f"{a}/{bits}" for a in mine]
            routes += [f"{a}/{bits}" for a in mine]
            host_addresses.append(f"{host}/{bits if version == 4 else 64}")
            if self.config.get(f"ipv{version}.gateway", "auto") == "auto":
                gateways.append(host)
        nic = Nic(
            name=self.interface_name,
            host_name=host_name,
            hwaddr=hwaddr,
            mtu=int(self.config.get("mtu", "0") or 0),
            ingress=self._rate("limits.ingress"),
            egress=self._rate("limits.egress"),
            addresses=tuple(addresses),
            gateways=tuple(gateways),
            host_addresses=tuple(host_addresses),
            host_routes=tuple(routes),
            proxy_parent=self.config.get("parent", ""),
        )
        volatile = {prefix + "hwaddr": hwaddr, prefix + "host_name": host_name}
        return RunConfig(nics=[nic], volatile=volatile)

    def attached(self) -> RunConfig:
        host_name = self.ctx.config.get(f"volatile.{self.name}.host_name", "")
        if not host_name:
            return RunConfig()
        routes = [f"{a}/32" for a in self._list("ipv4.address")]
        routes += [f"{a}/128" for a in self._list("ipv6.address")]
        nic = Nic(
            self.interface_name,
            host_name,
            "",
            host_routes=tuple(routes),
            proxy_parent=self.config.get("parent", ""),
        )
        return RunConfig(nics=[nic])

    def stop(self) -> None:
        """Proxy neighbour entries on the parent and an egress limit's ifb outlive the veth."""
        host_name = self.ctx.config.get(f"volatile.{self.name}.host_name", "")
        for nic in self.attached().nics:
            for argv in proxy_neighbour_argv("del", nic):
                subprocess.run(argv, capture_output=True, check=False)
        if host_name and self._rate("limits.egress"):
            subprocess.run(traffic.clear_argv(host_name), capture_output=True, check=False)


def proxy_neighbour_argv(verb: str, nic: Nic) -> list[list[str]]:
    """``ip neigh add|del proxy ADDRESS dev PARENT`` for each routed address."""
    if not nic.proxy_parent:
        return []
    return [
        ["ip", "neigh", verb, "proxy", route.split("/")[0], "dev", nic.proxy_parent]
        for route in nic.host_routes
    ]
