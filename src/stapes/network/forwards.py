"""Network forwards: a listen address (or some of its ports) sent on to addresses inside the
network. Checking a forward and turning it into nftables DNAT rules; the rules live in the
network's own table (see firewall.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from stapes.api.errors import BadRequest
from stapes.api.network import ForwardPort

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Subnet = ipaddress.IPv4Network | ipaddress.IPv6Network
PROTOCOLS = ("tcp", "udp")
CONFIG_KEYS = ("target_address",)


def parse_ports(value: str, what: str) -> list[int]:
    """``80,90-100`` -> every port it names, in order; a 400 naming ``what`` otherwise."""
    ports: list[int] = []
    for part in value.split(","):
        first, sep, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last if sep else first)
        except ValueError:
            raise BadRequest(
                f"Invalid {what} {value!r}: use ports and ranges such as 80,8000-8010"
            ) from None
        if not 1 <= low <= high <= 65535:
            raise BadRequest(f"Invalid {what} {part.strip()!r}: ports are 1-65535, low-high")
        ports += range(low, high + 1)
    return ports


def parse_address(value: str, what: str) -> Address:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise BadRequest(f"Invalid {what} {value!r}: it is not an IP address") from None


@dataclass(frozen=True)
class Dnat:
    """One rewrite: traffic to ``listen`` (on ``listen_ports`` of ``protocol``, or all of it
    when both are empty) goes to ``target`` (its port mapped to ``target_ports``)."""

    listen: Address
    target: Address
    protocol: str = ""
    listen_ports: tuple[int, ...] = ()
    target_ports: tuple[int, ...] = ()
    snat: bool = False


@dataclass
class Forward:
    listen: Address
    rules: list[Dnat] = field(default_factory=list)


def check_listen_address(value: str, subnets: Iterable[Subnet]) -> Address:
    """A unicast address outside every managed network's subnet."""
    listen = parse_address(value, "listen_address")
    if listen.is_loopback or listen.is_multicast or listen.is_unspecified or listen.is_link_local:
        raise BadRequest(
            f"Invalid listen_address {value!r}: use a unicast address that is not loopback or "
            "link-local"
        )
    for subnet in subnets:
        if listen in subnet:
            raise BadRequest(
                f"Invalid listen_address {value!r}: it lies in {subnet}, a managed network's subnet"
            )
    return listen


def build(
    listen: Address, config: dict[str, str], ports: list[ForwardPort], subnet: list[Subnet]
) -> Forward:
    """The rewrites of one forward, every field checked (``subnet``: the network's own, where
    targets must lie)."""

    def target_of(value: str, what: str) -> Address:
        target = parse_address(value, what)
        if target.version != listen.version:
            raise BadRequest(f"Invalid {what} {value!r}: the listen address is IPv{listen.version}")
        if not any(target in s for s in subnet if s.version == target.version):
            nets = ", ".join(str(s) for s in subnet) or "none"
            raise BadRequest(
                f"Invalid {what} {value!r}: it must lie in the network's subnet ({nets})"
            )
        return target

    for key in config:
        if key not in CONFIG_KEYS and not key.startswith("user."):
            raise BadRequest(f"Invalid network forward configuration key: {key!r}")
    forward = Forward(listen)
    seen: set[tuple[str, int]] = set()
    for port in ports:
        if port.protocol not in PROTOCOLS:
            raise BadRequest(f"Invalid port protocol {port.protocol!r}: use tcp or udp")
        if not port.listen_port:
            raise BadRequest("Every port needs a listen_port")
        if not port.target_address:
            raise BadRequest(f"Port {port.listen_port}: target_address is required")
        listen_ports = parse_ports(port.listen_port, "listen_port")
        target_ports = (
            parse_ports(port.target_port, "target_port") if port.target_port else listen_ports
        )
        if len(target_ports) not in (1, len(listen_ports)):
            raise BadRequest(
                f"Invalid target_port {port.target_port!r}: give one port or as many as "
                f"listen_port {port.listen_port!r} names"
            )
        for number in listen_ports:
            if (port.protocol, number) in seen:
                raise BadRequest(f"Listen port {port.protocol}/{number} is used twice")
            seen.add((port.protocol, number))
        forward.rules.append(
            Dnat(
                listen,
                target_of(port.target_address, "target_address"),
                port.protocol,
                tuple(listen_ports),
                tuple(target_ports),
                port.snat,
            )
        )
    default = config.get("target_address", "")
    if default:
        target = target_of(default, "target_address")
        if any(rule.target == target for rule in forward.rules):
            raise BadRequest(
                f"target_address {default} is already a port's target: a port specification "
                "must target another address than the default one"
            )
        forward.rules.append(Dnat(listen, target))
    return forward


def _set(ports: Iterable[int]) -> str:
    items = list(ports)
    return str(items[0]) if len(items) == 1 else "{ " + ", ".join(map(str, items)) + " }"


def dnat_rule(rule: Dnat) -> str:
    """The nat rule (prerouting and output chains) of one rewrite."""
    family = "ip" if rule.listen.version == 4 else "ip6"
    match = f"{family} daddr {rule.listen}"
    target = str(rule.target) if rule.listen.version == 4 else f"[{rule.target}]"
    if not rule.protocol:
        return f"{match} dnat {family} to {target}"
    match += f" {rule.protocol} dport {_set(rule.listen_ports)}"
    if rule.target_ports == rule.listen_ports:
        return f"{match} dnat {family} to {target}"
    if len(rule.target_ports) == 1:
        return f"{match} dnat {family} to {target}:{rule.target_ports[0]}"
    mapped = zip(rule.listen_ports, rule.target_ports, strict=True)
    pairs = ", ".join(f"{a} : {b}" for a, b in mapped)
    return f"{match} dnat {family} to {target} : {rule.protocol} dport map {{ {pairs} }}"


def snat_rule(rule: Dnat, bridge: str) -> str:
    """``snat: true``: connections the target opens itself leave with the listen address."""
    family = "ip" if rule.listen.version == 4 else "ip6"
    return (
        f"{family} saddr {rule.target} ct direction original ct status != dnat"
        f' oifname != "{bridge}" snat {family} to {rule.listen}'
    )
