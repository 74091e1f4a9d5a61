"""The host's power events for instances: re-adopting them when stapesd starts, starting the
ones that should run (boot.autostart, or running when the host went down), and stopping them
in order when the host shuts down (SIGPWR)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest
from stapes.api.lifecycle import InstanceAction
from stapes.config.keys import value_of
from stapes.config.validate import parse_bool
from stapes.db import instances as q
from stapes.instance import power
from stapes.instance.devices import plan as device_plan
from stapes.instance.service import InstanceService, url

log = logging.getLogger(__name__)


class HostPower:
    def __init__(self, instances: InstanceService) -> None:
        self.instances = instances

    async def readopt(self) -> list[q.InstanceRow]:
        """After a (re)start of stapesd: link every instance and leave running ones running.
        Returns, in start order, the stopped instances that should start now: those with
        boot.autostart, or (without the key) those that were running when the host went down."""
        to_start: list[tuple[int, q.InstanceRow]] = []
        for row in self.instances.local_instances():
            spec = self.instances.spec(row)
            driver = self.instances.drivers.get(row.type)
            try:
                await driver.adopt(spec)
                state = await driver.status(spec)
            except Exception:
                log.exception("could not re-adopt instance %s", row.name)
                continue
            autostart = spec.config.get("boot.autostart")
            wanted = (
                parse_bool(autostart)
                if autostart is not None
                else row.config.get("volatile.last_state.power") == "RUNNING"
            )
            if state.status == StatusCode.STOPPED and wanted:
                to_start.append((int(value_of(spec.config, "boot.autostart.priority")), row))
            elif state.status != StatusCode.STOPPED:
                log.info("re-adopted running instance %s", row.name)
                self.instances.watcher.watch(row.project, row.name, state.pid)
            elif row.config.get("volatile.last_state.power") == "RUNNING":
                await power.set_power(self.instances, row, "STOPPED")
        return [row for _, row in sorted(to_start, key=lambda item: -item[0])]

    async def autostart(self, rows: list[q.InstanceRow]) -> None:
        """Start instances one after the other, waiting boot.autostart.delay after each."""
        for row in rows:
            try:
                async with self.instances.locks(row.project, row.name):
                    current = self.instances.get(row.project, row.name)
                    await power.start_unlocked(self.instances, current)
            except Exception:
                log.exception("could not start instance %s at daemon start", row.name)
                continue
            delay = int(value_of(self.instances.expand(row)[0], "boot.autostart.delay"))
            if delay:
                await asyncio.sleep(delay)

    async def shutdown_host(self, *, force: bool = False) -> None:
        """The host is going down (or the daemon was told to stop them and exit): stop
        running instances cleanly, highest boot.stop.priority first, each within its
        boot.host_shutdown_timeout (then forced; at once with ``force``). Their last power
        state stays RUNNING, so they start again with the host."""
        running: list[tuple[int, q.InstanceRow]] = []
        for row in self.instances.local_instances():
            if (await self.instances.status(row)).status != StatusCode.STOPPED:
                config = self.instances.expand(row)[0]
                running.append((int(value_of(config, "boot.stop.priority")), row))
        for _, row in sorted(running, key=lambda item: -item[0]):
            spec = self.instances.spec(row)
            driver = self.instances.drivers.get(row.type)
            timeout = int(value_of(spec.config, "boot.host_shutdown_timeout"))
            action = value_of(spec.config, "boot.host_shutdown_action")
            if action == "stateful-stop" and await self._stop_stateful(row):
                continue
            self.instances.watcher.unwatch(row.project, row.name)
            async with self.instances.locks(row.project, row.name):
                try:
                    await driver.stop(spec, force=force or action == "force-stop", timeout=timeout)
                except Exception:
                    log.warning(
                        "instance %s did not stop within %ss: forcing it", row.name, timeout
                    )
                    with contextlib.suppress(Exception):
                        await driver.stop(spec, force=True, timeout=0)
                await device_plan.clean_up(
                    spec.devices, self.instances.device_context(row, spec.config)
                )
            self.instances.events.lifecycle(
                InstanceAction.SHUTDOWN, url(row.name, row.project), project=row.project
            )

    async def _stop_stateful(self, row: q.InstanceRow) -> bool:
        """boot.host_shutdown_action=stateful-stop: a VM's state is saved (it resumes with
        the host); False when that cannot be done here, and it stops cleanly instead."""
        try:
            if row.type != "virtual-machine":
                raise BadRequest("stateful stop of a container needs CRIU, which stapesd lacks")
            power.check_stateful(self.instances, row)
            async with self.instances.locks(row.project, row.name):
                current = self.instances.get(row.project, row.name)
                await power.stop_stateful(self.instances, current)
                await power.set_power(self.instances, current, "RUNNING")  # to resume with the host
        except Exception as exc:
            log.warning(
                "instance %s: stateful stop failed (%s): stopping it cleanly", row.name, exc
            )
            return False
        return True
