"""Values as nftables rules can hold them: the checks every nft ruleset writer runs on what it
puts in a rule (interface names inside quotes, MAC addresses, IP addresses)."""

from __future__ import annotations

import ipaddress
import re

from stapes.api.errors import BadRequest

_IFNAME = re.compile(r"[A-Za-z0-9_.:-]{1,15}")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


def nft_ifname(name: str) -> str:
    """An interface name for ``iifname "..."``: what the kernel allows, quotes excluded."""
    if not _IFNAME.fullmatch(name):
        raise BadRequest(f"Refusing to write {name!r} into nftables rules: not an interface name")
    return name


def nft_mac(value: str) -> str:
    if not _MAC.fullmatch(value):
        raise BadRequest(f"Refusing to write {value!r} into nftables rules: not a MAC address")
    return value.lower()


def nft_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise BadRequest(
            f"Refusing to write {value!r} into nftables rules: not an IP address"
        ) from None
