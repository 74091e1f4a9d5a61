"""Helper processes of devices (proxy forwarders): started once the instance runs, one pidfile
each, in their own session so they outlive a stapesd restart like the instance does. They exit
by themselves when the instance's init does; stopping them is for unplug and stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from stapes.api.errors import BadRequest
from stapes.instance.devices.device import Helper, file_name
from stapes.instance.devices.proxy import PID

STARTUP_CHECK = 0.3
"""Seconds a helper gets to fail on its arguments (a port in use...) before it counts as up."""


def _pidfile(run_dir: Path, device: str) -> Path:
    return run_dir / f"helper.{file_name(device)}.pid"


def start(helpers: list[Helper], init_pid: int, run_dir: Path) -> None:
    """Start each helper; one that exits at once fails the whole call with its message (and
    the ones already started are stopped)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    started: list[str] = []
    try:
        for helper in helpers:
            stop(run_dir, helper.device)
            argv = [str(init_pid) if arg == PID else arg for arg in helper.argv]
            log = run_dir / f"helper.{file_name(helper.device)}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                    close_fds=True,
                )
            deadline = time.monotonic() + STARTUP_CHECK
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            if proc.poll() is not None:
                message = log.read_text(errors="replace").strip().splitlines()
                raise BadRequest(
                    f"Device {helper.device!r} could not start: "
                    + (message[-1] if message else f"exit status {proc.returncode}")
                )
            _pidfile(run_dir, helper.device).write_text(str(proc.pid))
            started.append(helper.device)
            _reap_later(proc)
    except BaseException:
        for device in started:
            stop(run_dir, device)
        raise


def _reap_later(proc: subprocess.Popen[bytes]) -> None:
    """Helpers are our children while this stapesd runs: leave no zombie when they exit."""
    threading.Thread(target=proc.wait, daemon=True).start()


def stop(run_dir: Path, device: str) -> None:
    pidfile = _pidfile(run_dir, device)
    with contextlib.suppress(OSError, ValueError):
        pid = int(pidfile.read_text())
        if _is_helper(pid):
            os.kill(pid, signal.SIGTERM)
    pidfile.unlink(missing_ok=True)


def stop_all(run_dir: Path) -> None:
    for pidfile in run_dir.glob("helper.*.pid"):
        stop(run_dir, pidfile.name.removeprefix("helper.").removesuffix(".pid"))


def _is_helper(pid: int) -> bool:
    """The pid still belongs to one of our helpers (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"stapes.host." in cmdline
