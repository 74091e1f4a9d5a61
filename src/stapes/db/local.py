"""A cluster member's own database (database/local.db): what belongs to this member and not
to the cluster: its local-scope server keys (core.https_address, cluster.https_address...)
and the raft nodes it last knew, to find the cluster again when it starts. A server that is
not clustered has none: its one database holds everything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stapes.db.connection import Database, ServerDatabase, SqliteDatabase
from stapes.db.schema import Executor, Migration


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


def _v3(conn: Executor) -> None:
    """The member's own values of its networks' member keys (db/networks.py)."""
    conn.execute(
        """CREATE TABLE network_config (
            network TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (network, key)
        )"""
    )


LOCAL_MIGRATIONS: list[Migration] = [_v1, _v2, _v3]

_MEMBER_SQL = {
    "storage-pool": (
        "SELECT key, value FROM pool_config WHERE pool = ?",
        "DELETE FROM pool_config WHERE pool = ?",
        "INSERT INTO pool_config (pool, key, value) VALUES (?, ?, ?)",
    ),
    "network": (
        "SELECT key, value FROM network_config WHERE network = ?",
        "DELETE FROM network_config WHERE network = ?",
        "INSERT INTO network_config (network, key, value) VALUES (?, ?, ?)",
    ),
}
"""How a member reads, clears and writes its own values of each kind's member keys."""


def member_values(local: Database, entity: str, name: str) -> dict[str, str]:
    """This member's values of the member keys of the pool or network ``name``."""
    rows = local.all(_MEMBER_SQL[entity][0], (name,))
    return {r["key"]: r["value"] for r in rows}


def set_member_values(local: Database, entity: str, name: str, config: dict[str, str]) -> None:
    _, clear, insert = _MEMBER_SQL[entity]
    local.execute(clear, (name,))
    for key, value in config.items():
        local.execute(insert, (name, key, value))


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


def with_member_values(
    db: Database, entity: str, name: str, config: dict[str, str], keys: frozenset[str]
) -> dict[str, str]:
    """A pool's or network's ``config`` as the cluster keeps it, with this member's own
    values of its member ``keys`` (a server that is not clustered has them in ``config``)."""
    if not isinstance(db, ServerDatabase) or db.local is None:
        return config
    shared = {k: v for k, v in config.items() if k not in keys}
    return {**shared, **member_values(db.local, entity, name)}


def keep_member_values(
    db: Database, entity: str, name: str, config: dict[str, str], keys: frozenset[str]
) -> dict[str, str]:
    """What of ``config`` the cluster keeps; this member's values of ``keys`` go to its
    local database (a server that is not clustered keeps all of ``config``)."""
    if not isinstance(db, ServerDatabase) or db.local is None:
        return config
    with db.local.transaction():
        set_member_values(db.local, entity, name, {k: v for k, v in config.items() if k in keys})
    return {k: v for k, v in config.items() if k not in keys}


def install_local(
    staging: Path,
    target: Path,
    config: dict[str, str],
    nodes: list[RaftNode],
    pools: dict[str, dict[str, str]],
    networks: dict[str, dict[str, str]],
) -> None:
    """A member's local database written at ``staging`` and renamed to ``target`` (the
    server is a member from then on): its own keys, its raft nodes, its pools' and networks'
    member keys."""
    local = open_local(staging)
    with local.transaction():
        for key, value in config.items():
            local.execute("INSERT INTO config (key, value) VALUES (?, ?)", (key, value))
        replace_raft_nodes(local, nodes)
        for entity, found in (("storage-pool", pools), ("network", networks)):
            for name, member_keys in found.items():
                set_member_values(local, entity, name, member_keys)
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
