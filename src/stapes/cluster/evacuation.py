"""A member emptied for maintenance and filled again (`incus cluster evacuate` / `restore`),
run by the member itself (requests about it are forwarded there). Each instance goes as its
``cluster.evacuate`` says (or the request's mode): ``migrate`` moves it to the member the
scheduler picks (stopped, moved, started again when it ran), ``stop`` stops it where it is;
``auto`` migrates unless the instance needs this host's devices (then stops it), and
``live-migrate`` moves a running VM live (containers, which cannot move live here, migrate).
Restore brings the moved instances back (live as they left) and starts the stopped ones."""

from __future__ import annotations

import logging

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest
from stapes.cluster import placement
from stapes.cluster.moves import STOP_SECONDS, ClusterMoves
from stapes.cluster.peers import Peers
from stapes.cluster.service import Cluster, member_url
from stapes.db import cluster as cluster_db
from stapes.db import instances as q
from stapes.instance import power
from stapes.instance.service import InstanceService
from stapes.runtime.operations import Operation

log = logging.getLogger(__name__)

ORIGIN_KEY = "volatile.evacuate.origin"
"""The member an instance was evacuated from (restore brings it back there)."""
MODES = ("auto", "migrate", "live-migrate", "stop")
HOST_DEVICES = frozenset({"unix-char", "unix-block", "unix-hotplug", "usb", "gpu", "pci"})
"""Devices that tie an instance to this host: ``auto`` stops it rather than move it."""


class Evacuation:
    def __init__(
        self, svc: InstanceService, cluster: Cluster, moves: ClusterMoves, peers: Peers
    ) -> None:
        self.svc = svc
        self.cluster = cluster
        self.moves = moves
        self.peers = peers

    def _set_state(self, state: str) -> None:
        db = self.svc.db
        with db.transaction():
            member = cluster_db.get_member(db, self.cluster.membership.name)
            if member.state == state:
                raise BadRequest(
                    "Cluster member is already "
                    + ("evacuated" if state == "evacuated" else "restored")
                )
            member.state = state
            cluster_db.update_member(db, member)

    def action(self, row: q.InstanceRow, mode: str) -> str:
        config, devices = self.svc.expand(row)
        chosen = mode if mode and mode != "auto" else config.get("cluster.evacuate", "auto")
        if chosen == "auto":
            local = any(d.get("type") in HOST_DEVICES for d in devices.values())
            return "stop" if local else "migrate"
        if chosen == "live-migrate" and row.type != "virtual-machine":
            return "migrate"
        return chosen

    async def evacuate(self, mode: str) -> Operation:
        if mode and mode not in MODES:
            raise BadRequest(f"Invalid evacuation mode {mode!r}: one of {', '.join(MODES)}")
        self._set_state("evacuated")
        name = self.cluster.membership.name

        async def act(op: Operation) -> None:
            try:
                for row in self.svc.local_instances():
                    await self._evacuate_one(row, mode, op)
            except BaseException:
                self._set_state("created")  # as it was: the instances left stay where they went
                raise
            self.svc.events.lifecycle("cluster-member-evacuated", member_url(name), context={})

        return self.svc.operations.start(act, description="Evacuating cluster member", resources={})

    async def _evacuate_one(self, row: q.InstanceRow, mode: str, op: Operation) -> None:
        svc = self.svc
        action = self.action(row, mode)
        running = (await svc.status(row)).status != StatusCode.STOPPED
        if action == "stop":
            if running:
                op.update_metadata({"evacuation_progress": f"Stopping {row.name!r}"})
                async with svc.locks(row.project, row.name):
                    current = svc.get(row.project, row.name)
                    await power.stop_unlocked(svc, current, force=False, timeout=STOP_SECONDS)
                    await power.set_power(svc, current, "RUNNING")  # restore starts it again
            return
        try:
            target = placement.choose(svc.db, self.cluster.membership.name, "")
        except BadRequest:
            log.warning("no member to evacuate %s to: it stays", row.name)
            return
        op.update_metadata({"evacuation_progress": f"Migrating {row.name!r} to {target.name!r}"})
        if ORIGIN_KEY not in row.config:
            with svc.db.transaction():
                current = svc.get(row.project, row.name)
                current.config[ORIGIN_KEY] = self.cluster.membership.name
                q.update_instance(svc.db, current)
        await self.moves.run(row, target, live=action == "live-migrate")

    async def restore(self) -> Operation:
        self._set_state("created")
        name = self.cluster.membership.name

        async def act(op: Operation) -> None:
            svc = self.svc
            for row in svc.local_instances():  # those evacuation stopped here
                if row.config.get("volatile.last_state.power") != "RUNNING":
                    continue
                if (await svc.status(row)).status == StatusCode.STOPPED:
                    op.update_metadata({"evacuation_progress": f"Starting {row.name!r}"})
                    async with svc.locks(row.project, row.name):
                        await power.start_unlocked(svc, svc.get(row.project, row.name))
            for row in q.list_instances(svc.db, None):  # those it moved away
                if row.location != name and row.config.get(ORIGIN_KEY) == name:
                    op.update_metadata(
                        {"evacuation_progress": f"Migrating {row.name!r} from {row.location!r}"}
                    )
                    await self._bring_back(row)
            svc.events.lifecycle("cluster-member-restored", member_url(name), context={})

        return self.svc.operations.start(act, description="Restoring cluster member", resources={})

    async def _bring_back(self, row: q.InstanceRow) -> None:
        """The member ``row`` is on moves it here (it runs the move); then the mark goes."""
        owner = cluster_db.get_member(self.svc.db, row.location)
        params = {"project": row.project, "target": self.cluster.membership.name}
        body = {"name": row.name, "migration": True, "live": self.action(row, "") == "live-migrate"}
        try:
            await self.peers.run(owner.address, "POST", f"/1.0/instances/{row.name}", body, params)
        except BadRequest as exc:
            raise BadRequest(f"Could not bring {row.name!r} back: {exc.message}") from None
        with self.svc.db.transaction():
            current = self.svc.get(row.project, row.name)
            current.config.pop(ORIGIN_KEY, None)
            q.update_instance(self.svc.db, current)
