"""The zfs driver: a zpool (on a block device, or on a loop file the pool makes) or an existing
dataset; every filesystem volume is a dataset mounted at its volume path, block volumes are
zvols, snapshots are ZFS snapshots (``@snapshot-NAME``, readable below ``.zfs/snapshot``),
copies are clones (``zfs.clone_copy``, the default) or full send/receive copies, optimized
backups are ``zfs send`` streams.

It needs the ZFS kernel module and zfsutils: pool creation checks both and answers 400 naming
what is missing. The commands are built by the pure functions at the top (unit-tested); the
driver runs them."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import stat
import uuid
from pathlib import Path
from typing import ClassVar

from stapes.api.errors import BadRequest, Conflict
from stapes.config import validate as v
from stapes.host.run import RunError, run, run_sync, spawn
from stapes.storage.drivers.block_file import DEFAULT_BLOCK_SIZE, check_wipe, new_loop_file
from stapes.storage.drivers.dir import VOLUME_DIRS, sync_tree
from stapes.storage.drivers.driver import (
    BLOCK,
    FILESYSTEM,
    DriverInfo,
    PoolResources,
    StorageDriver,
)

SNAPSHOT_PREFIX = "snapshot-"
VOLUME_TYPES = ("containers", "virtual-machines", "images", "custom")


# -- names and commands (pure) -----------------------------------------------------------------


def snapshot_name(dataset: str, snap: str) -> str:
    """Incus's naming of a volume snapshot: ``DATASET@snapshot-NAME``."""
    return f"{dataset}@{SNAPSHOT_PREFIX}{snap}"


def zpool_create_argv(pool: str, vdev: str) -> list[str]:
    return ["zpool", "create", "-f", "-m", "none", "-O", "compression=on", pool, vdev]


def dataset_create_argv(dataset: str, mountpoint: Path | None) -> list[str]:
    where = str(mountpoint) if mountpoint else "none"
    return ["zfs", "create", "-p", "-o", f"mountpoint={where}", dataset]


