"""The host side of a NIC once the instance has it, at start and at hot plug: bandwidth limits,
MAC/IPv4 filters, and for routed NICs the host side's addresses, the routes to the instance and
proxy neighbours on the parent. Hot plug also does what liblxc does at start: make the
interface and move it in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from stapes.api.errors import BadRequest
from stapes.host import nic_filter, traffic
from stapes.host.run import run
from stapes.instance.devices.device import Nic
from stapes.instance.devices.nic_routed import proxy_neighbour_argv

MoveIn = Callable[[str, str], Awaitable[None]]
"""Moves a host interface into the instance under a new name."""


async def set_up(nic: Nic) -> None:
    if nic.kind != "veth":
        return
    if nic.ingress or nic.egress:
        await traffic.apply(nic.host_name, nic.ingress, nic.egress)
    if nic.filters is not None:
        await nic_filter.apply(nic.host_name, nic.filters.hwaddr, nic.filters.ipv4)
    for address in nic.host_addresses:
        extra = ["nodad"] if ":" in address else []
        await run(["ip", "addr", "replace", address, "dev", nic.host_name, *extra])
    for route in nic.host_routes:
        await run(["ip", "route", "replace", route, "dev", nic.host_name])
    for route, via in nic.link_routes:
        await run(["ip", "route", "replace", route, *link_route_via(via), "dev", nic.link])
    for argv in proxy_neighbour_argv("add", nic):
        await run(argv, check=False)  # already there from an earlier run: fine


def link_route_via(via: str) -> list[str]:
    return ["via", via] if via else []


async def plug(nic: Nic, pid: int, move_in: MoveIn) -> None:
    """Make the NIC on a running instance (``pid``), as liblxc does at start."""
    if nic.kind == "phys":
        raise BadRequest("A physical NIC is only attached at start: stop the instance first")
    temporary = "stp" + (nic.host_name or nic.name)[-8:] + "x"
    if nic.kind == "macvlan":
        mode = ["mode", nic.macvlan_mode]
        await run(["ip", "link", "add", temporary, "link", nic.link, "type", "macvlan", *mode])
        try:
            await _set_link(temporary, nic)
            await move_in(temporary, nic.name)
        except BaseException:
            await run(["ip", "link", "del", temporary], check=False)
            raise
        return
    await run(["ip", "link", "add", nic.host_name, "type", "veth", "peer", "name", temporary])
    try:
        await _set_link(temporary, nic)
        if nic.mtu:
            await run(["ip", "link", "set", nic.host_name, "mtu", str(nic.mtu)])
        if nic.link:
            await run(["ip", "link", "set", nic.host_name, "master", nic.link])
        await run(["ip", "link", "set", nic.host_name, "up"])
        await set_up(nic)
        await move_in(temporary, nic.name)
        inside = ["nsenter", "-t", str(pid), "-n", "ip"]
        if nic.addresses or nic.gateways:
            await run([*inside, "link", "set", nic.name, "up"])
        for address in nic.addresses:
            await run([*inside, "addr", "add", address, "dev", nic.name])
        for gateway in nic.gateways:
            family = "-6" if ":" in gateway else "-4"
            await run([*inside, family, "route", "replace", gateway, "dev", nic.name])
            route = ["route", "replace", "default", "via", gateway, "dev", nic.name]
            await run([*inside, family, *route])
    except BaseException:
        await run(["ip", "link", "del", nic.host_name], check=False)
        raise


async def _set_link(ifname: str, nic: Nic) -> None:
    if nic.hwaddr:
        await run(["ip", "link", "set", ifname, "address", nic.hwaddr])
    if nic.mtu:
        await run(["ip", "link", "set", ifname, "mtu", str(nic.mtu)])


async def unplug(nic: Nic, pid: int) -> None:
    """Take the NIC off a running instance: a veth goes with its host side, a macvlan is
    deleted inside."""
    if nic.kind == "macvlan":
        await run(["nsenter", "-t", str(pid), "-n", "ip", "link", "del", nic.name], check=False)
    else:
        for argv in proxy_neighbour_argv("del", nic):
            await run(argv, check=False)
        for route, _ in nic.link_routes:
            await run(["ip", "route", "del", route, "dev", nic.link], check=False)
        await run(["ip", "link", "del", nic.host_name], check=False)
