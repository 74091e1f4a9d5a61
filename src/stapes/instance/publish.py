"""Publishing an instance (stopped) or one of its snapshots as an image: a unified tarball of
metadata.yaml (the instance's, its architecture and creation date renewed, properties
merged), templates/ and rootfs/ with owners moved back to the image's own ids, written by GNU
tar and registered in the image store like an upload."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from stapes.api.errors import BadRequest
from stapes.db import instances as q
from stapes.db.images import ImageRow
from stapes.db.snapshots import SnapshotRow
from stapes.host.idmap import current_map
from stapes.host.run import run
from stapes.images.formats import load_yaml
from stapes.images.store import ImageStore, Upload
from stapes.instance.service import InstanceService
from stapes.storage.backups import compression, tarball
from stapes.storage.backups.index import dump_yaml
from stapes.storage.backups.tarball import Tree
from stapes.storage.volumes import instance_volume


def _metadata(volume: Path, row: q.InstanceRow, properties: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    path = volume / "metadata.yaml"
    if path.is_file():
        meta = load_yaml(path.read_text()) or {}
    meta["architecture"] = row.architecture
    meta["creation_date"] = int(time.time())
    meta["properties"] = {
        **{str(k): str(v) for k, v in (meta.get("properties") or {}).items()},
        **properties,
    }
    return meta


def _hash_into(upload: Upload) -> None:
    for path in (upload.meta, upload.rootfs):
        if path is None:
            continue
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                upload.hasher.update(chunk)


async def _publish_vm(
    images: ImageStore,
    row: q.InstanceRow,
    volume: Path,
    public: bool,
    properties: dict[str, str],
    aliases: list[str],
) -> ImageRow:
    """A split VM image: a metadata tarball (metadata.yaml, templates/, boot/) and the disk,
    compressed qcow2 (the format Incus's VM images use)."""
    disk = volume / "root.img"
    if not disk.is_file():
        raise BadRequest(f"VM {row.name!r} has no disk to publish")
    scratch = tarball.scratch_dir(images.paths.images, ".publish-")
    try:
        tarball.put(scratch, "metadata.yaml", dump_yaml(_metadata(volume, row, properties)))
        members = ["metadata.yaml"]
        for extra in ("templates", "boot"):
            if (volume / extra).is_dir():
                await asyncio.to_thread(
                    shutil.copytree, volume / extra, scratch / extra, symlinks=True
                )
                members.append(extra)
        meta = scratch / "metadata.tar.gz"
        await run(["tar", "-C", str(scratch), "-czf", str(meta), *members], timeout=600)
        qcow2 = scratch / "rootfs.img"
        await run(["qemu-img", "convert", "-c", "-O", "qcow2", str(disk), str(qcow2)], timeout=7200)
        upload = Upload(meta=meta, rootfs=qcow2, vm=True)
        await asyncio.to_thread(_hash_into, upload)
        return await images.register(
            upload,
            project=row.project,
            filename=f"{row.name}.tar.gz",
            public=public,
            properties={},
            aliases=aliases,
        )
    finally:
        await tarball.remove(scratch)


async def publish(
    instances: InstanceService,
    images: ImageStore,
    row: q.InstanceRow,
    snapshot: SnapshotRow | None,
    *,
    algorithm: str,
    public: bool,
    properties: dict[str, str],
    aliases: list[str],
) -> ImageRow:
    algorithm = compression.check(algorithm)
    if snapshot is None and await instances.is_running(row):
        raise BadRequest(
            f"Instance {row.name!r} is running: stop it, or publish one of its snapshots"
        )
    drv = instances.pools.driver(row.pool)
    volume = drv.volume_path(*instance_volume(row))
    if snapshot is not None:
        volume = drv.snapshot_path(*instance_volume(row), snapshot.name)
    if row.type == "virtual-machine":
        return await _publish_vm(images, row, volume, public, properties, aliases)
    idmap = current_map(row.config if snapshot is None else snapshot.config)
    if not (volume / "rootfs").is_dir():
        raise BadRequest(f"Instance {row.name!r} has no root filesystem to publish")
    scratch = tarball.scratch_dir(images.paths.images, ".publish-")
    try:
        meta = _metadata(volume, row, properties)
        first = [tarball.put(scratch, "metadata.yaml", dump_yaml(meta))]
        late = []
        if (volume / "templates").is_dir():
            await asyncio.to_thread(
                shutil.copytree, volume / "templates", scratch / "templates", symlinks=True
            )
            late.append("templates")
        target = scratch / "image.tar"
        trees = [Tree(volume / "rootfs", "rootfs", idmap)]
        await tarball.write(target, scratch, first, trees, late, algorithm)
        upload = Upload(meta=target)
        await asyncio.to_thread(_hash_into, upload)
        return await images.register(
            upload,
            project=row.project,
            filename=f"{row.name}.tar" + ("" if algorithm == "none" else f".{algorithm}"),
            public=public,
            properties={},
            aliases=aliases,
        )
    finally:
        await tarball.remove(scratch)
