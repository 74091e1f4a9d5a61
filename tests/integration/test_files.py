"""The files API and `stapes file`: running and stopped instances, ids, modes, symlinks, and
paths that try to leave the instance's root."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import STAPES, Daemon, UnixHTTPConnection, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


@pytest.fixture
def host_file() -> Iterator[Path]:
    """A host file that no instance file operation may read or change."""
    path = Path("/var/tmp") / f"stapes-secret-{uuid.uuid4().hex[:8]}"
    path.write_text("host secret\n")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def test_get_file_and_directory(daemon: Daemon, container: str) -> None:
    resp = daemon.request("GET", f"/1.0/instances/{container}/files?path=/etc/hostname")
    assert resp.status == 200
    assert resp.body == f"{container}\n".encode()
    assert resp.headers["X-Incus-Type"] == "file"
    assert resp.headers["X-Incus-Uid"] == "0" and resp.headers["X-Incus-Gid"] == "0"
    assert resp.headers["X-Incus-Mode"] == "0644"
    listing = daemon.request("GET", f"/1.0/instances/{container}/files?path=/etc")
    assert listing.headers["X-Incus-Type"] == "directory"
    assert "hostname" in listing.metadata and "passwd" in listing.metadata
    missing = daemon.request("GET", f"/1.0/instances/{container}/files?path=/nope")
    assert missing.status == 404
    relative = daemon.request("GET", f"/1.0/instances/{container}/files?path=etc")
    assert relative.status == 400
    # instance_file_head: the same headers, no content
    head = daemon.request("HEAD", f"/1.0/instances/{container}/files?path=/etc/hostname")
    assert (head.status, head.body, head.headers["X-Incus-Type"]) == (200, b"", "file")
    assert head.headers["Content-Length"] == str(len(container) + 1)
    head = daemon.request("HEAD", f"/1.0/instances/{container}/files?path=/etc")
    assert head.headers["X-Incus-Type"] == "directory"
    assert daemon.request("HEAD", f"/1.0/instances/{container}/files?path=/nope").status == 404


def test_write_append_ids_modes_symlinks_delete(daemon: Daemon, container: str) -> None:
    base = f"/1.0/instances/{container}/files?path="
    assert (
        daemon.request(
            "POST",
            base + "/tmp/d",
            raw=b"",
            headers={"X-Incus-Type": "directory", "X-Incus-Mode": "0700"},
        ).status
        == 200
    )
    resp = daemon.request(
        "POST",
        base + "/tmp/d/f",
        raw=b"one\n",
        headers={"X-Incus-Uid": "1000", "X-Incus-Gid": "1001", "X-Incus-Mode": "0600"},
    )
    assert resp.status == 200
    daemon.request("POST", base + "/tmp/d/f", raw=b"two\n", headers={"X-Incus-Write": "append"})
    got = daemon.request("GET", base + "/tmp/d/f")
    assert got.body == b"one\ntwo\n"
    assert got.headers["X-Incus-Uid"] == "1000" and got.headers["X-Incus-Mode"] == "0600"
    inside = daemon.cli("exec", container, "--", "stat", "-c", "%u %g %a", "/tmp/d/f").stdout
    assert inside.split() == ["1000", "1001", "600"]
    host = daemon.root / "storage-pools/default/containers" / container / "rootfs/tmp/d/f"
    assert host.stat().st_uid == 1001000
    daemon.request("POST", base + "/tmp/d/link", raw=b"f", headers={"X-Incus-Type": "symlink"})
    link = daemon.request("GET", base + "/tmp/d/link")
    assert link.headers["X-Incus-Type"] == "symlink" and link.body == b"f"
    assert daemon.request("DELETE", base + "/tmp/d").status == 400  # not empty
    for path in ("/tmp/d/link", "/tmp/d/f", "/tmp/d"):
        assert daemon.request("DELETE", base + path).status == 200
    assert daemon.request("GET", base + "/tmp/d").status == 404
    bad = daemon.request("POST", base + "/tmp/x", raw=b"", headers={"X-Incus-Type": "fifo"})
    assert bad.status == 400 and "fifo" in bad.json()["error"]
    bad = daemon.request("POST", base + "/tmp/x", raw=b"", headers={"X-Incus-Mode": "9z"})
    assert bad.status == 400


def test_large_files_arrive_whole(daemon: Daemon, container: str) -> None:
    """Files larger than the pipes between stapesd and its file helper (1 MiB, moved with
    splice), written, appended to (which splice cannot do: copied) and read back whole."""
    base = f"/1.0/instances/{container}/files?path=/root/big.bin"
    first, second = os.urandom(3 * 1024 * 1024 + 17), os.urandom(2 * 1024 * 1024 + 5)
    assert daemon.request("POST", base, raw=first).status == 200
    got = daemon.request("GET", base)
    assert got.headers["X-Incus-Type"] == "file" and got.body == first
    append = {"X-Incus-Write": "append"}
    assert daemon.request("POST", base, raw=second, headers=append).status == 200
    assert daemon.request("GET", base).body == first + second
    assert daemon.request("POST", base, raw=b"").status == 200  # overwrite truncates
    assert daemon.request("GET", base).body == b""


def test_big_uploads_over_the_socket_keep_the_connection_honest(
    daemon: Daemon, container: str
) -> None:
    """Uploads of 1 MiB and more over the unix socket go from the socket into the helper's pipe
    inside the kernel: the file arrives whole, the answer says the connection closes, and a
    client that keeps its connection object carries on over a new one."""
    data = os.urandom(4 * 1024 * 1024 + 3)
    conn = UnixHTTPConnection(daemon.socket)
    try:
        path = f"/1.0/instances/{container}/files?path=/root/up.bin"
        conn.request("POST", path, body=data)
        answer = conn.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["status_code"] == 200
        assert answer.getheader("Connection") == "close"
        conn.request("GET", path)  # http.client reopens the closed connection
        again = conn.getresponse()
        assert again.status == 200 and again.read() == data
    finally:
        conn.close()
    stopped = daemon.request("GET", f"/1.0/instances/{container}/state").json()["metadata"]
    assert stopped["status"] == "Running"


def test_a_big_upload_that_fails_is_answered_not_reset(daemon: Daemon, container: str) -> None:
    """A big upload the helper refuses at once (no such directory) still gets its error
    envelope: the rest of the body is read and dropped, not left to reset the connection."""
    data = os.urandom(8 * 1024 * 1024)
    answer = daemon.request(
        "POST", f"/1.0/instances/{container}/files?path=/no/such/dir/f", raw=data
    )
    assert answer.status == 404, answer.body
    assert "not found" in answer.json()["error"]


def test_an_upload_cut_short_leaves_no_whole_file_and_no_helper(
    daemon: Daemon, container: str
) -> None:
    """A client that promises 8 MiB, sends 2 and hangs up: the daemon answers the next
    request, the helper is gone, and the file is not there as if complete."""
    path = f"/1.0/instances/{container}/files?path=/root/cut.bin"
    assert daemon.request("POST", path, raw=b"warm").status == 200  # the helper and its spare
    workers = _helper_children(daemon)
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(daemon.socket)
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {8 << 20}\r\n\r\n"
        raw.sendall(head.encode() + os.urandom(2 << 20))
    for _ in range(100):
        if len(_helper_children(daemon)) <= len(workers):
            break
        time.sleep(0.05)
    assert len(_helper_children(daemon)) <= len(workers)  # its spare again, no worker left
    got = daemon.request("GET", path)
    assert got.status == 404 or len(got.body) < 8 << 20


def test_downloads_abandoned_or_only_asked_about_leave_no_helper(
    daemon: Daemon, container: str
) -> None:
    """A file's bytes go from the helper's pipe into the socket with splice, as HTTP chunks:
    a client that reads 1 MiB of 16 and hangs up, and a HEAD, each leave no file helper
    behind, and the daemon answers on."""
    path = f"/1.0/instances/{container}/files?path=/root/down.bin"
    data = os.urandom(16 << 20)
    assert daemon.request("POST", path, raw=data).status == 200
    workers = _helper_children(daemon)
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(daemon.socket)
        raw.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = b""
        while len(got) < 1 << 20:
            got += raw.recv(1 << 16)
        assert got.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in got
    head = daemon.request("HEAD", path)
    assert head.status == 200 and head.headers["Content-Length"] == str(len(data))
    for _ in range(100):
        if len(_helper_children(daemon)) <= len(workers):
            break
        time.sleep(0.05)
    assert len(_helper_children(daemon)) <= len(workers)
    assert daemon.request("GET", path).body == data


def _helper_children(daemon: Daemon) -> set[int]:
    """The processes the daemon's attach helper has forked (its spare, file workers)."""
    assert daemon.proc is not None
    helper = subprocess.run(
        ["pgrep", "-P", str(daemon.proc.pid), "-f", "attach_helper"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert len(helper) == 1, helper
    found = subprocess.run(["pgrep", "-P", helper[0]], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


def test_files_of_a_stopped_instance(daemon: Daemon, busybox: str) -> None:
    name = unique("stopped")
    daemon.ok(
        daemon.request(
            "POST", "/1.0/instances", {"name": name, "source": {"type": "image", "alias": busybox}}
        )
    )
    try:
        base = f"/1.0/instances/{name}/files?path="
        daemon.request("POST", base + "/root/hello", raw=b"hi\n")
        assert daemon.request("GET", base + "/root/hello").body == b"hi\n"
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "start"}))
        assert daemon.cli("exec", name, "--", "cat", "/root/hello").stdout == "hi\n"
    finally:
        daemon.force_delete(name)


