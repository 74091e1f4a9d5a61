"""An instance moving between members of one cluster (`incus move c1 --target m2`, and
evacuation): its rows are the cluster's already, so only its volumes travel, over the
migration protocol (the target pulls from a migration operation of the source, pinned to the
cluster certificate); then its location changes and the source drops its copy. A running
instance is stopped, moved and started again (a stateless move), or, a VM, moved live: the
target starts it from QEMU's migration stream and the guest here ends once it runs there."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from typing import Any

import aiohttp

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest, NotFound
from stapes.api.instance import InstancePost, InstanceSource
from stapes.api.lifecycle import InstanceAction
from stapes.api.urls import instance_url
from stapes.cluster import placement
from stapes.cluster.peers import Peers
from stapes.cluster.service import Cluster
from stapes.db import cluster as cluster_db
from stapes.db import instances as q
from stapes.instance import migrate, power
from stapes.instance.service import InstanceService
from stapes.migration.sink import InstanceSink
from stapes.runtime.operations import Operation
from stapes.storage.volumes import instance_volume

log = logging.getLogger(__name__)

STOP_SECONDS = 30
"""How long a running instance is given to shut down before a stateless move (then forced)."""


class ClusterMoves:
    def __init__(self, svc: InstanceService, cluster: Cluster, peers: Peers) -> None:
        self.svc = svc
        self.cluster = cluster
        self.peers = peers

    async def move(self, row: q.InstanceRow, target: str, live: bool) -> Operation:
        """The operation that moves ``row`` (on this member) to the member ``target``."""
        member = self._target(row, target)
        running = (await self.svc.status(row)).status != StatusCode.STOPPED
        live = live and running
        if live and row.type != "virtual-machine":
            raise BadRequest(migrate.live_refusal(row.type))

        async def act(op: Operation) -> None:
            await self.run(row, member, live=live)

        return self.svc.operations.start(
            act,
            description="Migrating instance",
            project=row.project,
            resources={"instances": [instance_url(row.name, row.project)]},
        )

    def _target(self, row: q.InstanceRow, target: str) -> cluster_db.MemberRow:
        db = self.svc.db
        member = cluster_db.find_member(db, target)
        if member is None:
            raise NotFound(f"Cluster member {target!r} not found")
        if member.name == row.location:
            raise BadRequest(f"Instance {row.name!r} is already on member {target!r}")
        if not placement.online(db, member, self.cluster.membership.name):
            raise BadRequest(f"Cluster member {target!r} is offline")
        return member

    async def run(self, row: q.InstanceRow, member: cluster_db.MemberRow, live: bool) -> None:
        """Move ``row`` to ``member`` now (its lock taken here); ``live``: a running VM moves
        running (else a running instance is stopped, moved and started there)."""
        svc = self.svc
        async with svc.locks(row.project, row.name):
            row = svc.get(row.project, row.name)
            running = (await svc.status(row)).status != StatusCode.STOPPED
            live = live and running
            if running and not live:
                await power.stop_unlocked(svc, row, force=False, timeout=STOP_SECONDS)
                row = svc.get(row.project, row.name)
        before = svc.spec(row)  # the member that takes it live writes its own devices' keys
        # the migration source takes the instance's lock itself while it reads the volumes
        req = InstancePost(name=row.name, migration=True, live=live)
        source = await migrate.send(svc, row, req, leaving=live)
        body = {
            "project": row.project,
            "name": row.name,
            "operation": f"https://{self.cluster.membership.address}/1.0/operations/{source.id}",
            "secrets": source.metadata,
            "certificate": self.cluster.transport.cert.read_text(),
            "live": live,
        }
        url = f"https://{member.address}/internal/cluster/receive"
        try:
            async with self.peers.session().post(url, json=body) as resp:
                answer = await resp.json()
                if resp.status != 200:
                    raise BadRequest(
                        f"Member {member.name} could not take {row.name!r}: "
                        f"{answer.get('error', resp.status)}"
                    )
            if source.task is not None:
                await source.task
        except (aiohttp.ClientError, TimeoutError) as exc:
            source.cancel()
            self._keep_record(row, live)
            raise BadRequest(f"Member {member.name} unreachable: {exc}") from None
        except BaseException:
            source.cancel()
            self._keep_record(row, live)
            raise
        async with svc.locks(row.project, row.name):
            with svc.db.transaction():
                svc.db.execute(
                    "UPDATE instances SET location = ? WHERE id = ?", (member.name, row.id)
                )
            if live:
                with contextlib.suppress(Exception):  # it runs there: nothing may undo that
                    await power.end_moved(svc, row, before)
            await self._drop_local(row)
        svc.events.lifecycle(
            InstanceAction.MIGRATED, instance_url(row.name, row.project), project=row.project
        )
        if running and not live:
            await self._start_on(member, row)

    def _keep_record(self, row: q.InstanceRow, live: bool) -> None:
        """A live move that failed: the instance runs on here as ``row`` describes it (the
        target may have written its own device keys and power state before it gave up)."""
        if live:
            with self.svc.db.transaction():
                q.update_instance(self.svc.db, row)

    async def _drop_local(self, row: q.InstanceRow) -> None:
        """This member's copy of a moved instance (its driver state, volume, logs)."""
        spec = self.svc.spec(row)
        with contextlib.suppress(Exception):
            await self.svc.drivers.get(row.type).forget(spec)
        await self.svc.pools.driver(row.pool).delete_volume(*instance_volume(row))
        await asyncio.to_thread(shutil.rmtree, spec.log_dir, True)

    async def _start_on(self, member: cluster_db.MemberRow, row: q.InstanceRow) -> None:
        path = f"/1.0/instances/{row.name}/state"
        try:
            await self.peers.run(
                member.address, "PUT", path, {"action": "start"}, {"project": row.project}, 120
            )
        except BadRequest as exc:
            raise BadRequest(f"Moved, but not started on {member.name}: {exc.message}") from None

    async def receive(self, body: dict[str, Any]) -> None:
        """This member takes an instance of the cluster whose source member sends its volumes
        (an internal request, from that member)."""
        svc = self.svc
        try:
            project, name = str(body["project"]), str(body["name"])
            source = InstanceSource(
                type="migration",
                mode="pull",
                operation=str(body["operation"]),
                secrets={str(k): str(v) for k, v in dict(body["secrets"]).items()},
                certificate=str(body["certificate"]),
                live=bool(body.get("live", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"Invalid move request: {exc}") from None
        row = svc.get(project, name)
        sink = InstanceSink(source, row.type, rows_exist=True)
        await sink.reach()
        received = asyncio.get_running_loop().create_future()

        async def act(op: Operation) -> None:
            try:
                await sink.receive(svc, op, row)
                await svc.drivers.get(row.type).adopt(svc.spec(row))
                if source.live:  # started here from the source's state, then resumed
                    await sink.arrive_live(svc)(svc.get(project, name))
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await svc.pools.driver(row.pool).delete_volume(*instance_volume(row))
                if not received.done():
                    received.set_exception(exc)
                raise
            received.set_result(None)

        svc.operations.start(
            sink.closing(act),
            description="Receiving instance",
            project=project,
            resources={"instances": [instance_url(name, project)]},
        )
        await received
