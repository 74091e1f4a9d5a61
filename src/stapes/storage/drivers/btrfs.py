"""The ``btrfs`` driver: every volume is a subvolume, copies and snapshots are subvolume
snapshots (instant, copy-on-write), sizes are qgroup limits, backups can be send streams.

The pool is a btrfs filesystem on a loop file it creates (no ``source``), on a block device
(``source=/dev/...``), or a directory of an existing btrfs filesystem (``source=/path``)."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import ClassVar

from stapes.api.errors import BadRequest, Conflict, MissingHostFeature
from stapes.config import validate as v
from stapes.host import mounts
from stapes.host.run import DIES_WITH_DAEMON, RunError, run, run_sync
from stapes.storage.drivers.block_file import (
    check_wipe,
    make_block_file,
    new_loop_file,
    resize_block_file,
)
from stapes.storage.drivers.dir import VOLUME_DIRS, DirDriver, is_abs_dir, sync_tree
from stapes.storage.drivers.driver import BLOCK, FILESYSTEM, DriverInfo

MIN_BTRFS_SIZE = 128 * 1024**2  # below this mkfs.btrfs refuses
DEFAULT_MOUNT_OPTIONS = "user_subvol_rm_allowed"


def _is_btrfs_size(value: str) -> None:
    if v.parse_size(value) < MIN_BTRFS_SIZE:
        raise ValueError(f"{value!r} is too small for a btrfs filesystem (at least 128MiB)")


def subvolume_argv(action: str, *paths: Path, readonly: bool = False) -> list[str]:
    argv = ["btrfs", "subvolume", action]
    if readonly:
        argv.append("-r")
    return argv + [str(p) for p in paths]


def parse_qgroup(output: str, subvolume_id: int) -> tuple[int, int | None]:
    """(referenced bytes, referenced limit or None) of qgroup 0/ID in ``btrfs qgroup show
    --raw -r`` output."""
    for line in output.splitlines():
        fields = line.split()
        if fields and fields[0] == f"0/{subvolume_id}":
            limit = None if fields[3] == "none" else int(fields[3])
            return int(fields[1]), limit
    raise ValueError(f"qgroup 0/{subvolume_id} not in btrfs output")


class BtrfsDriver(DirDriver):
    POOL_KEYS: ClassVar[dict[str, v.Validator]] = {
        "source": is_abs_dir,
        "source.wipe": v.is_bool,
        "size": _is_btrfs_size,
        "btrfs.mount_options": v.any_value,
    }
    LIVE_POOL_KEYS = ("size", "btrfs.mount_options")
    _reflink = True

    @classmethod
    def info(cls) -> DriverInfo:
        return DriverInfo(
            name="btrfs",
            version=_btrfs_version(),
            optimized_images=True,
            optimized_snapshots=True,
            optimized_copy=True,
            optimized_backups=True,
            quotas=True,
            block_volumes=True,
        )

    @classmethod
    def probe(cls) -> None:
        if shutil.which("btrfs") is None or shutil.which("mkfs.btrfs") is None:
            raise MissingHostFeature("btrfs pools need btrfs-progs: apt-get install btrfs-progs")
        with open("/proc/filesystems", encoding="ascii") as f:
            if not any(line.split()[-1] == "btrfs" for line in f if line.strip()):
                raise MissingHostFeature("btrfs pools need the kernel's btrfs filesystem")

    # -- the pool ---------------------------------------------------------------------------------

    def _mount_options(self) -> list[str]:
        options = self.config.get("btrfs.mount_options") or DEFAULT_MOUNT_OPTIONS
        return [o for o in options.split(",") if o]

    def _source_kind(self) -> str:
        """``loop`` (an image file), ``device`` (a block device) or ``dir``."""
        source = Path(self.config["source"])
        if source.is_dir():
            return "dir"
        if source.exists() and stat.S_ISBLK(source.stat().st_mode):
            return "device"
        return "loop"

    async def create_pool(self) -> dict[str, str]:
        self.probe()
        source = self.config.get("source", "")
        made: dict[str, str] = {}
        if not source:
            made = await self._create_loop()
        elif Path(source).exists() and stat.S_ISBLK(Path(source).stat().st_mode):
            if "size" in self.config:
                raise BadRequest("size only applies to a loop-backed pool, not a block device")
            await self._format(source)
        elif Path(source).is_dir() or not Path(source).exists():
            if "size" in self.config:
                raise BadRequest("size only applies to a loop-backed pool, not a directory")
            await self._prepare_dir(Path(source))
        else:
            raise BadRequest(
                f"Source {source!r} is neither a block device nor a directory (leave source "
                "empty to have the pool make its own loop file)"
            )
        self.config.update(made)
        try:
            await self.mount_pool()
        except BaseException:
            await self.delete_pool()
            raise
        return made or {"source": source}

    async def _create_loop(self) -> dict[str, str]:
        image, shown = new_loop_file(self.disks, self.pool_name, self.config.get("size"))
        try:
            await run(["mkfs.btrfs", "-q", str(image)])
        except BaseException:
            image.unlink(missing_ok=True)
            raise
        return {"source": str(image), "size": shown}

    async def _format(self, device: str) -> None:
        await check_wipe(device, self.config)
        await run(["mkfs.btrfs", "-q", "-f", device])

    async def _prepare_dir(self, source: Path) -> None:
        where = source if source.exists() else source.parent
        if not where.is_dir() or mounts.fs_type(where) != "btrfs":
            raise BadRequest(f"Source path {str(source)!r} is not on a btrfs filesystem")
        if source.exists():
            if any(source.iterdir()):
                raise BadRequest(
                    f"Source path {str(source)!r} isn't empty: give an empty or new directory"
                )
        else:
            await run(subvolume_argv("create", source))

    async def mount_pool(self) -> None:
        source = self.config["source"]
        kind = self._source_kind()
        if kind == "dir":
            if not self.pool_path.is_symlink():
                self.pool_path.parent.mkdir(parents=True, exist_ok=True)
                self.pool_path.symlink_to(source)
        else:
            if not Path(source).exists():
                raise BadRequest(
                    f"The source {source!r} of storage pool {self.pool_name!r} is missing"
                )
            self.pool_path.mkdir(mode=0o711, parents=True, exist_ok=True)
            if not mounts.is_mountpoint(self.pool_path):
                options = self._mount_options() + (["loop"] if kind == "loop" else [])
                await mounts.mount(source, self.pool_path, "btrfs", options)
        self.pool_path.chmod(0o711)
        for vol_type in VOLUME_DIRS:
            path = self.pool_path / vol_type
            path.mkdir(exist_ok=True)
            path.chmod(0o711)

    async def delete_pool(self) -> None:
        if self.config.get("source") and self._source_kind() == "dir":
            for vol_type in VOLUME_DIRS:
                await self._delete_tree(self.pool_path / vol_type)
            if self.pool_path.is_symlink():
                self.pool_path.unlink()
            return
        await mounts.umount(self.pool_path)
        with contextlib.suppress(OSError):
            self.pool_path.rmdir()
        image = self.owned_loop_file()
        if image is not None:
            image.unlink(missing_ok=True)

    async def update_pool(self, changed: dict[str, str | None]) -> None:
        await super().update_pool(changed)
        if "size" in changed:
            await self._grow(changed["size"])
        if "btrfs.mount_options" in changed:
            options = changed["btrfs.mount_options"] or DEFAULT_MOUNT_OPTIONS
            await run(["mount", "-o", f"remount,{options}", str(self.pool_path)])

    async def _grow(self, value: str | None) -> None:
        image = self.owned_loop_file()
        if image is None or value is None:
            raise BadRequest("size can only be set (grown) on a pool with its own loop file")
        size = v.parse_size(value)
        if size < image.stat().st_size:
            raise BadRequest(f"A btrfs pool cannot shrink: {value} is below its current size")
        os.truncate(image, size)
        device = mounts.mount_of(self.pool_path).source
        await run(["losetup", "-c", device])
        await run(["btrfs", "filesystem", "resize", "max", str(self.pool_path)])

    # -- subvolumes -------------------------------------------------------------------------------

    async def _nested(self, path: Path) -> list[Path]:
        """Subvolumes below ``path`` (a container's own btrfs subvolumes), deepest first."""
        _, out, _ = await run(["btrfs", "subvolume", "list", "-o", str(path)], check=False)
        top = mounts.mount_of(path).target
        found = []
        for line in out.decode().splitlines():
            rel = line.split(" path ", 1)[-1].strip()
            candidate = top / rel.removeprefix("<FS_TREE>/")
            with contextlib.suppress(ValueError):
                candidate.relative_to(path)
                found.append(candidate)
        return sorted(found, key=lambda p: len(p.parts), reverse=True)

    async def _remove(self, path: Path) -> None:
        """Delete a subvolume (and the subvolumes below it), or a plain directory."""
        if not path.exists():
            return
        if path.stat().st_ino != 256:  # not a subvolume: a plain directory
            await super()._remove(path)
            return
        for nested in await self._nested(path):
            await run(["btrfs", "property", "set", str(nested), "ro", "false"], check=False)
            await run(subvolume_argv("delete", nested))
        await run(["btrfs", "property", "set", str(path), "ro", "false"], check=False)
        await run(subvolume_argv("delete", path))

    async def _delete_tree(self, root: Path) -> None:
        """Delete a directory whose entries may be subvolumes (a snapshot directory)."""
        if not root.exists():
            return
        if root.stat().st_ino == 256:
            await self._remove(root)
            return
        for entry in root.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                await self._delete_tree(entry)
            else:
                entry.unlink()
        root.rmdir()

    async def _clone(self, source: Path, target: Path, readonly: bool = False) -> None:
        """A subvolume snapshot: instant, copy-on-write."""
        if target.exists():
            raise Conflict(f"{target.name!r} already exists on pool {self.pool_name!r}")
        await run(subvolume_argv("snapshot", source, target, readonly=readonly))

    async def create_volume(
        self, vol_type: str, name: str, content_type: str = FILESYSTEM, size: int | None = None
    ) -> Path:
        path = self.volume_path(vol_type, name)
        if path.exists():
            raise Conflict(
                f"Storage volume {vol_type}/{name} already exists on pool {self.pool_name!r}"
            )
        await run(subvolume_argv("create", path))
        try:
            path.chmod(0o711)
            if content_type == BLOCK:
                await run(["chattr", "+C", str(path)], check=False)  # no CoW for disk images
                make_block_file(self.block_path(vol_type, name), size)
        except BaseException:
            await self._remove(path)
            raise
        return path

    async def fill_volume(self, vol_type: str, name: str, tree: Path) -> None:
        path = self.volume_path(vol_type, name)
        if self.volume_exists(vol_type, name):
            await sync_tree(tree, path)
            return
        await self.create_volume(vol_type, name)
        # a subvolume is another directory tree: reflink the files in rather than copy them
        await run(
            [*DIES_WITH_DAEMON, "cp", "-a", "--reflink=auto", f"{tree}/.", str(path)],
            timeout=24 * 3600,
        )

    async def subvolume_uuid(self, path: Path, which: str = "UUID") -> str:
        """A subvolume's UUID (``which``: "Received UUID" for the one it was received as)."""
        _, out, _ = await run(["btrfs", "subvolume", "show", str(path)])
        for line in out.decode().splitlines():
            key, _, value = line.strip().partition(":")
            if key == which:
                return value.strip().strip("-")
        return ""

    async def delete_volume(self, vol_type: str, name: str) -> None:
        await self._delete_tree(self._snapshots_dir(vol_type, name))
        await self._remove(self.volume_path(vol_type, name))

    # -- quotas -----------------------------------------------------------------------------------

    async def _subvolume_id(self, path: Path) -> int:
        _, out, _ = await run(["btrfs", "subvolume", "show", str(path)])
        for line in out.decode().splitlines():
            key, _, value = line.strip().partition(":")
            if key == "Subvolume ID":
                return int(value)
        raise ValueError(f"no subvolume id for {path}")

    def _quotas_enabled(self) -> bool:
        return (self.pool_path / ".quota-enabled").exists()

    async def _enable_quotas(self) -> None:
        """Quotas cost on every write, so a pool turns them on with its first size."""
        if self._quotas_enabled():
            return
        await run(["btrfs", "quota", "enable", str(self.pool_path)])
        await run(["btrfs", "quota", "rescan", "-w", str(self.pool_path)], check=False)
        (self.pool_path / ".quota-enabled").touch()

    async def _qgroup(self, path: Path) -> tuple[int, int | None]:
        subvolume_id = await self._subvolume_id(path)
        await run(["sync", "-f", str(path)])
        _, out, _ = await run(["btrfs", "qgroup", "show", "--raw", "-r", "-f", str(path)])
        return parse_qgroup(out.decode(), subvolume_id)

    async def set_quota(
        self, vol_type: str, name: str, size: int | None, content_type: str = FILESYSTEM
    ) -> None:
        if content_type == BLOCK:
            resize_block_file(self.block_path(vol_type, name), size)
            return
        path = self.volume_path(vol_type, name)
        if size is None:
            if self._quotas_enabled():
                await run(["btrfs", "qgroup", "limit", "none", str(path)])
            return
        await self._enable_quotas()
        used, _ = await self._qgroup(path)
        if size < used:
            raise BadRequest(
                f"The size {size} bytes is below what volume {name!r} already uses "
                f"({used} bytes): free space in it first or choose a larger size"
            )
        await run(["btrfs", "qgroup", "limit", str(size), str(path)])

    async def volume_usage(self, vol_type: str, name: str) -> int | None:
        if not self._quotas_enabled():
            return await super().volume_usage(vol_type, name)
        try:
            used, _ = await self._qgroup(self.volume_path(vol_type, name))
        except (RunError, ValueError):
            return None
        return used

    # -- send streams -----------------------------------------------------------------------------

    async def send_streams(
        self,
        vol_type: str,
        name: str,
        snapshots: list[str],
        exclude: tuple[str, ...],
        files: dict[str | None, Path],
    ) -> dict[str | None, str]:
        """Read-only copies of the snapshots and of the volume (named as Incus names them in
        its streams: the snapshot's name, ``.backup`` for the volume) without the ``exclude``
        files, then ``btrfs send`` of each, incremental from the one before."""
        session = self.pool_path / f".send-{vol_type}-{name}"
        await self._delete_tree(session)
        session.mkdir(mode=0o700)
        try:
            origins: dict[str | None, Path] = {
                s: self._existing_snapshot(vol_type, name, s) for s in snapshots
            }
            origins[None] = self.volume_path(vol_type, name)
            parent: Path | None = None
            for key, origin in origins.items():
                copy = session / (key or ".backup")
                await self._clone(origin, copy, readonly=not exclude)
                if exclude:
                    for excluded in exclude:
                        (copy / excluded).unlink(missing_ok=True)
                    await run(["btrfs", "property", "set", str(copy), "ro", "true"])
                argv = ["btrfs", "send", "-q", "-f", str(files[key])]
                await run([*argv, *(["-p", str(parent)] if parent else []), str(copy)])
                parent = copy
            return {key: await self.subvolume_uuid(origin) for key, origin in origins.items()}
        finally:
            await self._delete_tree(session)

    async def receive_streams(
        self, vol_type: str, name: str, streams: list[tuple[str | None, Path]]
    ) -> None:
        """``btrfs receive`` every stream into one scratch directory (so each incremental
        stream finds its parent there), then snapshot each received subvolume into place:
        read-only for a snapshot, writable for the volume (snapshot None)."""
        scratch = self.pool_path / f".receive-{vol_type}-{name}"
        await self._delete_tree(scratch)
        scratch.mkdir(mode=0o700)
        try:
            received: list[tuple[str | None, Path]] = []
            for snap, stream in streams:
                before = set(scratch.iterdir())
                await run(["btrfs", "receive", "-q", "-f", str(stream), str(scratch)])
                new = set(scratch.iterdir()) - before
                if len(new) != 1:
                    raise BadRequest(f"The stream {stream.name!r} holds no single subvolume")
                received.append((snap, new.pop()))
            for snap, path in received:
                target = (
                    self.volume_path(vol_type, name)
                    if snap is None
                    else self.snapshot_path(vol_type, name, snap)
                )
                if target.exists():
                    raise Conflict(f"{target.name!r} already exists on pool {self.pool_name!r}")
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                await self._clone(path, target, readonly=snap is not None)
        finally:
            await self._delete_tree(scratch)

    # -- migration: send streams over the wire ----------------------------------------------

    async def readonly_copy(self, vol_type: str, name: str, exclude: tuple[str, ...] = ()) -> Path:
        """A read-only snapshot of the volume to send (``btrfs send`` reads only those),
        without the ``exclude`` files at its top; the caller removes it with ``drop``."""
        target = self.pool_path / f".migrate-{vol_type}-{name}-{uuid.uuid4().hex[:8]}"
        await self._clone(self.volume_path(vol_type, name), target, readonly=not exclude)
        if exclude:
            for excluded in exclude:
                (target / excluded).unlink(missing_ok=True)
            await run(["btrfs", "property", "set", str(target), "ro", "true"])
        return target

    async def drop(self, path: Path) -> None:
        await self._delete_tree(path)

    def receive_dir(self, vol_type: str, name: str, snap: str | None) -> Path:
        """Where ``btrfs receive`` writes a stream: a snapshot's own directory (a received
        subvolume is read-only and cannot be moved, and it must stay as received to be the
        parent of a later incremental stream); a scratch directory for the volume."""
        if snap is not None:
            where = self.snapshot_path(vol_type, name, snap).parent
        else:
            where = self.pool_path / f".migrate-in-{vol_type}-{name}"
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        return where

    async def place_received(
        self, vol_type: str, name: str, snap: str | None, received: Path
    ) -> None:
        """Put a received subvolume in place: a snapshot received under its own name is there
        already (otherwise a read-only snapshot of it is); the volume is a writable snapshot
        of it, replacing the volume if it exists."""
        if snap is not None:
            target = self.snapshot_path(vol_type, name, snap)
            if received != target:
                await self._clone(received, target, readonly=True)
                await self._remove(received)
            return
        volume = self.volume_path(vol_type, name)
        fresh = volume.with_name(name + ".received")
        await self._remove(fresh)
        await self._clone(received, fresh)
        await self._delete_tree(received.parent)
        await self._remove(volume)
        fresh.rename(volume)


@functools.cache
def _btrfs_version() -> str:
    """btrfs-progs' version (``btrfs --version`` prints ``btrfs-progs v6.2``)."""
    rc, out = run_sync(["btrfs", "--version"])
    return out.split()[-1].lstrip("v") if rc == 0 and out.strip() else "unknown"
