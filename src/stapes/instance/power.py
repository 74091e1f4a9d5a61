"""An instance's power: start and stop (with their devices, idmap shift, templates and hooks),
stateful stops of VMs, freezing, and the PUT .../state actions, single and bulk. Each function
takes the InstanceService whose rows it changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest
from stapes.api.lifecycle import InstanceAction
from stapes.api.times import now, timestamp
from stapes.api.urls import instance_url as url
from stapes.config.keys import value_of
from stapes.config.validate import parse_bool
from stapes.db import instances as q
from stapes.host.idmap import current_map, reshift_tree
from stapes.instance import admission, cloudinit, templates
from stapes.instance.devices import plan as device_plan
from stapes.instance.driver import InstanceSpec, StateSaver
from stapes.instance.vm.qemu import STATE_FILE
from stapes.runtime.operations import Operation

if TYPE_CHECKING:
    from stapes.instance.service import InstanceService

log = logging.getLogger(__name__)


READY_KEY = "volatile.last_state.ready"
"""Whether the guest said it is ready (guest API PATCH /1.0): the instance shows Ready."""
STATE_ACTIONS = {
    "start": "Starting instance",
    "stop": "Stopping instance",
    "restart": "Restarting instance",
    "freeze": "Freezing instance",
    "unfreeze": "Unfreezing instance",
}
"""PUT .../state actions and their operations' descriptions."""


async def set_power(service: InstanceService, row: q.InstanceRow, power: str) -> None:
    row.config["volatile.last_state.power"] = power
    values: dict[str, str | None] = {"volatile.last_state.power": power}
    with service.db.transaction():
        q.set_config_keys(service.db, row.id, values)


async def start_unlocked(
    service: InstanceService,
    row: q.InstanceRow,
    *,
    announce: bool = True,
    incoming: Path | None = None,
) -> None:
    """Start an instance (admitted again: its project or profiles may have changed since
    it was made); the caller holds its lock. ``incoming``: a VM arriving by live migration
    (its state comes on that unix socket; it stays paused)."""
    admission.admit(
        service, row.project, row.name, row.type, row.profiles, row.config, row.devices,
        new=False,
    )  # fmt: skip
    driver = service.drivers.get(row.type)
    await _apply_idmap(service, row)
    spec = service.spec(row)
    rootfs = spec.volume / "rootfs"
    root_id = spec.idmap.root_uid if spec.idmap else 0
    if rootfs.is_dir():  # a container (a VM's files are inside its disk)
        await _apply_templates(service, row, spec, root_id)
        if cloudinit.wanted(spec.config, (rootfs / "usr/bin/cloud-init").exists()):
            seed = cloudinit.seed(row.name, spec.config)
            await cloudinit.write_seed(rootfs, root_id, seed)
    ctx = service.device_context(row, spec.config)
    spec.run = await device_plan.prepare_start(spec.devices, ctx)
    spec.run.incoming_state = incoming
    try:
        if spec.run.volatile:
            row.config.update(spec.run.volatile)
            spec.config.update(spec.run.volatile)
        for starting in service.starting_hooks:
            await starting(row, spec)
        pid = await driver.start(spec)
    except BaseException:
        await device_plan.clean_up(spec.devices, ctx)
        await run_stopped_hooks(service, row)
        raise
    service.watcher.watch(row.project, row.name, pid)
    row.last_used_at = timestamp(now())
    row.stateful = False  # a saved state, if there was one, has been resumed
    row.config["volatile.last_state.power"] = "RUNNING"
    row.config[READY_KEY] = "false"  # until the guest says it is (guest API)
    with service.db.transaction():
        q.update_instance(service.db, row)
    if announce:
        service.events.lifecycle(
            InstanceAction.STARTED, url(row.name, row.project), project=row.project
        )
    for hook in service.started_hooks:
        await hook(row)


async def _apply_templates(
    service: InstanceService, row: q.InstanceRow, spec: InstanceSpec, root_id: int
) -> None:
    """The image's templates, as Incus applies them before a start: those of the trigger
    the instance was marked with (its first start after create or copy), then the
    ``start`` ones."""
    marked = row.config.get(templates.APPLY_KEY, "")
    for trigger in [marked, "start"] if marked else ["start"]:
        await templates.apply(
            spec.volume, row.name, row.type, spec.config, spec.devices, trigger, root_id,
            architecture=row.architecture,
        )  # fmt: skip
    if marked:
        row.config.pop(templates.APPLY_KEY, None)
        spec.config.pop(templates.APPLY_KEY, None)
        with service.db.transaction():
            q.set_config_keys(service.db, row.id, {templates.APPLY_KEY: None})


