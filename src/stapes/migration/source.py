"""The sending end of an instance migration (``POST /1.0/instances/NAME {"migration": true}``):
offer the instance's volume and snapshots, take the peer's choices, send the snapshots (oldest
first) then the volume, and wait for the peer's verdict on the control websocket.

A running instance (stateless move) is sent twice when the peer asks for a final pass (Incus
does): once live, then again frozen, so the copy is consistent and the pause short."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest
from stapes.db import instances as q
from stapes.db import snapshots as sq
from stapes.host.idmap import current_map
from stapes.instance import power
from stapes.instance.vm.qemu import QemuDriver
from stapes.migration import records, transfer, wire
from stapes.migration.channel import (
    CHUNK,
    CONTROL,
    FILESYSTEM,
    STATE,
    Channel,
    Dial,
    Links,
    Session,
)
from stapes.migration.session import send_watched
from stapes.migration.transfer import our_features
from stapes.runtime.operations import Operation
from stapes.storage.drivers.btrfs import BtrfsDriver
from stapes.storage.volumes import instance_volume

if TYPE_CHECKING:
    from stapes.instance.service import InstanceService

log = logging.getLogger(__name__)

LXC_CONFIG = "config"
"""liblxc's config file, which a container's volume holds beside rootfs/."""


def fs_type(instance_type: str, driver: str = "") -> int:
    """The transfer an instance's volume goes by: btrfs send streams between btrfs pools (for
    containers), else rsync (and the disk as a block stream for a VM)."""
    if instance_type == "virtual-machine":
        return wire.BLOCK_AND_RSYNC
    return wire.BTRFS if driver == "btrfs" else wire.RSYNC


class InstanceSource(Session):
    def __init__(
        self,
        svc: InstanceService,
        row: q.InstanceRow,
        *,
        instance_only: bool,
        push: Dial | None,
        allow_inconsistent: bool = False,
        live: bool = False,
        leaving: bool = False,
    ) -> None:
        self.svc = svc
        self.row = row
        self.instance_only = instance_only
        self.allow_inconsistent = allow_inconsistent
        self.live = live
        """A running VM moved with its state (QEMU's migration stream on the ``criu`` socket)."""
        self.leaving = leaving
        """A live move within a cluster: once the target has the guest running, the guest here
        stays paused for the caller to end (a copy or a move between servers resumes it)."""
        names = (CONTROL, FILESYSTEM, STATE) if live else (CONTROL, FILESYSTEM)
        self.links = Links(names, dial=push)

    async def run(self, op: Operation) -> None:
        try:
            control = await self.links.get(CONTROL)
            fs = await self.links.get(FILESYSTEM)
            async with self.svc.locks(self.row.project, self.row.name):
                row = self.svc.get(self.row.project, self.row.name)
                await self._send(op, row, control, fs)
        except BaseException as exc:
            await self.tell_failure("source", exc)
            raise
        finally:
            await self.links.close()

    async def _send(self, op: Operation, row: q.InstanceRow, control: Channel, fs: Channel) -> None:
        svc = self.svc
        drv = svc.pools.usable_driver(row.pool)
        running = (await svc.status(row)).status == StatusCode.RUNNING
        if running and row.type == "virtual-machine" and not self.live:
            raise BadRequest(
                "A running virtual machine moves live or not at all: stop it first (--stateless)"
            )
        if self.live and not running:
            raise BadRequest(f"Instance {row.name!r} is not running: there is no state to move")
        snaps = [] if self.instance_only else sq.list_snapshots(svc.db, row.id)
        features = our_features(drv.config)
        offer = wire.MigrationHeader(fs=fs_type(row.type, drv.info().name), predump=False)
        wire.set_rsync_features(offer, features)  # rsync: the fallback either end can do
        if offer.fs == wire.BTRFS:
            wire.set_btrfs_features(offer, [])  # plain send streams, no header of their own
        if self.live:
            offer.criu = wire.VM_QEMU
        elif running:
            offer.criu = wire.NONE
        offer.idmap.extend(records.idmap_entries(current_map(row.config)))
        offer.snapshotNames.extend(s.name for s in snaps)
        offer.snapshots.extend(records.snapshot_message(s) for s in snaps)
        if row.type == "virtual-machine":
            block = drv.block_path(*instance_volume(row))
            offer.volumeSize = block.stat().st_size if block.exists() else 0
        await control.send_message(offer)
        answer = await control.receive_header()
        if answer.fs not in (offer.fs, fs_type(row.type)):
            raise BadRequest(
                f"The peer chose the {wire.FS_NAMES[answer.fs]} transfer; this server sends "
                f"{wire.FS_NAMES[offer.fs]} or {wire.FS_NAMES[fs_type(row.type)]}"
            )
        agreed = [f for f in wire.rsync_features(answer) if f in features]
        wanted = set(answer.snapshotNames) if answer.refresh else {s.name for s in snaps}
        final_pass = running and answer.HasField("criu") and answer.criu == wire.NONE
        chosen = [s for s in snaps if s.name in wanted]
        self.paused_at = 0.0
        if self.live and not (answer.HasField("criu") and answer.criu == wire.VM_QEMU):
            raise BadRequest("The target cannot take a running virtual machine live")
        if self.live:
            sending = self._live_vm(op, row, fs, chosen, agreed)
        elif answer.fs == wire.BTRFS:
            sending = self._subvolumes(op, row, fs, snaps, chosen)
        else:
            sending = self._volumes(op, row, fs, chosen, agreed, final_pass)
        try:
            await send_watched(control, sending)
        except BaseException:
            if self.leaving and self.paused_at:  # the target has not taken it: it runs on here
                with contextlib.suppress(Exception):
                    await self.svc.drivers.get(row.type).unfreeze(self.svc.spec(row))
            raise
        if self.paused_at:  # the target has resumed the guest by the time it says so
            paused = time.monotonic() - self.paused_at
            log.info(
                "live migration of %s: the guest was paused for %.0f ms", row.name, paused * 1000
            )
            transfer.note(op, "live_downtime", f"paused {paused * 1000:.0f} ms")

    async def _live_vm(
        self,
        op: Operation,
        row: q.InstanceRow,
        fs: Channel,
        snaps: list[sq.SnapshotRow],
        features: list[str],
    ) -> None:
        """A running VM: its snapshots, its volume with the disk's data as it is now, then
        QEMU's live migration of its memory on the state socket (the guest runs until QEMU
        pauses it for the last pass), then the disk chunks that changed meanwhile. The guest
        here is resumed afterwards whether the target took it or not (a copy; a move deletes
        it next); if anything failed the target has nothing."""
        drv = self.svc.pools.usable_driver(row.pool)
        driver = self.svc.drivers.get(row.type)
        assert isinstance(driver, QemuDriver)
        block = drv.block_path(*instance_volume(row))
        excludes = ("/" + block.name,)
        bwlimit = drv.config.get("rsync.bwlimit", "")
        await self._send_snapshots(op, row, fs, snaps, features, excludes, bwlimit)
        volume = drv.volume_path(*instance_volume(row))

        async def disk_pass(sent: dict[int, bytes] | None) -> dict[int, bytes]:
            """The volume's files, then the disk's chunks (those whose digest differs from
            ``sent``'s, on the last pass)."""
            meter = transfer.Meter(op, row.name)
            await transfer.send_tree(
                fs, volume, features, bwlimit=bwlimit, excludes=excludes, progress=meter
            )
            return await transfer.send_extents(fs, block, sent, meter)

        digests = await disk_pass(None)
        state = await self.links.get(STATE)
        spec = self.svc.spec(row)
        with tempfile.TemporaryDirectory(prefix="stapes-leave-") as tmp:
            sock = Path(tmp) / "state.sock"
            sent = asyncio.get_running_loop().create_future()

            async def from_qemu(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                try:
                    while data := await reader.read(CHUNK):
                        await state.write(data)
                    await state.end()
                    if not sent.done():
                        sent.set_result(None)
                except BaseException as exc:
                    if not sent.done():
                        sent.set_exception(exc)
                finally:
                    writer.close()

            server = await asyncio.start_unix_server(from_qemu, str(sock))
            try:
                await driver.migrate_out(spec, sock)
                self.paused_at = time.monotonic()  # QEMU paused the guest for its last pass
                await sent
            except BaseException:
                with contextlib.suppress(Exception):
                    await driver.unfreeze(spec)
                raise
            finally:
                server.close()
        try:  # the guest is paused here now: the disk chunks that changed meanwhile
            await disk_pass(digests)
        finally:
            if not self.leaving:
                with contextlib.suppress(Exception):
                    await driver.unfreeze(spec)

    async def _send_snapshots(
        self,
        op: Operation,
        row: q.InstanceRow,
        fs: Channel,
        snaps: list[sq.SnapshotRow],
        features: list[str],
        excludes: tuple[str, ...],
        bwlimit: str,
    ) -> None:
        """Each snapshot's files by rsync, then (a VM's) its disk as a block stream."""
        drv = self.svc.pools.usable_driver(row.pool)
        block_name = drv.block_path(*instance_volume(row)).name
        for snap in snaps:
            path = drv.snapshot_path(*instance_volume(row), snap.name)
            meter = transfer.Meter(op, snap.name)
            await transfer.send_tree(
                fs, path, features, bwlimit=bwlimit, excludes=excludes, progress=meter
            )
            if row.type == "virtual-machine":
                await transfer.send_block(fs, path / block_name, meter)

    async def _subvolumes(
        self,
        op: Operation,
        row: q.InstanceRow,
        fs: Channel,
        snaps: list[sq.SnapshotRow],
        chosen: list[sq.SnapshotRow],
    ) -> None:
        """btrfs send streams: each chosen snapshot incremental from the snapshot before it
        (which the peer has: sent just now, or kept from an earlier copy), then a read-only
        snapshot of the volume (taken with the instance frozen) incremental from the last."""
        drv = self.svc.pools.usable_driver(row.pool)
        assert isinstance(drv, BtrfsDriver)
        sent = {s.name for s in chosen}
        parent = None
        for snap in snaps:
            path = drv.snapshot_path(*instance_volume(row), snap.name)
            if snap.name in sent:
                await transfer.send_subvolume(fs, path, parent, transfer.Meter(op, snap.name))
            parent = path
        async with power.frozen(self.svc, row):  # without this server's liblxc config in it
            copy = await drv.readonly_copy(*instance_volume(row), (LXC_CONFIG,))
        try:
            await transfer.send_subvolume(fs, copy, parent, transfer.Meter(op, row.name))
        finally:
            await drv.drop(copy)

    async def _volumes(
        self,
        op: Operation,
        row: q.InstanceRow,
        fs: Channel,
        snaps: list[sq.SnapshotRow],
        features: list[str],
        final_pass: bool,
    ) -> None:
        drv = self.svc.pools.usable_driver(row.pool)
        bwlimit = drv.config.get("rsync.bwlimit", "")
        vm = row.type == "virtual-machine"
        block_name = drv.block_path(*instance_volume(row)).name
        # the block file goes as a stream of its own; liblxc's config (kept in a container's
        # volume) is this server's and names this server's paths: the peer writes its own
        excludes: tuple[str, ...] = ("/" + block_name,) if vm else ("/" + LXC_CONFIG,)

        def meter(label: str) -> transfer.Meter:
            return transfer.Meter(op, label)

        await self._send_snapshots(op, row, fs, snaps, features, excludes, bwlimit)
        volume = drv.volume_path(*instance_volume(row))
        await transfer.send_tree(
            fs,
            volume,
            features,
            bwlimit=bwlimit,
            excludes=excludes,
            allow_vanished=final_pass or self.allow_inconsistent,
            progress=meter(row.name),
        )
        if vm:
            await transfer.send_block(fs, drv.block_path(*instance_volume(row)), meter(row.name))
        if final_pass:
            async with power.frozen(self.svc, row):
                await transfer.send_tree(
                    fs,
                    volume,
                    features,
                    bwlimit=bwlimit,
                    excludes=excludes,
                    progress=meter(row.name),
                )
