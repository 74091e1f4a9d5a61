"""The guest API's sockets: one per running container that has ``security.guestapi`` on, in
``<state>/guestapi/<project>_<name>/sock``, the directory bind-mounted at /dev/incus (so a
daemon restart re-creates the socket under the same mount). Opened before the container
starts, closed when it stops; turned on and off live with the key, as Incus does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from pathlib import Path

from aiohttp import web

from stapes.api.base import StatusCode
from stapes.config.keys import value_of
from stapes.config.validate import parse_bool
from stapes.db import instances as q
from stapes.db.connection import Database
from stapes.guestapi import handlers
from stapes.guestapi.feed import GuestFeed, config_events, device_events
from stapes.host.paths import Paths, instance_entry
from stapes.images.store import ImageStore
from stapes.instance.devices.device import Mount, RunConfig
from stapes.instance.driver import InstanceSpec
from stapes.instance.power import READY_KEY
from stapes.instance.service import InstanceService
from stapes.runtime.events import EventBus

log = logging.getLogger(__name__)

TARGET = "/dev/incus"
MAX_REQUEST = 64 * 1024


def wanted(spec: InstanceSpec) -> bool:
    return spec.type == "container" and parse_bool(value_of(spec.config, "security.guestapi"))


class GuestApi:
    def __init__(
        self, paths: Paths, instances: InstanceService, images: ImageStore, events: EventBus
    ) -> None:
        self.paths = paths
        self.instances = instances
        self.db: Database = instances.db
        self.images = images
        self.events = events
        self.feed = GuestFeed()
        self._runners: dict[tuple[str, str], web.AppRunner] = {}

    def directory(self, project: str, name: str) -> Path:
        return self.paths.guestapi / instance_entry(project, name)

    def mount(self, project: str, name: str) -> Mount:
        return Mount(str(self.directory(project, name)), TARGET, options=("bind", "create=dir"))

    def expand(self, row: q.InstanceRow) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        return self.instances.expand(row)

    # -- instance life cycle (hooks of the instance service) ---------------------------------

    async def starting(self, row: q.InstanceRow, spec: InstanceSpec) -> None:
        """Before a start: the socket, and its directory among the container's mounts."""
        if not wanted(spec):
            return
        await self.open(row.project, row.name)
        spec.run.mounts.append(self.mount(row.project, row.name))

    async def stopped(self, row: q.InstanceRow) -> None:
        await self.close(row.project, row.name)

    async def changed(self, row: q.InstanceRow, before: InstanceSpec, after: InstanceSpec) -> None:
        """After a config or device change: the guest's events, and the socket turned on or
        off with security.guestapi on a running container."""
        instance = (row.project, row.name)
        if self.feed.listening(instance):
            self.feed.send(
                instance,
                [
                    *config_events(before.config, after.config),
                    *device_events(before.devices, after.devices),
                ],
            )
        if wanted(before) == wanted(after) or after.type != "container":
            return
        if not await self.instances.is_running(row):
            return
        driver = self.instances.drivers.get(row.type)
        mount = self.mount(row.project, row.name)
        if wanted(after):
            await self.open(row.project, row.name)
            await driver.hotplug(after, RunConfig(mounts=[mount]))
        else:
            await driver.unplug(after, RunConfig(mounts=[mount]))
            await self.close(row.project, row.name)

    async def reopen(self) -> None:
        """At daemon start: the sockets of the running containers it adopted."""
        for row in self.instances.local_instances():
            if row.type != "container" or not wanted(self.instances.spec(row)):
                continue
            if (await self.instances.status(row)).status == StatusCode.STOPPED:
                continue
            try:
                await self.open(row.project, row.name)
            except OSError as exc:
                log.warning("guest API socket of %s could not be opened: %s", row.name, exc)

    # -- sockets -----------------------------------------------------------------------------

    async def open(self, project: str, name: str) -> None:
        key = (project, name)
        if key in self._runners:
            return
        directory = self.directory(project, name)
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o755)
        sock = directory / "sock"
        sock.unlink(missing_ok=True)
        app = web.Application(client_max_size=MAX_REQUEST)
        app[handlers.GUEST] = handlers.Guest(self, project, name)
        for path, handler in handlers.ROUTES:
            app.router.add_route("*", path, handlers.bind(handler))
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1)
        await runner.setup()
        try:
            await web.UnixSite(runner, str(sock)).start()
            os.chmod(sock, 0o666)  # the container's root is an unprivileged uid on the host
        except BaseException:
            await runner.cleanup()
            raise
        self._runners[key] = runner

    async def close(self, project: str, name: str) -> None:
        self.feed.close((project, name))
        runner = self._runners.pop((project, name), None)
        if runner is not None:
            await runner.cleanup()
        await asyncio.to_thread(shutil.rmtree, self.directory(project, name), True)

    async def close_all(self) -> None:
        """At daemon exit: the listeners go; the directories stay for the next daemon."""
        self.feed.close()
        for runner in list(self._runners.values()):
            with contextlib.suppress(Exception):
                await runner.cleanup()
        self._runners.clear()

    async def set_ready(self, row: q.InstanceRow, ready: bool) -> None:
        value = "true" if ready else "false"
        row.config[READY_KEY] = value
        with self.db.transaction():
            q.set_config_keys(self.db, row.id, {READY_KEY: value})
