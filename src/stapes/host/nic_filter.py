"""security.mac_filtering / ipv4_filtering of a bridged NIC: a ``bridge`` family nftables
table of its own (``stapes_nic_<host veth>``) that drops, at the bridge port, frames whose
source MAC, ARP sender or IPv4 source is not the NIC's. Stateless: it only looks at what the
instance sends."""

from __future__ import annotations

from stapes.host.nft import nft_address, nft_ifname, nft_mac
from stapes.host.run import run


def table_name(host_name: str) -> str:
    return "stapes_nic_" + "".join(c if c.isalnum() else "_" for c in host_name)


def render(host_name: str, hwaddr: str, ipv4: tuple[str, ...]) -> str:
    """The table letting ``host_name``'s instance send only from ``hwaddr`` (and from the
    ``ipv4`` addresses, when given)."""
    host_name, hwaddr = nft_ifname(host_name), nft_mac(hwaddr)
    ipv4 = tuple(nft_address(address) for address in ipv4)
    table, port = table_name(host_name), f'iifname "{host_name}"'
    rules = [
        f"{port} ether saddr != {hwaddr} drop",
        f"{port} arp saddr ether != {hwaddr} drop",
    ]
    if ipv4:
        allowed = "{ " + ", ".join(ipv4) + " }"
        rules += [
            # DHCP asks from 0.0.0.0, and ARP probes (address conflict detection) too
            f"{port} ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp dport 67 accept",
            f"{port} udp sport 67 drop",  # no DHCP server inside
            f"{port} arp saddr ip != {{ 0.0.0.0, {', '.join(ipv4)} }} drop",
            f"{port} ether type ip ip saddr != {allowed} drop",
        ]
    body = "\n".join(f"    {rule}" for rule in rules)
    return (
        f"table bridge {table} {{}}\ndelete table bridge {table}\n"
        f"table bridge {table} {{\n  chain prerouting {{\n"
        "    type filter hook prerouting priority -200; policy accept;\n"
        f"{body}\n  }}\n}}\n"
    )


async def apply(host_name: str, hwaddr: str, ipv4: tuple[str, ...]) -> None:
    await run(["nft", "-f", "-"], input=render(host_name, hwaddr, ipv4).encode())


def remove_argv(host_name: str) -> list[str]:
    return ["nft", "delete", "table", "bridge", table_name(host_name)]
