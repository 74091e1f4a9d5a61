"""bridge: a Linux bridge made with netlink (pyroute2), its addresses, a dnsmasq for DHCP and
DNS under ``dns.domain``, and an nftables table for NAT when ``ipv4.nat``/``ipv6.nat``."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
from pathlib import Path
from typing import Any, ClassVar

from pyroute2 import IPRoute

from stapes.api.errors import BadRequest, MissingHostFeature
from stapes.config import validate as v
from stapes.network import acls, addresses, dnsmasq, firewall
from stapes.network.drivers.driver import NetworkDriver, bridge_state


def _is_ranges(version: int) -> v.Validator:
    kind = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    example = "10.0.3.10-10.0.3.99" if version == 4 else "fd42::10-fd42::99"

    def check(value: str) -> None:
        for part in value.split(","):
            first, sep, last = part.partition("-")
            try:
                kind(first.strip())
                kind(last.strip())
            except ValueError:
                raise ValueError(f"{value!r} is not a list of ranges such as {example}") from None
            if not sep:
                raise ValueError(f"{part!r} is not a range FIRST-LAST")

    return check


def _ranges(value: str) -> list[tuple[str, str]]:
    return [(a.strip(), b.strip()) for a, _, b in (r.partition("-") for r in value.split(","))]


def _is_routes(value: str) -> None:
    for part in value.split(","):
        try:
            ipaddress.ip_network(part.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{part!r} is not a subnet") from None


class BridgeDriver(NetworkDriver):
    TYPE = "bridge"
    KEYS: ClassVar[dict[str, v.Validator]] = {
        "ipv4.address": addresses.is_address(4),
        "ipv6.address": addresses.is_address(6),
        "ipv4.nat": v.is_bool,
        "ipv6.nat": v.is_bool,
        "ipv4.dhcp": v.is_bool,
        "ipv4.dhcp.ranges": _is_ranges(4),
        "ipv6.dhcp": v.is_bool,
        "ipv6.dhcp.stateful": v.is_bool,
        "ipv6.dhcp.ranges": _is_ranges(6),
        "ipv4.routes": _is_routes,
        "ipv6.routes": _is_routes,
        "dns.domain": v.is_dns_domain,
        "dns.mode": v.one_of("managed", "dynamic", "none"),
        "bridge.mtu": v.is_uint,
        "bridge.hwaddr": v.is_mac,
        "security.acls": v.any_value,
        "security.acls.default.ingress.action": v.one_of(*acls.DEFAULT_ACTIONS),
        "security.acls.default.egress.action": v.one_of(*acls.DEFAULT_ACTIONS),
        "security.acls.default.ingress.logged": v.is_bool,
        "security.acls.default.egress.logged": v.is_bool,
    }
    FORWARDS = True

    @classmethod
    def probe(cls) -> None:
        for tool, package in (("dnsmasq", "dnsmasq-base"), ("nft", "nftables")):
            if shutil.which(tool) is None:
                raise MissingHostFeature(f"bridge networks need {tool}: apt-get install {package}")

    @classmethod
    def validate_name(cls, name: str) -> None:
        try:
            v.is_ifname(name)
        except ValueError as exc:
            raise BadRequest(
                f"Invalid network name: {exc} (it names the bridge interface)"
            ) from None

    def defaults(self, config: dict[str, str]) -> dict[str, str]:
        """(Blocking: netlink reads. Called in a thread.)"""
        made = {}
        if config.get("ipv4.address", "auto") == "auto":
            made["ipv4.address"] = str(addresses.choose_ipv4(_host_networks4()))
            made.setdefault("ipv4.nat", config.get("ipv4.nat", "true"))
        if config.get("ipv6.address", "auto") == "auto":
            made["ipv6.address"] = str(addresses.choose_ipv6())
            made.setdefault("ipv6.nat", config.get("ipv6.nat", "true"))
        return made

    def _ipv4(self) -> ipaddress.IPv4Interface | None:
        value = self.config.get("ipv4.address", "none")
        return None if value in ("none", "") else ipaddress.IPv4Interface(value)

    def _ipv6(self) -> ipaddress.IPv6Interface | None:
        value = self.config.get("ipv6.address", "none")
        return None if value in ("none", "") else ipaddress.IPv6Interface(value)

    async def start(self) -> None:
        ipv4, ipv6 = self._ipv4(), self._ipv6()
        # pyroute2's IPRoute runs an event loop of its own: netlink work happens in a thread
        await asyncio.to_thread(self._set_up_link, ipv4, ipv6)
        await self._dnsmasq(ipv4, ipv6)
        await self.apply_policy()

    def _set_up_link(
        self, ipv4: ipaddress.IPv4Interface | None, ipv6: ipaddress.IPv6Interface | None
    ) -> None:
        """The bridge, its MTU and MAC, exactly its configured addresses, up; then routes."""
        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=self.name):
                ipr.link("add", ifname=self.name, kind="bridge")
            elif not Path(f"/sys/class/net/{self.name}/bridge").is_dir():
                raise BadRequest(
                    f"An interface named {self.name!r} exists and is not a bridge: rename or "
                    "remove it, or give the network another name"
                )
            (index,) = ipr.link_lookup(ifname=self.name)
            # no IPv6 at all on a bridge with ipv6.address=none (not even link-local), as Incus
            sysctl = Path("/proc/sys/net/ipv6/conf", self.name, "disable_ipv6")
            if sysctl.exists():
                sysctl.write_text("1" if ipv6 is None else "0")
            if self.config.get("bridge.mtu"):
                ipr.link("set", index=index, mtu=int(self.config["bridge.mtu"]))
            if self.config.get("bridge.hwaddr"):
                ipr.link("set", index=index, address=self.config["bridge.hwaddr"])
            wanted = {str(i) for i in (ipv4, ipv6) if i is not None}
            for addr in ipr.get_addr(index=index):
                ip, prefix = addr.get_attr("IFA_ADDRESS"), addr["prefixlen"]
                if f"{ip}/{prefix}" not in wanted and not ip.startswith("fe80:"):
                    ipr.addr("del", index=index, address=ip, prefixlen=prefix)
            present = {
                f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=index)
            }
            for iface in (ipv4, ipv6):
                if iface is not None and str(iface) not in present:
                    prefix = iface.network.prefixlen
                    ipr.addr("add", index=index, address=str(iface.ip), prefixlen=prefix)
            ipr.link("set", index=index, state="up")
            for key, iface in (("ipv4.routes", ipv4), ("ipv6.routes", ipv6)):
                for route in filter(None, self.config.get(key, "").split(",")):
                    if iface is not None:
                        ipr.route("replace", dst=route.strip(), oif=index)

    async def _dnsmasq(
        self, ipv4: ipaddress.IPv4Interface | None, ipv6: ipaddress.IPv6Interface | None
    ) -> None:
        dhcp = v.parse_bool(self.config.get("ipv4.dhcp", "true"))
        if (ipv4 is None and ipv6 is None) or (self.config.get("dns.mode") == "none" and not dhcp):
            await dnsmasq.stop(self.directory)
            return
        ranges: list[tuple[str, str]] = []
        if ipv4 is not None and dhcp:
            given = self.config.get("ipv4.dhcp.ranges", "")
            ranges = _ranges(given) if given else [addresses.dhcp_range(ipv4)]
        mode, ranges6 = "stateless", []
        if not v.parse_bool(self.config.get("ipv6.dhcp", "true")):
            mode = "ra-only"
        elif v.parse_bool(self.config.get("ipv6.dhcp.stateful", "false")) and ipv6 is not None:
            mode = "stateful"
            given = self.config.get("ipv6.dhcp.ranges", "")
            net = ipv6.network
            ranges6 = (
                _ranges(given)
                if given
                else [(str(net.network_address + 2), str(net.broadcast_address))]
            )
        await dnsmasq.start(
            dnsmasq.DnsmasqConfig(
                network=self.name,
                bridge=self.name,
                ipv4=ipv4,
                ipv6=ipv6,
                dhcp_ranges=ranges,
                domain=self.config.get("dns.domain") or "incus",
                directory=self.directory,
                ipv6_mode=mode,
                dhcp6_ranges=tuple(ranges6),
            )
        )

    async def apply_policy(self) -> None:
        ipv4, ipv6 = self._ipv4(), self._ipv6()
        nat4 = ipv4.network if ipv4 and v.parse_bool(self.config.get("ipv4.nat", "false")) else None
        nat6 = ipv6.network if ipv6 and v.parse_bool(self.config.get("ipv6.nat", "false")) else None
        if nat4 is not None:
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
        if nat6 is not None:
            Path("/proc/sys/net/ipv6/conf/all/forwarding").write_text("1")
        plan = firewall.FirewallPlan(
            self.name,
            self.name,
            nat4,
            nat6,
            self.policy.forwards,
            self.policy.acl_ingress,
            self.policy.acl_egress,
        )
        await firewall.apply(plan)

    async def delete(self) -> None:
        await dnsmasq.stop(self.directory)
        await firewall.remove(self.name)
        await asyncio.to_thread(self._delete_link)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _delete_link(self) -> None:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=self.name)
            if found:
                ipr.link("del", index=found[0])

    def state(self) -> dict[str, Any]:
        """(Blocking: netlink reads. Called in a thread.)"""
        return bridge_state(self.name)

    def leases(self) -> list[dict[str, str]]:
        return dnsmasq.leases(self.directory)


def _host_networks4() -> list[ipaddress.IPv4Network]:
    """Subnets the host already uses (its addresses and routes), for ipv4.address=auto."""
    with IPRoute() as ipr:
        found = [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(family=2)]
        found += [
            f"{r.get_attr('RTA_DST')}/{r['dst_len']}"
            for r in ipr.get_routes(family=2)
            if r.get_attr("RTA_DST")
        ]
    return [ipaddress.IPv4Network(n, strict=False) for n in found]
