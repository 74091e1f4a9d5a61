"""The nftables table of one managed network (``inet stapes_<network>``): NAT of the bridge's
subnets when ipv4.nat / ipv6.nat are on. Replaced whole, in one ``nft -f`` transaction, and
deleted with the network; no other table is ever touched."""

from __future__ import annotations

import ipaddress

from stapes.host.run import run


def table_name(network: str) -> str:
    return "stapes_" + "".join(c if c.isalnum() else "_" for c in network)


def render(
    network: str,
    bridge: str,
    nat4: ipaddress.IPv4Network | None,
    nat6: ipaddress.IPv6Network | None,
) -> str:
    """The whole table (the first two lines make the replacement atomic: a table that did
    not exist is created, then emptied)."""
    table = table_name(network)
    lines = [f"table inet {table} {{}}", f"delete table inet {table}", f"table inet {table} {{"]
    lines.append("  chain postrouting {")
    lines.append("    type nat hook postrouting priority srcnat; policy accept;")
    if nat4 is not None:
        lines.append(f'    ip saddr {nat4} ip daddr != {nat4} oifname != "{bridge}" masquerade')
    if nat6 is not None:
        lines.append(f'    ip6 saddr {nat6} ip6 daddr != {nat6} oifname != "{bridge}" masquerade')
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


async def apply(rules: str) -> None:
    await run(["nft", "-f", "-"], input=rules.encode())


async def remove(network: str) -> None:
    table = table_name(network)
    await run(
        ["nft", "-f", "-"], input=f"table inet {table} {{}}\ndelete table inet {table}\n".encode()
    )
