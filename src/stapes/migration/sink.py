"""The receiving end of an instance migration (``POST /1.0/instances`` with
``source.type=migration``): take the peer's offer, answer with what this server will do, then
receive the snapshots (each synced into the volume and snapshotted there, oldest first) and the
volume, shift the files to this instance's id map, and tell the peer it worked.

Pull mode: this server dials the source's operation (its certificate pinned). Push mode: the
source dials this server's operation with the secrets it answered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stapes.api.errors import BadRequest, StapesError
from stapes.api.instance import InstanceSource
from stapes.api.lifecycle import InstanceAction
from stapes.config.keys import VOLATILE_PREFIX, valid, validate_instance_config
from stapes.config.validate import name_problem
from stapes.db import instances as q
from stapes.db import snapshots as sq
from stapes.host import criu
from stapes.host.idmap import IDMAP_PREFIX, IdMap, current_map, reshift_tree
from stapes.instance import power
from stapes.instance.vm.qemu import QemuDriver
from stapes.migration import records, transfer, wire
from stapes.migration.channel import (
    CONTROL,
    FILESYSTEM,
    STATE,
    Channel,
    Dial,
    Links,
    PeerGone,
    Session,
)
from stapes.migration.session import FAREWELL_SECONDS, receive_watched, unless_source_fails
from stapes.migration.source import LXC_CONFIG, fs_type
from stapes.migration.transfer import our_features
from stapes.project import restrictions
from stapes.runtime.operations import Operation
from stapes.storage.drivers.btrfs import BtrfsDriver
from stapes.storage.volumes import instance_volume

if TYPE_CHECKING:
    from stapes.instance.create import Then
    from stapes.instance.service import InstanceService

log = logging.getLogger(__name__)


class InstanceSink(Session):
    def __init__(
        self, source: InstanceSource, instance_type: str = "container", rows_exist: bool = False
    ) -> None:
        if source.mode not in ("pull", "push"):
            raise BadRequest('source.mode must be "pull" or "push" for a migration')
        self.live = source.live
        if source.live and instance_type != "virtual-machine":
            raise BadRequest(
                f"Live migration of a container needs CRIU: "
                f"{criu.problem() or 'live container migration is not implemented yet'}: "
                "move it --stateless"
            )
        dial = None
        if source.mode == "pull":
            dial = Dial(source.operation, dict(source.secrets), source.certificate)
        names = (CONTROL, FILESYSTEM, STATE) if self.live else (CONTROL, FILESYSTEM)
        self.links = Links(names, dial=dial)
        self._verdict: asyncio.Future[tuple[bool, str]] | None = None
        self.instance_only = source.instance_only
        self.refresh = source.refresh
        self.rows_exist = rows_exist
        """A move between members of one cluster: the instance's and its snapshots' rows are
        the cluster's already; only their volumes come."""

    async def receive(self, svc: InstanceService, op: Operation, row: q.InstanceRow) -> None:
        """Fill ``row``'s volume (and snapshots) from the peer; ``row`` is stored already (or,
        refreshing, exists with its volume)."""
        try:
            control = await self.links.get(CONTROL)
            fs = await self.links.get(FILESYSTEM)
            offer = await control.receive_header()
            await self._receive(svc, op, row, control, fs, offer)
        except BaseException as exc:
            await self._fail(exc)
            raise
        if not self.live:
            await self.links.close()

    async def _fail(self, exc: BaseException) -> None:
        await self.tell_failure("target", exc)
        await self.links.close()

    async def _receive(
        self,
        svc: InstanceService,
        op: Operation,
        row: q.InstanceRow,
        control: Channel,
        fs: Channel,
        offer: Any,
    ) -> None:
        drv = svc.pools.usable_driver(row.pool)
        expected = fs_type(row.type)
        if offer.fs != expected and expected != wire.RSYNC:
            raise BadRequest(
                f"The source offers a {wire.FS_NAMES[offer.fs]} transfer; a {row.type} needs "
                f"{wire.FS_NAMES[expected]}"
            )
        if offer.HasField("criu") and offer.criu == wire.CRIU_RSYNC:
            raise BadRequest("Live (CRIU) migration is not supported by this server yet")
        live = offer.HasField("criu") and offer.criu == wire.VM_QEMU
        if live != self.live:
            raise BadRequest(
                "The source and the request disagree on a live migration: the source "
                + ("sends a running VM's state" if live else "sends no running state")
            )
        features = [f for f in wire.rsync_features(offer) if f in our_features(drv.config)]
        offered = list(offer.snapshots) if not self.instance_only else []
        if len(offer.snapshotNames) != len(offer.snapshots):
            raise BadRequest("The source sent snapshot names without their descriptions")
        wanted = self._refresh_snapshots(svc, row, offered) if self.refresh else offered
        for message in wanted if not self.rows_exist else []:
            _check_snapshot(svc, row, message)
        source_map = records.idmap_of(offer)
        btrfs = await self._btrfs_possible(svc, row, offer, source_map)
        answer = wire.MigrationHeader(
            fs=wire.BTRFS if btrfs else expected, predump=False, refresh=self.refresh
        )
        answer.indexHeaderVersion = 0  # no index frame: the header says all this end needs
        wire.set_rsync_features(answer, features)
        if btrfs:
            wire.set_btrfs_features(answer, [])
        answer.snapshotNames.extend(s.name for s in wanted)
        answer.snapshots.extend(wanted)
        final_pass = not btrfs and offer.HasField("criu") and offer.criu == wire.NONE
        if final_pass:  # rsync of a running instance: a last pass once the source is frozen
            answer.criu = wire.NONE
        if live:
            answer.criu = wire.VM_QEMU
        await control.send_message(answer)
        if live:
            self._verdict = asyncio.ensure_future(control.receive_control())
            await unless_source_fails(
                self._verdict, self._live_first(svc, op, row, fs, wanted, features)
            )
            return
        if btrfs:
            receiving = self._subvolumes(svc, op, row, fs, wanted)
        else:
            receiving = self._volumes(svc, op, row, fs, wanted, features, final_pass, source_map)
        await receive_watched(control, receiving)

    async def _btrfs_possible(
        self, svc: InstanceService, row: q.InstanceRow, offer: Any, source_map: IdMap | None
    ) -> bool:
        """Send streams, when both pools are btrfs and the files need no shifting here (a
        received snapshot is read-only); refreshing, only if every snapshot kept here was
        received as a stream (an incremental stream needs its parent's received UUID). Incus's
        streams with a header of their own (its btrfs features) go by rsync."""
        drv = svc.pools.usable_driver(row.pool)
        if offer.fs != wire.BTRFS or row.type != "container" or wire.btrfs_features(offer):
            return False
        if not isinstance(drv, BtrfsDriver) or source_map != current_map(row.config):
            return False
        for kept in getattr(self, "kept", []):
            path = drv.snapshot_path(*instance_volume(row), kept)
            if not await drv.subvolume_uuid(path, "Received UUID"):
                return False
        return True

    async def _live_first(
        self,
        svc: InstanceService,
        op: Operation,
        row: q.InstanceRow,
        fs: Channel,
        snapshots: list[Any],
        features: list[str],
    ) -> None:
        """A running VM's first part: its snapshots, then its volume and the disk's data as
        it is (the last pass sends only the chunks that changed since)."""
        await self._volumes(svc, op, row, fs, snapshots, features, False, None, main=False)
        self._features = features
        self._op = op
        await self._disk_pass(svc, row, fs)

    async def _disk_pass(self, svc: InstanceService, row: q.InstanceRow, fs: Channel) -> None:
        """One pass of a live VM's volume: its files, then the disk chunks the source sends
        (all of its data first, then those that changed while the guest ran)."""
        drv = svc.pools.usable_driver(row.pool)
        volume = drv.volume_path(*instance_volume(row))
        meter = transfer.Meter(self._op, row.name)
        await transfer.receive_tree(fs, volume, self._features, progress=meter)
        (volume / LXC_CONFIG).unlink(missing_ok=True)  # not ours to load, as in _volumes
        await transfer.receive_extents(fs, drv.block_path(*instance_volume(row)), meter)

    def arrive_live(self, svc: InstanceService) -> Then:
        """What the create does instead of a start for a VM moving live: start QEMU waiting
        for the state, feed it the source's state stream, take the disk's last changes once
        the source has paused, resume the guest here, and tell the source it worked."""

        async def arrive(row: q.InstanceRow) -> None:
            try:
                assert self._verdict is not None  # watched since the first part
                await unless_source_fails(self._verdict, self._arrive(svc, row))
                await (await self.links.get(CONTROL)).send_control(None)
                with contextlib.suppress(TimeoutError, PeerGone):
                    await asyncio.wait_for(asyncio.shield(self._verdict), FAREWELL_SECONDS)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await power.stop_unlocked(svc, row, True, 0, announce=False)
                await self._fail(exc)
                raise
            finally:
                if self._verdict is not None:
                    self._verdict.cancel()
                await self.links.close()

        return arrive

    async def _arrive(self, svc: InstanceService, row: q.InstanceRow) -> None:
        state = await self.links.get(STATE)
        fs = await self.links.get(FILESYSTEM)
        driver = svc.drivers.get(row.type)
        assert isinstance(driver, QemuDriver)
        with tempfile.TemporaryDirectory(prefix="stapes-arrive-") as tmp:
            sock = Path(tmp) / "state.sock"
            await power.start_unlocked(svc, row, incoming=sock)
            for _ in range(200):
                if sock.exists():
                    break
                await asyncio.sleep(0.02)
            _, writer = await asyncio.open_unix_connection(str(sock))
            try:
                while data := await state.read():
                    writer.write(data)
                    await writer.drain()
            finally:
                writer.close()
            await driver.migration_arrived(svc.spec(row))
        await self._disk_pass(svc, row, fs)
        await driver.unfreeze(svc.spec(row))

    def _refresh_snapshots(
        self, svc: InstanceService, row: q.InstanceRow, offered: list[Any]
    ) -> list[Any]:
        """Refreshing: drop the target's snapshots the source no longer has (or has anew under
        the same name), and ask only for the ones missing here."""
        have = {s.name: s for s in sq.list_snapshots(svc.db, row.id)}
        keep = {
            m.name
            for m in offered
            if m.name in have
            and records.snapshot_row(m, row.architecture).created_at[:19]
            == have[m.name].created_at[:19]
        }
        self.stale = [s for name, s in have.items() if name not in keep]
        self.kept = sorted(keep)
        return [m for m in offered if m.name not in keep]

    async def _volumes(
        self,
        svc: InstanceService,
        op: Operation,
        row: q.InstanceRow,
        fs: Channel,
        snapshots: list[Any],
        features: list[str],
        final_pass: bool,
        source_map: IdMap | None,
        *,
        main: bool = True,
    ) -> None:
        """The snapshots, each received into the volume then snapshotted, and (``main``) the
        volume, twice with ``final_pass``."""
        drv = svc.pools.usable_driver(row.pool)
        target_map = current_map(row.config) if row.type == "container" else None
        vm = row.type == "virtual-machine"
        if self.refresh:
            volume = drv.volume_path(*instance_volume(row))
            await self._drop_stale(svc, row)
        else:
            volume = await drv.create_volume(*instance_volume(row))
        block = drv.block_path(*instance_volume(row))

        def meter(label: str) -> transfer.Meter:
            return transfer.Meter(op, label)

        async def one_pass(label: str) -> None:
            await transfer.receive_tree(fs, volume, features, progress=meter(label))
            # a liblxc config among the peer's files is not ours to load: this server writes
            # the container's own at start
            (volume / LXC_CONFIG).unlink(missing_ok=True)
            if vm:
                await transfer.receive_block(fs, block, meter(label))
            await _shift(volume, source_map, target_map, vm)

        for message in snapshots:
            await one_pass(message.name)
            await drv.create_snapshot(*instance_volume(row), message.name)
            if not self.rows_exist:
                _record(svc, row, message)
        if main:
            await one_pass(row.name)
        if main and final_pass:
            await one_pass(row.name)

    async def _subvolumes(
        self, svc: InstanceService, op: Operation, row: q.InstanceRow, fs: Channel,
        snapshots: list[Any],
    ) -> None:  # fmt: skip
        """btrfs receive of each snapshot's stream (moved into place as received) and of the
        volume's (a writable snapshot of it becomes the volume)."""
        drv = svc.pools.usable_driver(row.pool)
        assert isinstance(drv, BtrfsDriver)
        if self.refresh:
            await self._drop_stale(svc, row)
        scratch = drv.receive_dir(*instance_volume(row), None)
        try:
            for message in snapshots:
                where = drv.receive_dir(*instance_volume(row), message.name)
                meter = transfer.Meter(op, message.name)
                received = await transfer.receive_subvolume(fs, where, meter)
                await drv.place_received(*instance_volume(row), message.name, received)
                if not self.rows_exist:
                    _record(svc, row, message)
            received = await transfer.receive_subvolume(fs, scratch, transfer.Meter(op, row.name))
            await drv.place_received(*instance_volume(row), None, received)
            (drv.volume_path(*instance_volume(row)) / LXC_CONFIG).unlink(missing_ok=True)
        finally:
            await drv.drop(scratch)

    async def _drop_stale(self, svc: InstanceService, row: q.InstanceRow) -> None:
        drv = svc.pools.usable_driver(row.pool)
        for stale in getattr(self, "stale", []):
            with svc.db.transaction():
                sq.delete_snapshot(svc.db, stale.id)
            await drv.delete_snapshot(*instance_volume(row), stale.name)


