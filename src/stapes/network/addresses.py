"""Network addresses: parsing ``ipv4.address``/``ipv6.address`` values and choosing a free
private subnet for ``auto`` (one no host route or address overlaps)."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable, Iterable

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def is_address(version: int) -> Callable[[str], None]:
    """Validator of ``ipvN.address``: auto, none, or an address with its prefix (a CIDR)."""

    def check(value: str) -> None:
        if value in ("auto", "none", ""):
            return
        try:
            iface = ipaddress.ip_interface(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not auto, none or an address with its prefix "
                f"({'10.0.3.1/24' if version == 4 else 'fd42:1:2:3::1/64'})"
            ) from None
        if iface.version != version:
            raise ValueError(f"{value!r} is not an IPv{version} address")
        if iface.ip == iface.network.network_address or iface.network.prefixlen > (
            30 if version == 4 else 126
        ):
            raise ValueError(f"{value!r}: give a host address in a subnet of at least 4 addresses")

    return check


def choose_ipv4(taken: Iterable[ipaddress.IPv4Network]) -> ipaddress.IPv4Interface:
    """A random 10.x.y.1/24 that overlaps none of ``taken``."""
    used = list(taken)
    for _ in range(500):
        net = ipaddress.IPv4Network(f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.0/24")
        if not any(net.overlaps(other) for other in used):
            return ipaddress.IPv4Interface(f"{net.network_address + 1}/24")
    raise RuntimeError("no free 10.x.y.0/24 subnet found for ipv4.address=auto")


def choose_ipv6() -> ipaddress.IPv6Interface:
    """A random unique-local fd..::1/64 (RFC 4193)."""
    groups = [secrets.randbits(16) for _ in range(3)]
    prefix = f"fd{groups[0] >> 8:02x}:{groups[0] & 0xFF:02x}{groups[1] >> 8:02x}:"
    prefix += f"{groups[1] & 0xFF:02x}{groups[2] >> 8:02x}:{groups[2] & 0xFF:02x}00"
    return ipaddress.IPv6Interface(f"{prefix}::1/64")


def dhcp_range(iface: ipaddress.IPv4Interface) -> tuple[str, str]:
    """Incus's default range: the second address to the one before the broadcast."""
    net = iface.network
    return str(net.network_address + 2), str(net.broadcast_address - 1)


def subnets(config: dict[str, str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The subnets a network's ``ipv4.address``/``ipv6.address`` give it."""
    found: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for key in ("ipv4.address", "ipv6.address"):
        value = config.get(key, "none")
        if value not in ("", "none", "auto"):
            found.append(ipaddress.ip_interface(value).network)
    return found
