"""An image's files as a download (GET /1.0/images/FP/export, and the guest API's): the
unified tarball, or for a split image a multipart body with its metadata and rootfs parts
(what incus image export writes to two files)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from stapes.db.images import ImageRow
from stapes.images.formats import file_extension
from stapes.images.store import ImageStore


def export_response(images: ImageStore, row: ImageRow) -> web.StreamResponse:
    meta, rootfs = images.files(row)
    # named as Incus names them: <fingerprint> and the extension of what the file holds
    name = row.fingerprint + file_extension(str(meta))
    if rootfs is None:
        return web.FileResponse(
            meta,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'attachment; filename="{name}"',
            },
        )
    rootfs_part = "rootfs.img" if row.type == "virtual-machine" else "rootfs"
    parts = (
        ("metadata", meta, "meta-" + name),
        (rootfs_part, rootfs, row.fingerprint + file_extension(str(rootfs))),
    )
    writer = aiohttp.MultipartWriter("form-data")
    for part_name, path, filename in parts:
        part = writer.append(path.open("rb"), {"Content-Type": "application/octet-stream"})
        part.set_content_disposition("form-data", name=part_name, filename=filename)
    return web.Response(body=writer)
