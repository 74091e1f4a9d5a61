"""The lvm driver: a volume group (on a block device, or on a loop file the pool makes) with a
thin pool; every volume is a thin logical volume (a formatted and mounted filesystem, or a raw
block device), snapshots and copies are thin snapshots. Without ``lvm.use_thinpool`` volumes
are plain (thick) LVs and copies are rsync'd.

It needs the kernel's device-mapper (and its thin-pool target) and lvm2: pool creation checks
both and answers 400 naming what is missing. The commands are built by the pure functions at
the top (unit-tested); the driver runs them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
from pathlib import Path
from typing import ClassVar

from stapes.api.errors import BadRequest, Conflict, MissingHostFeature
from stapes.config import validate as v
from stapes.host import mounts
from stapes.host.run import RunError, run, run_sync
from stapes.storage.drivers.block_file import DEFAULT_BLOCK_SIZE, check_wipe, new_loop_file
from stapes.storage.drivers.dir import VOLUME_DIRS, sync_tree
from stapes.storage.drivers.driver import BLOCK, FILESYSTEM, DriverInfo, StorageDriver

DEFAULT_THINPOOL = "StapesThinPool"
FILESYSTEMS = ("ext4", "xfs", "btrfs")
DEFAULT_FILESYSTEM = "ext4"
DEFAULT_MOUNT_OPTIONS = "discard"
BLOCK_MARK = "root.block"
"""The file that marks a raw block volume's directory (nothing is mounted there)."""
BINARIES = ("pvcreate", "vgcreate", "lvcreate", "lvremove", "lvrename", "lvextend", "lvs")


# -- names and commands (pure) -----------------------------------------------------------------


def lv_name(vol_type: str, name: str, snap: str | None = None) -> str:
    """Incus's LV naming: ``<type>_<name>`` with ``-`` doubled in names, and a snapshot as
    ``<type>_<name>-<snap>``."""
    escaped = name.replace("-", "--")
    if snap is not None:
        escaped += "-" + snap.replace("-", "--")
    return f"{vol_type}_{escaped}"


def parse_lv_name(lv: str) -> tuple[str, str, str | None] | None:
    """(type, name, snapshot) back from ``lv_name`` (None for another LV, such as the thin
    pool)."""
    vol_type, sep, rest = lv.partition("_")
    if not sep or vol_type not in ("containers", "virtual-machines", "images", "custom"):
        return None
    parts = [p.replace("\0", "-") for p in rest.replace("--", "\0").split("-")]
    if len(parts) > 2 or not parts[0]:
        return None
    return vol_type, parts[0], parts[1] if len(parts) == 2 else None


def device(vg: str, lv: str) -> str:
    return f"/dev/{vg}/{lv}"


def size_arg(size: int) -> str:
    """lvm sizes in bytes, rounded up to whole 512-byte sectors."""
    return f"{-(-size // 512) * 512}b"


def thinpool_argv(vg: str, thinpool: str, metadata_size: int | None) -> list[str]:
    argv = ["lvcreate", "--yes", "--wipesignatures", "y", "--type", "thin-pool"]
    argv += ["--extents", "100%FREE", "--name", thinpool]
    if metadata_size:
        argv += ["--poolmetadatasize", size_arg(metadata_size)]
    return [*argv, vg]


def lv_create_argv(vg: str, lv: str, size: int, thinpool: str | None) -> list[str]:
    argv = ["lvcreate", "--yes", "--wipesignatures", "y", "--name", lv]
    if thinpool:
        return [*argv, "--thin", "--virtualsize", size_arg(size), f"{vg}/{thinpool}"]
    return [*argv, "--size", size_arg(size), vg]


def lv_snapshot_argv(
    vg: str, source: str, target: str, *, readonly: bool, thick_size: int | None = None
) -> list[str]:
    """A thin snapshot (or, with ``thick_size``, a classic COW snapshot of that size)."""
    argv = ["lvcreate", "--yes", "--snapshot", "--name", target, "--setactivationskip", "n"]
    if thick_size is not None:
        argv += ["--size", size_arg(thick_size)]
    if readonly:
        argv += ["--permission", "r"]
    return [*argv, f"{vg}/{source}"]


def lv_activate_argv(vg: str, lv: str) -> list[str]:
    return ["lvchange", "--activate", "y", "--ignoreactivationskip", f"{vg}/{lv}"]


def lv_remove_argv(vg: str, lv: str) -> list[str]:
    return ["lvremove", "--force", f"{vg}/{lv}"]


def lv_rename_argv(vg: str, old: str, new: str) -> list[str]:
    return ["lvrename", vg, old, new]


