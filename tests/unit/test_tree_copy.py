"""host/tree_copy: a tree copied by several cp at once is the tree ``cp -a`` makes (owners,
modes, times, extended attributes, links, special files), hard links stay links, and a tree
changed after it was walked cannot lead a cp outside it."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from pathlib import Path

import pytest

from stapes.host import tree_copy


@pytest.fixture
def small_trees_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tree_copy, "SMALL_TREE", 10)


def _fill(root: Path) -> None:
    """A small rootfs-like tree with everything cp -a must keep."""
    root.mkdir(mode=0o755)
    for top in ("usr", "etc", "var"):
        for sub in range(4):
            d = root / top / f"d{sub}"
            d.mkdir(parents=True)
            for n in range(12):
                (d / f"f{n}").write_bytes(os.urandom(n * 100))
    os.chown(root / "var", 0, 8)
    (root / "var").chmod(0o2775)  # setgid: must survive the chown of a directory made by hand
    os.setxattr(root / "etc", "user.stapes", b"kept")
    os.chown(root / "etc" / "d1", 1000, 1001)
    suid = root / "usr" / "d0" / "su"
    suid.write_bytes(b"x")
    suid.chmod(0o4755)
    os.link(root / "usr" / "d1" / "f3", root / "usr" / "d3" / "linked")
    os.symlink("/usr/d0", root / "etc" / "abs-link")
    os.symlink("missing", root / "etc" / "dangling")
    os.mkfifo(root / "var" / "d0" / "fifo")
    os.mknod(root / "var" / "d0" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.utime(root / "etc", ns=(1_000_000_123, 2_000_000_456))
    os.utime(root / "usr" / "d2", ns=(3_000_000_789, 4_000_000_012))


def _differences(a: Path, b: Path) -> str:
    done = subprocess.run(
        ["rsync", "-aHAXn", "--delete", "--itemize-changes", f"{a}/", f"{b}/"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


@pytest.mark.usefixtures("small_trees_cut")
def test_the_copy_is_what_cp_a_makes(tmp_path: Path) -> None:
    source = tmp_path / "source"
    _fill(source)
    layout = tree_copy.plan(source, 2)
    assert {"", "etc", "var"} <= set(layout.cut) and all(layout.parts)  # over both workers
    assert "usr" not in layout.cut  # the two links to one file meet there: copied whole
    asyncio.run(tree_copy.copy_tree(source, tmp_path / "copy"))
    subprocess.run(["cp", "-a", str(source), str(tmp_path / "reference")], check=True)
    assert _differences(tmp_path / "reference", tmp_path / "copy") == ""
    copy = tmp_path / "copy"
    assert (copy / "usr" / "d1" / "f3").stat().st_ino == (
        copy / "usr" / "d3" / "linked"
    ).stat().st_ino
    assert stat.S_IMODE((copy / "var").stat().st_mode) == 0o2775
    assert (copy / "var").stat().st_gid == 8
    assert os.getxattr(copy / "etc", "user.stapes") == b"kept"
    assert (copy / "etc").stat().st_mtime_ns == 2_000_000_456


def test_a_small_tree_is_one_cp(tmp_path: Path) -> None:
    source = tmp_path / "source"
    _fill(source)
    assert tree_copy.plan(source, 2).cut == []
    asyncio.run(tree_copy.copy_tree(source, tmp_path / "copy"))
    assert _differences(source, tmp_path / "copy") == ""


@pytest.mark.usefixtures("small_trees_cut")
def test_a_tree_deeper_than_the_walk_goes_is_one_cp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tree_copy, "MAX_DEPTH", 3)
    source = tmp_path / "source"
    _fill(source)
    (source / "var" / "d0" / "a" / "b" / "c" / "d").mkdir(parents=True)
    assert tree_copy.plan(source, 2).cut == []


@pytest.mark.usefixtures("small_trees_cut")
def test_a_directory_swapped_for_a_link_after_the_walk_leads_nowhere(tmp_path: Path) -> None:
    source = tmp_path / "source"
    _fill(source)
    outside = tmp_path / "outside"
    for top in ("usr", "etc", "var"):
        (outside / top / "d0").mkdir(parents=True)
        (outside / top / "d0" / "secret").write_text("host only")
    layout = tree_copy.plan(source, 2)
    assert "etc" in layout.cut and "var" in layout.cut
    for top in ("etc", "var"):  # what a running instance could do between walk and copy
        os.rename(source / top, source / f"{top}.old")
        os.symlink(outside / top, source / top)
    with pytest.raises(Exception):  # noqa: B017,PT011 (a cp or an open fails: either will do)
        asyncio.run(tree_copy.copy_as_planned(layout, source, tmp_path / "copy", False))
    found = subprocess.run(
        ["grep", "-rl", "host only", str(tmp_path / "copy")], capture_output=True, check=False
    )
    assert found.stdout == b""
