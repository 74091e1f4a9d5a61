"""The one subprocess wrapper: argv only, C locale, captured output, errors that carry argv."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

log = logging.getLogger(__name__)


DIES_WITH_DAEMON = ["setpriv", "--pdeathsig", "KILL", "--"]
"""Put before a long copy's argv: the copy is killed when the daemon dies (a kill -9 left a
spare image copy running, writing into a path the restarted daemon copies into again)."""


class RunError(Exception):
    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-5:]
        wrapped = argv[: len(DIES_WITH_DAEMON)] == DIES_WITH_DAEMON
        command = argv[len(DIES_WITH_DAEMON)] if wrapped else argv[0]
        super().__init__(f"{command} failed with exit code {returncode}: {' '.join(tail)}")


class RunTimeout(RunError):
    def __init__(self, argv: list[str], timeout: float) -> None:
        super().__init__(argv, -1, f"timed out after {timeout}s")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


async def run(
    argv: list[str],
    *,
    timeout: float = 600,
    check: bool = True,
    input: bytes | None = None,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, bytes, str]:
    """Run ``argv``; return (returncode, stdout, stderr). Raises RunError when check and rc != 0.
    ``env``: variables added to the daemon's environment."""
    log.debug("run: %s", argv)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**_env(), **(env or {})},
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(input), timeout)
    except (TimeoutError, asyncio.CancelledError) as exc:
        await _terminate(proc)
        if isinstance(exc, TimeoutError):
            raise RunTimeout(argv, timeout) from None
        raise
    rc = proc.returncode if proc.returncode is not None else -1
    stderr = err.decode(errors="replace")
    if check and rc != 0:
        raise RunError(argv, rc, stderr)
    return rc, out, stderr


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def spawn(argv: list[str]) -> asyncio.subprocess.Process:
    """Start ``argv`` with pipes on stdin, stdout and stderr, for callers that stream."""
    log.debug("spawn: %s", argv)
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )


def run_sync(argv: list[str], *, timeout: float = 30, with_stderr: bool = False) -> tuple[int, str]:
    """Run a quick ``argv`` from synchronous code (a version probe); returns (rc, stdout, with
    stderr after it when asked). A missing binary is rc 127, as from a shell."""
    import subprocess

    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, env=_env(), timeout=timeout, check=False
        )
    except FileNotFoundError:
        return 127, ""
    return done.returncode, done.stdout + (done.stderr if with_stderr else "")
