"""Automatic rebalancing of a cluster (``cluster.rebalance.*``, as Incus 6.0): every
``cluster.rebalance.interval`` minutes the leader scores each online member by its load (the
mean of its memory in use and its one-minute load per CPU, in percent) and, when the busiest
member's score is ``cluster.rebalance.threshold`` percent above the least busy one's, moves
running VMs live from the busiest to less busy members (the least busy first), at most
``cluster.rebalance.batch`` per run, none moved again within ``cluster.rebalance.cooldown``
(``volatile.rebalance.last_move``), and none that would leave its target busier than halfway
between the two. Containers are not moved: they cannot move live here.

The plan is a pure function of the members' figures and the candidate VMs (``plan``); the
task around it gathers the figures from each member's ``/1.0/cluster/members/NAME/state`` and
asks each VM's member to run the move (``incus move --target`` as a live migration)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from stapes.api.errors import BadRequest
from stapes.cluster import placement
from stapes.cluster.peers import Peers
from stapes.cluster.service import Cluster
from stapes.config.server_keys import server_value
from stapes.config.validate import add_expiry, parse_cpuset, parse_size
from stapes.db import cluster as cluster_db
from stapes.db import instances as q
from stapes.db.server_config import get_config
from stapes.instance.service import InstanceService

log = logging.getLogger(__name__)

LAST_MOVE = "volatile.rebalance.last_move"
"""When rebalancing last moved an instance (Unix seconds)."""
VM_MEMORY = 1 << 30
"""What a VM without limits.memory is counted for (its default memory, 1 GiB)."""


@dataclass
class Load:
    """A member's load, as its /state reports it."""

    memory_used: int
    memory_total: int
    cpu_load: float
    """Its one-minute load average."""
    cpus: int
    architecture: str = ""

    def score(self, memory: int = 0, cpus: float = 0.0) -> int:
        """The mean of its memory in use and its load per CPU, in percent (over 100 when
        the load exceeds the CPUs), with ``memory`` and ``cpus`` more."""
        memory_share = (self.memory_used + memory) * 100 // max(self.memory_total, 1)
        cpu_share = int((self.cpu_load + cpus) * 100 / max(self.cpus, 1))
        return (min(memory_share, 255) + min(cpu_share, 255)) // 2


@dataclass
class Candidate:
    """A running VM that may move: where it is and what it weighs."""

    project: str
    name: str
    location: str
    memory: int
    cpus: float
    last_move: float = 0.0


@dataclass
class Move:
    candidate: Candidate
    target: str


def plan(
    loads: dict[str, Load],
    candidates: list[Candidate],
    *,
    threshold: int,
    batch: int,
    cooldown: str,
    now: float,
) -> list[Move]:
    """The moves of one rebalancing run, for each architecture's members: from the busiest,
    when it is ``threshold`` percent busier than the least busy, to the least busy members
    that stay at most halfway between the two."""
    moves: list[Move] = []
    for arch in sorted({load.architecture for load in loads.values()}):
        members = sorted(
            (name for name, load in loads.items() if load.architecture == arch),
            key=lambda name: loads[name].score(),
            reverse=True,
        )
        if len(members) < 2 or len(moves) >= batch:
            continue
        busiest, least = members[0], members[-1]
        top, bottom = loads[busiest].score(), loads[least].score()
        if top == 0 or (top - bottom) * 100 // top < threshold:
            continue
        added: dict[str, tuple[int, float]] = dict.fromkeys(members, (0, 0.0))
        for candidate in candidates:
            if len(moves) >= batch:
                break
            if candidate.location != busiest or _cooling(candidate, cooldown, now):
                continue
            for target in reversed(members[1:]):  # the least busy first
                halfway = (top + loads[target].score()) // 2
                memory, cpus = added[target]
                memory, cpus = memory + candidate.memory, cpus + candidate.cpus
                if loads[target].score(memory, cpus) >= halfway:
                    continue  # it would tip the balance the other way
                added[target] = (memory, cpus)
                moves.append(Move(candidate, target))
                break
    return moves


def _cooling(candidate: Candidate, cooldown: str, now: float) -> bool:
    if not candidate.last_move:
        return False
    moved = datetime.fromtimestamp(candidate.last_move, UTC)
    return now < add_expiry(moved, cooldown).timestamp()


