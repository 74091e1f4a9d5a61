"""Both ends of a custom storage volume's migration (``POST .../volumes/custom/NAME
{"migration": true}`` and ``source.type=migration`` on create): the instance protocol without
an instance: snapshots (oldest first) then the volume, rsync for a filesystem volume, the raw
bytes for a block one; between two btrfs pools, btrfs send streams (each snapshot incremental
from the one before, so a refresh sends only what changed since the last snapshot the target
has). The sink makes the volume on its pool and records the rows only once everything has
arrived."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stapes.api.errors import BadRequest, StapesError
from stapes.api.times import timestamp
from stapes.config.validate import name_problem
from stapes.db import storage as q
from stapes.migration import records, transfer, wire
from stapes.migration.channel import CONTROL, FILESYSTEM, Channel, Dial, Links, Session
from stapes.migration.session import receive_watched, send_watched
from stapes.migration.transfer import our_features
from stapes.runtime.operations import Operation
from stapes.storage.config import validate_volume_config
from stapes.storage.drivers.btrfs import BtrfsDriver
from stapes.storage.drivers.driver import BLOCK, BLOCK_FILE, StorageDriver

log = logging.getLogger(__name__)


@dataclass
class VolumeOnPool:
    """A custom volume as the transfer sees it: where its content and snapshots are."""

    driver: StorageDriver
    disk: str
    content_type: str

    def path(self, snap: str = "") -> Path:
        if snap:
            return self.driver.snapshot_path("custom", self.disk, snap)
        return self.driver.volume_path("custom", self.disk)

    @property
    def fs(self) -> int:
        """The transfer every peer can do for it."""
        return wire.BLOCK_AND_RSYNC if self.content_type == BLOCK else wire.RSYNC

    @property
    def streams(self) -> BtrfsDriver | None:
        """Its btrfs pool's driver, when it can go as btrfs send streams."""
        driver = self.driver
        return driver if isinstance(driver, BtrfsDriver) and self.content_type != BLOCK else None


def _snapshot_message(snap: q.VolumeSnapshotRow) -> Any:
    msg = wire.Snapshot(
        name=snap.name,
        ephemeral=False,
        architecture=0,
        stateful=False,
        description=snap.description,
        creation_date=records.unix_time(snap.created_at) * 10**9,  # Incus: nanoseconds here
        expiry_date=records.unix_time(snap.expires_at) * 10**9,
    )
    for key, value in snap.config.items():
        msg.localConfig.add(key=key, value=value)
    return msg


def snapshot_rows(offer: Any) -> list[q.VolumeSnapshotRow]:
    """The volume snapshots a source offers (names alone from a peer that sends no more)."""
    described = {m.name: m for m in offer.snapshots}
    rows = []
    for name in offer.snapshotNames:
        problem = name_problem(name)
        if problem is not None:
            raise BadRequest(f"The source sent a snapshot name that can't be used: {problem}")
        msg = described.get(name)
        created = records.stored_time(msg.creation_date) if msg is not None else ""
        expires = records.stored_time(msg.expiry_date) if msg is not None else ""
        if expires and expires <= created:
            expires = ""  # Incus 6.0 sends the creation time as expiry when there is none
        rows.append(
            q.VolumeSnapshotRow(
                id=0,
                volume_id=0,
                name=name,
                created_at=created or timestamp(datetime.now(UTC)),
                expires_at=expires,
                description=msg.description if msg is not None else "",
                config={c.key: c.value for c in msg.localConfig} if msg is not None else {},
            )
        )
    return rows


async def _send_one(
    fs: Channel, vol: VolumeOnPool, snap: str, features: list[str], op: Operation
) -> None:
    meter = transfer.Meter(op, snap or vol.disk)
    if vol.content_type == BLOCK:
        await transfer.send_block(fs, vol.path(snap) / BLOCK_FILE, meter)
    else:
        await transfer.send_tree(
            fs, vol.path(snap), features, bwlimit=vol.driver.config.get("rsync.bwlimit", ""),
            progress=meter,
        )  # fmt: skip


async def _receive_one(
    fs: Channel, vol: VolumeOnPool, features: list[str], op: Operation, label: str
) -> None:
    meter = transfer.Meter(op, label)
    if vol.content_type == BLOCK:
        await transfer.receive_block(fs, vol.path() / BLOCK_FILE, meter)
    else:
        await transfer.receive_tree(fs, vol.path(), features, progress=meter)


