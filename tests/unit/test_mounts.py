"""unmount_below: what a tool mounted inside a tree (debootstrap's /proc, a pool's loop file)
is unmounted before the tree is deleted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stapes.host.mounts import is_mountpoint, unmount_below

pytestmark = [pytest.mark.root]


def test_unmount_below_takes_nested_mounts_only(tmp_path: Path) -> None:
    outer, inner = tmp_path / "rootfs" / "proc", tmp_path / "rootfs" / "proc" / "sub"
    beside = tmp_path / "rootfs-beside"
    outer.mkdir(parents=True)
    beside.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "t", str(outer)], check=True)
        inner.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "t", str(inner)], check=True)
        subprocess.run(["mount", "-t", "tmpfs", "t", str(beside)], check=True)
        unmount_below(tmp_path / "rootfs")
        assert not is_mountpoint(outer) and not is_mountpoint(inner)
        assert is_mountpoint(beside)  # a sibling whose name starts the same stays
    finally:
        subprocess.run(["umount", "-l", str(beside)], check=False)
