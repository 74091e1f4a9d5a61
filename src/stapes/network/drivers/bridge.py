"""bridge: a Linux bridge made with netlink (pyroute2), its addresses, a dnsmasq for DHCP and
DNS under ``dns.domain``, and an nftables table for NAT when ``ipv4.nat``/``ipv6.nat``."""

from __future__ import annotations

import asyncio
import ipaddress
import re
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


def _is_expiry(value: str) -> None:
    if not re.fullmatch(r"\d+[smhdw]?|infinite", value):
        raise ValueError(f"{value!r} is not a lease time such as 1h, 30m or infinite")


def _is_dhcp_routes(value: str) -> None:
    """ipv4.dhcp.routes: SUBNET,GATEWAY pairs, comma-separated."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) % 2:
        raise ValueError(f"{value!r} is not a list of SUBNET,GATEWAY pairs")
    for subnet, gateway in zip(parts[::2], parts[1::2], strict=True):
        try:
            ipaddress.IPv4Network(subnet, strict=False)
            ipaddress.IPv4Address(gateway)
        except ValueError:
            raise ValueError(f"{subnet},{gateway} is not an IPv4 subnet and gateway") from None


def _is_address_of(version: int) -> v.Validator:
    kind = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address

    def check(value: str) -> None:
        try:
            kind(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv{version} address") from None

    return check


def _is_domains(value: str) -> None:
    for part in value.split(","):
        v.is_dns_domain(part.strip())


def _refused(reason: str) -> v.Validator:
    def check(value: str) -> None:
        raise ValueError(reason)

    return check


def _only(allowed: str, reason: str) -> v.Validator:
    def check(value: str) -> None:
        if value != allowed:
            raise ValueError(reason)

    return check


TUNNEL_KEYS: dict[str, v.Validator] = {
    "tunnel.*.protocol": v.one_of("gre", "vxlan"),
    "tunnel.*.local": v.is_ip_list,
    "tunnel.*.remote": v.is_ip_list,
    "tunnel.*.group": v.is_ip_list,
    "tunnel.*.port": v.is_uint,
    "tunnel.*.id": v.is_uint,
    "tunnel.*.interface": v.is_ifname,
    "tunnel.*.ttl": v.is_uint,
}


class BridgeDriver(NetworkDriver):
    TYPE = "bridge"
    KEYS: ClassVar[dict[str, v.Validator]] = {
        **TUNNEL_KEYS,
        "bridge.driver": _only(
            "native", "openvswitch bridges need Open vSwitch, which this host does not have"
        ),
        "bridge.mode": _only("standard", "fan mode needs Ubuntu's FAN kernel support"),
        "bridge.external_interfaces": v.is_ifname_list,
        "dns.search": _is_domains,
        "ipv4.dhcp.expiry": _is_expiry,
        "ipv6.dhcp.expiry": _is_expiry,
        "ipv4.dhcp.gateway": _is_address_of(4),
        "ipv4.dhcp.routes": _is_dhcp_routes,
        "ipv4.firewall": v.is_bool,
        "ipv6.firewall": v.is_bool,
        "ipv4.nat.address": _is_address_of(4),
        "ipv6.nat.address": _is_address_of(6),
        "ipv4.nat.order": v.one_of("before", "after"),
        "ipv6.nat.order": v.one_of("before", "after"),
        "ipv4.routing": v.is_bool,
        "ipv6.routing": v.is_bool,
        "raw.dnsmasq": v.any_value,
        "maas.subnet.ipv4": _refused("MAAS is not supported by this stapesd"),
        "maas.subnet.ipv6": _refused("MAAS is not supported by this stapesd"),
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
        "dns.zone.forward": _is_domains,
        "dns.zone.reverse.ipv4": _is_domains,
        "dns.zone.reverse.ipv6": _is_domains,
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
            elif not _is_bridge(self.name):
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
            self._attach_external(ipr, index)
            self._attach_tunnels(ipr, index)
            for key, iface in (("ipv4.routes", ipv4), ("ipv6.routes", ipv6)):
                for route in filter(None, self.config.get(key, "").split(",")):
                    if iface is not None:
                        ipr.route("replace", dst=route.strip(), oif=index)

    def _remembered(self, kind: str) -> set[str]:
        """What the bridge was given last time (external interfaces, tunnel links)."""
        try:
            return set((self.directory / kind).read_text().split())
        except OSError:
            return set()

    def _remember(self, kind: str, names: set[str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / kind).write_text("".join(f"{n}\n" for n in sorted(names)))

    def _attach_external(self, ipr: IPRoute, index: int) -> None:
        """bridge.external_interfaces: host interfaces (up, without addresses of their own)
        made ports of the bridge; those no longer named are let go."""
        wanted = {
            n.strip() for n in self.config.get("bridge.external_interfaces", "").split(",") if n
        }
        for name in sorted(wanted):
            found = ipr.link_lookup(ifname=name)
            if not found:
                raise BadRequest(f"bridge.external_interfaces: there is no interface {name!r}")
            (link,) = ipr.get_links(found[0])
            master = link.get_attr("IFLA_MASTER")
            if master and master != index:
                raise BadRequest(f"bridge.external_interfaces: {name} is a port of another bridge")
            own = [
                a.get_attr("IFA_ADDRESS")
                for a in ipr.get_addr(index=found[0])
                if not str(a.get_attr("IFA_ADDRESS")).startswith("fe80:")
            ]
            if own:
                raise BadRequest(
                    f"bridge.external_interfaces: {name} has addresses ({', '.join(own)}): "
                    "remove them first"
                )
            ipr.link("set", index=found[0], master=index, state="up")
        for name in self._remembered("external") - wanted:
            found = ipr.link_lookup(ifname=name)
            if found:
                ipr.link("set", index=found[0], master=0)
        self._remember("external", wanted)

    def _attach_tunnels(self, ipr: IPRoute, index: int) -> None:
        """tunnel.NAME.*: a GRE (gretap) or VXLAN link NETWORK-NAME per tunnel, a port of the
        bridge; made again at every start, and removed when its keys go."""
        names = {k.split(".")[1] for k in self.config if k.startswith("tunnel.")}
        links = set()
        for tunnel in sorted(names):
            ifname = f"{self.name}-{tunnel}"
            try:
                v.is_ifname(ifname)
            except ValueError as exc:
                raise BadRequest(f"Tunnel {tunnel!r}: its link {ifname!r}: {exc}") from None

            def get(key: str, t: str = tunnel) -> str:
                return self.config.get(f"tunnel.{t}.{key}", "")

            for found in ipr.link_lookup(ifname=ifname):
                ipr.link("del", index=found)
            protocol = get("protocol")
            if protocol == "gre":
                if not get("local") or not get("remote"):
                    raise BadRequest(f"Tunnel {tunnel!r}: gre needs local and remote")
                ipr.link(
                    "add", ifname=ifname, kind="gretap", gre_local=get("local"),
                    gre_remote=get("remote"), gre_ttl=int(get("ttl") or 0),
                )  # fmt: skip
            elif protocol == "vxlan":
                options: dict[str, Any] = {"vxlan_id": int(get("id") or 1)}
                destination = get("remote") or get("group") or "239.0.0.1"
                options["vxlan_group6" if ":" in destination else "vxlan_group"] = destination
                if get("local"):
                    options["vxlan_local6" if ":" in get("local") else "vxlan_local"] = get("local")
                if get("port"):
                    options["vxlan_port"] = int(get("port"))
                if get("ttl"):
                    options["vxlan_ttl"] = int(get("ttl"))
                if get("interface"):
                    parent = ipr.link_lookup(ifname=get("interface"))
                    if not parent:
                        raise BadRequest(f"Tunnel {tunnel!r}: no interface {get('interface')!r}")
                    options["vxlan_link"] = parent[0]
                ipr.link("add", ifname=ifname, kind="vxlan", **options)
            else:
                raise BadRequest(f"Tunnel {tunnel!r}: tunnel.{tunnel}.protocol is gre or vxlan")
            (made,) = ipr.link_lookup(ifname=ifname)
            ipr.link("set", index=made, master=index, state="up")
            links.add(ifname)
        for ifname in self._remembered("tunnels") - links:
            for found in ipr.link_lookup(ifname=ifname):
                ipr.link("del", index=found)
        self._remember("tunnels", links)

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
        routes = [p.strip() for p in self.config.get("ipv4.dhcp.routes", "").split(",") if p]
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
                expiry4=self.config.get("ipv4.dhcp.expiry") or "1h",
                expiry6=self.config.get("ipv6.dhcp.expiry", ""),
                gateway4=self.config.get("ipv4.dhcp.gateway", ""),
                routes4=tuple(zip(routes[::2], routes[1::2], strict=True)),
                search=tuple(
                    d.strip() for d in self.config.get("dns.search", "").split(",") if d.strip()
                ),
                raw=tuple(self.config.get("raw.dnsmasq", "").splitlines()),
            )
        )

    async def apply_policy(self) -> None:
        ipv4, ipv6 = self._ipv4(), self._ipv6()
        nat4 = ipv4.network if ipv4 and v.parse_bool(self.config.get("ipv4.nat", "false")) else None
        nat6 = ipv6.network if ipv6 and v.parse_bool(self.config.get("ipv6.nat", "false")) else None
        # ipv4.routing / ipv6.routing (true unless set false, as Incus): the host forwards
        # the bridge's traffic; NAT needs it
        if ipv4 is not None and (nat4 or v.parse_bool(self.config.get("ipv4.routing", "true"))):
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
        if ipv6 is not None and (nat6 or v.parse_bool(self.config.get("ipv6.routing", "true"))):
            Path("/proc/sys/net/ipv6/conf/all/forwarding").write_text("1")
        plan = firewall.FirewallPlan(
            self.name,
            self.name,
            nat4,
            nat6,
            self.policy.forwards,
            self.policy.acl_ingress,
            self.policy.acl_egress,
            nat4_address=self.config.get("ipv4.nat.address", ""),
            nat6_address=self.config.get("ipv6.nat.address", ""),
            nat_order=self.config.get("ipv4.nat.order", ""),
        )
        await firewall.apply(plan)

    async def delete(self) -> None:
        await dnsmasq.stop(self.directory)
        await firewall.remove(self.name)
        await asyncio.to_thread(self._delete_link)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _delete_link(self) -> None:
        with IPRoute() as ipr:
            for tunnel in self._remembered("tunnels"):
                for found in ipr.link_lookup(ifname=tunnel):
                    ipr.link("del", index=found)
            found = ipr.link_lookup(ifname=self.name)
            if found and _is_bridge(self.name):
                # its ports (external interfaces) are let go; an interface of another kind
                # with the network's name (a create refused because of it) is not ours
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


def _is_bridge(name: str) -> bool:
    """Whether the host interface ``name`` is a bridge (what a bridge network may take over
    or delete; another kind of interface with its name is not the network's)."""
    return Path(f"/sys/class/net/{name}/bridge").is_dir()