class VolumeSource(Session):
    def __init__(
        self,
        vol: VolumeOnPool,
        snapshots: list[q.VolumeSnapshotRow],
        push: Dial | None,
        index: dict[str, Any],
    ) -> None:
        self.vol = vol
        self.snapshots = snapshots
        self.index = index
        """The volume and its snapshots as the API shows them: the index frame's config."""
        self.links = Links((CONTROL, FILESYSTEM), dial=push)

    async def run(self, op: Operation) -> None:
        try:
            control = await self.links.get(CONTROL)
            fs = await self.links.get(FILESYSTEM)
            features = our_features(self.vol.driver.config)
            streams = self.vol.streams is not None
            offer = wire.MigrationHeader(
                fs=wire.BTRFS if streams else self.vol.fs, predump=False, indexHeaderVersion=1
            )
            wire.set_rsync_features(offer, features)  # rsync: the fallback either end can do
            if streams:
                wire.set_btrfs_features(offer, [])  # plain send streams, no header of their own
            offer.snapshotNames.extend(s.name for s in self.snapshots)
            offer.snapshots.extend(_snapshot_message(s) for s in self.snapshots)
            # always present: Incus 6.0's volume sink reads it without looking (a nil
            # pointer crashes incusd)
            offer.volumeSize = (
                (self.vol.path() / BLOCK_FILE).stat().st_size
                if self.vol.content_type == BLOCK
                else 0
            )
            log.debug("volume migration: offer sent (%s)", offer)
            await control.send_message(offer)
            answer = await control.receive_header()
            log.debug("volume migration: answer received (%s)", answer)
            if answer.fs not in (offer.fs, self.vol.fs):
                raise BadRequest(
                    f"The peer chose the {wire.FS_NAMES[answer.fs]} transfer; this server "
                    f"sends {wire.FS_NAMES[offer.fs]} or {wire.FS_NAMES[self.vol.fs]}"
                )
            agreed = [f for f in wire.rsync_features(answer) if f in features]
            wanted = (
                list(answer.snapshotNames) if answer.refresh else [s.name for s in self.snapshots]
            )

            async def sending() -> None:
                if answer.indexHeaderVersion >= 1:
                    await self._index(fs, wanted)
                if answer.fs == wire.BTRFS:
                    await self._streams(fs, wanted, op)
                    return
                for snap in wanted:
                    await _send_one(fs, self.vol, snap, agreed, op)
                await _send_one(fs, self.vol, "", agreed, op)

            await send_watched(control, sending())
        except BaseException as exc:
            await self.tell_failure("source", exc)
            raise
        finally:
            await self.links.close()

    async def _streams(self, fs: Channel, wanted: list[str], op: Operation) -> None:
        """btrfs send streams: each wanted snapshot incremental from the snapshot before it
        (which the peer has: sent just now, or kept from an earlier copy), then a read-only
        snapshot of the volume incremental from the last."""
        drv = self.vol.streams
        assert drv is not None
        parent = None
        for snap in self.snapshots:
            path = self.vol.path(snap.name)
            if snap.name in wanted:
                await transfer.send_subvolume(fs, path, parent, transfer.Meter(op, snap.name))
            parent = path
        copy = await drv.readonly_copy("custom", self.vol.disk)
        try:
            await transfer.send_subvolume(fs, copy, parent, transfer.Meter(op, self.vol.disk))
        finally:
            await drv.drop(copy)

    async def _index(self, fs: Channel, wanted: list[str]) -> None:
        """The index frame (Incus's index header version 1): the volume's description as JSON,
        then the peer's receipt (its status code), each ended by a barrier."""
        config = dict(self.index)
        config["volume_snapshots"] = [
            s for s in config.get("volume_snapshots", []) if s["name"] in wanted
        ]
        await fs.write(json.dumps({"config": config}).encode())
        await fs.end()
        receipt = b""
        while chunk := await fs.read():
            receipt += chunk
        try:
            status = json.loads(receipt or b"{}")
        except ValueError:
            raise BadRequest(
                "The target answered the index frame with something unreadable"
            ) from None
        if status.get("StatusCode", 200) != 200:
            raise BadRequest(f"The target refused the volume: {status.get('Error') or 'no reason'}")


