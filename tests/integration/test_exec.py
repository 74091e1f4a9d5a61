"""Exec: record-output, websockets (non-interactive and pty), env/cwd/user, signals, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import STAPES, Daemon

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


def test_record_output(daemon: Daemon, container: str) -> None:
    resp = daemon.request(
        "POST",
        f"/1.0/instances/{container}/exec",
        {
            "command": ["sh", "-c", "echo out; echo err >&2; exit 3"],
            "record-output": True,
            "wait-for-websocket": False,
        },
    )
    meta = daemon.ok(resp)
    assert meta["metadata"]["return"] == 3
    out = daemon.request("GET", meta["metadata"]["output"]["1"])
    assert out.status == 200 and out.body == b"out\n"
    assert daemon.request("GET", meta["metadata"]["output"]["2"]).body == b"err\n"
    listing = daemon.request("GET", f"/1.0/instances/{container}/logs/exec-output").metadata
    assert meta["metadata"]["output"]["1"] in listing


def test_environment_cwd_user(daemon: Daemon, busybox: str) -> None:
    name = daemon.launch(busybox, config={"environment.FROM_CONFIG": "cfg"})
    try:
        _environment_cwd_user(daemon, name)  # the first exec: the exec parent starts
        _environment_cwd_user(daemon, name)  # the next: forked by it
    finally:
        daemon.force_delete(name)


def _environment_cwd_user(daemon: Daemon, name: str) -> None:
    resp = daemon.request(
        "POST",
        f"/1.0/instances/{name}/exec",
        {
            "command": ["sh", "-c", "echo $FROM_CONFIG $FOO $HOME; pwd; id -u; id -g; id -G"],
            "environment": {"FOO": "bar"},
            "cwd": "/tmp",
            "user": 1000,
            "group": 1001,
            "record-output": True,
        },
    )
    meta = daemon.ok(resp)
    out = daemon.request("GET", meta["metadata"]["output"]["1"]).body.decode().split("\n")
    assert out[:5] == ["cfg bar", "/tmp", "1000", "1001", "1001"]


async def _connect(
    daemon: Daemon, session: aiohttp.ClientSession, op: dict[str, object], fd: str
) -> aiohttp.ClientWebSocketResponse:
    secret = op["metadata"]["fds"][fd]  # type: ignore[index]
    return await session.ws_connect(
        f"http://stapes/1.0/operations/{op['id']}/websocket?secret={secret}"
    )


async def test_websockets_non_interactive(daemon: Daemon, container: str) -> None:
    resp = daemon.request(
        "POST",
        f"/1.0/instances/{container}/exec",
        {
            "command": ["sh", "-c", "cat; echo done >&2; exit 5"],
            "wait-for-websocket": True,
            "interactive": False,
        },
    )
    op = resp.json()["metadata"]
    assert op["class"] == "websocket"
    assert set(op["metadata"]["fds"]) == {"0", "1", "2", "control"}
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(daemon.socket)) as session:
        control = await _connect(daemon, session, op, "control")
        stdin, stdout, stderr = [await _connect(daemon, session, op, fd) for fd in "012"]
        await stdin.send_bytes(b"hello through stdin\n")
        await stdin.close()

        async def read_all(ws: aiohttp.ClientWebSocketResponse) -> bytes:
            data = b""
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    data += msg.data
            return data

        out, err = await asyncio.wait_for(asyncio.gather(read_all(stdout), read_all(stderr)), 30)
        await control.close()
    assert out == b"hello through stdin\n"
    assert err == b"done\n"
    result = daemon.request("GET", f"/1.0/operations/{op['id']}/wait?timeout=30").metadata
    assert result["metadata"]["return"] == 5


async def test_websockets_interactive_pty_resize_and_signal(daemon: Daemon, container: str) -> None:
    resp = daemon.request(
        "POST",
        f"/1.0/instances/{container}/exec",
        {
            "command": ["sh"],
            "wait-for-websocket": True,
            "interactive": True,
            "width": 100,
            "height": 40,
            "environment": {"TERM": "xterm"},
        },
    )
    op = resp.json()["metadata"]
    assert set(op["metadata"]["fds"]) == {"0", "control"}
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(daemon.socket)) as session:
        control = await _connect(daemon, session, op, "control")
        term = await _connect(daemon, session, op, "0")
        output = b""

        async def until(marker: bytes) -> None:
            nonlocal output
            while marker not in output:
                msg = await asyncio.wait_for(term.receive(), 20)
                assert msg.type == aiohttp.WSMsgType.BINARY, msg
                output += msg.data

        await term.send_bytes(b"tty; stty size; echo MARK$((0+1))\n")
        await until(b"MARK1\r\n")
        await control.send_str(
            json.dumps({"command": "window-resize", "args": {"width": "120", "height": "50"}})
        )
        await asyncio.sleep(0.2)
        await term.send_bytes(b"stty size; echo MARK$((1+1))\n")
        await until(b"MARK2\r\n")
        await term.send_bytes(b"sleep 1000\n")
        await asyncio.sleep(0.5)
        await control.send_str(json.dumps({"command": "signal", "signal": int(signal.SIGKILL)}))
        async for _ in term:
            pass
        await control.close()
    text = output.decode()
    assert "/dev/pts/" in text
    assert "40 100" in text
    assert "50 120" in text
    result = daemon.request("GET", f"/1.0/operations/{op['id']}/wait?timeout=30").metadata
    assert result["metadata"]["return"] == 128 + signal.SIGKILL


def test_cli_exec_exit_status_and_stdin(daemon: Daemon, container: str) -> None:
    proc = daemon.cli("exec", container, "--", "sh", "-c", "echo hi; exit 3", check=False)
    assert proc.returncode == 3 and proc.stdout == "hi\n"
    proc = daemon.cli(
        "exec", container, "--env", "A=b", "--", "sh", "-c", "cat; echo $A", input=b"piped\n"
    )
    assert proc.stdout == "piped\nb\n"


def test_cli_exec_with_a_terminal(daemon: Daemon, container: str) -> None:
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(daemon.env)
        os.execv(STAPES, [STAPES, "exec", container, "--", "sh", "-c", "tty; exit 4"])
    output = b""
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        output += data
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 4
    assert b"/dev/pts/" in output


def test_exec_missing_command_fails_cleanly(daemon: Daemon, container: str) -> None:
    proc = subprocess.run(
        [STAPES, "exec", container, "--", "/no/such/binary"],
        env=daemon.env,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 127 and b"Command not found" in proc.stderr


@pytest.mark.parametrize(
    ("command", "error"),
    [(["/no/such/binary"], "Command not found"), (["/etc"], "Command not executable")],
)
@pytest.mark.parametrize("interactive", [False, True])
def test_a_command_that_cannot_run_fails_the_operation(
    daemon: Daemon, container: str, command: list[str], error: str, interactive: bool
) -> None:
    """As Incus: the operation fails with "Command not found" (or "Command not executable"),
    its metadata's return is 127 (126), and a command that exits 127 itself is not that."""
    body = {"command": command, "interactive": interactive, "wait-for-websocket": False}
    resp = daemon.request("POST", f"/1.0/instances/{container}/exec", body)
    assert resp.status == 202, resp.body
    op_id = resp.json()["metadata"]["id"]
    waited = daemon.request("GET", f"/1.0/operations/{op_id}/wait?timeout=30")
    assert waited.status == 400 and waited.json()["error"] == error, waited.body
    resp = daemon.request("POST", f"/1.0/instances/{container}/exec",
                          {**body, "command": ["sh", "-c", "exit 127"]})  # fmt: skip
    op = daemon.request("GET", f"/1.0/operations/{resp.json()['metadata']['id']}/wait?timeout=30")
    assert op.status == 200 and op.metadata["metadata"]["return"] == 127
    assert op.metadata["err"] == ""