def test_paths_and_links_never_leave_the_instance(
    daemon: Daemon, container: str, host_file: Path
) -> None:
    base = f"/1.0/instances/{container}/files?path="
    secret = host_file.name
    daemon.cli(
        "exec",
        container,
        "--",
        "sh",
        "-c",
        f"mkdir -p /var/tmp; ln -s {host_file} /tmp/abs; "
        "ln -s ../../../../../../../../var/tmp /tmp/up; ln -s / /tmp/root",
    )
    for path in (
        f"/../../../../../var/tmp/{secret}",
        f"/tmp/up/{secret}",
        f"/tmp/root/var/tmp/{secret}",
        f"/tmp/root/../../var/tmp/{secret}",
    ):
        resp = daemon.request("GET", base + path)
        assert resp.status == 404, (path, resp.body)
    abs_link = daemon.request("GET", base + "/tmp/abs")
    assert abs_link.headers["X-Incus-Type"] == "symlink"
    assert b"host secret" not in abs_link.body
    # writing through links lands inside the instance, never on the host file
    for path in ("/tmp/abs", f"/tmp/up/{secret}", f"/../../../var/tmp/{secret}"):
        assert daemon.request("POST", base + path, raw=b"evil\n").status == 200
    assert host_file.read_text() == "host secret\n"
    inside = daemon.cli("exec", container, "--", "cat", f"/var/tmp/{secret}").stdout
    assert inside == "evil\n"
    assert daemon.request("DELETE", base + f"/tmp/up/{secret}").status == 200
    assert host_file.exists()


