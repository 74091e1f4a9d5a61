"""The local image store: files keyed by SHA-256 fingerprint, rows, aliases, unpacking."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stapes.api.errors import BadRequest, Conflict, MissingHostFeature, NotFound
from stapes.api.lifecycle import ImageAction, ImageAliasAction
from stapes.api.times import now, timestamp
from stapes.config.snapshots import parse_expiry_time
from stapes.db import images as q
from stapes.db.connection import Database
from stapes.host.device_nodes import remove_device_nodes
from stapes.host.paths import Paths
from stapes.host.run import RunError, run
from stapes.images.formats import QCOW2_MAGIC, SQUASHFS_MAGIC, file_magic, read_metadata
from stapes.runtime.events import EventBus

_FINGERPRINT = re.compile(r"[0-9a-f]{1,64}")


@dataclass
class Upload:
    """Files being received for one image, hashed as they arrive."""

    meta: Path
    rootfs: Path | None = None
    hasher: Any = field(default_factory=hashlib.sha256)
    vm: bool = False

    def cleanup(self) -> None:
        for path in (self.meta, self.rootfs):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


class ImageStore:
    def __init__(self, db: Database, paths: Paths, events: EventBus) -> None:
        self.db = db
        self.paths = paths
        self.events = events
        self.fetch_missing: Callable[[q.ImageRow], Awaitable[None]] | None = None
        """On a cluster member: brings an image's files from a member that has them (the
        database knows every image; each member keeps the files of those it used)."""
        self.changed: Callable[[q.ImageRow, bool], None] | None = None
        """On a cluster member: told when an image arrived (True) or went (False), for the
        other members' copies of its files."""

    async def ensure_files(self, row: q.ImageRow) -> None:
        """The image's files here (fetched from another member if need be)."""
        meta, rootfs = self.files(row)
        present = meta.exists() and (rootfs is None or rootfs.exists())
        if not present and self.fetch_missing is not None:
            await self.fetch_missing(row)

    # -- receiving --------------------------------------------------------------------------

    def new_upload(self, split: bool) -> Upload:
        token = os.urandom(8).hex()
        meta = self.paths.images / f"upload-{token}"
        return Upload(
            meta=meta, rootfs=self.paths.images / f"upload-{token}.rootfs" if split else None
        )

    async def register(
        self,
        upload: Upload,
        *,
        project: str,
        filename: str,
        public: bool,
        properties: dict[str, str],
        expected: str = "",
        aliases: list[str] | None = None,
    ) -> q.ImageRow:
        """Turn a finished upload into an image row and files named by fingerprint."""
        fingerprint = upload.hasher.hexdigest()
        if expected and expected != fingerprint:
            raise BadRequest(
                f"Fingerprint mismatch: the upload hashes to {fingerprint}, not {expected}"
            )
        if q.find_images_by_prefix(self.db, project, fingerprint):
            raise Conflict(f"Image with fingerprint {fingerprint} already exists")
        meta = await read_metadata(str(upload.meta))
        image_type = "container"
        if upload.rootfs is not None:
            magic = file_magic(str(upload.rootfs))
            if upload.vm or magic == QCOW2_MAGIC:
                image_type = "virtual-machine"
        props = {str(k): str(v) for k, v in (meta.get("properties") or {}).items()}
        props.update(properties)
        created = meta.get("creation_date")
        created_at = (
            timestamp(_from_epoch(created)) if isinstance(created, int) else timestamp(now())
        )
        size = upload.meta.stat().st_size + (upload.rootfs.stat().st_size if upload.rootfs else 0)
        row = q.ImageRow(
            id=0,
            project=project,
            fingerprint=fingerprint,
            filename=filename or f"{fingerprint}.tar",
            size=size,
            type=image_type,
            architecture=str(meta["architecture"]),
            created_at=created_at,
            uploaded_at=timestamp(now()),
            public=public,
            split=upload.rootfs is not None,
            properties=props,
        )
        final = self.paths.images / fingerprint
        with self.db.transaction():
            q.insert_image(self.db, row)
            for alias in aliases or []:
                self._check_alias_free(project, alias)
                q.insert_alias(self.db, project, alias, row.id, "")
            upload.meta.rename(final)
            if upload.rootfs is not None:
                upload.rootfs.rename(final.with_name(f"{fingerprint}.rootfs"))
        if self.changed is not None:
            self.changed(row, True)
        self.events.lifecycle(
            ImageAction.CREATED,
            f"/1.0/images/{fingerprint}",
            project=project,
            context={"type": image_type},
        )
        return row

    # -- lookups ----------------------------------------------------------------------------

    def get(self, project: str, fingerprint: str) -> q.ImageRow:
        if not _FINGERPRINT.fullmatch(fingerprint):
            raise NotFound(f"Image {fingerprint!r} not found")
        found = q.find_images_by_prefix(self.db, project, fingerprint)
        if not found:
            raise NotFound(f"Image {fingerprint!r} not found")
        if len(found) > 1:
            raise BadRequest(f"More than one image matches the fingerprint prefix {fingerprint!r}")
        return found[0]

    def resolve(self, project: str, alias: str, fingerprint: str) -> q.ImageRow:
        """The image an instance source names, by alias or by fingerprint (prefix)."""
        if alias:
            found = q.find_alias(self.db, project, alias)
            if found is None:
                raise NotFound(f"Image alias {alias!r} not found")
            return self.get(project, found.fingerprint)
        if fingerprint:
            return self.get(project, fingerprint)
        raise BadRequest(
            "Image not provided for instance creation: give source.alias or source.fingerprint"
        )

    def list_images(self, project: str | None) -> list[q.ImageRow]:
        return q.list_images(self.db, project)

    def render(self, row: q.ImageRow) -> dict[str, Any]:
        rendered = self._render(row)
        source = q.find_source(self.db, row.id)
        if source is not None:  # pulled from a server: what auto-update asks (as Incus shows)
            rendered["update_source"] = {
                "alias": source.alias,
                "certificate": source.certificate,
                "image_type": row.type,
                "protocol": source.protocol,
                "server": source.server,
            }
        return rendered

    def _render(self, row: q.ImageRow) -> dict[str, Any]:
        return {
            "auto_update": row.auto_update,
            "properties": row.properties,
            "public": row.public,
            "expires_at": row.expires_at or "0001-01-01T00:00:00Z",
            "profiles": row.profiles,
            "aliases": [
                {"name": a.name, "description": a.description}
                for a in q.aliases_of(self.db, row.id)
            ],
            "architecture": row.architecture,
            "cached": row.cached,
            "filename": row.filename,
            "fingerprint": row.fingerprint,
            "size": row.size,
            "type": row.type,
            "created_at": row.created_at,
            "last_used_at": row.last_used_at or "0001-01-01T00:00:00Z",
            "uploaded_at": row.uploaded_at,
            "project": row.project,
        }

    def files(self, row: q.ImageRow) -> tuple[Path, Path | None]:
        meta = self.paths.images / row.fingerprint
        rootfs = meta.with_name(f"{row.fingerprint}.rootfs")
        return meta, (rootfs if row.split else None)

    def check_alias_free(self, project: str, name: str) -> None:
        self._check_alias_free(project, name)

    def finish_pull(
        self, row: q.ImageRow, aliases: list[tuple[str, str]], public: bool, auto_update: bool
    ) -> None:
        """An image copied from a server on request: the user's own (not cached), with the
        aliases, public flag and auto-update asked for."""
        row.cached, row.public, row.auto_update = False, public, auto_update
        with self.db.transaction():
            q.update_image(self.db, row)
            for name, description in aliases:
                self._check_alias_free(row.project, name)
                q.insert_alias(self.db, row.project, name, row.id, description)

    def take_over(self, old: q.ImageRow, new: q.ImageRow) -> None:
        """A newer image of the same source replaces ``old``: its aliases, flags, source."""
        new.auto_update, new.public, new.cached = old.auto_update, old.public, old.cached
        with self.db.transaction():
            q.update_image(self.db, new)
            q.move_aliases(self.db, old.id, new.id)
            source = q.find_source(self.db, old.id)
            if source is not None:
                source.image_id = new.id
                q.set_source(self.db, source)

    def mark_cached(self, row: q.ImageRow) -> None:
        """An image pulled from a server for an instance: cached, not the user's own."""
        row.cached = True
        with self.db.transaction():
            q.update_image(self.db, row)

    def mark_used(self, row: q.ImageRow) -> None:
        row.last_used_at = timestamp(now())
        with self.db.transaction():
            q.update_image(self.db, row)

    # -- changes ----------------------------------------------------------------------------

    def update(
        self,
        row: q.ImageRow,
        public: bool,
        auto_update: bool,
        properties: dict[str, str],
        profiles: list[str] | None,
        expires_at: str | None = None,
    ) -> None:
        """``expires_at`` None, "" or Go's zero time leaves the expiry as it is (Incus's image
        PUT sets only a real time)."""
        row.public, row.auto_update, row.properties = public, auto_update, properties
        if profiles is not None:
            row.profiles = profiles
        if expires_at and (expiry := parse_expiry_time(expires_at)):
            row.expires_at = expiry
        with self.db.transaction():
            q.update_image(self.db, row)
        self.events.lifecycle(
            ImageAction.UPDATED, f"/1.0/images/{row.fingerprint}", project=row.project
        )

    def delete(self, row: q.ImageRow) -> None:
        with self.db.transaction():
            q.delete_image(self.db, row.id)
        self.drop_files(row)
        if self.changed is not None:
            self.changed(row, False)
        self.events.lifecycle(
            ImageAction.DELETED, f"/1.0/images/{row.fingerprint}", project=row.project
        )

    def drop_files(self, row: q.ImageRow) -> None:
        for path in self.files(row):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _check_alias_free(self, project: str, name: str) -> None:
        if not name or ":" in name or name.startswith("/") or name != name.strip():
            raise BadRequest(f"Invalid alias name {name!r}")
        if q.find_alias(self.db, project, name) is not None:
            raise Conflict(f"Alias {name!r} already exists")

    def create_alias(self, project: str, name: str, target: str, description: str) -> None:
        image = self.get(project, target)
        self._check_alias_free(project, name)
        with self.db.transaction():
            q.insert_alias(self.db, project, name, image.id, description)
        self.events.lifecycle(
            ImageAliasAction.CREATED,
            f"/1.0/images/aliases/{name}",
            project=project,
            context={"target": image.fingerprint},
        )

    def update_alias(self, project: str, name: str, target: str, description: str) -> None:
        q.get_alias(self.db, project, name)
        image = self.get(project, target)
        with self.db.transaction():
            q.update_alias(self.db, project, name, image.id, description)
        self.events.lifecycle(
            ImageAliasAction.UPDATED,
            f"/1.0/images/aliases/{name}",
            project=project,
            context={"target": image.fingerprint},
        )

    def rename_alias(self, project: str, name: str, new_name: str) -> None:
        alias = q.get_alias(self.db, project, name)
        self._check_alias_free(project, new_name)
        image = self.get(project, alias.fingerprint)
        with self.db.transaction():
            q.update_alias(self.db, project, name, image.id, alias.description, new_name)
        self.events.lifecycle(
            ImageAliasAction.RENAMED,
            f"/1.0/images/aliases/{new_name}",
            project=project,
            context={"old_name": name},
        )

    def delete_alias(self, project: str, name: str) -> None:
        q.get_alias(self.db, project, name)
        with self.db.transaction():
            q.delete_alias(self.db, project, name)
        self.events.lifecycle(
            ImageAliasAction.DELETED, f"/1.0/images/aliases/{name}", project=project
        )

    # -- unpacking --------------------------------------------------------------------------

    async def unpack(self, row: q.ImageRow, target: Path) -> None:
        """Unpack an image into ``target`` (rootfs/, metadata.yaml, templates/), unshifted; an
        archive tar will not unpack whole (members with ``..``, files below its own symlinks)
        is a 400."""
        await self.ensure_files(row)
        try:
            await self._unpack(row, target)
        except RunError as exc:
            raise BadRequest(
                f"Image {row.fingerprint[:12]} could not be unpacked: {exc.stderr.strip()[-500:]}"
            ) from None

    async def _unpack(self, row: q.ImageRow, target: Path) -> None:
        meta, rootfs = self.files(row)
        tar = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xf"]
        if row.type == "virtual-machine":
            await self._unpack_vm(meta, rootfs, target)
            return
        if rootfs is None:
            await run([*tar, str(meta), "-C", str(target)], timeout=3600)
            if not (target / "rootfs").is_dir():
                raise BadRequest(f"Image {row.fingerprint} has no rootfs/ directory")
            await asyncio.to_thread(remove_device_nodes, target / "rootfs")
            return
        await run([*tar, str(meta), "-C", str(target)], timeout=600)
        if file_magic(str(rootfs)) == SQUASHFS_MAGIC:
            await run(
                ["unsquashfs", "-f", "-n", "-d", str(target / "rootfs"), str(rootfs)], timeout=3600
            )
        else:
            (target / "rootfs").mkdir(exist_ok=True)
            await run([*tar, str(rootfs), "-C", str(target / "rootfs")], timeout=3600)
        await asyncio.to_thread(remove_device_nodes, target / "rootfs")

    @staticmethod
    async def _unpack_vm(meta: Path, rootfs: Path | None, target: Path) -> None:
        """A VM image: its metadata (metadata.yaml, templates/, boot/ for images that carry a
        kernel) and its qcow2 disk turned into the raw ``root.img`` VMs boot from."""
        await run(["tar", "--no-same-owner", "-xf", str(meta), "-C", str(target)], timeout=600)
        disk = rootfs
        if disk is None:  # a unified VM image holds its disk as rootfs.img
            disk = target / "rootfs.img"
            if not disk.is_file():
                raise BadRequest("This VM image has no disk (rootfs.img)")
        if shutil.which("qemu-img") is None:
            raise MissingHostFeature("qemu-img is missing: install Debian's qemu-utils package")
        await run(
            ["qemu-img", "convert", "-O", "raw", str(disk), str(target / "root.img")],
            timeout=3600,
        )
        (target / "rootfs.img").unlink(missing_ok=True)


def _from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