def test_the_incus_client_exits_127_on_a_missing_command(container: str, incus: Any) -> None:
    proc = incus("exec", container, "--", "/no/such/binary", check=False)
    assert proc.returncode == 127 and "Error: Command not found" in proc.stderr
    proc = incus("exec", container, "--", "/etc", check=False)
    assert proc.returncode == 126 and "Error: Command not executable" in proc.stderr
    proc = incus("exec", container, "--", "sh", "-c", "exit 127", check=False)
    assert proc.returncode == 127 and proc.stderr == ""


@pytest.mark.parametrize("terminal", [False, True])
def test_output_streams_while_the_command_runs(
    daemon: Daemon, container: str, terminal: bool
) -> None:
    """A command that keeps running (or leaves a daemon behind) streams its output at once:
    the daemon learns that the exec happened when its report pipe closes, which only a
    close-on-exec descriptor does (one inherited by the command held it open until it ended)."""
    argv = [STAPES, "exec", container, "-t" if terminal else "-T", "--",
            "sh", "-c", "echo started; sleep 20"]  # fmt: skip
    with subprocess.Popen(
        argv, env=daemon.env, stdout=subprocess.PIPE, stdin=subprocess.PIPE
    ) as proc:
        try:
            assert proc.stdout is not None
            began = time.monotonic()
            line = proc.stdout.readline()
            assert b"started" in line
            assert proc.poll() is None and time.monotonic() - began < 15  # before sleep ends
        finally:
            proc.kill()


