"""Devices of one instance, from its expanded devices: validation, what a start needs, cleanup
after a stop, and the plan for a change on a running instance (hot plug)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from stapes.api.errors import BadRequest
from stapes.instance.devices.device import Device, DeviceContext, RunConfig
from stapes.instance.devices.registry import load_all, start_all

Devices = dict[str, dict[str, str]]


def validate(devices: Devices, ctx: DeviceContext) -> None:
    """Each device on its own, then what Incus checks across them: one root disk, and no two
    disks mounted at one path."""
    load_all(devices, ctx)
    roots = [n for n, d in devices.items() if _is_disk(d) and d.get("path") == "/"]
    if len(roots) > 1:
        raise BadRequest(
            "Failed detecting root disk device: More than one root device found "
            f"({', '.join(sorted(roots))}): keep one disk with path /"
        )
    seen: dict[str, str] = {}
    for name in sorted(devices):
        config = devices[name]
        path = config.get("path", "")
        if not _is_disk(config) or not path:
            continue
        key = path.rstrip("/") or "/"
        if key in seen:
            raise BadRequest(
                f"Device {name!r} (disk): More than one disk device uses the same path "
                f"{path!r} (device {seen[key]!r} is mounted there)"
            )
        seen[key] = name


def _is_disk(config: dict[str, str]) -> bool:
    return config.get("type") == "disk"


async def prepare_start(devices: Devices, ctx: DeviceContext) -> RunConfig:
    """Check the host has every device, then let each make what it needs (device nodes...)."""
    loaded = load_all(devices, ctx)
    return await asyncio.to_thread(start_all, loaded)


async def clean_up(devices: Devices, ctx: DeviceContext) -> None:
    """After the instance stopped: what devices made on the host goes."""
    for device in load_all_lenient(devices, ctx):
        await asyncio.to_thread(device.stop)


def load_all_lenient(devices: Devices, ctx: DeviceContext) -> list[Device]:
    """Devices that still load (cleanup must not fail on a config that became invalid)."""
    loaded = []
    for name in sorted(devices):
        try:
            loaded.extend(load_all({name: devices[name]}, ctx))
        except BadRequest:
            continue
    return loaded


@dataclass
class Change:
    """Devices to detach (old definitions) and to attach (new ones) on a running instance."""

    detach: list[Device]
    attach: list[Device]


def plan_change(old: Devices, new: Devices, old_ctx: DeviceContext, ctx: DeviceContext) -> Change:
    """Removed and changed devices go, added and changed ones come; a device that cannot be
    hot plugged makes the whole change a 400 (nothing has been changed yet)."""
    gone = {n for n in old if n not in new or old[n] != new[n]}
    come = {n for n in new if n not in old or old[n] != new[n]}
    detach = load_all_lenient({n: old[n] for n in gone}, old_ctx)
    attach = load_all({n: new[n] for n in come}, ctx)
    for device in [*detach, *attach]:
        if not device.HOTPLUG:
            raise BadRequest(
                f"Device {device.name!r} cannot be changed while the instance runs: stop it first"
            )
    for device in attach:
        device.check_host()
    return Change(detach, attach)
