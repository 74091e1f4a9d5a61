"""One volume and its snapshots into a backup tarball and back, for any driver: plain trees
(owners moved back to the instance's ids), or the driver's send streams when optimized."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from stapes.api.errors import BadRequest
from stapes.host.idmap import IdMap, reshift_tree
from stapes.storage.backups import tarball
from stapes.storage.backups.index import BackupIndex, dump_yaml
from stapes.storage.backups.tarball import Tree
from stapes.storage.drivers.driver import StorageDriver

LAYOUT = {"containers": ("container", "snapshots"), "custom": ("volume", "volume-snapshots")}
"""Where a volume type's trees go in the archive: (the volume, its snapshots' directory)."""


@dataclass(frozen=True)
class VolumeSource:
    driver: StorageDriver
    vol_type: str
    name: str
    idmap: IdMap | None
    snapshots: list[tuple[str, IdMap | None]]
    """Oldest first, each with the map its files are shifted to."""
    exclude: tuple[str, ...] = ()
    """Files of the daemon's own in each tree, left out of the backup."""


async def export(
    source: VolumeSource,
    index: BackupIndex,
    target: Path,
    algorithm: str,
    extra: dict[str, str] | None = None,
) -> None:
    """Write the backup of ``source`` to ``target``; ``extra`` adds small files (member name ->
    text) after the trees, such as the instance's backup.yaml."""
    main, snap_dir = LAYOUT[source.vol_type]
    drv = source.driver
    scratch = tarball.scratch_dir(target.parent, ".export-")
    try:
        first = [tarball.put(scratch, tarball.INDEX, index.dump())]
        trees: list[Tree] = []
        if index.optimized:
            first += await _streams(source, scratch, main, snap_dir)
        else:
            for snap, idmap in source.snapshots:
                path = drv.snapshot_path(source.vol_type, source.name, snap)
                trees.append(Tree(path, f"backup/{snap_dir}/{snap}", idmap, source.exclude))
            path = drv.volume_path(source.vol_type, source.name)
            trees.append(Tree(path, f"backup/{main}", source.idmap, source.exclude))
        late = [tarball.put(scratch, m, text) for m, text in (extra or {}).items()]
        await tarball.write(target, scratch, first, trees, late, algorithm)
    finally:
        await tarball.remove(scratch)


async def _streams(source: VolumeSource, scratch: Path, main: str, snap_dir: str) -> list[str]:
    """The send streams (each snapshot incremental from the one before, the volume from the
    last snapshot) and optimized_header.yaml listing the subvolumes sent."""
    snaps = [s for s, _ in source.snapshots]
    members: dict[str | None, str] = {s: f"backup/{snap_dir}/{s}.bin" for s in snaps}
    members[None] = f"backup/{main}.bin"
    (scratch / "backup" / snap_dir).mkdir(parents=True, exist_ok=True)
    files = {key: scratch / member for key, member in members.items()}
    ids = await source.driver.send_streams(
        source.vol_type, source.name, snaps, source.exclude, files
    )
    subvolumes = [
        {"path": "/", "snapshot": key or "", "readonly": key is not None, "uuid": ids[key]}
        for key in members
    ]
    header = dump_yaml({"subvolumes": subvolumes})
    return [tarball.put(scratch, "backup/optimized_header.yaml", header), *members.values()]


SnapshotMade = Callable[[str], Awaitable[None]]


async def restore(
    driver: StorageDriver,
    vol_type: str,
    name: str,
    index: BackupIndex,
    archive: Path,
    idmap: IdMap | None,
    snapshot_made: SnapshotMade,
) -> None:
    """Make volume ``name`` and its snapshots from ``archive``. Plain trees hold the instance's
    own ids and are shifted to ``idmap``; optimized streams keep the ids they were sent with.
    ``snapshot_made`` is called after each snapshot (to record it)."""
    main, snap_dir = LAYOUT[vol_type]
    check_restorable(driver, index)
    scratch = tarball.scratch_dir(driver.pool_path, ".import-")
    try:
        await tarball.extract(archive, scratch)
        backup = scratch / "backup"
        if index.optimized:
            streams: list[tuple[str | None, Path]] = [
                (snap, _member(backup / snap_dir / f"{snap}.bin")) for snap in index.snapshots
            ]
            streams.append((None, _member(backup / f"{main}.bin")))
            await driver.receive_streams(vol_type, name, streams)
            for snap in index.snapshots:
                await snapshot_made(snap)
            return
        for snap in index.snapshots:
            tree = _member(backup / snap_dir / snap)
            await _shift(tree, vol_type, idmap)
            await driver.fill_volume(vol_type, name, tree)
            await driver.create_snapshot(vol_type, name, snap)
            await snapshot_made(snap)
        tree = _member(backup / main)
        await _shift(tree, vol_type, idmap)
        await driver.fill_volume(vol_type, name, tree)
    finally:
        await tarball.remove(scratch)


def check_restorable(driver: StorageDriver, index: BackupIndex) -> None:
    """An optimized backup holds one driver's send streams: only that driver reads them."""
    info = driver.info()
    if index.optimized and (not info.optimized_backups or index.backend != info.name):
        raise BadRequest(
            f"This backup is optimized for {index.backend or 'another driver'}: import it "
            f"into a {index.backend} pool (pool {driver.pool_name!r} is {info.name})"
        )


def _member(path: Path) -> Path:
    if not path.exists():
        raise BadRequest(f"Invalid backup: it has no {path.name!r} where index.yaml says")
    return path


async def _shift(tree: Path, vol_type: str, idmap: IdMap | None) -> None:
    if vol_type == "containers" and idmap is not None and (tree / "rootfs").is_dir():
        await asyncio.to_thread(reshift_tree, tree / "rootfs", None, idmap)