async def _apply_idmap(service: InstanceService, row: q.InstanceRow) -> None:
    """Before a start: if the instance's map changed (security.idmap.*, privileged), shift
    its files to the new one and record it."""
    config = service.expand(row)[0]
    wanted = service.choose_idmap(row, config)
    current = current_map(row.config)
    if wanted == current:
        return
    if parse_bool(value_of(config, "security.protection.shift")):
        raise BadRequest(
            "The container's files would be shifted to another idmap, and "
            "security.protection.shift forbids it: unset it, or restore the settings that "
            "changed the map"
        )
    spec = service.spec(row)
    await asyncio.to_thread(reshift_tree, spec.volume / "rootfs", current, wanted)
    values: dict[str, str | None] = {
        "volatile.idmap.current": wanted.volatile() if wanted else "[]",
        "volatile.idmap.next": wanted.volatile() if wanted else "[]",
        "volatile.idmap.base": str(wanted.base) if wanted else None,
    }
    for key, value in values.items():
        if value is None:
            row.config.pop(key, None)
        else:
            row.config[key] = value
    with service.db.transaction():
        q.set_config_keys(service.db, row.id, values)


async def stop_unlocked(
    service: InstanceService,
    row: q.InstanceRow,
    force: bool,
    timeout: int,
    *,
    announce: bool = True,
) -> None:
    """Stop an instance; the caller holds its lock."""
    service.watcher.unwatch(row.project, row.name)
    spec = service.spec(row)
    await service.drivers.get(row.type).stop(spec, force=force, timeout=timeout)
    await device_plan.clean_up(spec.devices, service.device_context(row, spec.config))
    await run_stopped_hooks(service, row)
    await set_power(service, row, "STOPPED")
    if announce:
        action = InstanceAction.STOPPED if force else InstanceAction.SHUTDOWN
        service.events.lifecycle(action, url(row.name, row.project), project=row.project)


async def end_moved(service: InstanceService, row: q.InstanceRow, spec: InstanceSpec) -> None:
    """A running instance that now runs on another member (a live move within a cluster): its
    process here ends and this host's side of its devices is cleaned up, as ``spec`` (taken
    before the move) had them; its record, the cluster's, stays as the new member wrote it."""
    service.watcher.unwatch(row.project, row.name)
    await service.drivers.get(row.type).stop(spec, force=True, timeout=0)
    await device_plan.clean_up(spec.devices, service.device_context(row, spec.config))
    await run_stopped_hooks(service, row)


async def run_stopped_hooks(service: InstanceService, row: q.InstanceRow) -> None:
    for stopped in service.stopped_hooks:
        try:
            await stopped(row)
        except Exception:
            log.exception("after the stop of %s", row.name)


async def save_state(service: InstanceService, row: q.InstanceRow, target: Path) -> None:
    """A paused VM's device and memory state into ``target`` (stateful snapshots)."""
    driver = service.drivers.get(row.type)
    if not isinstance(driver, StateSaver):
        raise BadRequest(f"A {row.type} cannot save its running state here")
    await driver.save_state(service.spec(row), target)


@contextlib.asynccontextmanager
async def frozen(service: InstanceService, row: q.InstanceRow) -> AsyncIterator[None]:
    """Hold a running instance frozen (a consistent copy of its volume); thaw it after,
    unless it was frozen already. A stopped instance is left alone."""
    driver = service.drivers.get(row.type)
    spec = service.spec(row)
    status = (await driver.status(spec)).status
    if status != StatusCode.RUNNING:
        yield
        return
    await driver.freeze(spec)
    service.events.lifecycle(InstanceAction.PAUSED, url(row.name, row.project), project=row.project)
    try:
        yield
    finally:
        await driver.unfreeze(spec)
        service.events.lifecycle(
            InstanceAction.RESUMED, url(row.name, row.project), project=row.project
        )