def zvol_create_argv(dataset: str, size: int) -> list[str]:
    return ["zfs", "create", "-p", "-V", str(-(-size // 8192) * 8192), dataset]


def clone_argv(origin: str, dataset: str, mountpoint: Path) -> list[str]:
    return ["zfs", "clone", "-o", f"mountpoint={mountpoint}", origin, dataset]


def destroy_argv(name: str) -> list[str]:
    return ["zfs", "destroy", "-r", name]


def rename_argv(old: str, new: str) -> list[str]:
    return ["zfs", "rename", old, new]


def set_argv(dataset: str, key: str, value: str) -> list[str]:
    return ["zfs", "set", f"{key}={value}", dataset]


def send_argv(snapshot: str, parent: str | None) -> list[str]:
    return ["zfs", "send", *(["-i", parent] if parent else []), snapshot]


def receive_argv(dataset: str) -> list[str]:
    return ["zfs", "receive", "-F", "-u", dataset]


def list_argv(root: str) -> list[str]:
    return ["zfs", "list", "-H", "-p", "-r", "-t", "all", "-o", "name,used,origin", root]


def parse_list(output: str) -> dict[str, tuple[int, str]]:
    """Dataset or snapshot name -> (bytes used, origin or "-"), from ``list_argv`` output."""
    found = {}
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) == 3:
            found[fields[0]] = (int(fields[1]), fields[2])
    return found


def _is_dataset_name(value: str) -> None:
    if not value or value.startswith("/") or "@" in value or " " in value:
        raise ValueError(f"{value!r} is not a ZFS pool or dataset name")


# -- the driver --------------------------------------------------------------------------------


class ZfsDriver(StorageDriver):
    POOL_KEYS: ClassVar[dict[str, v.Validator]] = {
        "source": v.any_value,
        "source.wipe": v.is_bool,
        "size": v.is_size,
        "zfs.pool_name": _is_dataset_name,
        "zfs.clone_copy": v.is_bool,
        "zfs.export": v.is_bool,
    }
    VOLUME_KEYS: ClassVar[dict[str, v.Validator]] = {
        "zfs.use_refquota": v.is_bool,
        "zfs.remove_snapshots": v.is_bool,
    }

    @classmethod
    def info(cls) -> DriverInfo:
        return DriverInfo(
            name="zfs",
            version=_zfs_version(),
            optimized_images=True,
            optimized_snapshots=True,
            optimized_copy=True,
            optimized_backups=True,
            quotas=True,
            block_volumes=True,
        )

    @classmethod
    def probe(cls) -> None:
        cls.require(
            "/dev/zfs",
            "zfs pools need the ZFS kernel module: there is no /dev/zfs (modprobe zfs; "
            "this kernel may not have it)",
            ("zfs", "zpool"),
            "zfsutils-linux",
        )

    @property
    def root(self) -> str:
        """The pool's top dataset: a whole zpool, or a dataset of an existing one."""
        return self.config.get("zfs.pool_name") or self.pool_name

    @property
    def zpool(self) -> str:
        return self.root.split("/", 1)[0]

    def dataset(self, vol_type: str, name: str) -> str:
        return f"{self.root}/{vol_type}/{name}"

    def _made_zpool(self) -> bool:
        """Whether the pool made its zpool (on a loop file or a device) and may destroy it."""
        return self.config.get("source", "").startswith("/")

    # -- the pool ---------------------------------------------------------------------------------

    async def create_pool(self) -> dict[str, str]:
        self.probe()
        source = self.config.get("source", "")
        made: dict[str, str] = {"zfs.pool_name": self.root}
        if not source:
            image, shown = new_loop_file(self.disks, self.pool_name, self.config.get("size"))
            made |= {"source": str(image), "size": shown}
            self.config.update(made)
            try:
                await run(zpool_create_argv(self.zpool, str(image)))
            except BaseException:
                image.unlink(missing_ok=True)
                raise
        elif source.startswith("/"):
            path = Path(source)
            if not path.exists() or not stat.S_ISBLK(path.stat().st_mode):
                raise BadRequest(f"Source {source!r} is not a block device")
            if "size" in self.config:
                raise BadRequest("size only applies to a loop-backed pool, not a block device")
            await check_wipe(source, self.config)
            self.config.update(made)
            await run(zpool_create_argv(self.zpool, source))
        else:  # an existing zpool or dataset: the pool lives in a dataset below it
            made["zfs.pool_name"] = source
            self.config.update(made)
            rc, out, _ = await run(["zfs", "list", "-H", "-o", "name", "-r", source], check=False)
            if rc == 0 and len(out.decode().split()) > 1:
                raise BadRequest(f"Dataset {source!r} isn't empty: give an empty or new one")
            if rc != 0:
                await run(dataset_create_argv(source, None))
        try:
            for vol_type in VOLUME_TYPES:
                await run(dataset_create_argv(f"{self.root}/{vol_type}", None))
            await self.mount_pool()
        except BaseException:
            await self.delete_pool()
            raise
        return made

    async def mount_pool(self) -> None:
        rc, _, _ = await run(["zpool", "list", self.zpool], check=False)
        if rc != 0:
            image = self.owned_loop_file()
            where = ["-d", str(image.parent)] if image is not None else []
            await run(["zpool", "import", *where, self.zpool])
        self.pool_path.mkdir(mode=0o711, parents=True, exist_ok=True)
        for vol_type in VOLUME_DIRS:
            (self.pool_path / vol_type).mkdir(mode=0o711, exist_ok=True)
        await run(["zfs", "mount", "-a"], check=False)

    async def delete_pool(self) -> None:
        if self._made_zpool():
            await run(["zpool", "destroy", "-f", self.zpool], check=False)
            image = self.owned_loop_file()
            if image is not None:
                image.unlink(missing_ok=True)
        else:
            await run(destroy_argv(self.root), check=False)
        await asyncio.to_thread(shutil.rmtree, self.pool_path, True)

    def resources(self) -> PoolResources:
        rc, out = run_sync(["zfs", "get", "-H", "-p", "-o", "value", "used,available", self.root])
        if rc != 0:
            return super().resources()
        used, available = (int(x) for x in out.split()[:2])
        return PoolResources(used + available, used, 0, 0)

    # -- volumes ----------------------------------------------------------------------------------

    async def _list(self) -> dict[str, tuple[int, str]]:
        _, out, _ = await run(list_argv(self.root))
        return parse_list(out.decode())

    def block_path(self, vol_type: str, name: str) -> Path:
        return Path("/dev/zvol") / self.dataset(vol_type, name)

    def snapshot_path(self, vol_type: str, name: str, snap: str) -> Path:
        """ZFS shows a dataset's snapshots read-only below its mount point."""
        return self.volume_path(vol_type, name) / ".zfs" / "snapshot" / f"{SNAPSHOT_PREFIX}{snap}"

    async def create_volume(
        self, vol_type: str, name: str, content_type: str = FILESYSTEM, size: int | None = None
    ) -> Path:
        ds = self.dataset(vol_type, name)
        if ds in await self._list():
            raise Conflict(
                f"Storage volume {vol_type}/{name} already exists on pool {self.pool_name!r}"
            )
        path = self.volume_path(vol_type, name)
        if content_type == BLOCK:
            await run(zvol_create_argv(ds, size or DEFAULT_BLOCK_SIZE))
            path.mkdir(mode=0o711, parents=True, exist_ok=True)
            return path
        await run(dataset_create_argv(ds, path))
        path.chmod(0o711)
        if size is not None:
            await self.set_quota(vol_type, name, size)
        return path

    async def copy_volume(self, src_type: str, src: str, dst_type: str, dst: str) -> Path:
        origin = f"{self.dataset(src_type, src)}@copy-{uuid.uuid4().hex[:12]}"
        await run(["zfs", "snapshot", origin])
        target = self.volume_path(dst_type, dst)
        if v.parse_bool(self.config.get("zfs.clone_copy", "true")):
            await run(clone_argv(origin, self.dataset(dst_type, dst), target))
            return target
        try:  # a full, independent copy
            await self._send_receive(origin, self.dataset(dst_type, dst))
            await run(set_argv(self.dataset(dst_type, dst), "mountpoint", str(target)))
            await run(["zfs", "destroy", f"{self.dataset(dst_type, dst)}@{origin.split('@')[1]}"])
        finally:
            await run(["zfs", "destroy", origin], check=False)
        return target

    async def _send_receive(self, snapshot: str, dataset: str) -> None:
        send = await spawn(send_argv(snapshot, None))
        receive = await asyncio.create_subprocess_exec(
            *receive_argv(dataset), stdin=asyncio.subprocess.PIPE
        )
        assert send.stdout is not None and receive.stdin is not None and send.stdin is not None
        send.stdin.close()
        while chunk := await send.stdout.read(1 << 20):
            receive.stdin.write(chunk)
            await receive.stdin.drain()
        receive.stdin.close()
        if await send.wait() != 0 or await receive.wait() != 0:
            raise RunError(["zfs", "send|receive"], 1, f"copying {snapshot} to {dataset} failed")

    async def move_volume(self, src_type: str, src: str, dst_type: str, dst: str) -> Path:
        return await self.rename_to(self.dataset(src_type, src), dst_type, dst)

    async def rename_to(self, dataset: str, vol_type: str, name: str) -> Path:
        target = self.volume_path(vol_type, name)
        await run(rename_argv(dataset, self.dataset(vol_type, name)))
        await run(set_argv(self.dataset(vol_type, name), "mountpoint", str(target)))
        return target

    async def refresh_volume(self, src_type: str, src: str, dst_type: str, dst: str) -> None:
        await sync_tree(self.volume_path(src_type, src), self.volume_path(dst_type, dst))

    async def fill_volume(self, vol_type: str, name: str, tree: Path) -> None:
        if not self.volume_exists(vol_type, name):
            await self.create_volume(vol_type, name)
        await sync_tree(tree, self.volume_path(vol_type, name))

    async def delete_volume(self, vol_type: str, name: str) -> None:
        ds = self.dataset(vol_type, name)
        listed = await self._list()
        if ds in listed:
            clones = [n for n, (_, origin) in listed.items() if origin.startswith(ds + "@")]
            if clones:  # clones still depend on it: park it until they are gone
                parked = f"{self.root}/deleted/{vol_type}/{name}-{uuid.uuid4().hex[:8]}"
                await run(
                    ["zfs", "create", "-p", "-o", "mountpoint=none", parked.rsplit("/", 1)[0]]
                )
                await run(rename_argv(ds, parked))
                await run(set_argv(parked, "mountpoint", "none"))
            else:
                await run(destroy_argv(ds))
        await self._prune_parked(listed)
        with contextlib.suppress(OSError):
            self.volume_path(vol_type, name).rmdir()

    async def _prune_parked(self, listed: dict[str, tuple[int, str]]) -> None:
        """Destroy parked datasets (``deleted/TYPE/NAME-ID``) no clone depends on any more."""
        prefix = f"{self.root}/deleted/"
        origins = {origin.split("@")[0] for _, origin in listed.values()}
        parked = [
            n
            for n in listed
            if n.startswith(prefix) and "@" not in n and n.count("/") > prefix.count("/")
        ]
        for name in parked:
            if name not in origins:
                await run(destroy_argv(name), check=False)

    async def rename_volume(self, vol_type: str, name: str, new_name: str) -> Path:
        return await self.rename_to(self.dataset(vol_type, name), vol_type, new_name)

    async def volume_usage(self, vol_type: str, name: str) -> int | None:
        found = (await self._list()).get(self.dataset(vol_type, name))
        return found[0] if found else None

    async def set_quota(
        self, vol_type: str, name: str, size: int | None, content_type: str = FILESYSTEM
    ) -> None:
        ds = self.dataset(vol_type, name)
        if content_type == BLOCK:
            if size is None:
                raise BadRequest("A block volume needs a size: it cannot be unset")
            await run(set_argv(ds, "volsize", str(-(-size // 8192) * 8192)))
            return
        used = (await self._list()).get(ds, (0, ""))[0]
        if size is not None and size < used:
            raise BadRequest(f"Size {size} bytes is below what the volume uses ({used} bytes)")
        await run(set_argv(ds, "refquota", str(size) if size else "none"))

    # -- snapshots --------------------------------------------------------------------------------

    async def create_snapshot(self, vol_type: str, name: str, snap: str) -> Path:
        await run(["zfs", "snapshot", snapshot_name(self.dataset(vol_type, name), snap)])
        return self.snapshot_path(vol_type, name, snap)

    async def delete_snapshot(self, vol_type: str, name: str, snap: str) -> None:
        full = snapshot_name(self.dataset(vol_type, name), snap)
        if full in await self._list():
            await run(["zfs", "destroy", full])

    async def rename_snapshot(self, vol_type: str, name: str, snap: str, new_snap: str) -> None:
        ds = self.dataset(vol_type, name)
        await run(rename_argv(snapshot_name(ds, snap), snapshot_name(ds, new_snap)))

    async def restore_snapshot(self, vol_type: str, name: str, snap: str) -> None:
        ds = self.dataset(vol_type, name)
        later = await self._snapshots_after(ds, snap)
        if later:
            raise BadRequest(
                f"ZFS can only restore a volume's latest snapshot; {snap!r} has later ones "
                f"({', '.join(later)}): delete them first"
            )
        await run(["zfs", "rollback", snapshot_name(ds, snap)])

    async def _snapshots_after(self, dataset: str, snap: str) -> list[str]:
        _, out, _ = await run(
            ["zfs", "list", "-H", "-t", "snapshot", "-o", "name", "-s", "createtxg", dataset]
        )
        names = [n.split("@", 1)[1] for n in out.decode().split()]
        ours = [n.removeprefix(SNAPSHOT_PREFIX) for n in names if n.startswith(SNAPSHOT_PREFIX)]
        return ours[ours.index(snap) + 1 :] if snap in ours else []

    async def volume_from_snapshot(
        self, vol_type: str, name: str, snap: str, dst_type: str, dst: str
    ) -> Path:
        target = self.volume_path(dst_type, dst)
        origin = snapshot_name(self.dataset(vol_type, name), snap)
        await run(clone_argv(origin, self.dataset(dst_type, dst), target))
        return target

    async def copy_snapshot(self, vol_type: str, name: str, snap: str, dst: str) -> None:
        """ZFS cannot add a snapshot under a dataset's history: put the snapshot's files in
        ``dst``, snapshot it, then put ``dst``'s own files back."""
        dst_ds = self.dataset(vol_type, dst)
        stash = f"{dst_ds}@stash-{uuid.uuid4().hex[:8]}"
        await run(["zfs", "snapshot", stash])
        path = self.volume_path(vol_type, dst)
        try:
            await sync_tree(self.snapshot_path(vol_type, name, snap), path)
            await run(["zfs", "snapshot", snapshot_name(dst_ds, snap)])
            await sync_tree(path / ".zfs" / "snapshot" / stash.split("@")[1], path)
        finally:
            await run(["zfs", "destroy", stash], check=False)

    # -- optimized backups ------------------------------------------------------------------------

    async def send_streams(
        self,
        vol_type: str,
        name: str,
        snapshots: list[str],
        exclude: tuple[str, ...],
        files: dict[str | None, Path],
    ) -> dict[str | None, str]:
        """``zfs send`` of each snapshot and of a temporary snapshot of the volume, each
        incremental from the one before. (A send stream is the dataset as it is: ``exclude``
        cannot apply.)"""
        ds = self.dataset(vol_type, name)
        temporary = f"{ds}@backup-{uuid.uuid4().hex[:8]}"
        await run(["zfs", "snapshot", temporary])
        try:
            parent: str | None = None
            for key in [*snapshots, None]:
                snap = snapshot_name(ds, key) if key is not None else temporary
                argv = send_argv(snap, parent)
                with files[key].open("wb") as out:
                    proc = await asyncio.create_subprocess_exec(*argv, stdout=out)
                    if await proc.wait() != 0:
                        raise RunError(argv, proc.returncode or 1, f"zfs send of {snap} failed")
                parent = snap
        finally:
            await run(["zfs", "destroy", temporary], check=False)
        return dict.fromkeys([*snapshots, None], "")

    async def receive_streams(
        self, vol_type: str, name: str, streams: list[tuple[str | None, Path]]
    ) -> None:
        ds = self.dataset(vol_type, name)
        if ds in await self._list():
            raise Conflict(f"{vol_type}/{name} already exists on pool {self.pool_name!r}")
        try:
            for _, stream in streams:
                with stream.open("rb") as f:
                    proc = await asyncio.create_subprocess_exec(*receive_argv(ds), stdin=f)
                    if await proc.wait() != 0:
                        raise BadRequest(f"zfs receive of {stream.name!r} failed")
            for full in await self._list():
                if full.startswith(ds + "@") and not full.split("@")[1].startswith(SNAPSHOT_PREFIX):
                    await run(["zfs", "destroy", full])  # the stream's own (backup) snapshot
            await run(set_argv(ds, "mountpoint", str(self.volume_path(vol_type, name))))
            await run(["zfs", "mount", ds], check=False)
        except BaseException:
            await run(destroy_argv(ds), check=False)
            raise


def _zfs_version() -> str:
    path = Path("/sys/module/zfs/version")
    with contextlib.suppress(OSError):
        return path.read_text().strip()
    return "unknown"
