"""Host directories shared into a VM over virtiofs: one virtiofsd per share, serving it on a
vhost-user socket in the VM's run directory, when the host has virtiofsd: the Rust one
(Debian 13's virtiofsd package, /usr/libexec/virtiofsd) or QEMU's older C one (bookworm's
qemu-system-common, /usr/lib/qemu/virtiofsd), whose options differ. Without one, for a
read-only share that this virtiofsd cannot enforce, or for a directory the C one's option
list cannot name (a comma or backslash in its path), the share goes over 9p, whose server is
QEMU itself."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from stapes.api.errors import InternalError
from stapes.instance.devices.device import VmDisk

PATHS = ("/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd")
START_TIMEOUT = 10.0


@functools.cache
def binary() -> str:
    """virtiofsd's path, or "" when the host has none."""
    return next((p for p in PATHS if os.access(p, os.X_OK)), "") or shutil.which("virtiofsd") or ""


@functools.cache
def _help(path: str) -> str:
    try:
        done = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


def enforces_readonly(path: str) -> bool:
    """Whether this virtiofsd has --readonly (the Rust one, from its 1.11)."""
    return "--readonly" in _help(path)


def legacy(path: str) -> bool:
    """QEMU's C virtiofsd: ``-o source=DIR,...`` instead of the Rust one's --shared-dir."""
    return "--shared-dir" not in _help(path)


def _servable(path: str, share: VmDisk) -> bool:
    if share.readonly and not enforces_readonly(path):
        return False
    # the C one's -o list splits at commas and unescapes backslashes: such a path cannot be
    # named to it
    return not (legacy(path) and ("," in share.source or "\\" in share.source))


def sockets(run: Path, shares: list[VmDisk]) -> dict[str, Path]:
    """The shares served over virtiofs (name -> vhost-user socket); the others go over 9p."""
    path = binary()
    if not path:
        return {}
    return {
        share.name: run / f"virtiofs{i}.sock"
        for i, share in enumerate(shares)
        if share.share and _servable(path, share)
    }


def command(path: str, sock: Path, share: VmDisk) -> list[str]:
    """The virtiofsd command line serving ``share`` on ``sock`` (a share ``sockets`` chose)."""
    if legacy(path):
        if "," in share.source or "\\" in share.source:
            raise InternalError(f"virtiofsd cannot be given the directory {share.source!r}")
        options = ",".join(("source=" + share.source, "cache=auto", "sandbox=chroot"))
        return [path, "--socket-path=" + str(sock), "-o", options]
    argv = [path, "--socket-path=" + str(sock), "--shared-dir=" + share.source,
            "--cache=auto", "--sandbox=chroot"]  # fmt: skip
    if share.readonly:
        argv.append("--readonly")
    return argv


async def start(
    run: Path, shares: list[VmDisk], chosen: dict[str, Path], log: Path
) -> list[asyncio.subprocess.Process]:
    """One virtiofsd per chosen share, each up (its socket made) before QEMU connects to it.
    Their pids go to run/virtiofsN.pid for stop() after a daemon restart."""
    procs: list[asyncio.subprocess.Process] = []
    try:
        for share in shares:
            sock = chosen.get(share.name)
            if sock is None:
                continue
            argv = command(binary(), sock, share)
            with open(log, "a") as out:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                )
            procs.append(proc)
            sock.with_suffix(".pid").write_text(f"{proc.pid}\n")
            deadline = time.monotonic() + START_TIMEOUT
            while not sock.exists():
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise InternalError(
                        f"virtiofsd did not start for disk {share.name!r} ({share.source}): "
                        f"see {log}"
                    )
                await asyncio.sleep(0.02)
    except BaseException:
        await stop(run, procs)
        raise
    return procs


async def stop(run: Path, procs: list[asyncio.subprocess.Process]) -> None:
    """End the VM's virtiofsd processes: ours (reaped), and those a previous stapesd started
    (by their pid files). Each exits on its own when QEMU goes; this is for the rest."""
    for proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    ours = {proc.pid for proc in procs}
    for pid_file in run.glob("virtiofs*.pid"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text())
            if pid not in ours and _is_virtiofsd(pid):
                os.kill(pid, signal.SIGTERM)
        pid_file.unlink(missing_ok=True)


def _is_virtiofsd(pid: int) -> bool:
    try:
        return "virtiofsd" in Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return False
