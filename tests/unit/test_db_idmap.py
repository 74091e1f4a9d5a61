from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from stapes.db.connection import SqliteDatabase
from stapes.db.projects import ensure_project, get_project
from stapes.db.schema import MIGRATIONS
from stapes.host.idmap import shift_tree


def test_migrations_and_rollback(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "s.db")
    assert db.one("PRAGMA user_version")[0] == len(MIGRATIONS)  # type: ignore[index]
    with db.transaction():
        ensure_project(db, "default", "", {})

    def failing_transaction() -> None:
        with db.transaction():
            ensure_project(db, "other", "", {})
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        failing_transaction()
    assert get_project(db, "default").name == "default"
    assert db.one("SELECT * FROM projects WHERE name = 'other'") is None
    db.close()
    again = SqliteDatabase(tmp_path / "s.db")
    assert get_project(again, "default").name == "default"


@pytest.mark.root
def test_shift_tree_keeps_setuid_and_links(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    (tmp_path / "d").mkdir()
    tool = tmp_path / "d" / "tool"
    tool.write_text("x")
    tool.chmod(0o4755)
    (tmp_path / "d" / "link").symlink_to("tool")
    shift_tree(tmp_path / "d", 1000000)
    assert tool.stat().st_uid == 1000000 and tool.stat().st_gid == 1000000
    assert stat.S_IMODE(tool.stat().st_mode) == 0o4755
    assert os.lstat(tmp_path / "d" / "link").st_uid == 1000000
    assert (tmp_path / "d").stat().st_uid == 1000000
    shift_tree(tmp_path / "d", -1000000)
    assert tool.stat().st_uid == 0
