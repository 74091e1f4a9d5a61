"""Editing an instance (PUT/PATCH): validation before anything changes, the new row stored,
and what a running instance takes at once (live keys, hot-plugged devices), put back if that
fails. Each function takes the InstanceService whose row it changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from stapes.api.errors import BadRequest
from stapes.api.instance import InstancePut
from stapes.api.lifecycle import InstanceAction
from stapes.api.urls import instance_url as url
from stapes.config.keys import effective_config, lookup, validate_instance_config, without_empty
from stapes.db import instances as q
from stapes.host.idmap import IDMAP_PREFIX
from stapes.instance import admission, cloudinit, root_disk
from stapes.instance.devices import plan as device_plan
from stapes.instance.devices.nic import fill_volatile
from stapes.instance.driver import InstanceSpec
from stapes.runtime.operations import Operation

if TYPE_CHECKING:
    from stapes.instance.service import InstanceService

log = logging.getLogger(__name__)


def _check_put(service: InstanceService, row: q.InstanceRow, put: InstancePut) -> dict[str, str]:
    put.config = without_empty(put.config)
    if any(k.startswith(IDMAP_PREFIX) and k not in put.config for k in row.config):
        raise BadRequest("Volatile idmap keys can't be deleted by the user")  # as Incus
    validate_instance_config(put.config, row.type, current=row.config)
    service.check_devices(put.devices, row.type, row.project)
    profiles = row.profiles if put.profiles is None else put.profiles
    service._check_profiles(row.project, profiles)
    return effective_config(put.config, row.config)


async def apply_update(service: InstanceService, row: q.InstanceRow, put: InstancePut) -> None:
    """Validate and store a new writable state; raise before changing anything. A running
    instance gets the change live; if that fails, the previous state is put back."""
    config = _check_put(service, row, put)
    candidate = q.InstanceRow(**{**row.__dict__})
    candidate.config = config
    candidate.devices = put.devices
    candidate.profiles = row.profiles if put.profiles is None else put.profiles
    candidate.description = put.description
    candidate.ephemeral = put.ephemeral
    candidate.architecture = put.architecture or row.architecture
    candidate.config |= fill_volatile(candidate.config, service.expand(candidate)[1])
    before = service.spec(row)
    spec = service.spec(candidate)
    admission.admit(
        service, row.project, row.name, row.type, candidate.profiles, config, put.devices,
        new=False,
    )  # fmt: skip
    if cloudinit.changed(before.config, spec.config):
        candidate.config[cloudinit.INSTANCE_ID] = cloudinit.new_instance_id()
    if root_disk.pool(spec.devices) != row.pool:
        raise BadRequest(
            "The root disk's pool cannot change by editing the instance: move it with "
            "stapes move NAME --storage POOL (incus move --storage)"
        )
    driver = service.drivers.get(row.type)
    driver.check_config(spec)
    service.choose_idmap(candidate, spec.config)  # a map that cannot be had is a 400 now
    change = plan_devices(service, row, before, spec, await service.is_running(row))
    await root_disk.apply_size(service.pools.driver(row.pool), row, before.devices, spec.devices)
    with service.db.transaction():
        q.update_instance(service.db, candidate)
    try:
        await apply_live(service, candidate, before, spec, change)
    except BaseException:
        with service.db.transaction():
            q.update_instance(service.db, row)
        if change is not None:
            await _reattach(service, row, before, change)
        raise
    service.events.lifecycle(
        InstanceAction.UPDATED, url(row.name, row.project), project=row.project
    )


def plan_devices(
    service: InstanceService,
    row: q.InstanceRow,
    before: InstanceSpec,
    after: InstanceSpec,
    running: bool,
) -> device_plan.Change | None:
    """For a running instance, the devices to hot plug and unplug (None when stopped or
    unchanged); raises when a change needs a stop."""
    if before.devices == after.devices or not running:
        return None
    return device_plan.plan_change(
        before.devices,
        after.devices,
        service.device_context(row, before.config),
        service.device_context(row, after.config),
    )


async def apply_live(
    service: InstanceService,
    row: q.InstanceRow,
    before: InstanceSpec,
    after: InstanceSpec,
    change: device_plan.Change | None,
) -> None:
    """What a running instance takes at once: live config keys, then devices."""
    driver = service.drivers.get(row.type)
    old, new = before.config, after.config
    changed = {k for k in set(old) | set(new) if old.get(k) != new.get(k)}
    live = {k for k in changed if (key := lookup(k)) is not None and key.live}
    if live:
        await driver.update_live(after, live)
    if change is not None:
        await _replug(service, row, before, after, change)
    for hook in service.changed_hooks:
        await hook(row, before, after)


async def _replug(
    service: InstanceService,
    row: q.InstanceRow,
    before: InstanceSpec,
    after: InstanceSpec,
    change: device_plan.Change,
) -> None:
    """Unplug the devices that go, plug the ones that come (or put the old ones back)."""
    driver = service.drivers.get(row.type)
    for device in change.detach:
        await driver.unplug(before, device.attached())
        await asyncio.to_thread(device.stop)
    attached: list[tuple[Any, Any]] = []
    try:
        for device in change.attach:
            run = await asyncio.to_thread(device.start)
            attached.append((device, run))
            await driver.hotplug(after, run)
            if run.volatile:
                row.config.update(run.volatile)
                with service.db.transaction():
                    q.set_config_keys(service.db, row.id, dict(run.volatile))
    except BaseException:
        for device, run in reversed(attached):
            with contextlib.suppress(Exception):
                await driver.unplug(after, run)
                await asyncio.to_thread(device.stop)
        raise


async def _reattach(
    service: InstanceService, row: q.InstanceRow, before: InstanceSpec, change: device_plan.Change
) -> None:
    """After a failed live change: give the instance back the devices it had."""
    driver = service.drivers.get(row.type)
    for device in change.detach:
        try:
            await driver.hotplug(before, await asyncio.to_thread(device.start))
        except Exception:
            log.exception("could not re-attach device %s of %s", device.name, row.name)


def update(service: InstanceService, row: q.InstanceRow, put: InstancePut) -> Operation:
    _check_put(service, row, put)

    async def act(op: Operation) -> None:
        async with service.locks(row.project, row.name):
            await apply_update(service, service.get(row.project, row.name), put)

    return service.instance_operation(act, "Updating instance", row.project, row.name)