def lv_extend_argv(vg: str, lv: str, size: int) -> list[str]:
    return ["lvextend", "--size", size_arg(size), f"{vg}/{lv}"]


def lvs_argv(vg: str) -> list[str]:
    argv = ["lvs", "--noheadings", "--units", "b", "--nosuffix", "--separator", "|"]
    return [*argv, "-o", "lv_name,lv_size", vg]


def parse_lvs(output: str) -> dict[str, int]:
    """LV name -> size in bytes, from ``lvs_argv`` output."""
    found = {}
    for line in output.splitlines():
        fields = line.strip().split("|")
        if len(fields) == 2 and fields[0]:
            found[fields[0]] = int(float(fields[1]))
    return found


def mkfs_argv(filesystem: str, dev: str) -> list[str]:
    if filesystem == "ext4":
        return ["mkfs.ext4", "-q", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0", dev]
    if filesystem == "xfs":
        return ["mkfs.xfs", "-q", "-f", dev]
    return ["mkfs.btrfs", "-q", "-f", dev]


def grow_fs_argv(filesystem: str, dev: str, mountpoint: Path) -> list[str]:
    if filesystem == "ext4":
        return ["resize2fs", dev]
    if filesystem == "xfs":
        return ["xfs_growfs", str(mountpoint)]
    return ["btrfs", "filesystem", "resize", "max", str(mountpoint)]


def _is_filesystem(value: str) -> None:
    if value not in FILESYSTEMS:
        raise ValueError(f"{value!r} is not one of {', '.join(FILESYSTEMS)}")


def _is_lvm_name(value: str) -> None:
    if not value or value.startswith("-") or "/" in value or value in (".", ".."):
        raise ValueError(f"{value!r} is not a valid LVM name")


# -- the driver --------------------------------------------------------------------------------


class LvmDriver(StorageDriver):
    POOL_KEYS: ClassVar[dict[str, v.Validator]] = {
        "source": v.any_value,
        "source.wipe": v.is_bool,
        "size": v.is_size,
        "lvm.vg_name": _is_lvm_name,
        "lvm.thinpool_name": _is_lvm_name,
        "lvm.use_thinpool": v.is_bool,
        "lvm.thinpool_metadata_size": v.is_size,
        "lvm.vg.force_reuse": v.is_bool,
    }
    VOLUME_KEYS: ClassVar[dict[str, v.Validator]] = {
        "block.filesystem": _is_filesystem,
        "block.mount_options": v.any_value,
    }
    LIVE_POOL_KEYS = ("size",)

    @classmethod
    def info(cls) -> DriverInfo:
        return DriverInfo(
            name="lvm",
            version=_lvm_version(),
            optimized_images=True,
            optimized_snapshots=True,
            optimized_copy=True,
            quotas=True,
            block_volumes=True,
        )

    @classmethod
    def probe(cls) -> None:
        cls.require(
            "/dev/mapper/control",
            "lvm pools need the kernel's device-mapper: there is no /dev/mapper/control "
            "(load the dm_mod module; this kernel may not have it)",
            BINARIES,
            "lvm2",
        )

    @property
    def vg(self) -> str:
        return self.config.get("lvm.vg_name") or self.pool_name

    @property
    def thinpool(self) -> str | None:
        if not v.parse_bool(self.config.get("lvm.use_thinpool", "true")):
            return None
        return self.config.get("lvm.thinpool_name") or DEFAULT_THINPOOL

    # -- the pool ---------------------------------------------------------------------------------

    async def create_pool(self) -> dict[str, str]:
        self.probe()
        if self.thinpool is not None:
            _, targets, _ = await run(["dmsetup", "targets"], check=False)
            if b"thin-pool" not in targets:
                raise MissingHostFeature(
                    "lvm thin pools need the kernel's dm-thin-pool target (load dm_thin_pool), "
                    "or set lvm.use_thinpool=false"
                )
        source = self.config.get("source", "")
        made: dict[str, str] = {"lvm.vg_name": self.vg}
        if self.thinpool:
            made["lvm.thinpool_name"] = self.thinpool
        if not source:
            image, shown = new_loop_file(self.disks, self.pool_name, self.config.get("size"))
            made |= {"source": str(image), "size": shown}
            self.config.update(made)
            try:
                await self._new_vg(await self._attach(image))
            except BaseException:
                await self.delete_pool()
                raise
        elif source.startswith("/"):
            path = Path(source)
            if not path.exists() or not stat.S_ISBLK(path.stat().st_mode):
                raise BadRequest(f"Source {source!r} is not a block device")
            if "size" in self.config:
                raise BadRequest("size only applies to a loop-backed pool, not a block device")
            await check_wipe(source, self.config)
            self.config.update(made)
            await self._new_vg(source)
        else:  # an existing volume group
            made["lvm.vg_name"] = source
            self.config.update(made)
            await self._reuse_vg(source)
        try:
            await self.mount_pool()
        except BaseException:
            await self.delete_pool()
            raise
        return made

    async def _attach(self, image: Path) -> str:
        """The loop device of the pool's image file (attached if it is not)."""
        _, out, _ = await run(["losetup", "--associated", str(image), "--output", "NAME"])
        lines = out.decode().split()
        if len(lines) > 1:
            return lines[1]
        _, out, _ = await run(["losetup", "--find", "--show", str(image)])
        return out.decode().strip()

    async def _new_vg(self, dev: str) -> None:
        await run(["pvcreate", "--yes", "--force", dev])
        await run(["vgcreate", self.vg, dev])
        if self.thinpool:
            metadata = self.config.get("lvm.thinpool_metadata_size")
            await run(
                thinpool_argv(self.vg, self.thinpool, v.parse_size(metadata) if metadata else None)
            )

    async def _reuse_vg(self, vg: str) -> None:
        rc, _, _ = await run(["vgs", vg], check=False)
        if rc != 0:
            raise BadRequest(f"Volume group {vg!r} does not exist (source names a VG or a device)")
        existing = await self._lvs()
        if existing and not v.parse_bool(self.config.get("lvm.vg.force_reuse", "false")):
            raise BadRequest(
                f"Volume group {vg!r} already holds logical volumes: set lvm.vg.force_reuse=true "
                "to share it"
            )
        if self.thinpool and self.thinpool not in existing:
            await run(thinpool_argv(vg, self.thinpool, None))

    async def _lvs(self) -> dict[str, int]:
        _, out, _ = await run(lvs_argv(self.vg))
        return parse_lvs(out.decode())

    async def mount_pool(self) -> None:
        image = self.owned_loop_file()
        if image is not None:
            if not image.exists():
                raise BadRequest(
                    f"The loop file {image} of storage pool {self.pool_name!r} is missing"
                )
            await self._attach(image)
            await run(["vgscan"], check=False)
        await run(["vgchange", "--activate", "y", self.vg])
        self.pool_path.mkdir(mode=0o711, parents=True, exist_ok=True)
        for vol_type in VOLUME_DIRS:
            (self.pool_path / vol_type).mkdir(mode=0o711, exist_ok=True)
        for lv in await self._lvs():
            found = parse_lv_name(lv)
            if found is not None and not self._is_block(found[0], found[1]):
                await self._mount(*found)

    def _is_block(self, vol_type: str, name: str) -> bool:
        """Raw block volumes are marked by a file in their (unmounted) directory."""
        return (self.volume_path(vol_type, name) / BLOCK_MARK).exists()

    async def delete_pool(self) -> None:
        for vol_type in VOLUME_DIRS:
            for path in sorted((self.pool_path / vol_type).glob("**/*"), reverse=True):
                await mounts.umount(path)
        source = self.config.get("source", "")
        if source.startswith("/"):  # the pool made this VG
            await run(["vgremove", "--force", self.vg], check=False)
            image = self.owned_loop_file()
            dev = await self._attach(image) if image is not None and image.exists() else source
            await run(["pvremove", "--force", "--yes", dev], check=False)
            if image is not None:
                await run(["losetup", "--detach", dev], check=False)
                image.unlink(missing_ok=True)
        elif self.thinpool:
            await run(lv_remove_argv(self.vg, self.thinpool), check=False)
        await asyncio.to_thread(shutil.rmtree, self.pool_path, True)

    async def update_pool(self, changed: dict[str, str | None]) -> None:
        await super().update_pool(changed)
        if "size" in changed:
            image = self.owned_loop_file()
            value = changed["size"]
            if image is None or value is None:
                raise BadRequest("size can only be set (grown) on a pool with its own loop file")
            size = v.parse_size(value)
            if size < image.stat().st_size:
                raise BadRequest(f"An lvm pool cannot shrink: {value} is below its current size")
            os.truncate(image, size)
            dev = await self._attach(image)
            await run(["losetup", "--set-capacity", dev])
            await run(["pvresize", dev])
            if self.thinpool:
                await run(["lvextend", "--extents", "+100%FREE", f"{self.vg}/{self.thinpool}"])

    # -- volumes ----------------------------------------------------------------------------------

    def _filesystem(self) -> str:
        return self.config.get("volume.block.filesystem") or DEFAULT_FILESYSTEM

    def _default_size(self) -> int:
        size = self.config.get("volume.size")
        return v.parse_size(size) if size else DEFAULT_BLOCK_SIZE

    def block_path(self, vol_type: str, name: str) -> Path:
        return Path(device(self.vg, lv_name(vol_type, name)))

    def _mountpoint(self, vol_type: str, name: str, snap: str | None) -> Path:
        if snap is None:
            return self.volume_path(vol_type, name)
        return self.snapshot_path(vol_type, name, snap)

    async def _mount(self, vol_type: str, name: str, snap: str | None = None) -> Path:
        target = self._mountpoint(vol_type, name, snap)
        target.mkdir(mode=0o711, parents=True, exist_ok=True)
        if not mounts.is_mountpoint(target):
            filesystem = self._filesystem()
            options = (
                self.config.get("volume.block.mount_options") or DEFAULT_MOUNT_OPTIONS
            ).split(",")
            if snap is not None:
                options.append("ro")
            if filesystem == "xfs":
                options.append("nouuid")  # clones and snapshots share their origin's UUID
            dev = device(self.vg, lv_name(vol_type, name, snap))
            await run(lv_activate_argv(self.vg, lv_name(vol_type, name, snap)))
            await mounts.mount(dev, target, filesystem, [o for o in options if o])
        return target

    async def _umount(self, vol_type: str, name: str, snap: str | None = None) -> None:
        target = self._mountpoint(vol_type, name, snap)
        await mounts.umount(target)
        with contextlib.suppress(OSError):
            target.rmdir()

    async def create_volume(
        self, vol_type: str, name: str, content_type: str = FILESYSTEM, size: int | None = None
    ) -> Path:
        lv = lv_name(vol_type, name)
        if lv in await self._lvs():
            raise Conflict(
                f"Storage volume {vol_type}/{name} already exists on pool {self.pool_name!r}"
            )
        await run(lv_create_argv(self.vg, lv, size or self._default_size(), self.thinpool))
        try:
            if content_type == BLOCK:
                path = self.volume_path(vol_type, name)
                path.mkdir(mode=0o711, parents=True, exist_ok=True)
                (path / BLOCK_MARK).touch()
                return path
            await run(mkfs_argv(self._filesystem(), device(self.vg, lv)))
            return await self._mount(vol_type, name)
        except BaseException:
            await self.delete_volume(vol_type, name)
            raise

    async def _clone(self, source: str, target: str, *, readonly: bool) -> None:
        """A thin snapshot named ``target`` of LV ``source``, activated."""
        thick = None
        if self.thinpool is None:
            thick = (await self._lvs())[source]
        await run(lv_snapshot_argv(self.vg, source, target, readonly=readonly, thick_size=thick))
        await run(lv_activate_argv(self.vg, target))

    async def copy_volume(self, src_type: str, src: str, dst_type: str, dst: str) -> Path:
        if self.thinpool is None:  # classic snapshots are not independent volumes: copy files
            path = await self.create_volume(dst_type, dst)
            await sync_tree(self.volume_path(src_type, src), path)
            return path
        await self._clone(lv_name(src_type, src), lv_name(dst_type, dst), readonly=False)
        return await self._mount(dst_type, dst)

    async def move_volume(self, src_type: str, src: str, dst_type: str, dst: str) -> Path:
        await self._umount(src_type, src)
        await run(lv_rename_argv(self.vg, lv_name(src_type, src), lv_name(dst_type, dst)))
        return await self._mount(dst_type, dst)

    async def refresh_volume(self, src_type: str, src: str, dst_type: str, dst: str) -> None:
        await sync_tree(self.volume_path(src_type, src), self.volume_path(dst_type, dst))

    async def fill_volume(self, vol_type: str, name: str, tree: Path) -> None:
        if not self.volume_exists(vol_type, name):
            await self.create_volume(vol_type, name)
        await sync_tree(tree, self.volume_path(vol_type, name))

    async def _snapshots_of(self, vol_type: str, name: str) -> list[str]:
        found = [parse_lv_name(lv) for lv in await self._lvs()]
        return [f[2] for f in found if f and f[:2] == (vol_type, name) and f[2] is not None]

    async def delete_volume(self, vol_type: str, name: str) -> None:
        for snap in await self._snapshots_of(vol_type, name):
            await self.delete_snapshot(vol_type, name, snap)
        await self._umount(vol_type, name)
        if lv_name(vol_type, name) in await self._lvs():
            await run(lv_remove_argv(self.vg, lv_name(vol_type, name)))
        await asyncio.to_thread(shutil.rmtree, self.volume_path(vol_type, name), True)
        snapshots = self.pool_path / f"{vol_type}-snapshots" / name
        await asyncio.to_thread(shutil.rmtree, snapshots, True)

    async def rename_volume(self, vol_type: str, name: str, new_name: str) -> Path:
        snaps = await self._snapshots_of(vol_type, name)
        block = self._is_block(vol_type, name)
        for snap in snaps:
            await self._umount(vol_type, name, snap)
            new_lv = lv_name(vol_type, new_name, snap)
            await run(lv_rename_argv(self.vg, lv_name(vol_type, name, snap), new_lv))
        if block:
            await run(lv_rename_argv(self.vg, lv_name(vol_type, name), lv_name(vol_type, new_name)))
            path = self.volume_path(vol_type, new_name)
            self.volume_path(vol_type, name).rename(path)
            return path
        path = await self.move_volume(vol_type, name, vol_type, new_name)
        for snap in snaps:
            await self._mount(vol_type, new_name, snap)
        return path

    async def volume_usage(self, vol_type: str, name: str) -> int | None:
        path = self.volume_path(vol_type, name)
        if not mounts.is_mountpoint(path):
            return None
        st = os.statvfs(path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    async def set_quota(
        self, vol_type: str, name: str, size: int | None, content_type: str = FILESYSTEM
    ) -> None:
        lv = lv_name(vol_type, name)
        current = (await self._lvs()).get(lv)
        if size is None or current is None or size == current:
            return  # an LVM volume always has a size: unsetting keeps the one it has
        if size < current:
            raise BadRequest(
                f"lvm volumes cannot shrink: {size} bytes is below the current {current} bytes"
            )
        await run(lv_extend_argv(self.vg, lv, size))
        if content_type == FILESYSTEM:
            dev = device(self.vg, lv)
            await run(grow_fs_argv(self._filesystem(), dev, self.volume_path(vol_type, name)))

    # -- snapshots --------------------------------------------------------------------------------

    async def create_snapshot(self, vol_type: str, name: str, snap: str) -> Path:
        await self._clone(lv_name(vol_type, name), lv_name(vol_type, name, snap), readonly=True)
        return await self._mount(vol_type, name, snap)

    async def delete_snapshot(self, vol_type: str, name: str, snap: str) -> None:
        lv = lv_name(vol_type, name, snap)
        await self._umount(vol_type, name, snap)
        if lv in await self._lvs():
            await run(lv_remove_argv(self.vg, lv))

    async def rename_snapshot(self, vol_type: str, name: str, snap: str, new_snap: str) -> None:
        await self._umount(vol_type, name, snap)
        await run(
            lv_rename_argv(
                self.vg, lv_name(vol_type, name, snap), lv_name(vol_type, name, new_snap)
            )
        )
        await self._mount(vol_type, name, new_snap)

    async def restore_snapshot(self, vol_type: str, name: str, snap: str) -> None:
        if self.thinpool is None:
            await sync_tree(
                self.snapshot_path(vol_type, name, snap), self.volume_path(vol_type, name)
            )
            return
        lv = lv_name(vol_type, name)
        await self._umount(vol_type, name)
        await run(lv_remove_argv(self.vg, lv))
        await self._clone(lv_name(vol_type, name, snap), lv, readonly=False)
        await self._mount(vol_type, name)

    async def volume_from_snapshot(
        self, vol_type: str, name: str, snap: str, dst_type: str, dst: str
    ) -> Path:
        if self.thinpool is None:
            path = await self.create_volume(dst_type, dst)
            await sync_tree(self.snapshot_path(vol_type, name, snap), path)
            return path
        await self._clone(lv_name(vol_type, name, snap), lv_name(dst_type, dst), readonly=False)
        return await self._mount(dst_type, dst)

    async def copy_snapshot(self, vol_type: str, name: str, snap: str, dst: str) -> None:
        await self._clone(
            lv_name(vol_type, name, snap), lv_name(vol_type, dst, snap), readonly=True
        )
        await self._mount(vol_type, dst, snap)


def _lvm_version() -> str:
    """lvm2's version (``lvm version`` prints ``  LVM version:     2.03.16(2) (2022-05-18)``)."""
    if shutil.which("lvm") is None:
        return "unknown"
    try:
        rc, out = run_sync(["lvm", "version"])
    except (OSError, RunError):
        return "unknown"
    for line in out.splitlines() if rc == 0 else []:
        if line.strip().startswith("LVM version:"):
            return line.split(":", 1)[1].split()[0]
    return "unknown"
