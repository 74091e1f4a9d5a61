"""Network ACLs: checking rules and turning the ACLs of a bridge network into nftables rules.
As Incus's bridge ACLs, they act where the bridge meets the host: ingress rules on what enters
the bridge (from the host or routed in), egress rules on what leaves it (to the host or routed
out). Rules are ordered drop, reject, allow whatever list they come from; unmatched traffic gets
the network's default action (reject unless set)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from stapes.api.errors import BadRequest
from stapes.api.network import AclRule
from stapes.config.validate import digits
from stapes.network.forwards import parse_ports

ACTIONS = ("allow", "allow-stateless", "reject", "drop")
STATES = ("enabled", "disabled", "logged")
PROTOCOLS = ("", "icmp4", "icmp6", "tcp", "udp")
DEFAULT_ACTIONS = ("allow", "reject", "drop")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,62}")
_ORDER = {"drop": 0, "reject": 1, "allow": 2, "allow-stateless": 2}


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name) or name.endswith("-"):
        raise BadRequest(
            f"Invalid network ACL name {name!r}: 1-63 letters, digits and dashes, starting with "
            "a letter and not ending with a dash"
        )


def _subjects(value: str, field: str) -> list[str]:
    """CIDRs, addresses and ranges (``a-b``), checked; selectors are refused (bridge ACLs
    cannot name ACL groups or networks, as in Incus)."""
    items = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        try:
            if "-" in part:
                first, last = (ipaddress.ip_address(p) for p in part.split("-", 1))
                if first.version != last.version or int(first) > int(last):
                    raise ValueError
            else:
                ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise BadRequest(
                f"Invalid {field} {part!r}: bridge network ACLs take CIDRs, addresses or "
                "ranges such as 10.0.0.1-10.0.0.9 (ACL groups and @network selectors are for "
                "OVN networks)"
            ) from None
        items.append(part)
    return items


def _version(subject: str) -> int:
    return ipaddress.ip_address(subject.split("-")[0].split("/")[0]).version


def check_rule(rule: AclRule, direction: str) -> None:
    where = f"{direction} rule"
    if rule.action not in ACTIONS:
        raise BadRequest(f"Invalid {where} action {rule.action!r}: use {', '.join(ACTIONS)}")
    if rule.state not in STATES:
        raise BadRequest(f"Invalid {where} state {rule.state!r}: use {', '.join(STATES)}")
    if rule.protocol not in PROTOCOLS:
        raise BadRequest(
            f"Invalid {where} protocol {rule.protocol!r}: use icmp4, icmp6, tcp, udp or nothing"
        )
    _subjects(rule.source, "source")
    _subjects(rule.destination, "destination")
    for key in ("source_port", "destination_port"):
        value = getattr(rule, key)
        if value:
            if rule.protocol not in ("tcp", "udp"):
                raise BadRequest(f"{where}: {key} needs protocol tcp or udp")
            parse_ports(value, key)
    for key in ("icmp_type", "icmp_code"):
        value = getattr(rule, key)
        if value:
            if not rule.protocol.startswith("icmp"):
                raise BadRequest(f"{where}: {key} needs protocol icmp4 or icmp6")
            if not digits(value) or int(value) > 255:
                raise BadRequest(f"Invalid {where} {key} {value!r}: use a number 0-255")
    families = {_version(s) for s in _subjects(rule.source, "") + _subjects(rule.destination, "")}
    icmp = {"icmp4": 4, "icmp6": 6}.get(rule.protocol)
    if icmp is not None and families - {icmp}:
        raise BadRequest(f"{where}: {rule.protocol} cannot match IPv{(families - {icmp}).pop()}")


def check_config(config: dict[str, str]) -> None:
    for key in config:
        if not key.startswith("user."):
            raise BadRequest(f"Invalid network ACL configuration key {key!r}: only user.* keys")


@dataclass(frozen=True)
class Defaults:
    ingress: str = "reject"
    egress: str = "reject"
    ingress_logged: bool = False
    egress_logged: bool = False


def _ports(value: str) -> str:
    items = [p.strip() for p in value.split(",")]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _verdict(action: str, reject_tcp: bool) -> str:
    if action in ("allow", "allow-stateless"):
        return "accept"
    if action == "reject":
        return "reject with tcp reset" if reject_tcp else "reject"
    return "drop"


def render_rule(acl: str, rule: AclRule) -> list[str]:
    """The nft rules of one ACL rule (one per address family its subjects name)."""
    if rule.state == "disabled":
        return []
    sources, destinations = _subjects(rule.source, "source"), _subjects(rule.destination, "")
    named = {_version(s) for s in sources + destinations}
    versions: list[int | None] = [*sorted(named)] if named else [None]  # None: either family
    if rule.protocol in ("icmp4", "icmp6"):
        versions = [int(rule.protocol[-1])]
    lines = []
    for version in versions:
        family = "ip" if version == 4 else "ip6"
        parts = []
        src = [s for s in sources if _version(s) == version]
        dst = [s for s in destinations if _version(s) == version]
        if (sources and not src) or (destinations and not dst):
            continue  # the rule names no subject of this family
        if src:
            parts.append(f"{family} saddr {_ports(','.join(src))}")
        if dst:
            parts.append(f"{family} daddr {_ports(','.join(dst))}")
        if rule.protocol in ("tcp", "udp"):
            parts.append(f"meta l4proto {rule.protocol}")
            if rule.source_port:
                parts.append(f"{rule.protocol} sport {_ports(rule.source_port)}")
            if rule.destination_port:
                parts.append(f"{rule.protocol} dport {_ports(rule.destination_port)}")
        elif rule.protocol:
            proto = "icmp" if version == 4 else "icmpv6"
            parts.append(f"meta l4proto {'icmp' if version == 4 else 'ipv6-icmp'}")
            if rule.icmp_type:
                parts.append(f"{proto} type {rule.icmp_type}")
            if rule.icmp_code:
                parts.append(f"{proto} code {rule.icmp_code}")
        if rule.state == "logged":
            parts.append(f'log prefix "stapes-acl {acl[:16]} "')
        parts.append(_verdict(rule.action, rule.protocol == "tcp"))
        lines.append(" ".join(parts))
    return lines


def render_chain(rules: Iterable[tuple[str, AclRule]], default: str, logged: bool) -> list[str]:
    """The body of one direction's chain: established traffic, the rules in Incus's order, the
    default verdict."""
    ordered = sorted(rules, key=lambda named: _ORDER[named[1].action])
    lines = ["ct state established,related accept", "ct state invalid drop"]
    for acl, rule in ordered:
        lines += render_rule(acl, rule)
    if logged:
        lines.append('log prefix "stapes-acl default "')
    lines.append(_verdict(default, False))
    return lines
