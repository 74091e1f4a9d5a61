"""A standalone server becomes the first member of a cluster: its database is copied into a
new cowsql one, row for row, and the member's own keys move to its local database.

Crash-safe by order: everything is written beside the standalone database first and
database/local.db appears last (renamed into place); a server is clustered when it exists.
Until then a restart finds the standalone database as it was, and the partial cowsql data is
removed."""

from __future__ import annotations

import json
import platform
import shutil

from stapes.api.times import now, timestamp
from stapes.cluster.engine import ClusterEngine
from stapes.cluster.files import ClusterFiles
from stapes.cluster.transport import ClusterTransport
from stapes.config.server_scope import LOCAL_SERVER_KEYS
from stapes.db import cluster as cluster_db
from stapes.db.connection import Database
from stapes.db.cowsql import wire
from stapes.db.cowsql.node import BOOTSTRAP_ID
from stapes.db.local import RaftNode, install_local, open_local
from stapes.db.networks import MEMBER_NETWORK_KEYS
from stapes.db.schema import MIGRATIONS
from stapes.db.storage import MEMBER_POOL_KEYS

BATCH_PARAMETERS = 900
"""Values per multi-row INSERT while copying (SQLite's limit is far above)."""


def tables(db: Database) -> list[str]:
    """The schema's tables, in the order they were made (references point backwards)."""
    rows = db.all(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY rowid"
    )
    return [r["name"] for r in rows]


def copy_rows(source: Database, target: Database) -> int:
    """Every row of every table of ``source`` into the same (empty) tables of ``target``;
    returns how many."""
    copied = 0
    for table in tables(source):
        columns = [r["name"] for r in source.all(f"PRAGMA table_info({table})")]
        names = ", ".join(f'"{c}"' for c in columns)
        marks = "(" + ", ".join("?" * len(columns)) + ")"
        found = source.all(f'SELECT {names} FROM "{table}" ORDER BY rowid')
        rows = [tuple(r[i] for i in range(len(columns))) for r in found]
        per_batch = max(1, BATCH_PARAMETERS // len(columns))
        for start in range(0, len(rows), per_batch):
            batch = rows[start : start + per_batch]
            values = ", ".join([marks] * len(batch))
            flat = tuple(v for row in batch for v in row)
            target.execute(f'INSERT INTO "{table}" ({names}) VALUES {values}', flat)
        copied += len(rows)
    return copied


def bootstrap(
    files: ClusterFiles,
    standalone: Database,
    name: str,
    address: str,
    api_extensions: int,
    transport: ClusterTransport,
) -> tuple[ClusterEngine, Database, Database]:
    """Make this server the first member, ``name`` at ``address``: returns its engine, the
    cluster's database and the member's local one (``standalone`` is left open, unchanged,
    for the caller to close and set aside once it has switched). The caller holds the
    standalone database still (no write between the copy and the switch)."""
    shutil.rmtree(files.cowsql, ignore_errors=True)

    files.drop_local_staging()
    engine = ClusterEngine.start(BOOTSTRAP_ID, address, files.cowsql, transport)
    try:
        shared = engine.database([address], upgrade=True)
        try:
            with shared.transaction():
                copy_rows(standalone, shared)
                shared.execute(
                    "DELETE FROM config WHERE key IN ("
                    + ",".join("?" * len(LOCAL_SERVER_KEYS))
                    + ")",
                    tuple(sorted(LOCAL_SERVER_KEYS)),
                )
                member = cluster_db.insert_member(
                    shared,
                    cluster_db.MemberRow(
                        id=0,
                        name=name,
                        address=address,
                        architecture=platform.machine(),
                        schema=len(MIGRATIONS),
                        api_extensions=api_extensions,
                        heartbeat=timestamp(now()),
                    ),
                )
                group = cluster_db.insert_group(
                    shared, cluster_db.DEFAULT_GROUP, "Default cluster group"
                )
                cluster_db.set_member_groups(shared, member, [group])
                shared.execute("UPDATE instances SET location = ?", (name,))
                shared.execute("UPDATE warnings SET location = ?", (name,))
                pools = _member_values(shared, standalone, "storage_pools", MEMBER_POOL_KEYS)
                networks = _member_values(shared, standalone, "networks", MEMBER_NETWORK_KEYS)
            own = {
                r["key"]: r["value"]
                for r in standalone.all("SELECT key, value FROM config")
                if r["key"] in LOCAL_SERVER_KEYS
            }
            own["cluster.https_address"] = address
            node = RaftNode(BOOTSTRAP_ID, address, wire.VOTER, name)
            # the server is clustered from here on
            install_local(files.local_staging, files.local, own, [node], pools, networks)
            return engine, shared, open_local(files.local)
        except BaseException:
            shared.close()
            raise
    except BaseException:
        engine.close()
        shutil.rmtree(files.cowsql, ignore_errors=True)
        files.drop_local_staging()
        raise


def _member_values(
    shared: Database, standalone: Database, table: str, keys: frozenset[str]
) -> dict[str, dict[str, str]]:
    """The member keys of each pool or network (``table``) of the server becoming the first
    member: taken out of the cluster's copy of its row, to be kept in its local database."""
    select, update = _MEMBER_VALUES_SQL[table]
    found = {}
    for row in standalone.all(select):
        config = json.loads(row["config"])
        found[row["name"]] = {k: v for k, v in config.items() if k in keys}
        kept = {k: v for k, v in config.items() if k not in keys}
        shared.execute(update, (json.dumps(kept), row["id"]))
    return found


_MEMBER_VALUES_SQL = {
    "storage_pools": (
        "SELECT id, name, config FROM storage_pools",
        "UPDATE storage_pools SET config = ? WHERE id = ?",
    ),
    "networks": (
        "SELECT id, name, config FROM networks",
        "UPDATE networks SET config = ? WHERE id = ?",
    ),
}
