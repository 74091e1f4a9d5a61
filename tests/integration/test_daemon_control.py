"""The daemon's own life, as incusd's: `incus admin waitready` and `stapesd waitready`, `incus
admin shutdown` and `stapesd shutdown` (every instance stopped, the daemon gone, the instances
started again with it), `stapesd activateifneeded`, `stapesd --version`."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

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
