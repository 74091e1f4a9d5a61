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
                pools = {}
                for pool in standalone.all("SELECT id, name, config FROM storage_pools"):
                    config = json.loads(pool["config"])
                    pools[pool["name"]] = {k: v for k, v in config.items() if k in MEMBER_POOL_KEYS}
                    kept = {k: v for k, v in config.items() if k not in MEMBER_POOL_KEYS}
                    shared.execute(
                        "UPDATE storage_pools SET config = ? WHERE id = ?",
                        (json.dumps(kept), pool["id"]),
                    )
            own = {
                r["key"]: r["value"]
                for r in standalone.all("SELECT key, value FROM config")
                if r["key"] in LOCAL_SERVER_KEYS
            }
            own["cluster.https_address"] = address
            node = RaftNode(BOOTSTRAP_ID, address, wire.VOTER, name)
            # the server is clustered from here on
            install_local(files.local_staging, files.local, own, [node], pools)
            return engine, shared, open_local(files.local)
        except BaseException:
            shared.close()
            raise
    except BaseException:
        engine.close()
        shutil.rmtree(files.cowsql, ignore_errors=True)
        files.drop_local_staging()
        raise