def weight(config: dict[str, str]) -> tuple[int, float]:
    """What a VM is counted for: its limits.memory (bytes; a percentage of nothing known is
    the default) and its limits.cpu (CPUs), as Incus counts instances."""
    memory = VM_MEMORY
    limit = config.get("limits.memory", "")
    if limit and not limit.endswith("%"):
        try:
            memory = parse_size(limit)
        except ValueError:
            pass
    cpus = 1.0
    cpu = config.get("limits.cpu", "")
    if cpu:
        try:
            cpus = float(int(cpu)) if cpu.isdigit() else float(len(parse_cpuset(cpu)))
        except ValueError:
            pass
    return memory, cpus


class Rebalancer:
    def __init__(self, svc: InstanceService, cluster: Cluster, peers: Peers) -> None:
        self.svc = svc
        self.cluster = cluster
        self.peers = peers
        self.started = time.monotonic()

    async def run(self) -> None:
        """Every minute: a rebalancing run when this member leads and the interval says so."""
        while True:
            await asyncio.sleep(60)
            try:
                interval = int(server_value(get_config(self.svc.db), "cluster.rebalance.interval"))
                elapsed = round((time.monotonic() - self.started) / 60)
                if interval > 0 and elapsed % interval == 0 and await self._leading():
                    await self.once()
            except Exception:
                log.exception("cluster rebalancing failed")

    async def _leading(self) -> bool:
        cluster = self.cluster
        if not cluster.membership.clustered or cluster.engine is None:
            return False
        raft = await asyncio.to_thread(cluster.engine.raft, cluster.raft_addresses())
        return raft.leader == cluster.membership.address

    async def once(self) -> list[Move]:
        """One rebalancing run: the moves made."""
        db = self.svc.db
        config = get_config(db)
        own = self.cluster.membership.name
        members = [
            m
            for m in cluster_db.list_members(db)
            if m.state != "evacuated" and placement.online(db, m, own)
        ]
        loads: dict[str, Load] = {}
        for member in members:
            try:
                loads[member.name] = await self._load(member)
            except BadRequest as exc:
                log.warning("rebalancing leaves out member %s: %s", member.name, exc.message)
        candidates = []
        for row in q.list_instances(db, None):
            if row.type != "virtual-machine" or row.location not in loads:
                continue
            if row.config.get("volatile.last_state.power") != "RUNNING":
                continue
            expanded = self.svc.expand(row)[0]
            memory, cpus = weight(expanded)
            try:
                last = float(row.config.get(LAST_MOVE, "0"))
            except ValueError:
                last = 0.0
            candidates.append(Candidate(row.project, row.name, row.location, memory, cpus, last))
        moves = plan(
            loads,
            candidates,
            threshold=int(server_value(config, "cluster.rebalance.threshold")),
            batch=int(server_value(config, "cluster.rebalance.batch")),
            cooldown=server_value(config, "cluster.rebalance.cooldown"),
            now=time.time(),
        )
        done = []
        for move in moves:
            try:
                await self._move(move, {m.name: m.address for m in members})
                done.append(move)
            except BadRequest as exc:
                log.warning("rebalancing could not move %s: %s", move.candidate.name, exc.message)
        return done

    async def _load(self, member: cluster_db.MemberRow) -> Load:
        state = await self.peers.get(member.address, f"/1.0/cluster/members/{member.name}/state")
        info = state.get("sysinfo", {}) if isinstance(state, dict) else {}
        total = int(info.get("total_ram", 0))
        return Load(
            memory_used=total - int(info.get("free_ram", 0)),
            memory_total=total,
            cpu_load=float((info.get("load_averages") or [0.0])[0]),
            cpus=int(info.get("logical_cpus", 1)),
            architecture=member.architecture,
        )

    async def _move(self, move: Move, addresses: dict[str, str]) -> None:
        """The VM's member moves it live (an operation there, waited for); then the mark."""
        vm = move.candidate
        params = {"project": vm.project, "target": move.target}
        body = {"name": vm.name, "migration": True, "live": True}
        path = f"/1.0/instances/{vm.name}"
        await self.peers.run(addresses[vm.location], "POST", path, body, params)
        log.info("rebalancing moved %s from %s to %s", vm.name, vm.location, move.target)
        with self.svc.db.transaction():
            row = self.svc.get(vm.project, vm.name)
            row.config[LAST_MOVE] = str(int(time.time()))
            q.update_instance(self.svc.db, row)
