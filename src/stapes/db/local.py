"""A cluster member's own database (database/local.db): what belongs to this member and not
to the cluster: its local-scope server keys (core.https_address, cluster.https_address...)
and the raft nodes it last knew, to find the cluster again when it starts. A server that is
not clustered has none: its one database holds everything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stapes.db.connection import Database, SqliteDatabase
from stapes.db.schema import Executor, Migration
from stapes.db.storage import set_member_pool_config


def _v1(conn: Executor) -> None:
    conn.execute("CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        """CREATE TABLE raft_nodes (
            id INTEGER PRIMARY KEY,
            address TEXT NOT NULL UNIQUE,
            role INTEGER NOT NULL DEFAULT 0,
            name TEXT NOT NULL DEFAULT ''
        )"""
    )


def _v2(conn: Executor) -> None:
    """The member's own values of its storage pools' member keys (db/storage.py)."""
    conn.execute(
        """CREATE TABLE pool_config (
            pool TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (pool, key)
        )"""
    )


LOCAL_MIGRATIONS: list[Migration] = [_v1, _v2]


@dataclass(frozen=True)
class RaftNode:
    id: int
    """cowsql's node id (unsigned 64 bits; SQLite keeps it signed)."""
    address: str
    """The member's cluster address (HOST:PORT of its HTTPS listener)."""
    role: int
    """cowsql's role number (db/cowsql/wire.py: VOTER, STANDBY, SPARE)."""
    name: str


def open_local(path: Path) -> SqliteDatabase:
    return SqliteDatabase(path, LOCAL_MIGRATIONS)


def _signed(node_id: int) -> int:
    return node_id - (1 << 64) if node_id >= 1 << 63 else node_id


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def install_local(
    staging: Path,
    target: Path,
    config: dict[str, str],
    nodes: list[RaftNode],
    pools: dict[str, dict[str, str]],
) -> None:
    """A member's local database written at ``staging`` and renamed to ``target`` (the
    server is a member from then on): its own keys, its raft nodes, its pools' member keys."""
    local = open_local(staging)
    with local.transaction():
        for key, value in config.items():
            local.execute("INSERT INTO config (key, value) VALUES (?, ?)", (key, value))
        replace_raft_nodes(local, nodes)
        for pool, member_keys in pools.items():
            set_member_pool_config(local, pool, member_keys)
    local.close()
    staging.rename(target)


def raft_nodes(db: Database) -> list[RaftNode]:
    return [
        RaftNode(_unsigned(r["id"]), r["address"], r["role"], r["name"])
        for r in db.all("SELECT id, address, role, name FROM raft_nodes ORDER BY address")
    ]


def replace_raft_nodes(db: Database, nodes: list[RaftNode]) -> None:
    db.execute("DELETE FROM raft_nodes")
    for node in nodes:
        db.execute(
            "INSERT INTO raft_nodes (id, address, role, name) VALUES (?, ?, ?, ?)",
            (_signed(node.id), node.address, node.role, node.name),
        )
