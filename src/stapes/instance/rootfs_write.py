"""Writing files into an instance's rootfs from stapesd (templates, the cloud-init seed) through
the chrooted helper (host/rootfs_io.py): no link inside the instance can send a write to the
host."""

from __future__ import annotations

from pathlib import Path

from stapes.api.errors import BadRequest
from stapes.host import rootfs_io
from stapes.host.run import run

KEEP = -1
"""For uid, gid or mode: what an existing file has (new files: the instance's root, 0644)."""


async def write_file(
    rootfs: Path,
    path: str,
    content: bytes,
    root_id: int,
    *,
    uid: int = KEEP,
    gid: int = KEEP,
    mode: int = KEEP,
    kind: str = "file",
) -> None:
    """``uid``/``gid`` are host ids (KEEP: an existing file's, or ``root_id`` for a new one).
    Raises BadRequest (with the helper's reason) when the file cannot be written."""
    owner = str(root_id)
    argv = [
        *rootfs_io.ARGV,
        str(rootfs),
        "put",
        path,
        kind,
        str(uid),
        str(gid),
        str(mode),
        "overwrite",
        owner,
        owner,
    ]
    rc, _, err = await run(argv, input=content, check=False)
    if rc != 0:
        raise BadRequest(f"Could not write {path} in the instance: {err.strip()}")


async def make_dirs(rootfs: Path, path: str, root_id: int, mode: int = 0o755) -> None:
    """Every directory of ``path``, each created (owned by the instance's root) if missing."""
    current = ""
    for part in path.strip("/").split("/"):
        current += "/" + part
        await write_file(rootfs, current, b"", root_id, mode=mode, kind="directory")
