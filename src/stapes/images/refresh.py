"""Keeping pulled images current and the cache small: an image with ``auto_update`` (or a
cached one, with ``images.auto_update_cached``) is asked for again from the server it came from
every ``images.auto_update_interval`` hours; a newer image takes over its aliases and flags and
the old one goes. Cached images unused for ``images.remote_cache_expiry`` days are deleted, and
any image past its own ``expires_at``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from stapes.api.errors import NotFound
from stapes.api.times import parse_timestamp
from stapes.config import validate as v
from stapes.config.server_keys import server_value
from stapes.db import images as q
from stapes.db.server_config import get_config
from stapes.images.remote_fetch import RemoteImage, fetch
from stapes.images.store import ImageStore

log = logging.getLogger(__name__)
DropVolumes = Callable[[str], Awaitable[None]]
"""Deletes the image volumes of a fingerprint on every pool."""


async def refresh(store: ImageStore, row: q.ImageRow, drop_volumes: DropVolumes) -> q.ImageRow:
    """The image as the server has it now (``row`` itself when unchanged or not pulled by
    alias)."""
    source = q.find_source(store.db, row.id)
    if source is None:  # made here, imported or published: no server to ask
        raise NotFound(
            f'Failed to update image "{row.fingerprint}" in project "{row.project}": '
            "Image source not found"
        )
    if not source.alias:
        return row
    remote = RemoteImage(source.server, source.protocol, source.alias, "", source.certificate)
    new = await fetch(store, row.project, remote, row.architecture, cached=row.cached)
    if new.fingerprint == row.fingerprint:
        return row
    store.take_over(row, new)
    store.delete(row)
    await drop_volumes(row.fingerprint)
    log.info("image %s updated to %s", row.fingerprint[:12], new.fingerprint[:12])
    return new


def _when(text: str) -> datetime | None:
    try:
        return parse_timestamp(text)
    except ValueError:
        return None


class ImageUpkeep:
    """The minute round's image work: auto-update when the interval has passed, cache
    expiry."""

    def __init__(self, store: ImageStore, drop_volumes: DropVolumes) -> None:
        self.store = store
        self.drop_volumes = drop_volumes
        self.last_update: datetime | None = None

    async def __call__(self, minute: datetime) -> None:
        config = get_config(self.store.db)
        hours = int(server_value(config, "images.auto_update_interval"))
        due = self.last_update is None or minute - self.last_update >= timedelta(hours=hours)
        if hours > 0 and due:
            self.last_update = minute
            cached_too = v.parse_bool(server_value(config, "images.auto_update_cached"))
            for row in q.list_images(self.store.db, None):
                wanted = row.auto_update or (row.cached and cached_too)
                if wanted and q.find_source(self.store.db, row.id) is not None:
                    try:
                        await refresh(self.store, row, self.drop_volumes)
                    except Exception as exc:
                        log.warning("image %s not updated: %s", row.fingerprint[:12], exc)
        await self.expire(minute, int(server_value(config, "images.remote_cache_expiry")))
        await self.expire_dated(minute)

    async def expire_dated(self, minute: datetime) -> None:
        """Images whose own ``expires_at`` has passed."""
        for row in q.list_images(self.store.db, None):
            when = _when(row.expires_at)
            if when is not None and when <= minute.astimezone(UTC):
                self.store.delete(row)
                await self.drop_volumes(row.fingerprint)
                log.info("image %s expired (expires_at)", row.fingerprint[:12])

    async def expire(self, minute: datetime, days: int) -> None:
        if days <= 0:
            return
        limit = minute.astimezone(UTC) - timedelta(days=days)
        for row in q.list_images(self.store.db, None):
            used = _when(row.last_used_at) or _when(row.uploaded_at)
            if row.cached and used is not None and used < limit:
                self.store.delete(row)
                await self.drop_volumes(row.fingerprint)
                log.info("cached image %s expired", row.fingerprint[:12])