class VolumeSink(Session):
    def __init__(self, dial: Dial | None, *, volume_only: bool, refresh: bool) -> None:
        self.links = Links((CONTROL, FILESYSTEM), dial=dial)
        self.volume_only = volume_only
        self.refresh = refresh
        self.streamed = False
        """The volume came as btrfs send streams (its size limit is to be set again)."""

    async def receive(
        self, op: Operation, vol: VolumeOnPool, have: list[str]
    ) -> list[q.VolumeSnapshotRow]:
        """Fill ``vol`` (made already) from the peer; return the snapshots it made. ``have``:
        the snapshots the volume has (refreshing), which are not sent again."""
        try:
            control = await self.links.get(CONTROL)
            fs = await self.links.get(FILESYSTEM)
            offer = await control.receive_header()
            log.debug("volume migration: offer received (%s)", offer)
            if offer.fs != vol.fs and not (offer.fs == wire.BTRFS and vol.fs == wire.RSYNC):
                raise BadRequest(
                    f"The source offers a {wire.FS_NAMES[offer.fs]} transfer; a "
                    f"{vol.content_type} volume needs {wire.FS_NAMES[vol.fs]}"
                )
            features = [
                f for f in wire.rsync_features(offer) if f in our_features(vol.driver.config)
            ]
            offered = [] if self.volume_only else snapshot_rows(offer)
            for snap in offered:  # their config is stored with them: judged as a client's
                try:
                    validate_volume_config(type(vol.driver), snap.config, vol.content_type)
                except StapesError as exc:
                    raise BadRequest(
                        f"The source's snapshot {snap.name!r} is refused: {exc.message}"
                    ) from None
            wanted = [s for s in offered if s.name not in have]
            kept = [s.name for s in offered if s.name in have]
            streams = await _streams_possible(vol, offer, kept)
            answer = wire.MigrationHeader(
                fs=wire.BTRFS if streams else vol.fs, predump=False, refresh=self.refresh
            )
            answer.indexHeaderVersion = 0
            wire.set_rsync_features(answer, features)
            if streams:
                wire.set_btrfs_features(answer, [])
            answer.snapshotNames.extend(s.name for s in wanted)
            await control.send_message(answer)

            async def receiving() -> None:
                if streams:
                    await _receive_streams(fs, vol, [s.name for s in wanted], op)
                    self.streamed = True
                    return
                for snap in wanted:
                    await _receive_one(fs, vol, features, op, snap.name)
                    await vol.driver.create_snapshot("custom", vol.disk, snap.name)
                await _receive_one(fs, vol, features, op, vol.disk)

            await receive_watched(control, receiving())
            return wanted
        except BaseException as exc:
            await self.tell_failure("target", exc)
            raise
        finally:
            await self.links.close()


async def _streams_possible(vol: VolumeOnPool, offer: Any, kept: list[str]) -> bool:
    """Send streams, when both pools are btrfs; refreshing, only if every snapshot kept here
    was received as a stream (an incremental stream needs its parent's received UUID).
    Incus's streams with a header of their own (its btrfs features) go by rsync."""
    drv = vol.streams
    if drv is None or offer.fs != wire.BTRFS or wire.btrfs_features(offer):
        return False
    for name in kept:
        if not await drv.subvolume_uuid(vol.path(name), "Received UUID"):
            return False
    return True


async def _receive_streams(
    fs: Channel, vol: VolumeOnPool, snapshots: list[str], op: Operation
) -> None:
    """btrfs receive of each snapshot's stream (in place as received) and of the volume's (a
    writable snapshot of it becomes the volume)."""
    drv = vol.streams
    assert drv is not None
    scratch = drv.receive_dir("custom", vol.disk, None)
    try:
        for name in snapshots:
            where = drv.receive_dir("custom", vol.disk, name)
            received = await transfer.receive_subvolume(fs, where, transfer.Meter(op, name))
            await drv.place_received("custom", vol.disk, name, received)
        received = await transfer.receive_subvolume(fs, scratch, transfer.Meter(op, vol.disk))
        await drv.place_received("custom", vol.disk, None, received)
    finally:
        await drv.drop(scratch)