def _check_snapshot(svc: InstanceService, row: q.InstanceRow, message: Any) -> None:
    """A snapshot the peer describes is judged as a client's instance would be (keys,
    devices, the project's restrictions) before anything moves: restoring it later must not
    bring in what the project refuses."""
    snap = records.snapshot_row(message, row.architecture)
    local = {k: v for k, v in snap.config.items() if not k.startswith(VOLATILE_PREFIX)}
    problem = name_problem(snap.name)
    if problem is not None:
        raise BadRequest(f"The source sent a snapshot name that can't be used: {problem}")
    try:
        validate_instance_config(local, row.type)
        svc.check_devices(snap.devices, row.type, row.project)
        config, devices = svc.expand_parts(row.project, snap.profiles, local, snap.devices)
        restrictions.check_instance(svc.db, row.project, row.type, config, devices)
    except StapesError as exc:
        raise BadRequest(f"The source's snapshot {snap.name!r} is refused: {exc.message}") from None


def _record(svc: InstanceService, row: q.InstanceRow, message: Any) -> None:
    """The row of a snapshot received for ``row`` (the volatile keys this server knows, with
    the instance's id map)."""
    snap = records.snapshot_row(message, row.architecture)
    snap.instance_id = row.id
    snap.config = {
        k: v
        for k, v in snap.config.items()
        if not k.startswith(VOLATILE_PREFIX) or (valid(k, v) and not k.startswith(IDMAP_PREFIX))
    }
    snap.config |= _idmap_keys(row.config)
    snap.devices = svc.devices_on_pool(snap.devices, snap.profiles, row.project, row.pool)
    with svc.db.transaction():
        sq.insert_snapshot(svc.db, snap)
    svc.events.lifecycle(
        InstanceAction.SNAPSHOT_CREATED,
        f"/1.0/instances/{row.name}/snapshots/{snap.name}",
        project=row.project,
    )


def _idmap_keys(config: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in config.items() if k.startswith(IDMAP_PREFIX)}


async def _shift(volume: Path, old: IdMap | None, new: IdMap | None, vm: bool) -> None:
    if not vm and old != new:
        await asyncio.to_thread(reshift_tree, volume / "rootfs", old, new)