def check_stateful(service: InstanceService, row: q.InstanceRow) -> None:
    """A VM's running state may be saved (stateful stop, snapshot) only with
    migration.stateful, as in Incus."""
    if not parse_bool(value_of(service.expand(row)[0], "migration.stateful")):
        raise BadRequest(
            "Stateful stop and snapshots of a VM need migration.stateful=true: set it on "
            "the instance"
        )


async def stop_stateful(service: InstanceService, row: q.InstanceRow) -> None:
    """Save a running VM's state into its volume and stop it; its next start resumes it.
    The caller holds its lock."""
    spec = service.spec(row)
    driver = service.drivers.get(row.type)
    await driver.freeze(spec)
    try:
        await save_state(service, row, spec.volume / STATE_FILE)
    except BaseException:
        (spec.volume / STATE_FILE).unlink(missing_ok=True)
        await driver.unfreeze(spec)
        raise
    row.stateful = True
    with service.db.transaction():
        q.update_instance(service.db, row)
    await stop_unlocked(service, row, True, -1, announce=False)
    service.events.lifecycle(
        InstanceAction.STOPPED, url(row.name, row.project), project=row.project
    )


def change_state(
    service: InstanceService,
    row: q.InstanceRow,
    action: str,
    force: bool,
    timeout: int,
    *,
    stateful: bool = False,
) -> Operation:
    act = _state_action(service, row, action, force, timeout, stateful)
    return service.instance_operation(act, STATE_ACTIONS[action], row.project, row.name)


async def change_states(
    service: InstanceService, project: str, action: str, force: bool, timeout: int, stateful: bool
) -> Operation:
    """PUT /1.0/instances (instance_bulk_state_change): the action on every instance of
    the project not in its end state yet, together; the first failure is the op's."""
    wanted = {
        "start": {StatusCode.STOPPED},
        "stop": {StatusCode.RUNNING, StatusCode.FROZEN},
        "restart": {StatusCode.RUNNING},
        "freeze": {StatusCode.RUNNING},
        "unfreeze": {StatusCode.FROZEN},
    }
    if action not in wanted:
        raise BadRequest(
            f"Unknown action: {action!r} (use start, stop, restart, freeze or unfreeze)"
        )
    rows = [
        r
        for r in q.list_instances(service.db, project)
        if (await service.status(r)).status in wanted[action]
    ]
    acts = [_state_action(service, r, action, force, timeout, stateful) for r in rows]

    async def act(op: Operation) -> None:
        results = await asyncio.gather(*(one(op) for one in acts), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    return service.operations.start(
        act,
        description=STATE_ACTIONS[action],
        project=project,
        resources={"instances": [url(r.name, r.project) for r in rows]},
    )


def _state_action(
    service: InstanceService,
    row: q.InstanceRow,
    action: str,
    force: bool,
    timeout: int,
    stateful: bool,
) -> Callable[[Operation], Awaitable[None]]:
    if action not in STATE_ACTIONS:
        raise BadRequest(
            f"Unknown action: {action!r} (use start, stop, restart, freeze or unfreeze)"
        )
    driver = service.drivers.get(row.type)
    if stateful and action == "stop":
        check_stateful(service, row)

    async def act(op: Operation) -> None:
        async with service.locks(row.project, row.name):
            current = service.get(row.project, row.name)
            spec = service.spec(current)
            if action == "stop" and stateful:
                if (await driver.status(spec)).status == StatusCode.STOPPED:
                    raise BadRequest("The instance is already stopped")
                await stop_stateful(service, current)
            elif action == "start":
                if (await driver.status(spec)).status != StatusCode.STOPPED:
                    raise BadRequest("The instance is already running")
                await start_unlocked(service, current)
            elif action == "stop":
                await stop_unlocked(service, current, force, timeout)
                if current.ephemeral:  # an ephemeral instance lives until it stops
                    await service.remove_unlocked(current)
            elif action == "restart":  # as Incus: only instance-restarted is announced
                await stop_unlocked(service, current, force, timeout, announce=False)
                await start_unlocked(service, current, announce=False)
                service.events.lifecycle(
                    InstanceAction.RESTARTED, url(row.name, row.project), project=row.project
                )
            elif action == "freeze":
                await driver.freeze(spec)
                service.events.lifecycle(
                    InstanceAction.PAUSED, url(row.name, row.project), project=row.project
                )
            else:
                await driver.unfreeze(spec)
                service.events.lifecycle(
                    InstanceAction.RESUMED, url(row.name, row.project), project=row.project
                )

    return act
