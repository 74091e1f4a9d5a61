"""A long copy started with host/run.DIES_WITH_DAEMON ends when the daemon that started it is
killed (kill -9 runs no clean-up of its own)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stapes.host.run import DIES_WITH_DAEMON, RunError

DAEMON = """
import asyncio, sys
from stapes.host.run import DIES_WITH_DAEMON, run
asyncio.run(run([*DIES_WITH_DAEMON, "sleep", sys.argv[1]]))
"""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_the_copy_ends_with_the_daemon() -> None:
    marker = "987.654"  # sleep's argument: this test's child and no other process's
    daemon = subprocess.Popen([sys.executable, "-c", DAEMON, marker])
    try:
        for _ in range(200):
            children = _children(daemon.pid)
            if children and marker.encode() in Path(f"/proc/{children[0]}/cmdline").read_bytes():
                break
            time.sleep(0.02)
        else:
            pytest.fail("the copy did not start")
        copy = children[0]
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait()
        for _ in range(100):
            if not Path(f"/proc/{copy}").exists():
                break
            state = Path(f"/proc/{copy}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "Z":  # killed, waiting for init to reap it
                break
            time.sleep(0.02)
        else:
            os.kill(copy, signal.SIGKILL)
            pytest.fail("the copy outlived the daemon")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def test_errors_name_the_command_not_the_wrapper() -> None:
    error = RunError([*DIES_WITH_DAEMON, "cp", "-a", "x", "y"], 1, "cp: cannot stat 'x'")
    assert str(error).startswith("cp failed with exit code 1: cp: cannot stat")
