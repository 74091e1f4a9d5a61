"""Incus image files: unified and split tarballs, metadata.yaml, fingerprints, templates."""

from __future__ import annotations

from typing import Any

import yaml

from stapes.api.architecture import architecture_name
from stapes.api.errors import BadRequest
from stapes.host.run import RunError, run

SQUASHFS_MAGIC = b"hsqs"
QCOW2_MAGIC = b"QFI\xfb"


async def read_metadata(tarball: str) -> dict[str, Any]:
    """metadata.yaml from an image tarball (unified or split), any compression tar understands."""
    for member in ("metadata.yaml", "./metadata.yaml"):
        try:
            _, out, _ = await run(["tar", "-xOf", tarball, "--occurrence=1", member], timeout=300)
        except RunError:
            continue
        try:
            meta = load_yaml(out)
        except yaml.YAMLError as exc:
            raise BadRequest(f"Invalid metadata.yaml in the image: {exc}") from None
        if not isinstance(meta, dict):
            raise BadRequest("Invalid metadata.yaml in the image: not a mapping")
        if not meta.get("architecture"):
            raise BadRequest("Invalid metadata.yaml in the image: no architecture")
        try:  # the name liblxc and QEMU are given, whatever the image called it
            meta["architecture"] = architecture_name(meta["architecture"])
        except ValueError as exc:
            raise BadRequest(f"Invalid metadata.yaml in the image: {exc}") from None
        return meta
    raise BadRequest("Invalid image file: no metadata.yaml in the tarball")


def load_yaml(text: str | bytes) -> Any:
    """YAML through libyaml's C loader when PyYAML has it (image metadata is read per launch)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)


def qcow2_virtual_size(path: str) -> int:
    """The size of the disk a qcow2 file holds (its header's size field), 0 if not qcow2."""
    with open(path, "rb") as f:
        header = f.read(32)
    if header[:4] != QCOW2_MAGIC or len(header) < 32:
        return 0
    return int.from_bytes(header[24:32], "big")


_EXTENSIONS = (
    (b"\x1f\x8b", ".tar.gz"),
    (b"BZh", ".tar.bz2"),
    (b"\xfd7zXZ\x00", ".tar.xz"),
    (b"\x5d\x00\x00", ".tar.lzma"),
    (b"\x28\xb5\x2f\xfd", ".tar.zst"),
    (SQUASHFS_MAGIC, ".squashfs"),
    (QCOW2_MAGIC, ".qcow2"),
)


def file_extension(path: str) -> str:
    """An image file's extension by what it holds, as Incus names exported files (a plain
    tarball: .tar; anything else unknown: none)."""
    with open(path, "rb") as f:
        head = f.read(512)
    for magic, extension in _EXTENSIONS:
        if head.startswith(magic):
            return extension
    return ".tar" if head[257:262] == b"ustar" else ""


def file_magic(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(4)
