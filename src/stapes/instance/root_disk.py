"""An instance's root disk device (type disk, path /): which device it is, the pool it names,
its ``size``, and that size applied to the instance's volume."""

from __future__ import annotations

import asyncio

from stapes.api.errors import BadRequest
from stapes.config.validate import parse_size
from stapes.db import instances as q
from stapes.instance.vm import disk as vm_disk
from stapes.storage.drivers.driver import StorageDriver
from stapes.storage.volumes import instance_volume

Devices = dict[str, dict[str, str]]


def find(devices: Devices) -> tuple[str, dict[str, str]] | None:
    """The root disk among expanded devices: (its name, its config)."""
    return next(
        ((n, d) for n, d in devices.items() if d.get("type") == "disk" and d.get("path") == "/"),
        None,
    )


def size(devices: Devices) -> str:
    """The root disk's ``size`` key ("" when it has none, or there is no root disk)."""
    return (find(devices) or ("", {}))[1].get("size", "")


def pool(devices: Devices) -> str:
    found = find(devices)
    if found is None:
        raise BadRequest(
            "No root disk device: add one (type disk, path /) to the instance or a profile "
            "(a fresh daemon has none until stapes admin init or incus admin init)"
        )
    name = found[1].get("pool", "")
    if not name:
        raise BadRequest("The root disk device has no pool")
    return name


def moved_to(local: Devices, inherited: Devices, target: str) -> Devices:
    """An instance's own devices (``local``) with its root disk on pool ``target``: the local
    root disk changed, or one added when the root disk comes from a profile (``inherited``:
    the profiles' devices) naming another pool."""
    found = find(local)
    if found is not None:
        found[1]["pool"] = target
        return local
    from_profiles = find(inherited)
    if from_profiles is None or from_profiles[1].get("pool") != target:
        name = from_profiles[0] if from_profiles else "root"
        local[name] = {"type": "disk", "path": "/", "pool": target}
    return local


async def apply_size(
    driver: StorageDriver, row: q.InstanceRow, before: Devices | None, after: Devices
) -> None:
    """The root disk's ``size``: a container volume's quota, a VM's disk grown to it (set
    when it changes; ``before`` None: a new volume)."""
    old, new = size(before or {}), size(after)
    if old == new and before is not None:
        return
    if row.type == "virtual-machine":
        volume = driver.volume_path(*instance_volume(row))
        await asyncio.to_thread(vm_disk.grow_root, volume, parse_size(new) if new else None)
        return
    if before is None and not new:
        return
    try:
        await driver.set_quota(*instance_volume(row), parse_size(new) if new else None)
    except BadRequest as exc:
        raise BadRequest(f"Root disk size: {exc.message}") from None
