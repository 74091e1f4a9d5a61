"""The daemon's own life, as incusd's: `incus admin waitready` and `stapesd waitready`, `incus
admin shutdown` and `stapesd shutdown` (every instance stopped, the daemon gone, the instances
started again with it), `stapesd activateifneeded`, `stapesd --version`."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import stapes
from tests.helpers import VENV_BIN, Daemon, free_port

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


def _stapesd(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "stapesd"), *args],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _incus(daemon: Daemon, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("incus") is None:
        pytest.fail("the incus client is missing: make test installs incus-client")
    env = {**os.environ, "INCUS_SOCKET": daemon.socket, "INCUS_CONF": str(tmp_path / "conf")}
    return subprocess.run(["incus", *args], env=env, capture_output=True, text=True, timeout=120)


def test_version_and_waitready(lone: Daemon, tmp_path: Path) -> None:
    assert _stapesd(lone, "--version").stdout.strip() == stapes.__version__
    assert _stapesd(lone, "version").stdout.strip() == stapes.__version__
    assert _stapesd(lone, "waitready", "--timeout", "10").returncode == 0
    assert _incus(lone, tmp_path, "admin", "waitready", "--timeout", "10").returncode == 0
    assert lone.request("GET", "/internal/ready").status == 200


@pytest.mark.parametrize("tool", ["incus", "stapesd"])
def test_shutdown_stops_the_instances_and_the_daemon(
    lone: Daemon, tmp_path: Path, tool: str
) -> None:
    lone.cli("image", "build", "busybox", "--alias", "bb")
    name = lone.launch("bb")
    pid = lone.request("GET", f"/1.0/instances/{name}/state").metadata["pid"]
    if tool == "incus":
        done = _incus(lone, tmp_path, "admin", "shutdown")
    else:
        done = _stapesd(lone, "shutdown", "--timeout", "60")
    assert done.returncode == 0, done.stderr
    assert lone.proc is not None
    lone.proc.wait(60)  # the daemon exits by itself
    lone.proc = None
    assert not Path(f"/proc/{pid}").exists()  # its instance stopped first
    lone.start()
    deadline = time.monotonic() + 30
    while lone.request("GET", f"/1.0/instances/{name}").metadata["status"] != "Running":
        assert time.monotonic() < deadline, "the instance did not start again with the daemon"
        time.sleep(0.2)


def test_activateifneeded_starts_the_daemon_only_when_needed(lone: Daemon) -> None:
    lone.stop()
    assert _stapesd(lone, "activateifneeded").returncode == 0
    time.sleep(1)
    assert not Path(lone.socket).exists()  # nothing needs it: not started
    lone.start()
    address = f"127.0.0.1:{free_port()}"
    assert lone.request("PATCH", "/1.0", {"config": {"core.https_address": address}}).status == 200
    lone.stop()
    done = _stapesd(lone, "activateifneeded")
    assert done.returncode == 0, done.stderr
    try:
        assert lone.request("GET", "/internal/ready").status == 200
    finally:
        assert _stapesd(lone, "shutdown", "--timeout", "60").returncode == 0


def test_incus_admin_sql(daemon: Daemon, incus: Any) -> None:
    """incus admin sql global|local QUERY answers on the daemon's database, for root only."""
    out = incus("admin", "sql", "global", "SELECT name FROM projects WHERE name = 'default'")
    assert "| default |" in out.stdout
    resp = daemon.request(
        "POST", "/internal/sql",
        {"database": "local", "query": "SELECT 1 AS one; SELECT 'a;b' AS two"},
    )  # fmt: skip
    assert resp.status == 200, resp.body
    assert resp.metadata == {"Results": [
        {"columns": ["one"], "rows": [[1]], "rows_affected": 0, "type": "select"},
        {"columns": ["two"], "rows": [["a;b"]], "rows_affected": 0, "type": "select"},
    ]}  # fmt: skip
    changed = daemon.request(
        "POST",
        "/internal/sql",
        {"database": "global", "query": "UPDATE projects SET description = description"},
    )
    assert changed.metadata["Results"][0]["type"] == "exec"
    bad = daemon.request("POST", "/internal/sql", {"database": "global", "query": "bogus"})
    assert bad.status == 400 and "Failed to exec query" in bad.json()["error"]
