"""An image's files on the member that needs them: the database of a cluster knows every
image, but each member keeps the files of the images it received or used. A member missing
them downloads them from another (its export, checked against the fingerprint)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

import aiohttp

from stapes.api.errors import BadRequest
from stapes.cluster import placement
from stapes.cluster.peers import Peers
from stapes.config.server_keys import server_value
from stapes.db import cluster as q
from stapes.db.connection import Database
from stapes.db.images import ImageRow
from stapes.db.server_config import get_config
from stapes.images.store import ImageStore
from stapes.runtime.membership import Membership

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024


INTERNAL = "/internal/cluster/images"


class ClusterImages:
    """Images' files among the members: fetched from another member when missing here; and
    copied to other members, as ``cluster.images_minimal_replica`` asks (3 by default, -1:
    every member, 1: only where it arrived), in the background when an image arrives, dropped
    everywhere when it goes."""

    def __init__(
        self, db: Database, membership: Membership, peers: Peers, images: ImageStore
    ) -> None:
        self.db = db
        self.membership = membership
        self.peers = peers
        self.images = images
        self._tasks: set[asyncio.Task[None]] = set()

    async def fetch(self, row: ImageRow) -> None:
        if not self.membership.clustered:
            return
        problems = []
        for member in q.list_members(self.db):
            if member.name == self.membership.name:
                continue
            try:
                await self._from(member.address, row)
                log.info("image %s fetched from member %s", row.fingerprint[:12], member.name)
                return
            except (aiohttp.ClientError, OSError, ValueError, TimeoutError) as exc:
                problems.append(f"{member.name}: {exc}")
        raise BadRequest(
            f"Image {row.fingerprint[:12]} is not on this member and no other member could "
            f"send it ({'; '.join(problems) or 'no other member'})"
        )

    async def _from(self, address: str, row: ImageRow) -> None:
        meta, rootfs = self.images.files(row)
        url = f"https://{address}/1.0/images/{row.fingerprint}/export?project={row.project}"
        parts = [meta.with_name(meta.name + ".fetch")] + (
            [rootfs.with_name(rootfs.name + ".fetch")] if rootfs is not None else []
        )
        digest = hashlib.sha256()
        try:
            async with self.peers.session().get(url) as resp:
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
                if resp.content_type.startswith("multipart/"):
                    reader = aiohttp.MultipartReader.from_response(resp)
                    index = 0
                    while (body := await reader.next()) is not None:
                        if index >= len(parts) or not isinstance(body, aiohttp.BodyPartReader):
                            raise ValueError("unexpected parts in the image export")
                        with parts[index].open("wb") as out:
                            while chunk := await body.read_chunk(CHUNK):
                                digest.update(chunk)
                                out.write(chunk)
                        index += 1
                    if index != len(parts):
                        raise ValueError("the image export lacks a part")
                else:
                    with parts[0].open("wb") as out:
                        async for chunk in resp.content.iter_chunked(CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
            if digest.hexdigest() != row.fingerprint:
                raise ValueError("the files sent do not match the image's fingerprint")
            finals = [meta] + ([rootfs] if rootfs is not None else [])
            for fetched, final in zip(parts, finals, strict=True):
                fetched.rename(final)
        finally:
            for fetched in parts:
                with contextlib.suppress(FileNotFoundError):
                    fetched.unlink()

    def changed(self, row: ImageRow, arrived: bool) -> None:
        if not self.membership.clustered:
            return
        task = asyncio.get_running_loop().create_task(self._spread(row, arrived))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _spread(self, row: ImageRow, arrived: bool) -> None:
        others = [m for m in q.list_members(self.db) if m.name != self.membership.name]
        if arrived:
            wanted = int(server_value(get_config(self.db), "cluster.images_minimal_replica"))
            others = [m for m in others if placement.online(self.db, m, self.membership.name)]
            others = others if wanted < 0 else others[: max(0, wanted - 1)]
        body = {
            "fingerprint": row.fingerprint,
            "project": row.project,
            "action": "fetch" if arrived else "drop",
        }
        for member in others:
            try:
                await self.peers.post(member.address, INTERNAL, body)
            except BadRequest as exc:
                log.warning("image %s on member %s: %s", row.fingerprint[:12], member.name, exc)

    async def act(self, fingerprint: str, project: str, action: str) -> None:
        """This member's copy of an image's files (another member asked)."""
        if action == "fetch":
            row = self.images.get(project, fingerprint)
            await self.images.ensure_files(row)
        elif action == "drop":
            if not self.db.one("SELECT 1 FROM images WHERE fingerprint = ?", (fingerprint,)):
                gone = ImageRow(
                    id=0, project=project, fingerprint=fingerprint, filename="", size=0,
                    type="container", architecture="", created_at="", uploaded_at="",
                    split=True,
                )  # fmt: skip
                self.images.drop_files(gone)
        else:
            raise BadRequest(f"Unknown image action {action!r}")