def _payload_cgroups(name: str) -> list[Path]:
    return sorted(Path("/sys/fs/cgroup").glob(f"*/lxc.payload.{name}*"))


def _listed(daemon: Daemon, name: str) -> list[str]:
    """The container's processes by name, as ps inside sees them, but that ps."""
    names = daemon.cli("exec", name, "--", "ps", "-o", "comm").stdout.split()[1:]
    names.remove("ps")
    return names


def _state(daemon: Daemon, name: str) -> dict[str, Any]:
    state: dict[str, Any] = daemon.request("GET", f"/1.0/instances/{name}/state").metadata
    return state


def test_commands_start_with_every_signal_at_its_default(daemon: Daemon, container: str) -> None:
    """As under Incus: nothing ignored nor blocked (an ignored SIGPIPE or SIGINT survives the
    exec: `yes | head` would never end, a ^C would not stop a command), on the first exec and
    on later ones alike."""
    for _ in range(2):
        status = daemon.cli("exec", container, "--", "cat", "/proc/self/status").stdout
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert int(fields["SigIgn"], 16) == 0 and int(fields["SigBlk"], 16) == 0, status
    done = daemon.cli("exec", container, "--", "sh", "-c", "yes | head -n 1", timeout=30)
    assert done.stdout == "y\n"


def test_the_exec_parent_is_none_of_the_containers_processes(
    daemon: Daemon, container: str
) -> None:
    """Execs after the first are forked by a process left attached to the container
    (exec_parent.py). It must not show inside: not in its process list, not in the count."""
    first = _listed(daemon, container)  # the parent is made by this exec
    second = _listed(daemon, container)  # and forks this one
    assert first == second and not [comm for comm in second if "python" in comm], second
    assert _state(daemon, container)["processes"] == len(second)
    privileged = daemon.launch("bb", config={"security.privileged": "true"})
    try:
        for _ in range(2):
            out = daemon.cli("exec", privileged, "--", "sh", "-c", "id -u; echo $$").stdout
            assert out.split() == ["0", out.split()[1]] and int(out.split()[1]) > 1
    finally:
        daemon.force_delete(privileged)


def test_exec_where_no_exec_parent_can_start(daemon: Daemon, busybox: str) -> None:
    """A container whose policy denies setns cannot have a parent (it joins the pid namespace
    with setns): each command is attached anew."""
    name = daemon.launch(busybox, config={"security.syscalls.deny": "setns"})
    try:
        for word in ("one", "two"):
            assert daemon.cli("exec", name, "--", "echo", word).stdout == word + "\n"
        listed = (Path("/sys/fs/cgroup/pids") / f"lxc.payload.{name}" / "cgroup.procs").read_text()
        assert len(listed.split()) == _state(daemon, name)["processes"]
    finally:
        daemon.force_delete(name)


def test_a_stop_after_exec_leaves_no_cgroup(daemon: Daemon, container: str) -> None:
    """The exec parent is in the container's cgroups: it is ended before a stop, and a
    container that ends by itself has them removed too, so the next start gets the same names
    (the limits tests read lxc.payload.NAME)."""
    daemon.cli("exec", container, "--", "true")
    daemon.force_stop(container)
    assert _payload_cgroups(container) == []
    daemon.wait(daemon.request("PUT", f"/1.0/instances/{container}/state", {"action": "start"}))
    assert daemon.cli("exec", container, "--", "echo", "again").stdout == "again\n"
    init = _state(daemon, container)["pid"]
    os.kill(init, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _state(daemon, container)["status"] != "Stopped" and time.monotonic() < deadline:
        time.sleep(0.1)
    while _payload_cgroups(container) and time.monotonic() < deadline:
        time.sleep(0.1)  # the daemon's clean-up after an init that exited runs a moment later
    assert _payload_cgroups(container) == []
    daemon.wait(daemon.request("PUT", f"/1.0/instances/{container}/state", {"action": "start"}))
    assert _payload_cgroups(container)[0].name == f"lxc.payload.{container}"
    assert daemon.cli("exec", container, "--", "echo", "third").stdout == "third\n"
