"""Writes resolved inside a root: links and .. never leave it."""

from __future__ import annotations

import os
from pathlib import Path

from stapes.host.in_root import make_dirs, write_file


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
