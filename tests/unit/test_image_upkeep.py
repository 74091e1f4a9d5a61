"""Cache expiry of the image upkeep round: a cached image unused for longer than
images.remote_cache_expiry days goes (files and volumes); the user's own images and recently
used cached ones stay. Real SQLite, real image store on a temporary directory."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from stapes.db import images as q
from stapes.db.connection import Database, SqliteDatabase
from stapes.db.projects import ensure_project
from stapes.host.paths import Paths
from stapes.images.refresh import ImageUpkeep
from stapes.images.store import ImageStore
from stapes.runtime.events import EventBus


def _image(
    db: Database, paths: Paths, fingerprint: str, cached: bool, used: str, expires: str = ""
) -> None:
    row = q.ImageRow(
        id=0, project="default", fingerprint=fingerprint, filename="x.tar", size=1,
        type="container", architecture="x86_64", created_at=used, uploaded_at=used,
        public=False, split=False, properties={}, cached=cached, last_used_at=used,
        expires_at=expires,
    )  # fmt: skip
    q.insert_image(db, row)
    (paths.images / fingerprint).write_bytes(b"x")


def test_cached_images_expire(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    paths.images.mkdir(parents=True)
    db = SqliteDatabase(tmp_path / "stapes.db")
    with db.transaction():
        ensure_project(db, "default", "", {})
        _image(db, paths, "a" * 64, True, "2026-01-01T00:00:00Z")  # old, cached: goes
        _image(db, paths, "b" * 64, True, "2026-11-28T00:00:00Z")  # used yesterday: stays
        _image(db, paths, "c" * 64, False, "2026-01-01T00:00:00Z")  # the user's own: stays
    dropped: list[str] = []

    async def drop(fingerprint: str) -> None:
        dropped.append(fingerprint)

    upkeep = ImageUpkeep(ImageStore(db, paths, EventBus()), drop)
    asyncio.run(upkeep.expire(datetime(2026, 11, 29, tzinfo=UTC), 10))
    left = sorted(r.fingerprint for r in q.list_images(db, None))
    assert left == ["b" * 64, "c" * 64]
    assert dropped == ["a" * 64]
    assert not (paths.images / ("a" * 64)).exists()


def test_images_past_their_expiry_date_go(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    paths.images.mkdir(parents=True)
    db = SqliteDatabase(tmp_path / "stapes.db")
    with db.transaction():
        ensure_project(db, "default", "", {})
        _image(db, paths, "d" * 64, False, "2026-11-01T00:00:00Z", "2026-11-28T00:00:00Z")
        _image(db, paths, "e" * 64, False, "2026-11-01T00:00:00Z", "2026-12-31T00:00:00Z")
    dropped: list[str] = []

    async def drop(fingerprint: str) -> None:
        dropped.append(fingerprint)

    upkeep = ImageUpkeep(ImageStore(db, paths, EventBus()), drop)
    asyncio.run(upkeep.expire_dated(datetime(2026, 11, 29, tzinfo=UTC)))
    assert [r.fingerprint for r in q.list_images(db, None)] == ["e" * 64]
    assert dropped == ["d" * 64]
