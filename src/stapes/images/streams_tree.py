"""A static simplestreams tree in a directory, for any web server to publish: the image files
under ``streams/images/<fingerprint>/`` and ``streams/v1/index.json``/``images.json`` rebuilt
from every image there (what stapesd serves for its public images, the same format)."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from stapes.db.images import ImageRow
from stapes.images import streams_server
from stapes.images.formats import read_metadata

UNIFIED = "incus_combined.tar.gz"
ALIASES = "aliases.json"
"""Per image directory: the aliases it was added with."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def add(tree: Path, tarball: Path, aliases: list[str]) -> str:
    """Put a unified image tarball in the tree and rebuild its indexes; its fingerprint."""
    fingerprint = _sha256(tarball)
    directory = tree / "streams" / "images" / fingerprint
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tarball, directory / UNIFIED)
    (directory / ALIASES).write_text(json.dumps(sorted(aliases)))
    await rebuild(tree)
    return fingerprint


async def _row(directory: Path) -> ImageRow:
    meta = await read_metadata(str(directory / UNIFIED))
    created = meta.get("creation_date")
    when = datetime.fromtimestamp(created if isinstance(created, int) else 0, UTC)
    return ImageRow(
        id=0,
        project="default",
        fingerprint=directory.name,
        filename=UNIFIED,
        size=(directory / UNIFIED).stat().st_size,
        type="container",
        architecture=str(meta["architecture"]),
        created_at=when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        uploaded_at=when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        public=True,
        split=False,
        properties={str(k): str(v) for k, v in (meta.get("properties") or {}).items()},
    )


async def rebuild(tree: Path) -> None:
    images = tree / "streams" / "images"
    rows, aliases = [], {}
    for directory in sorted(p for p in images.iterdir() if (p / UNIFIED).is_file()):
        rows.append(await _row(directory))
        if (directory / ALIASES).is_file():
            aliases[directory.name] = json.loads((directory / ALIASES).read_text())
    files = lambda row: (images / row.fingerprint / UNIFIED, None)  # noqa: E731
    tree_json = streams_server.images_json(rows, aliases, files, {})
    v1 = tree / "streams" / "v1"
    v1.mkdir(parents=True, exist_ok=True)
    (v1 / "images.json").write_text(json.dumps(tree_json, indent=1))
    index = streams_server.index_json(sorted(tree_json["products"]))
    (v1 / "index.json").write_text(json.dumps(index, indent=1))
