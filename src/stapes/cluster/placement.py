"""Where a new instance goes in a cluster: the member named by ``target``, one of the group
``@group``, or, as Incus's default scheduler, the member with the fewest instances among the
online ones that take instances (``scheduler.instance``: all; group: only when their group is
targeted; manual: only when named)."""

from __future__ import annotations

from datetime import timedelta

from stapes.api.errors import BadRequest, NotFound
from stapes.api.times import now, parse_timestamp
from stapes.config.server_keys import server_value
from stapes.db import cluster as q
from stapes.db.connection import Database
from stapes.db.server_config import get_config


def online(db: Database, member: q.MemberRow, own: str) -> bool:
    """A member heard from within cluster.offline_threshold (this one always is)."""
    if member.name == own:
        return True
    seen = parse_timestamp(member.heartbeat)
    threshold = int(server_value(get_config(db), "cluster.offline_threshold"))
    return seen is not None and now() - seen <= timedelta(seconds=threshold)


def choose(
    db: Database, own: str, target: str, unreachable: frozenset[str] = frozenset()
) -> q.MemberRow:
    """``unreachable``: members found down since their last heartbeat (left out)."""
    members = [m for m in q.list_members(db) if m.name not in unreachable]
    if target and not target.startswith("@"):
        named = next((m for m in members if m.name == target), None)
        if named is None:
            raise NotFound(f"Cluster member {target!r} not found")
        if not online(db, named, own):
            raise BadRequest(f"Cluster member {target!r} is offline")
        if named.state == "evacuated":
            raise BadRequest(f"Cluster member {target!r} is evacuated")
        return named
    if target:
        group = q.find_group(db, target[1:])
        if group is None:
            raise NotFound(f"Cluster group {target[1:]!r} not found")
        candidates = [
            m
            for m in members
            if m.name in group.members and m.config.get("scheduler.instance") != "manual"
        ]
    else:
        candidates = [m for m in members if m.config.get("scheduler.instance", "all") == "all"]
    usable = [m for m in candidates if m.state != "evacuated" and online(db, m, own)]
    if not usable:
        where = f"in group {target[1:]!r}" if target else "in the cluster"
        raise BadRequest(f"No online cluster member {where} takes new instances")
    counts = {
        r["location"]: r["n"]
        for r in db.all("SELECT location, count(*) AS n FROM instances GROUP BY location")
    }
    return min(usable, key=lambda m: (counts.get(m.name, 0), m.name))
