"""Console attach over websockets (one client at a time, freed on detach), the console log,
and the instance's log files."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import time

import aiohttp
import pytest

from tests.helpers import STAPES, Daemon, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


async def _attach_and_run(daemon: Daemon, name: str, marker: str) -> str:
    """Attach, activate the shell on the console, run an echo, detach; return the output."""
    resp = daemon.request(
        "POST", f"/1.0/instances/{name}/console", {"width": 90, "height": 30, "type": "console"}
    )
    assert resp.status == 202, resp.body
    op = resp.json()["metadata"]
    assert op["class"] == "websocket" and set(op["metadata"]["fds"]) == {"0", "control"}
    base = f"http://stapes/1.0/operations/{op['id']}/websocket?secret="
    output = b""
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(daemon.socket)) as session:
        control = await session.ws_connect(base + op["metadata"]["fds"]["control"])
        term = await session.ws_connect(base + op["metadata"]["fds"]["0"])
        await control.send_str(
            json.dumps({"command": "window-resize", "args": {"width": "100", "height": "40"}})
        )
        await term.send_bytes(b"\r")  # busybox asks for Enter before it starts the shell
        while b"# " not in output:
            msg = await asyncio.wait_for(term.receive(), 20)
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            output += msg.data
        await term.send_bytes(f"echo {marker}-$((6*7))\r".encode())
        while f"{marker}-42".encode() not in output:
            msg = await asyncio.wait_for(term.receive(), 20)
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            output += msg.data
        await term.close()  # detach, as `incus console` does on ctrl+a q
        await control.close()
    done = daemon.request("GET", f"/1.0/operations/{op['id']}/wait?timeout=30").metadata
    assert done["status"] == "Success", done
    return output.decode(errors="replace")


async def test_console_attach_detach_and_reattach(daemon: Daemon, container: str) -> None:
    first = await _attach_and_run(daemon, container, "ONE")
    assert "ONE-42" in first
    second = await _attach_and_run(daemon, container, "TWO")  # the console was freed
    assert "TWO-42" in second

    log = daemon.request("GET", f"/1.0/instances/{container}/console")
    assert log.status == 200 and b"Please press Enter" in log.body
    assert daemon.request("DELETE", f"/1.0/instances/{container}/console").status == 200
    assert daemon.request("GET", f"/1.0/instances/{container}/console").body == b""


def test_console_bad_input(daemon: Daemon, container: str) -> None:
    vga = daemon.request("POST", f"/1.0/instances/{container}/console", {"type": "vga"})
    assert vga.status == 400 and "console" in vga.json()["error"]
    daemon.ok(
        daemon.request(
            "PUT", f"/1.0/instances/{container}/state", {"action": "stop", "force": True}
        )
    )
    stopped = daemon.request("POST", f"/1.0/instances/{container}/console", {})
    assert stopped.status == 400 and "not running" in stopped.json()["error"]
    assert daemon.request("POST", "/1.0/instances/nope/console", {}).status == 404


def test_log_files(daemon: Daemon, container: str) -> None:
    listed = daemon.request("GET", f"/1.0/instances/{container}/logs").metadata
    assert f"/1.0/instances/{container}/logs/lxc.conf" in listed
    conf = daemon.request("GET", f"/1.0/instances/{container}/logs/lxc.conf")
    assert conf.status == 200 and b"lxc.rootfs.path" in conf.body
    missing = daemon.request("GET", f"/1.0/instances/{container}/logs/other.log")
    assert missing.status == 404
    kept = daemon.request("DELETE", f"/1.0/instances/{container}/logs/lxc.conf")
    assert kept.status == 400
    exec_outputs = daemon.request("GET", f"/1.0/instances/{container}/logs/exec-output")
    assert exec_outputs.status == 200 and isinstance(exec_outputs.metadata, list)


def test_cli_console_detaches_on_ctrl_a_q(daemon: Daemon, container: str) -> None:
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(daemon.env)
        os.execv(STAPES, [STAPES, "console", container])
    output = b""

    def read_until(marker: bytes, timeout: float = 20) -> None:
        nonlocal output
        deadline = time.time() + timeout
        while marker not in output and time.time() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                output += os.read(fd, 4096)

    read_until(b"ctrl>+a q")
    os.write(fd, b"\r")  # busybox asks for Enter before it starts the shell
    read_until(b"# ")
    for _ in range(3):  # a line typed while the shell starts can be flushed: type it again
        os.write(fd, b"echo CLI-$((6*7))\r")
        read_until(b"CLI-42", 5)
        if b"CLI-42" in output:
            break
    os.write(fd, b"\x01q")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert b"CLI-42" in output
    assert os.waitstatus_to_exitcode(status) == 0
    log = daemon.cli("console", container, "--show-log").stdout
    assert "CLI-42" in log


def test_a_container_never_started_has_an_empty_lxc_log(daemon: Daemon, busybox: str) -> None:
    """As Incus lists it from the start: incus info --show-log prints an empty Log."""
    name = unique("c")
    body = {"name": name, "source": {"type": "image", "alias": busybox}}
    daemon.ok(daemon.request("POST", "/1.0/instances", body))
    try:
        listed = daemon.request("GET", f"/1.0/instances/{name}/logs").metadata
        assert listed == [f"/1.0/instances/{name}/logs/lxc.log"]
        log = daemon.request("GET", f"/1.0/instances/{name}/logs/lxc.log")
        assert (log.status, log.body) == (200, b"")
        assert daemon.cli("info", name, "--show-log").returncode == 0
    finally:
        daemon.wait(daemon.request("DELETE", f"/1.0/instances/{name}"))
