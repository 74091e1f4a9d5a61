"""One request to every member of the cluster (a pool or a network made or removed on each):
this member does its part itself, the others are asked; what failed where is returned."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from stapes.cluster.peers import Peers
from stapes.db import cluster as cluster_db
from stapes.db.connection import Database


async def on_every_member(
    db: Database,
    own: str,
    peers: Peers,
    path: str,
    body: object,
    here: Callable[[], Awaitable[None]] | None,
) -> list[str]:
    """``here`` on this member (None: nothing here), POST ``body`` to ``path`` of the others;
    "member: why" for each that failed."""
    failures = []
    for member in cluster_db.list_members(db):
        try:
            if member.name != own:
                await peers.post(member.address, path, body)
            elif here is not None:
                await here()
        except Exception as exc:
            failures.append(f"{member.name}: {getattr(exc, 'message', str(exc))}")
    return failures
