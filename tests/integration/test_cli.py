"""The stapes CLI end to end: launch, list, info, stop, delete, operations, monitor."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import yaml

from stapes.api.errors import RemoteError
from stapes.client.lite import LiteServer
from tests.helpers import STAPES, Daemon, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


def test_launch_list_info_stop_delete(daemon: Daemon, busybox: str) -> None:
    name = unique("cli")
    assert f"Launching {name}" in daemon.cli("launch", busybox, name).stdout
    try:
        table = daemon.cli("list").stdout
        assert "NAME" in table and "SNAPSHOTS" in table and name in table
        rows = list(csv.reader(io.StringIO(daemon.cli("list", "--format", "csv").stdout)))
        assert [name, "RUNNING", "", "", "CONTAINER", "0"] in rows
        listed = json.loads(daemon.cli("list", "--format", "json").stdout)
        assert any(i["name"] == name and i["state"]["pid"] > 0 for i in listed)
        assert any(
            i["name"] == name for i in yaml.safe_load(daemon.cli("list", "-f", "yaml").stdout)
        )
        assert daemon.cli("list", name, "--format", "csv").stdout.startswith(name)
        info = daemon.cli("info", name).stdout
        assert f"Name: {name}" in info and "Status: RUNNING" in info and "PID:" in info
        assert daemon.cli("delete", name, check=False).returncode == 1
        daemon.cli("stop", "-f", name)
        assert f"{name},STOPPED" in daemon.cli("list", "--format", "csv").stdout
        daemon.cli("start", name)
        daemon.cli("restart", "-f", name)
        daemon.cli("delete", "-f", name)
        assert name not in daemon.cli("list", "--format", "csv").stdout
    finally:
        daemon.force_delete(name)


def test_the_plain_commands_start_without_click(daemon: Daemon, busybox: str) -> None:
    """`stapes list`, `stapes info NAME` and `stapes exec NAME -- CMD` against the local daemon
    answer without importing click, http.client or websocket-client, nor for list and info re,
    json and socket (what a CLI start costs),
    with the full command tree's output and behaviour; an unusual form, or an error before a
    command runs, goes to the full CLI."""
    name = unique("fast")
    daemon.cli("launch", busybox, name)
    daemon.cli("snapshot", "create", name)  # the SNAPSHOTS column: asked per instance here
    env = {**daemon.env, "PYTHONPROFILEIMPORTTIME": "1"}
    try:
        for args in (["list"], ["list", "-f", "csv", "-c", "nsP"], ["info", name]):
            fast = subprocess.run([STAPES, *args], env=env, capture_output=True, text=True)
            full = subprocess.run(
                [sys.executable, "-c", "from stapes.cli.main import main; main()", *args],
                env=daemon.env, capture_output=True, text=True,
            )  # fmt: skip
            imported = {line.split("|")[-1].strip() for line in fast.stderr.splitlines()}
            assert "click" not in imported and "http.client" not in imported, args
            if "csv" not in args:  # nor re (json, socket, enum: what the Go client skips)
                assert not imported & {"re", "json", "socket", "enum"}, args
            assert fast.returncode == 0 and fast.stdout, fast.stderr[-500:]
            if args[0] == "list":  # info shows live figures (memory...) that move
                assert fast.stdout == full.stdout, args
                assert args != ["list"] or "| 1         |" in fast.stdout
            else:
                assert fast.stdout.splitlines()[:5] == full.stdout.splitlines()[:5]
        # exec over the hand-written websockets: streams, stdin, exit codes, -t
        script = "cat; echo out; echo err >&2; exit 3"
        done = subprocess.run([STAPES, "exec", name, "--", "sh", "-c", script], env=env,
                              input="from stdin\n", capture_output=True, text=True)  # fmt: skip
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
        assert "click" not in imported and "websocket" not in imported
        assert done.returncode == 3 and done.stdout == "from stdin\nout\n"
        assert done.stderr.splitlines()[-1] == "err"
        big = os.urandom(3 << 20)
        digest = subprocess.run([STAPES, "exec", name, "--", "md5sum"], env=daemon.env,
                                input=big, capture_output=True).stdout  # fmt: skip
        assert digest.split()[0].decode() == hashlib.md5(big).hexdigest()
        tty = subprocess.run([STAPES, "exec", name, "-t", "--", "tty"], env=daemon.env,
                             capture_output=True, text=True)  # fmt: skip
        assert tty.returncode == 0 and tty.stdout.startswith("/dev/pts/"), tty
        missing = subprocess.run([STAPES, "exec", name, "--", "nosuchcommand"], env=daemon.env,
                                 capture_output=True, text=True)  # fmt: skip
        assert missing.returncode == 127 and "Error: " in missing.stderr
        for args in (["list", name], ["info", "nosuch"], ["exec", "nosuch", "--", "true"]):
            slow = subprocess.run([STAPES, *args], env=env, capture_output=True, text=True)
            assert "click" in {line.split("|")[-1].strip() for line in slow.stderr.splitlines()}
            assert slow.returncode == (0 if args[0] == "list" else 1), slow.stderr[-300:]
    finally:
        daemon.force_delete(name)


def test_the_fast_list_asks_many_instances_on_one_connection(daemon: Daemon, busybox: str) -> None:
    """More instances than one batch of pipelined requests (LiteServer.BATCH), one running and
    one with a snapshot: the fast `stapes list` prints what the full CLI prints. Its kept
    connection, closed by the daemon while idle, is opened again; an error answer leaves the
    client able to ask again."""
    names = sorted(unique("many") for _ in range(LiteServer.BATCH + 3))
    for name in names:
        daemon.cli("init", busybox, name)
    daemon.cli("start", names[0])
    daemon.cli("snapshot", "create", names[1])
    try:
        args = ["list", "-f", "csv", "-c", "nsS4"]
        fast = subprocess.run([STAPES, *args], env=daemon.env, capture_output=True, text=True)
        full = subprocess.run(
            [sys.executable, "-c", "from stapes.cli.main import main; main()", *args],
            env=daemon.env, capture_output=True, text=True,
        )  # fmt: skip
        assert fast.returncode == 0 and fast.stdout == full.stdout, fast.stderr[-500:]
        rows = {row[0]: row for row in csv.reader(io.StringIO(fast.stdout))}
        assert rows[names[0]][1] == "RUNNING" and rows[names[1]][2] == "1"
        assert set(names) <= set(rows)

        server = LiteServer(daemon.socket)
        assert server.metadata("GET", "/1.0")["api_version"] == "1.0"
        kept = server._sock
        assert kept is not None
        kept.shutdown(socket.SHUT_RD)  # reads as a connection the daemon closed while idle
        assert server.metadata("GET", "/1.0")["api_version"] == "1.0"
        assert server._sock is not kept
        found = server.metadata_many([f"/1.0/instances/{name}" for name in names])
        assert [inst["name"] for inst in found] == names
        with pytest.raises(RemoteError) as missing:
            server.metadata_many([f"/1.0/instances/{names[0]}", "/1.0/instances/nosuch"])
        assert missing.value.status == 404
        assert server.metadata("GET", f"/1.0/instances/{names[1]}")["name"] == names[1]
        server.close()
    finally:
        for name in names:
            daemon.force_delete(name)


def test_init_does_not_start(daemon: Daemon, busybox: str) -> None:
    name = unique("init")
    daemon.cli("init", busybox, name, "-c", "user.a=b")
    try:
        inst = daemon.request("GET", f"/1.0/instances/{name}").metadata
        assert inst["status"] == "Stopped" and inst["config"]["user.a"] == "b"
    finally:
        daemon.force_delete(name)


def test_errors_are_printed_and_fail(daemon: Daemon) -> None:
    proc = daemon.cli("launch", "no-such-image", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("Error: ")
    proc = daemon.cli("info", "nope", check=False)
    assert proc.returncode == 1 and "not found" in proc.stderr


def test_image_list_and_aliases(daemon: Daemon, busybox: str) -> None:
    rows = list(csv.reader(io.StringIO(daemon.cli("image", "list", "-f", "csv").stdout)))
    assert any(busybox in r[0].split("\n") for r in rows)
    alias = unique("al")
    fingerprint = rows[0][1]
    daemon.cli("image", "alias", "create", alias, fingerprint)
    assert alias in daemon.cli("image", "alias", "list", "-f", "csv").stdout
    daemon.cli("image", "alias", "delete", alias)
    assert alias not in daemon.cli("image", "alias", "list", "-f", "csv").stdout


def test_operation_list_and_monitor(daemon: Daemon, busybox: str) -> None:
    monitor = subprocess.Popen(
        [STAPES, "monitor", "--type", "lifecycle", "--format", "json"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1)
        name = daemon.launch(busybox)
        daemon.force_delete(name)
        seen = []
        while len(seen) < 4:
            line = monitor.stdout.readline()  # type: ignore[union-attr]
            assert line, "monitor ended early"
            seen.append(json.loads(line)["metadata"]["action"])
        assert seen == [
            "instance-created",
            "instance-started",
            "instance-stopped",
            "instance-deleted",
        ]
    finally:
        monitor.kill()
        monitor.wait()
        monitor.stdout.close()  # type: ignore[union-attr]
    # finished operations go after five seconds, as in Incus: a running one is listed
    name = daemon.launch(busybox)
    try:
        body = {"command": ["sleep", "60"], "record-output": True}
        running = daemon.request("POST", f"/1.0/instances/{name}/exec", body)
        op_id = running.json()["metadata"]["id"]
        ops = json.loads(daemon.cli("operation", "list", "--format", "json").stdout)
        assert any(op["id"] == op_id and op["status"] == "Running" for op in ops), ops
        assert op_id in daemon.cli("operation", "show", op_id).stdout
    finally:
        daemon.force_delete(name)


def test_snapshot_copy_rename_verbs(daemon: Daemon, container: str) -> None:
    daemon.cli("snapshot", "create", container, "first")
    daemon.cli("snapshot", "create", container)
    listing = daemon.cli("snapshot", "list", container, "-f", "csv").stdout
    assert [line.split(",")[0] for line in listing.splitlines()] == ["first", "snap0"]
    daemon.cli("snapshot", "rename", container, "first", "base")
    assert "name: base" in daemon.cli("snapshot", "show", container, "base").stdout
    daemon.cli("exec", container, "--", "touch", "/root/after")
    daemon.cli("snapshot", "restore", container, "base")
    gone = daemon.cli("exec", container, "--", "ls", "/root/after", check=False)
    assert gone.returncode != 0
    info = daemon.cli("info", container).stdout
    assert "base" in info.split("Snapshots:")[1]
    assert "root (disk): path=/, pool=default" in info.split("Devices:")[1]

    copy, moved = unique("cp"), unique("mv")
    try:
        daemon.cli("copy", f"{container}/base", copy)
        daemon.cli("move", copy, moved)
        listing = daemon.cli("list", "-f", "csv").stdout
        assert f"{moved},STOPPED" in listing and copy not in listing
        missing = daemon.cli("snapshot", "delete", container, "nope", check=False)
        assert missing.returncode == 1 and "nope" in missing.stderr
    finally:
        daemon.force_delete(copy)
        daemon.force_delete(moved)
    daemon.cli("snapshot", "delete", container, "base", "snap0")
    assert daemon.cli("snapshot", "list", container, "-f", "csv").stdout == ""


def test_launch_with_an_instance_type(daemon: Daemon, busybox: str) -> None:
    name = unique("typ")
    try:
        daemon.cli("launch", busybox, name, "-t", "c1-m1")
        config = daemon.request("GET", f"/1.0/instances/{name}").metadata["config"]
        assert config["limits.cpu"] == "1" and config["limits.memory"] == "1GiB"
        bad = daemon.cli("launch", busybox, unique("typ"), "--type", "huge", check=False)
        assert bad.returncode == 1 and "huge" in bad.stderr
    finally:
        daemon.force_delete(name)


@pytest.mark.btrfs
def test_cli_storage_pools_and_volumes(daemon: Daemon) -> None:
    pool = unique("cbt")
    daemon.cli("storage", "create", pool, "btrfs", "size=256MiB")
    try:
        assert f"{pool},btrfs" in daemon.cli("storage", "list", "--format", "csv").stdout
        info = daemon.cli("storage", "info", pool).stdout
        assert "total space" in info
        daemon.cli("storage", "set", pool, "volume.size=8MiB")
        daemon.cli("storage", "volume", "create", pool, "v")
        assert "size: 8MiB" in daemon.cli("storage", "volume", "show", pool, "v").stdout
        daemon.cli("storage", "volume", "snapshot", "create", pool, "v", "first")
        snaps = daemon.cli("storage", "volume", "snapshot", "list", pool, "v", "-f", "csv")
        assert snaps.stdout.startswith("first,")
        # a dir pool records the size it cannot enforce, as Incus's does
        daemon.cli("storage", "volume", "copy", f"{pool}/v", "default/vcopy")
        assert "size: 8MiB" in daemon.cli("storage", "volume", "show", "default", "vcopy").stdout
        daemon.cli("storage", "volume", "delete", "default", "vcopy")
        daemon.cli("storage", "volume", "unset", pool, "v", "size")
        daemon.cli("storage", "volume", "move", f"{pool}/v", "default/moved")
        listing = daemon.cli("storage", "volume", "list", "default", "-f", "csv").stdout
        assert "custom,moved," in listing and "moved/first" in listing
        daemon.cli("storage", "volume", "delete", "default", "moved")
        proc = daemon.cli("storage", "volume", "create", pool, "a/b", check=False)
        assert proc.returncode != 0 and "slashes" in proc.stderr
    finally:
        daemon.cli("storage", "delete", pool, check=False)
    assert pool not in daemon.cli("storage", "list", "-f", "csv").stdout
