"""What is mounted where (from /proc/self/mountinfo), and mounting/unmounting pool sources."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stapes.host.run import run


@dataclass(frozen=True)
class MountEntry:
    target: Path
    fstype: str
    source: str
    options: str


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")).replace(
        "\\134", "\\"
    )


def mounts() -> list[MountEntry]:
    entries: list[MountEntry] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            entries.append(
                MountEntry(
                    target=Path(_unescape(fields[4])),
                    fstype=fields[sep + 1],
                    source=_unescape(fields[sep + 2]),
                    options=fields[5] + "," + fields[sep + 3],
                )
            )
    return entries


def mount_of(path: Path) -> MountEntry:
    """The mount that holds ``path`` (the last, longest matching mount point)."""
    real = Path(os.path.realpath(path))
    best: MountEntry | None = None
    for entry in mounts():
        inside = real == entry.target or entry.target in real.parents
        if inside and (best is None or len(entry.target.parts) >= len(best.target.parts)):
            best = entry
    assert best is not None  # / is always mounted
    return best


def is_mountpoint(path: Path) -> bool:
    real = Path(os.path.realpath(path))
    return any(entry.target == real for entry in mounts())


def fs_type(path: Path) -> str:
    return mount_of(path).fstype


async def mount(source: str, target: Path, fstype: str, options: list[str]) -> None:
    argv = ["mount", "-t", fstype]
    if options:
        argv += ["-o", ",".join(options)]
    await run([*argv, source, str(target)])


async def umount(target: Path) -> None:
    """Unmount if mounted (lazily: a container that still holds a file keeps it until it exits)."""
    if is_mountpoint(target):
        await run(["umount", "-l", str(target)])


async def filesystem_signature(device: str) -> str | None:
    """The filesystem (or other signature) ``blkid`` finds on a device or image file."""
    rc, out, _ = await run(["blkid", "-o", "value", "-s", "TYPE", device], check=False)
    kind = out.decode().strip()
    return kind if rc == 0 and kind else None


def unmount_below(root: Path) -> None:
    """Lazily unmount everything mounted below ``root``, deepest first (before deleting a
    tree a tool mounted /proc or a loop file into)."""
    prefix = f"{os.path.realpath(root)}/"
    for entry in sorted(mounts(), key=lambda e: len(str(e.target)), reverse=True):
        if str(entry.target).startswith(prefix):
            subprocess.run(["umount", "-l", str(entry.target)], check=False)
