"""What a USB device arriving or leaving does to the running instances that have a matching
unix-hotplug device: its node is attached or detached."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from stapes.api.base import StatusCode
from stapes.instance.devices.hotplug import Uevent, UnixHotplug, usb_ids
from stapes.instance.devices.registry import load
from stapes.instance.service import InstanceService

log = logging.getLogger(__name__)


async def handle(instances: InstanceService, event: Uevent) -> None:
    vendor, product = ("", "")
    if event.action == "add":
        vendor, product = await asyncio.to_thread(usb_ids, event.devpath)
        if not vendor:
            return
    for row in instances.local_instances():
        _, devices = instances.expand(row)
        wanted = {n: d for n, d in devices.items() if d.get("type") == "unix-hotplug"}
        if not wanted:
            continue
        async with instances.locks(row.project, row.name):
            spec = instances.spec(row)
            driver = instances.drivers.get(row.type)
            if (await driver.status(spec)).status != StatusCode.RUNNING:
                continue
            ctx = instances.device_context(row, spec.config)
            for name, conf in sorted(wanted.items()):
                device = load(name, conf, ctx)
                if not isinstance(device, UnixHotplug):
                    continue
                if event.action == "add" and device.matches(vendor, product):
                    kind = "b" if event.subsystem == "block" else "c"
                    node = await asyncio.to_thread(
                        device.node_for, kind, event.major, event.minor, event.devname
                    )
                    await driver.hotplug(spec, device.run_config([node]))
                    log.info("attached /dev/%s to %s (%s)", event.devname, row.name, name)
                elif event.action == "remove":
                    gone = device.gone(event.devname)
                    if gone.nodes:
                        await driver.unplug(spec, gone)
                        for node in gone.nodes:
                            await asyncio.to_thread(_unlink, node.source)
                        log.info("detached /dev/%s from %s (%s)", event.devname, row.name, name)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
