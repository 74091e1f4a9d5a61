"""The server's config: key/value rows. On a cluster member the local-scope keys (its own
addresses: config/server_keys.LOCAL_SERVER_KEYS) live in the member's database and the rest
in the cluster's; callers see one dict either way."""

from __future__ import annotations

from stapes.config.server_scope import LOCAL_SERVER_KEYS
from stapes.db.connection import Database, ServerDatabase


def _rows(db: Database) -> dict[str, str]:
    return {r["key"]: r["value"] for r in db.all("SELECT key, value FROM config ORDER BY key")}


def _split(db: Database) -> tuple[Database, Database | None]:
    """(where the cluster's keys live, where the member's own keys live if elsewhere)."""
    if isinstance(db, ServerDatabase) and db.local is not None:
        return db, db.local
    return db, None


def get_config(db: Database) -> dict[str, str]:
    shared, local = _split(db)
    config = _rows(shared)
    if local is not None:
        config = {k: v for k, v in config.items() if k not in LOCAL_SERVER_KEYS}
        config.update(_rows(local))
    return dict(sorted(config.items()))


def _replace(db: Database, config: dict[str, str]) -> None:
    db.execute("DELETE FROM config")
    for key, value in config.items():
        db.execute("INSERT INTO config (key, value) VALUES (?, ?)", (key, value))


def replace_config(db: Database, config: dict[str, str]) -> None:
    shared, local = _split(db)
    if local is None:
        _replace(shared, config)
        return
    _replace(shared, {k: v for k, v in config.items() if k not in LOCAL_SERVER_KEYS})
    with local.transaction():
        _replace(local, {k: v for k, v in config.items() if k in LOCAL_SERVER_KEYS})
