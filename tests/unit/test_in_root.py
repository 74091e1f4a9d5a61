"""Writes resolved inside a root: links and .. never leave it."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from stapes.host.in_root import make_dirs, write_file
from stapes.host.rootfs_io import ARGV


def test_links_resolve_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "abs").symlink_to(str(outside))  # absolute: means <root>/<outside> here
    (root / "up").symlink_to("../../..")
    make_dirs(root, str(outside), os.getuid())  # what /abs means inside the root
    write_file(root, "/abs/x", b"a", os.getuid(), None)
    write_file(root, "/up/y", b"b", os.getuid(), 0o600)
    make_dirs(root, "/abs/deep/er", os.getuid())
    assert not (outside / "x").exists() and not (tmp_path / "y").exists()
    assert (root / str(outside).lstrip("/") / "x").read_bytes() == b"a"
    assert (root / "y").read_bytes() == b"b" and (root / "y").stat().st_mode & 0o777 == 0o600
    assert (root / str(outside).lstrip("/") / "deep" / "er").is_dir()
    write_file(root, "/y", b"again", os.getuid(), None)  # an existing file keeps its mode
    assert (root / "y").read_bytes() == b"again" and (root / "y").stat().st_mode & 0o777 == 0o600


def test_fifos_and_devices_are_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO the instance made where a template goes: refused at once (opening it for
    writing would wait for a reader for ever); a device node likewise, never opened."""
    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "fifo")
    os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    for name in ("fifo", "null"):
        with pytest.raises(OSError, match="not a regular file"):
            write_file(root, "/" + name, b"x", os.getuid(), None)
    os.symlink("/etc/passwd", root / "link")
    with pytest.raises(OSError, match="not a regular file"):
        write_file(root, "/link", b"x", os.getuid(), None)


def test_the_file_api_helper_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    argv = [*ARGV, str(tmp_path), "put", "/fifo", "file", "-1", "-1", "-1", "overwrite", "0", "0"]
    proc = subprocess.run(argv, input=b"data", capture_output=True, timeout=20)
    assert proc.returncode == 2 and b"not a regular file" in proc.stderr
