"""Bandwidth limits of a NIC's host-side veth with tc: what enters the instance is shaped by a
tbf qdisc on the veth; what leaves it is redirected (mirred) to an ifb device shaped the same
way (this kernel has no tc police action to drop at ingress)."""

from __future__ import annotations

import re

from stapes.host.run import run

_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*(bit|kbit|Mbit|Gbit|Tbit)?")
_SCALE = {None: 1, "bit": 1, "kbit": 10**3, "Mbit": 10**6, "Gbit": 10**9, "Tbit": 10**12}


def parse_rate(value: str) -> int:
    """bit/s from ``100Mbit``, ``1.5Gbit``, ``64kbit`` or a bare number of bit/s."""
    match = _RATE.fullmatch(value.strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{value!r} is not a rate such as 100Mbit, 1Gbit or 64kbit")
    return int(float(match.group(1)) * _SCALE[match.group(2)])


def is_rate(value: str) -> None:
    parse_rate(value)


def ifb_name(host_name: str) -> str:
    """The ifb device that shapes what leaves the instance through ``host_name``."""
    return ("ifb" + host_name[-12:])[:15]


def tbf_argv(dev: str, rate: int) -> list[str]:
    burst = max(rate // 8 // 50, 32 * 1024)  # 20 ms of traffic, at least 32 KiB
    shape = ["rate", f"{rate}bit", "burst", str(burst), "latency", "50ms"]
    return ["tc", "qdisc", "replace", "dev", dev, "root", "tbf", *shape]


def redirect_argv(dev: str, ifb: str) -> list[list[str]]:
    ingress = ["tc", "qdisc", "replace", "dev", dev, "handle", "ffff:", "ingress"]
    where = ["tc", "filter", "replace", "dev", dev, "parent", "ffff:", "protocol", "all"]
    match_all = ["u32", "match", "u32", "0", "0"]
    redirect = ["action", "mirred", "egress", "redirect", "dev", ifb]
    return [ingress, [*where, *match_all, *redirect]]


async def apply(host_name: str, ingress: int, egress: int) -> None:
    """Limit what enters (``ingress``) and leaves (``egress``) the instance, in bit/s (0: no
    limit)."""
    if ingress:
        await run(tbf_argv(host_name, ingress))
    if egress:
        ifb = ifb_name(host_name)
        rc, _, _ = await run(["ip", "link", "show", ifb], check=False)
        if rc != 0:
            await run(["ip", "link", "add", ifb, "type", "ifb"])
        await run(["ip", "link", "set", ifb, "up"])
        await run(tbf_argv(ifb, egress))
        for argv in redirect_argv(host_name, ifb):
            await run(argv)


def clear_argv(host_name: str) -> list[str]:
    """What removes the ifb device once the NIC is gone (the veth takes its qdiscs with it)."""
    return ["ip", "link", "del", ifb_name(host_name)]
