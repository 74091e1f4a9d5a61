"""The nftables table of one managed network (``inet stapes_<network>``): NAT of the bridge's
subnets (ipv4.nat / ipv6.nat), the network's forwards (DNAT) and its ACLs (filter chains where
the bridge meets the host). Replaced whole, in one ``nft -f`` transaction, and deleted with the
network; no other table is ever touched."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from stapes.api.errors import BadRequest
from stapes.config.text import control_char
from stapes.host.nft import nft_ifname
from stapes.host.run import run
from stapes.network.forwards import Dnat, dnat_rule, snat_rule

# What instances may always ask of the host on their bridge, ACLs or not (as Incus's baseline
# rules): DHCPv4/v6, DNS and IPv6 neighbour discovery.
_FROM_BRIDGE = [
    "udp dport { 67, 547 } accept",
    "meta l4proto { tcp, udp } th dport 53 accept",
    "icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept",
]
_TO_BRIDGE = [
    "udp sport { 67, 547 } accept",
    "meta l4proto { tcp, udp } th sport 53 accept",
    "icmpv6 type { nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept",
]


@dataclass
class FirewallPlan:
    network: str
    bridge: str
    nat4: ipaddress.IPv4Network | None = None
    nat6: ipaddress.IPv6Network | None = None
    forwards: list[Dnat] = field(default_factory=list)
    acl_ingress: list[str] | None = None
    """The ingress chain's rules (traffic into the bridge), None when no ACL applies."""
    acl_egress: list[str] | None = None
    nat4_address: str = ""
    """ipv4.nat.address: SNAT to this address instead of masquerading."""
    nat6_address: str = ""
    nat_order: str = ""
    """ipv4.nat.order: before (runs ahead of other source NAT) or after; "" the default."""

    @property
    def empty(self) -> bool:
        return not (self.nat4 or self.nat6 or self.forwards or self.acl_ingress is not None)


def _address(value: str, version: int) -> str:
    """An address as nft takes it; anything else is refused (it would be nft syntax)."""
    try:
        found = ipaddress.ip_address(value)
    except ValueError:
        raise BadRequest(f"Refusing to write the NAT address {value!r}") from None
    if found.version != version:
        raise BadRequest(f"The NAT address {value!r} is not an IPv{version} address")
    return str(found)


def table_name(network: str) -> str:
    return "stapes_" + "".join(c if c.isalnum() else "_" for c in network)


def _chain(name: str, hook: str, rules: list[str]) -> list[str]:
    """One chain of the table; a rule that would span lines (a control character in a value
    it was made from) is refused, so no value can add a rule or a table of its own."""
    for rule in rules:
        problem = control_char(rule)
        if problem is not None:
            raise BadRequest(f"Refusing to write the nftables rule {rule!r}: it contains {problem}")
    lines = [f"  chain {name} {{"]
    if hook:
        lines.append(f"    {hook}; policy accept;")
    lines += [f"    {rule}" for rule in rules]
    return [*lines, "  }"]


def render(plan: FirewallPlan) -> str:
    """The whole table (the first two lines make the replacement atomic: a table that did
    not exist is created, then emptied)."""
    table, bridge = table_name(plan.network), nft_ifname(plan.bridge)
    lines = [f"table inet {table} {{}}", f"delete table inet {table}", f"table inet {table} {{"]
    post = []
    if plan.nat4 is not None:
        action = (
            f"snat ip to {_address(plan.nat4_address, 4)}" if plan.nat4_address else ("masquerade")
        )
        post.append(f'ip saddr {plan.nat4} ip daddr != {plan.nat4} oifname != "{bridge}" {action}')
    if plan.nat6 is not None:
        action = (
            f"snat ip6 to {_address(plan.nat6_address, 6)}" if plan.nat6_address else ("masquerade")
        )
        post.append(
            f'ip6 saddr {plan.nat6} ip6 daddr != {plan.nat6} oifname != "{bridge}" {action}'
        )
    if plan.forwards:
        dnat = [dnat_rule(rule) for rule in plan.forwards]
        lines += _chain("prerouting", "type nat hook prerouting priority dstnat", dnat)
        lines += _chain("nat_output", "type nat hook output priority -100", dnat)
        # the host's own connections and instances reaching a forward of their own bridge
        # come back from the bridge's address, so the target needs no route to answer
        post.append(f'ct status dnat oifname "{bridge}" fib saddr type local masquerade')
        post.append(f'ct status dnat iifname "{bridge}" oifname "{bridge}" masquerade')
        post += [snat_rule(rule, bridge) for rule in plan.forwards if rule.snat]
    priority = {"before": "srcnat - 1", "after": "srcnat + 1"}.get(plan.nat_order, "srcnat")
    lines += _chain("postrouting", f"type nat hook postrouting priority {priority}", post)
    if plan.acl_ingress is not None and plan.acl_egress is not None:
        lines += _chain("acl_ingress", "", plan.acl_ingress)
        lines += _chain("acl_egress", "", plan.acl_egress)
        from_bridge = [f'iifname "{bridge}" {rule}' for rule in _FROM_BRIDGE]
        to_bridge = [f'oifname "{bridge}" {rule}' for rule in _TO_BRIDGE]
        enter, leave = f'oifname "{bridge}" jump acl_ingress', f'iifname "{bridge}" jump acl_egress'
        hook = "type filter hook {} priority filter"
        lines += _chain("acl_input", hook.format("input"), [*from_bridge, leave])
        lines += _chain("acl_forward", hook.format("forward"), [leave, enter])
        lines += _chain("acl_output", hook.format("output"), [*to_bridge, enter])
    lines.append("}")
    return "\n".join(lines) + "\n"


async def apply(plan: FirewallPlan) -> None:
    if plan.empty:
        await remove(plan.network)
        return
    await run(["nft", "-f", "-"], input=render(plan).encode())


async def remove(network: str) -> None:
    table = table_name(network)
    await run(
        ["nft", "-f", "-"], input=f"table inet {table} {{}}\ndelete table inet {table}\n".encode()
    )