def test_symlink_race_cannot_reach_the_host(
    daemon: Daemon, container: str, host_file: Path
) -> None:
    """The instance keeps swapping /tmp/race between a file and a link to the host file while
    stapesd writes to it: the host file must never change."""
    flipper = subprocess.Popen(
        [
            STAPES,
            "exec",
            container,
            "--",
            "sh",
            "-c",
            f"i=0; while [ $i -lt 4000 ]; do rm -f /tmp/race; ln -s {host_file} /tmp/race; "
            "rm -f /tmp/race; echo x > /tmp/race; i=$((i+1)); done",
        ],
        env=daemon.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(40):
            daemon.request(
                "POST", f"/1.0/instances/{container}/files?path=/tmp/race", raw=b"evil\n"
            )
            daemon.request("GET", f"/1.0/instances/{container}/files?path=/tmp/race")
    finally:
        flipper.kill()
        flipper.wait()
    assert host_file.read_text() == "host secret\n"


def test_cli_push_pull_edit_delete(daemon: Daemon, container: str, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a\n")
    (tree / "sub" / "b.sh").write_text("echo b\n")
    (tree / "sub" / "b.sh").chmod(0o755)
    (tree / "link").symlink_to("a.txt")
    daemon.cli("file", "push", "-r", "-p", str(tree), f"{container}/opt/deep/")
    out = daemon.cli(
        "exec",
        container,
        "--",
        "sh",
        "-c",
        "cat /opt/deep/tree/a.txt; sh /opt/deep/tree/sub/b.sh; "
        "readlink /opt/deep/tree/link; stat -c %a /opt/deep/tree/sub/b.sh",
    ).stdout
    assert out == "a\nb\na.txt\n755\n"
    daemon.cli("file", "push", str(tree / "a.txt"), f"{container}/root/renamed.txt")
    assert daemon.cli("file", "pull", f"{container}/root/renamed.txt", "-").stdout == "a\n"
    back = tmp_path / "back"
    daemon.cli("file", "pull", "-r", "-p", f"{container}/opt/deep/tree", str(back))
    assert (back / "tree" / "sub" / "b.sh").read_text() == "echo b\n"
    assert os.readlink(back / "tree" / "link") == "a.txt"
    daemon.cli("file", "edit", f"{container}/root/renamed.txt", input=b"edited\n")
    assert daemon.cli("file", "pull", f"{container}/root/renamed.txt", "-").stdout == "edited\n"
    daemon.cli("file", "delete", f"{container}/root/renamed.txt")
    missing = daemon.cli("file", "pull", f"{container}/root/renamed.txt", "-", check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_cli_pull_streams_into_place(daemon: Daemon, container: str, tmp_path: Path) -> None:
    """`stapes file pull` writes a file beside its destination as it arrives and renames it
    into place whole, with its mode: nothing half-written, nothing left beside it, and a
    failed pull leaves the old file as it was."""
    data = os.urandom(6 * 1024 * 1024 + 7)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    source.chmod(0o640)
    daemon.cli("file", "push", str(source), f"{container}/root/big.bin")
    back = tmp_path / "back"
    back.mkdir()
    (back / "big.bin").write_bytes(b"old")
    daemon.cli("file", "pull", f"{container}/root/big.bin", str(back))
    assert (back / "big.bin").read_bytes() == data
    argv = [STAPES, "file", "pull", f"{container}/root/big.bin", "-"]
    to_stdout = subprocess.run(argv, env=daemon.env, capture_output=True, timeout=60, check=True)
    assert to_stdout.stdout == data
    assert stat.S_IMODE((back / "big.bin").stat().st_mode) == 0o640
    failed = daemon.cli(
        "file", "pull", f"{container}/root/none", str(back / "big.bin"), check=False
    )
    assert failed.returncode == 1 and "not found" in failed.stderr
    assert (back / "big.bin").read_bytes() == data
    assert sorted(p.name for p in back.iterdir()) == ["big.bin"]
