"""nic with a veth pair: plain (nictype p2p) or with its host side on a bridge: a managed
network's (``network=NAME``) or any host bridge (nictype bridged, ``parent=BRIDGE``); the
other nictypes live in nic_host.py (macvlan, physical) and nic_routed.py. ``nic_class`` picks
the class from nictype or the managed network's type."""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
from pathlib import Path
from typing import ClassVar

from stapes.api.errors import BadRequest
from stapes.config import validate as v
from stapes.host import nic_filter, traffic
from stapes.instance.devices.device import Device, DeviceContext, Nic, NicFilters, RunConfig
from stapes.network.dnsmasq import StaticLease


def is_ipv4(value: str) -> None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def is_ipv6(value: str) -> None:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv6 address") from None


def is_subnets(version: int) -> v.Validator:
    def check(value: str) -> None:
        for part in value.split(","):
            try:
                net = ipaddress.ip_network(part.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{part.strip()!r} is not a subnet") from None
            if net.version != version:
                raise ValueError(f"{part.strip()!r} is not an IPv{version} subnet")

    return check


def random_mac() -> str:
    """In Incus's 10:66:6a range, as Incus 6 gives its NICs."""
    tail = secrets.token_bytes(3)
    return "10:66:6a:" + ":".join(f"{b:02x}" for b in tail)


NICTYPES = ("p2p", "bridged", "macvlan", "physical", "routed", "ipvlan", "sriov")
COMMON_KEYS: dict[str, v.Validator] = {
    "nictype": v.one_of(*NICTYPES),
    "network": v.any_value,
    "name": v.is_ifname,
    "hwaddr": v.is_mac,
    "mtu": v.is_uint,
    "parent": v.is_ifname,
    "boot.priority": v.is_uint,
}
LIMIT_KEYS: dict[str, v.Validator] = {
    "limits.ingress": traffic.is_rate,
    "limits.egress": traffic.is_rate,
    "limits.max": traffic.is_rate,
}


def host_side_name(ctx: DeviceContext, hwaddr: str) -> str:
    """The host end of a NIC: vethXXXXXXXX, or with instances.nic.host_name=mac the MAC's
    digits after "inc" (as Incus names them)."""
    if ctx.nic_host_names == "mac" and hwaddr:
        return "inc" + hwaddr.replace(":", "").lower()[:12]
    return "veth" + secrets.token_hex(4)


NO_MAC_NICTYPES = ("physical", "ipvlan")
"""NIC types that keep the host device's MAC (or have none of their own)."""


def fill_volatile(config: dict[str, str], devices: dict[str, dict[str, str]]) -> dict[str, str]:
    """The volatile keys Incus fills when an instance is created or its devices change: a MAC
    (``volatile.DEV.hwaddr``) for each NIC without ``hwaddr``, and an interface name
    (``volatile.DEV.name``, the first free ethN) for each NIC without ``name``."""
    nics = {n: d for n, d in sorted(devices.items()) if d.get("type") == "nic"}
    taken = {d["name"] for d in nics.values() if d.get("name")}
    taken |= {config[f"volatile.{n}.name"] for n in nics if config.get(f"volatile.{n}.name")}
    filled: dict[str, str] = {}
    for name, nic in nics.items():
        mac_key, name_key = f"volatile.{name}.hwaddr", f"volatile.{name}.name"
        own_mac = nic.get("nictype", "") not in NO_MAC_NICTYPES
        if own_mac and not nic.get("hwaddr") and not config.get(mac_key):
            filled[mac_key] = random_mac()
        if not nic.get("name") and not config.get(name_key):
            index = 0
            while f"eth{index}" in taken:
                index += 1
            filled[name_key] = f"eth{index}"
            taken.add(filled[name_key])
    return filled


def nic_class(config: dict[str, str], ctx: DeviceContext) -> type[Device]:
    """The class of a nic: its nictype's, or the one its managed network's type gives."""
    from stapes.instance.devices.nic_host import NicMacvlan, NicPhysical
    from stapes.instance.devices.nic_routed import NicRouted

    nictype = config.get("nictype", "")
    network = config.get("network", "")
    if network and ctx.network is not None:
        try:
            kind = ctx.network.network_type(network)
        except BadRequest:
            kind = "bridge"  # validate() names the missing network
        nictype = {"macvlan": "macvlan", "physical": "physical"}.get(kind, "bridged")
    classes: dict[str, type[Device]] = {
        "macvlan": NicMacvlan,
        "physical": NicPhysical,
        "routed": NicRouted,
    }
    return classes.get(nictype, NicVeth)


class NicVeth(Device):
    TYPES = frozenset({"container", "virtual-machine"})
    """For a VM, the host side is a tap QEMU opens instead of a veth pair (vm/qemu.py)."""
    KEYS: ClassVar = {
        **COMMON_KEYS,
        **LIMIT_KEYS,
        "host_name": v.is_ifname,
        "ipv4.address": is_ipv4,
        "ipv6.address": is_ipv6,
        "security.mac_filtering": v.is_bool,
        "security.ipv4_filtering": v.is_bool,
        "security.ipv6_filtering": v.is_bool,
        "security.acls": v.any_value,
        "ipv4.routes": is_subnets(4),
        "ipv6.routes": is_subnets(6),
    }

    def validate(self) -> None:
        super().validate()
        self._validate_security()
        nictype = self.config.get("nictype", "")
        if self.config.get("network"):
            if nictype not in ("", "bridged"):
                raise self.fail(f"nictype {nictype!r} cannot be combined with network")
            if self.ctx.network is None:
                raise self.fail("managed networks are not available here")
            try:
                self.ctx.network.host_interface(self.config["network"])
                for key in ("ipv4.address", "ipv6.address"):
                    if self.config.get(key):
                        self.ctx.network.check_address(self.config["network"], self.config[key])
            except BadRequest as exc:
                raise self.fail(exc.message) from None
            return
        for key in ("ipv4.address", "ipv6.address"):
            if self.config.get(key):
                raise self.fail(f"{key} needs network= (a managed network hands it out)")
        if nictype == "bridged":
            parent = self.config.get("parent", "")
            if not parent:
                raise self.fail("nictype bridged needs parent (the host bridge) or network")
            if not Path(f"/sys/class/net/{parent}/bridge").is_dir():
                raise self.fail(f"nictype bridged: parent {parent!r} is not a bridge on this host")
            return
        if nictype == "ipvlan":
            raise self.fail(
                "nictype ipvlan is not supported by this stapesd: use macvlan or routed"
            )
        if nictype == "sriov":
            raise self.fail("nictype sriov is not supported by this stapesd: use physical")
        if nictype != "p2p":
            raise self.fail(
                "nictype or network is required (p2p: a veth pair; bridged, macvlan, physical, "
                "routed; network: a managed network)"
            )

    def _validate_security(self) -> None:
        if self.config.get("security.acls"):
            raise self.fail(
                "security.acls on a NIC needs connection tracking on bridges "
                "(nf_conntrack_bridge, CONFIG_NF_CONNTRACK_BRIDGE), which this kernel lacks: "
                "set security.acls on the network instead"
            )
        if v.parse_bool(self.config.get("security.ipv6_filtering", "false")):
            raise self.fail(
                "security.ipv6_filtering is not supported by this stapesd yet (NICs have no "
                "static ipv6.address here): use security.mac_filtering and ipv4_filtering"
            )
        ipv4 = v.parse_bool(self.config.get("security.ipv4_filtering", "false"))
        if ipv4 and not self.config.get("ipv4.address"):
            raise self.fail("security.ipv4_filtering needs ipv4.address (the one it may use)")
        if self._filtering() and self.config.get("nictype") == "p2p":
            raise self.fail("security.*_filtering needs a bridged NIC (network= or parent=)")

    def _filtering(self) -> bool:
        return any(
            v.parse_bool(self.config.get(f"security.{k}_filtering", "false"))
            for k in ("mac", "ipv4")
        )

    def _filters(self, hwaddr: str) -> NicFilters | None:
        if not self._filtering():
            return None
        ipv4 = v.parse_bool(self.config.get("security.ipv4_filtering", "false"))
        return NicFilters(hwaddr, (self.config["ipv4.address"],) if ipv4 else ())

    def _rate(self, key: str) -> int:
        value = self.config.get(key) or self.config.get("limits.max", "")
        return traffic.parse_rate(value) if value else 0

    def _routes(self) -> tuple[str, ...]:
        """ipv4.routes and ipv6.routes: subnets routed to the instance."""
        return tuple(
            part.strip()
            for key in ("ipv4.routes", "ipv6.routes")
            for part in self.config.get(key, "").split(",")
            if part.strip()
        )

    def _link_routes(self) -> tuple[tuple[str, str], ...]:
        """A bridged NIC's routes go through the bridge, to its own address when it has one."""
        return tuple(
            (part.strip(), self.config.get(f"ipv{version}.address", ""))
            for version in (4, 6)
            for part in self.config.get(f"ipv{version}.routes", "").split(",")
            if part.strip()
        )

    def stop(self) -> None:
        """What outlives the veth: the ifb device of an egress limit, the filter table, the
        routes through the bridge."""
        link = self._link() if self.config.get("network") or self.config.get("parent") else ""
        for route, _ in self._link_routes() if link else ():
            subprocess.run(["ip", "route", "del", route, "dev", link], capture_output=True)
        host_name = self.ctx.config.get(f"volatile.{self.name}.host_name", "")
        if host_name and self._rate("limits.egress"):
            subprocess.run(traffic.clear_argv(host_name), capture_output=True, check=False)
        if host_name and self._filtering():
            subprocess.run(nic_filter.remove_argv(host_name), capture_output=True, check=False)

    def _link(self) -> str:
        """The bridge the host side joins ("" for p2p)."""
        network = self.config.get("network")
        if network and self.ctx.network is not None:
            return self.ctx.network.host_interface(network)
        return self.config.get("parent", "") if self.config.get("nictype") == "bridged" else ""

    def attached(self) -> RunConfig:
        host_name = self.ctx.config.get(f"volatile.{self.name}.host_name", "")
        if not host_name:
            return RunConfig()
        return RunConfig(nics=[Nic(self.interface_name, host_name, "")])

    def start(self) -> RunConfig:
        prefix = f"volatile.{self.name}."
        hwaddr = self.config.get("hwaddr") or self.ctx.config.get(prefix + "hwaddr") or random_mac()
        host_name = self.config.get("host_name") or host_side_name(self.ctx, hwaddr)
        link = self._link()
        nic = Nic(
            name=self.interface_name,
            host_name=host_name,
            hwaddr=hwaddr,
            mtu=int(self.config.get("mtu", "0") or 0),
            link=link,
            ingress=self._rate("limits.ingress"),
            egress=self._rate("limits.egress"),
            filters=self._filters(hwaddr),
            host_routes=() if link else self._routes(),
            link_routes=self._link_routes() if link else (),
        )
        network = self.config.get("network")
        if network and self.ctx.network is not None:
            self.ctx.network.check_mac(network, hwaddr, self.ctx.instance, self.name)
        ipv4, ipv6 = self.config.get("ipv4.address", ""), self.config.get("ipv6.address", "")
        if network and (ipv4 or ipv6) and self.ctx.network is not None:
            lease = StaticLease(hwaddr, ipv4, ipv6, self.ctx.instance)
            self.ctx.network.refresh_reservations(network, lease)
        volatile = {prefix + "hwaddr": hwaddr, prefix + "host_name": host_name}
        return RunConfig(nics=[nic], volatile=volatile)


class NoneDevice(Device):
    """``type: none``: hides a device of the same name inherited from a profile."""

    TYPES = frozenset({"container", "virtual-machine"})

    def start(self) -> RunConfig:
        return RunConfig()
