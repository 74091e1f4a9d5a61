"""The server's config: key/value rows."""

from __future__ import annotations

from stapes.db.connection import Database


def get_config(db: Database) -> dict[str, str]:
    return {r["key"]: r["value"] for r in db.all("SELECT key, value FROM config ORDER BY key")}


def replace_config(db: Database, config: dict[str, str]) -> None:
    db.execute("DELETE FROM config")
    for key, value in config.items():
        db.execute("INSERT INTO config (key, value) VALUES (?, ?)", (key, value))
