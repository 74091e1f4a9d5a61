"""Migration between servers with Incus's protocol: the real incus client copies and moves
instances from this host's stapesd to a second one (pull, push and relay modes, snapshots,
--refresh, a running container moved --stateless), and every failure leaves the target as it
was: a name taken, a wrong certificate or secret, a transfer cut halfway."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import STAPES, Daemon, free_port, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]

INCUS = shutil.which("incus")
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def two_hosts(
    daemon: Daemon, busybox: str, https: str, second_host: tuple[Daemon, str], tmp_path: Path
) -> tuple[Daemon, Run]:
    """The incus client with this host's stapesd as ``local`` and the second one as ``far``."""
    if INCUS is None:
        pytest.skip("the incus client is not installed (make test installs it from backports)")
    far, _ = second_host
    env = {**os.environ, "INCUS_SOCKET": daemon.socket, "INCUS_CONF": str(tmp_path / "conf")}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [INCUS, *args], env=env, capture_output=True, text=True, timeout=180,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert not check or proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    token = far.cli("config", "trust", "add", "migrating").stdout.strip().splitlines()[-1]
    run("remote", "add", "far", token)
    return far, run


def _snapshots(host: Daemon, name: str) -> list[str]:
    return [
        u.rsplit("/", 1)[-1]
        for u in host.request("GET", f"/1.0/instances/{name}/snapshots").metadata
    ]


def _read(run: Run, where: str, path: str) -> str:
    return run("exec", where, "--", "cat", path, check=False).stdout


def test_incus_copy_pull_push_relay_refresh_and_move(
    daemon: Daemon, two_hosts: tuple[Daemon, Run]
) -> None:
    far, run = two_hosts
    name = daemon.launch("bb")
    copies = [name, name + "-push", name + "-relay"]
    moved = unique("moved")
    try:
        run("exec", name, "--", "sh", "-c", "echo one > /root/kept; echo old > /root/gone")
        run("snapshot", "create", name, "s0")
        run("exec", name, "--", "sh", "-c", "echo two > /root/later")
        run("stop", "-f", name)
        run("copy", name, f"far:{name}")
        run("copy", name, f"far:{copies[1]}", "--mode", "push")
        run("copy", name, f"far:{copies[2]}", "--mode", "relay")
        for copy in copies:
            assert _snapshots(far, copy) == ["s0"], copy
            got = far.request("GET", f"/1.0/instances/{copy}").metadata
            assert got["status"] == "Stopped" and got["config"]["image.os"] == "busybox"
        run("start", f"far:{name}")
        assert _read(run, f"far:{name}", "/root/later") == "two\n"
        owner = run("exec", f"far:{name}", "--", "stat", "-c", "%u:%g", "/root/kept").stdout
        assert owner == "0:0\n"  # shifted to the target's map, root inside
        run("stop", "-f", f"far:{name}")

        # --refresh: the change comes over (a new file, a deleted one, a new snapshot)
        run("start", name)
        run("exec", name, "--", "sh", "-c", "echo three > /root/new; rm /root/gone")
        run("snapshot", "create", name, "s1")
        run("stop", "-f", name)
        run("copy", name, f"far:{name}", "--refresh")
        assert _snapshots(far, name) == ["s0", "s1"]
        run("start", f"far:{name}")
        assert _read(run, f"far:{name}", "/root/new") == "three\n"
        assert _read(run, f"far:{name}", "/root/gone") == ""

        # a running container moves stopped and starts again over there; the source is gone
        run("start", name)
        run("move", name, f"far:{moved}", "--stateless")
        assert daemon.request("GET", f"/1.0/instances/{name}").status == 404
        assert far.request("GET", f"/1.0/instances/{moved}").metadata["status"] == "Running"
        assert _read(run, f"far:{moved}", "/root/new") == "three\n"
        assert _snapshots(far, moved) == ["s0", "s1"]
        # and back, pushed
        run("move", f"far:{moved}", name, "--stateless", "--mode", "push")
        assert daemon.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Running"
        assert far.request("GET", f"/1.0/instances/{moved}").status == 404
    finally:
        daemon.force_delete(name)
        for other in [*copies, moved]:
            far.force_delete(other)


def _source_operation(daemon: Daemon, name: str) -> dict:  # type: ignore[type-arg]
    resp = daemon.request("POST", f"/1.0/instances/{name}", {"migration": True})
    assert resp.status == 202, resp.body
    return resp.json()["metadata"]


def _target_request(daemon: Daemon, https: str, op: dict, name: str, **source: object) -> dict:  # type: ignore[type-arg]
    cert = daemon.request("GET", "/1.0").metadata["environment"]["certificate"]
    return {
        "name": name,
        "type": "container",
        "source": {
            "type": "migration",
            "mode": "pull",
            "operation": f"https://{https}/1.0/operations/{op['id']}",
            "certificate": cert,
            "secrets": op["metadata"],
            **source,
        },
    }


def test_migration_failures_leave_nothing_behind(
    daemon: Daemon, busybox: str, https: str, second_host: tuple[Daemon, str]
) -> None:
    far, _ = second_host
    name = daemon.launch("bb")
    target = unique("tgt")
    try:
        daemon.force_stop(name)
        # live: refused with what is missing (CRIU cannot checkpoint on this kernel), before
        # any operation exists
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "start"}))
        resp = daemon.request("POST", f"/1.0/instances/{name}", {"migration": True, "live": True})
        assert resp.status == 400 and "CRIU" in resp.json()["error"], resp.body
        assert "--stateless" in resp.json()["error"]
        daemon.force_stop(name)
        # a name taken on the target: 409 before anything moves
        op = _source_operation(daemon, name)
        far.ok(far.request("POST", "/1.0/instances", {"name": target, "source": {"type": "none"}}))
        resp = far.request("POST", "/1.0/instances", _target_request(daemon, https, op, target))
        assert resp.status == 409, resp.body
        far.force_delete(target)

        # a pool or a project the target lacks: 4xx, before the source is dialed
        op = _source_operation(daemon, name)
        body = _target_request(daemon, https, op, target)
        body["devices"] = {"root": {"type": "disk", "path": "/", "pool": "nopool"}}
        resp = far.request("POST", "/1.0/instances", body)
        assert resp.status in (400, 404) and "nopool" in resp.json()["error"], resp.body
        resp = far.request("POST", "/1.0/instances?project=nowhere", _target_request(
            daemon, https, op, target))  # fmt: skip
        assert resp.status == 404 and resp.json()["error"] == "Project not found", resp.body
        assert far.request("GET", f"/1.0/instances/{target}").status == 404
        # a certificate that is not the source's: refused before the instance exists
        op = _source_operation(daemon, name)
        body = _target_request(daemon, https, op, target)
        body["source"]["certificate"] = far.request("GET", "/1.0").metadata["environment"][
            "certificate"
        ]
        resp = far.request("POST", "/1.0/instances", body)
        assert resp.status == 403 and "certificate" in resp.json()["error"], resp.body
        assert far.request("GET", f"/1.0/instances/{target}").status == 404
        # a wrong secret: 400, nothing made
        body = _target_request(daemon, https, op, target)
        body["source"]["secrets"] = {"control": "00" * 32, "fs": "00" * 32}
        resp = far.request("POST", "/1.0/instances", body)
        assert resp.status == 400 and "secret" in resp.json()["error"], resp.body
        assert far.request("GET", f"/1.0/instances/{target}").status == 404
        # a pull without the source's operation URL
        body["source"]["operation"] = "/1.0/operations/x"
        resp = far.request("POST", "/1.0/instances", body)
        assert resp.status == 400 and "https://" in resp.json()["error"]

        # the transfer cut halfway (the sender's relay killed): no instance, no volume there,
        # the source as it was
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "start"}))
        big = "dd if=/dev/urandom of=/root/big bs=1M count=300 status=none"
        daemon.cli("exec", name, "--", "sh", "-c", big)
        daemon.force_stop(name)
        op = _source_operation(daemon, name)
        resp = far.request("POST", "/1.0/instances", _target_request(daemon, https, op, target))
        assert resp.status == 202, resp.body
        volume = far.root / "storage-pools" / "default" / "containers" / target
        deadline = time.time() + 60
        while time.time() < deadline and not (volume / "rootfs").exists():
            time.sleep(0.05)
        subprocess.run(["pkill", "-9", "-f", "stapes/migration/rsync_relay.py"], check=False)
        done = far.wait(resp)
        assert done.status >= 400 and "failed" in done.json()["error"], done.body
        assert far.request("GET", f"/1.0/instances/{target}").status == 404
        assert not volume.exists()
        assert daemon.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Stopped"
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "start"}))
        size = daemon.cli("exec", name, "--", "stat", "-c", "%s", "/root/big").stdout.strip()
        assert size == str(300 * 1024 * 1024)
    finally:
        daemon.force_delete(name)
        far.force_delete(target)


def test_incus_storage_volume_copy_between_servers(
    daemon: Daemon, two_hosts: tuple[Daemon, Run]
) -> None:
    """Custom volumes, filesystem and block, with snapshots; --refresh brings a later snapshot
    and the change; move takes the volume away from here."""
    far, run = two_hosts
    vol, blk, moved = unique("vol"), unique("blk"), unique("mvd")
    user = daemon.launch("bb")
    try:
        run("storage", "volume", "create", "default", vol)
        run("storage", "volume", "create", "default", blk, "--type", "block", "size=8MiB")
        run("storage", "volume", "attach", "default", vol, user, "/mnt")
        run("exec", user, "--", "sh", "-c", "echo first > /mnt/a")
        run("storage", "volume", "snapshot", "create", "default", vol, "v0")
        run("exec", user, "--", "sh", "-c", "echo second > /mnt/b")
        disk = daemon.root / "storage-pools" / "default" / "custom" / f"default_{blk}" / "root.img"
        with disk.open("r+b") as f:
            f.seek(4 * 1024 * 1024)
            f.write(b"block bytes")
        run("storage", "volume", "copy", f"default/{vol}", f"far:default/{vol}")
        run("storage", "volume", "copy", f"default/{blk}", f"far:default/{blk}", "--mode", "push")
        there = far.root / "storage-pools" / "default" / "custom"
        assert (there / f"default_{vol}" / "b").read_text() == "second\n"
        assert (there.parent / "custom-snapshots" / f"default_{vol}" / "v0" / "a").exists()
        assert not (there.parent / "custom-snapshots" / f"default_{vol}" / "v0" / "b").exists()
        copied = (there / f"default_{blk}" / "root.img").read_bytes()
        assert copied == disk.read_bytes() and len(copied) == 8 * 1024 * 1024
        listed = far.request("GET", f"/1.0/storage-pools/default/volumes/custom/{vol}/snapshots")
        assert [u.rsplit("/", 1)[-1] for u in listed.metadata] == ["v0"]

        run("exec", user, "--", "sh", "-c", "echo third > /mnt/c; rm /mnt/a")
        run("storage", "volume", "snapshot", "create", "default", vol, "v1")
        run("storage", "volume", "copy", f"default/{vol}", f"far:default/{vol}", "--refresh")
        listed = far.request("GET", f"/1.0/storage-pools/default/volumes/custom/{vol}/snapshots")
        assert [u.rsplit("/", 1)[-1] for u in listed.metadata] == ["v0", "v1"]
        assert (there / f"default_{vol}" / "c").read_text() == "third\n"
        assert not (there / f"default_{vol}" / "a").exists()

        run("storage", "volume", "detach", "default", vol, user)
        run("storage", "volume", "move", f"default/{vol}", f"far:default/{moved}")
        assert (
            daemon.request("GET", f"/1.0/storage-pools/default/volumes/custom/{vol}").status == 404
        )
        assert (there / f"default_{moved}" / "c").exists()
    finally:
        daemon.force_delete(user)
        for host, names in ((daemon, (vol, blk)), (far, (vol, blk, moved))):
            for name in names:
                host.request("DELETE", f"/1.0/storage-pools/default/volumes/custom/{name}")


def test_source_daemon_killed_mid_transfer(lone: Daemon, second_host: tuple[Daemon, str]) -> None:
    """kill -9 of the source's daemon halfway through a volume's transfer: the target's create
    fails and leaves no volume; the source, restarted, still has its volume whole."""
    far, _ = second_host
    address = f"127.0.0.1:{free_port()}"
    assert lone.request("PATCH", "/1.0", {"config": {"core.https_address": address}}).status == 200
    name = unique("big")
    pools = "/1.0/storage-pools/default/volumes/custom"
    assert lone.request("POST", pools, {"name": name}).status == 200
    content = lone.root / "storage-pools" / "default" / "custom" / f"default_{name}"
    subprocess.run(
        ["dd", "if=/dev/urandom", f"of={content / 'big'}", "bs=1M", "count=300", "status=none"],
        check=True,
    )
    op = lone.request("POST", f"{pools}/{name}", {"migration": True}).json()["metadata"]
    cert = lone.request("GET", "/1.0").metadata["environment"]["certificate"]
    source = {
        "type": "migration",
        "mode": "pull",
        "operation": f"https://{address}/1.0/operations/{op['id']}",
        "certificate": cert,
        "secrets": op["metadata"],
    }
    resp = far.request("POST", pools, {"name": name, "source": source})
    assert resp.status == 202, resp.body
    there = far.root / "storage-pools" / "default" / "custom" / f"default_{name}"
    deadline = time.time() + 60
    while time.time() < deadline and not list(there.glob(".big.*")):  # rsync's partial file
        time.sleep(0.02)
    lone.stop(signal.SIGKILL)
    done = far.wait(resp)
    assert done.status >= 400, done.body
    assert far.request("GET", f"{pools}/{name}").status == 404
    assert not there.exists()
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _is_rsync_into(p, there)]
    lone.start()
    assert lone.request("GET", f"{pools}/{name}").status == 200
    assert (content / "big").stat().st_size == 300 * 1024 * 1024


def _is_rsync_into(pid: str, path: Path) -> bool:
    try:
        return str(path) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def test_stapes_cli_copies_and_moves_between_servers(
    daemon: Daemon, busybox: str, https: str, second_host: tuple[Daemon, str], tmp_path: Path
) -> None:
    """stapes copy/move and storage volume copy/move with REMOTE: on either side, each mode."""
    far, _ = second_host
    env = {**daemon.env, "STAPES_CONF": str(tmp_path / "conf")}

    def stapes(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([STAPES, *args], env=env, capture_output=True, text=True,
                              timeout=180, stdin=subprocess.DEVNULL)  # fmt: skip
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    for remote, host in (("near", daemon), ("far", far)):
        token = host.cli("config", "trust", "add", f"cli-{remote}").stdout.strip().splitlines()[-1]
        stapes("remote", "add", remote, token)
    name = daemon.launch("bb")
    vol = unique("vol")
    copies = [f"{name}-{mode}" for mode in ("pull", "push", "relay")]
    try:
        daemon.cli("exec", name, "--", "sh", "-c", "echo cli > /root/mark")
        daemon.cli("snapshot", "create", name, "one")
        for mode, copy in zip(("pull", "push", "relay"), copies, strict=True):
            stapes("copy", f"near:{name}", f"far:{copy}", "--stateless", "--mode", mode)
            assert _snapshots(far, copy) == ["one"]
        stapes("move", f"near:{name}", f"far:{name}", "--stateless")
        assert daemon.request("GET", f"/1.0/instances/{name}").status == 404
        assert far.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Running"
        assert far.cli("exec", name, "--", "cat", "/root/mark").stdout == "cli\n"
        stapes("move", f"far:{name}", f"near:{name}", "--stateless", "--mode", "relay")
        assert daemon.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Running"

        daemon.cli("storage", "volume", "create", "default", vol)
        daemon.cli("storage", "volume", "snapshot", "create", "default", vol, "s")
        stapes("storage", "volume", "copy", f"near:default/{vol}", f"far:default/{vol}")
        stapes("storage", "volume", "move", f"far:default/{vol}", f"near:default/{vol}-back")
        pools = "/1.0/storage-pools/default/volumes/custom"
        assert far.request("GET", f"{pools}/{vol}").status == 404
        snaps = daemon.request("GET", f"{pools}/{vol}-back/snapshots").metadata
        assert [u.rsplit("/", 1)[-1] for u in snaps] == ["s"]
    finally:
        daemon.force_delete(name)
        for other in [name, *copies]:
            far.force_delete(other)
        for host, names in ((daemon, (vol, f"{vol}-back")), (far, (vol,))):
            for volume in names:
                host.request("DELETE", f"/1.0/storage-pools/default/volumes/custom/{volume}")


def test_virtual_machine_copy_between_servers(
    daemon: Daemon, two_hosts: tuple[Daemon, Run]
) -> None:
    """A stopped VM (an empty disk with bytes written into it) and its snapshot: the disk goes
    as a block stream beside its config files, byte for byte, sparse, owner-only."""
    far, run = two_hosts
    name = unique("vm")
    try:
        run("init", name, "--empty", "--vm", "-d", "root,size=32MiB")
        disk = daemon.root / "storage-pools" / "default" / "virtual-machines" / name / "root.img"
        with disk.open("r+b") as f:
            f.seek(1 << 20)
            f.write(b"before the snapshot")
        run("snapshot", "create", name, "s0")
        with disk.open("r+b") as f:
            f.seek(2 << 20)
            f.write(b"after it")
        run("copy", name, f"far:{name}")
        there = far.root / "storage-pools" / "default" / "virtual-machines" / name / "root.img"
        assert there.read_bytes() == disk.read_bytes()
        assert there.stat().st_mode & 0o777 == 0o600
        assert there.stat().st_blocks * 512 < 1 << 20  # still sparse
        snap = far.root / "storage-pools" / "default" / "virtual-machines-snapshots" / name
        assert b"after it" not in (snap / "s0" / "root.img").read_bytes()
        assert far.request("GET", f"/1.0/instances/{name}").metadata["type"] == "virtual-machine"
    finally:
        daemon.force_delete(name)
        far.force_delete(name)


def test_btrfs_pools_send_streams_and_refresh_incrementally(
    daemon: Daemon, btrfs_pool: str, two_hosts: tuple[Daemon, Run]
) -> None:
    """btrfs to btrfs goes as send streams (snapshots arrive as received subvolumes); a refresh
    sends only the new snapshot and the change, incremental from what the target has; btrfs to
    dir falls back to rsync."""
    far, run = two_hosts
    pool = unique("fbt")
    body = {"name": pool, "driver": "btrfs", "config": {"size": "512MiB"}}
    assert far.request("POST", "/1.0/storage-pools", body).status == 201
    root = {"root": {"type": "disk", "path": "/", "pool": btrfs_pool}}
    name = daemon.launch("bb", devices=root)
    plain = name + "-dir"
    try:
        run("exec", name, "--", "sh", "-c", "echo one > /root/one")
        run("snapshot", "create", name, "s0")
        run("exec", name, "--", "sh", "-c", "echo two > /root/two")
        run("snapshot", "create", name, "s1")
        run("stop", "-f", name)
        run("copy", name, f"far:{name}", "-s", pool)
        snaps = far.root / "storage-pools" / pool / "containers-snapshots" / name
        shown = subprocess.run(["btrfs", "subvolume", "show", str(snaps / "s1")],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
        received = next(ln for ln in shown.splitlines() if "Received UUID" in ln)
        assert received.split(":", 1)[1].strip() not in ("", "-")
        run("start", name)
        run("exec", name, "--", "sh", "-c", "echo three > /root/three")
        run("snapshot", "create", name, "s2")
        run("stop", "-f", name)
        run("copy", name, f"far:{name}", "--refresh")
        assert _snapshots(far, name) == ["s0", "s1", "s2"]
        run("start", f"far:{name}")
        assert _read(run, f"far:{name}", "/root/three") == "three\n"
        assert _read(run, f"far:{name}", "/root/one") == "one\n"
        run("copy", name, f"far:{plain}", "-s", "default")  # btrfs -> dir: rsync
        assert _snapshots(far, plain) == ["s0", "s1", "s2"]
        plain_root = far.root / "storage-pools" / "default" / "containers" / plain / "rootfs"
        assert (plain_root / "root" / "three").read_text() == "three\n"
    finally:
        daemon.force_delete(name)
        far.force_delete(name)
        far.force_delete(plain)
        far.request("DELETE", f"/1.0/storage-pools/{pool}")


def _subvolume(path: Path) -> dict[str, str]:
    shown = subprocess.run(["btrfs", "subvolume", "show", str(path)], capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    pairs = (line.strip().partition(":") for line in shown.splitlines()[1:])
    return {key.strip(): value.strip() for key, _, value in pairs}


def test_btrfs_volumes_send_streams_and_refresh_incrementally(
    daemon: Daemon, btrfs_pool: str, two_hosts: tuple[Daemon, Run]
) -> None:
    """A custom volume between btrfs pools goes as send streams: each snapshot arrives as a
    subvolume received incrementally from the one before (its parent there), a refresh sends
    the new snapshot incrementally from the last one the target has, the size limit holds on
    the received volume; btrfs to dir falls back to rsync."""
    far, run = two_hosts
    pool = unique("fbv")
    body = {"name": pool, "driver": "btrfs", "config": {"size": "512MiB"}}
    assert far.request("POST", "/1.0/storage-pools", body).status == 201
    vol, plain = unique("bvol"), unique("pvol")
    here = daemon.root / "storage-pools" / btrfs_pool / "custom" / f"default_{vol}"
    there = far.root / "storage-pools" / pool / "custom" / f"default_{vol}"
    snaps = there.parent.parent / "custom-snapshots" / f"default_{vol}"
    try:
        run("storage", "volume", "create", btrfs_pool, vol, "size=64MiB")
        (here / "a").write_text("first\n")
        run("storage", "volume", "snapshot", "create", btrfs_pool, vol, "v0")
        (here / "b").write_text("second\n")
        run("storage", "volume", "snapshot", "create", btrfs_pool, vol, "v1")
        run("storage", "volume", "copy", f"{btrfs_pool}/{vol}", f"far:{pool}/{vol}")
        v0, v1 = _subvolume(snaps / "v0"), _subvolume(snaps / "v1")
        assert v1["Received UUID"] not in ("", "-") and v1["Parent UUID"] == v0["UUID"]
        assert (there / "b").read_text() == "second\n" and not (snaps / "v0" / "b").exists()
        limit = far.request("GET", f"/1.0/storage-pools/{pool}/volumes/custom/{vol}/state")
        assert limit.metadata["usage"]["total"] == 64 * 1024 * 1024, limit.body

        (here / "c").write_text("third\n")
        (here / "a").unlink()
        run("storage", "volume", "snapshot", "create", btrfs_pool, vol, "v2")
        run("storage", "volume", "copy", f"{btrfs_pool}/{vol}", f"far:{pool}/{vol}", "--refresh")
        listed = far.request("GET", f"/1.0/storage-pools/{pool}/volumes/custom/{vol}/snapshots")
        assert [u.rsplit("/", 1)[-1] for u in listed.metadata] == ["v0", "v1", "v2"]
        assert _subvolume(snaps / "v2")["Parent UUID"] == _subvolume(snaps / "v1")["UUID"]
        assert (there / "c").read_text() == "third\n" and not (there / "a").exists()

        run("storage", "volume", "copy", f"{btrfs_pool}/{vol}", f"far:default/{plain}")  # rsync
        flat = far.root / "storage-pools" / "default" / "custom" / f"default_{plain}"
        assert (flat / "c").read_text() == "third\n"
        assert (flat.parent.parent / "custom-snapshots" / f"default_{plain}" / "v0" / "a").exists()
    finally:
        daemon.request("DELETE", f"/1.0/storage-pools/{btrfs_pool}/volumes/custom/{vol}")
        far.request("DELETE", f"/1.0/storage-pools/{pool}/volumes/custom/{vol}")
        far.request("DELETE", f"/1.0/storage-pools/default/volumes/custom/{plain}")
        far.request("DELETE", f"/1.0/storage-pools/{pool}")


def test_a_forged_offer_is_refused_before_anything_is_written(daemon: Daemon) -> None:
    """Acting as a hostile source in push mode: a snapshot named to climb out of the pool, or
    holding keys a client could not set, fails the create before a byte is received."""
    from stapes.client.connection import Connection
    from stapes.migration import wire

    for snap_name, config in (("../../../escape", {}), ("fine", {"no.such.key": "1"})):
        target = unique("forged")
        body = {
            "name": target,
            "type": "container",
            "source": {"type": "migration", "mode": "push"},
        }
        resp = daemon.request("POST", "/1.0/instances", body)
        assert resp.status == 202, resp.body
        op = resp.json()["metadata"]
        with Connection(daemon.socket) as conn:
            ws = {
                name: conn.websocket(
                    f"/1.0/operations/{op['id']}/websocket?secret={op['metadata'][name]}"
                )
                for name in ("control", "fs")
            }
            offer = wire.MigrationHeader(fs=wire.RSYNC)
            offer.snapshotNames.append(snap_name)
            snap = offer.snapshots.add(
                name=snap_name, ephemeral=False, architecture=2, stateful=False
            )
            for key, value in config.items():
                snap.localConfig.add(key=key, value=value)
            ws["control"].send_binary(offer.SerializeToString())
            done = daemon.wait(resp)
            for sock in ws.values():
                sock.close()
        assert done.status >= 400, done.body
        assert "refused" in done.json()["error"] or "can't be used" in done.json()["error"]
        assert daemon.request("GET", f"/1.0/instances/{target}").status == 404
        assert not (daemon.root / "storage-pools" / "escape").exists()
        assert not (daemon.root / "storage-pools" / "default" / "containers" / target).exists()


@pytest.mark.slow
def test_a_running_vm_moves_live(daemon: Daemon, two_hosts: tuple[Daemon, Run]) -> None:
    """incus move of a running VM: its disk goes while it runs, then QEMU's live migration of
    its memory, then the disk chunks that changed; the guest is not rebooted (its uptime goes
    on), a process it runs and a file in its RAM-backed /tmp survive."""
    far, run = two_hosts
    if daemon.request("GET", "/1.0/images/aliases/bbvm").status != 200:
        daemon.cli("image", "build", "busybox", "--vm", "--alias", "bbvm", timeout=900)
    name = unique("lvm")
    try:
        run("launch", "bbvm", name, "--vm")
        deadline = time.time() + 180
        while run("exec", name, "--", "true", check=False).returncode != 0:
            assert time.time() < deadline, "the VM's agent never answered"
            time.sleep(1)
        loop = "while true; do date +%s >> /tmp/ticks; sleep 1; done"
        run("exec", name, "--", "sh", "-c", f"echo kept > /tmp/mark; ({loop}) >/dev/null 2>&1 &")
        time.sleep(2)
        before = float(_read(run, name, "/proc/uptime").split()[0])
        run("move", name, f"far:{name}")
        assert daemon.request("GET", f"/1.0/instances/{name}").status == 404
        assert far.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Running"
        after = float(_read(run, f"far:{name}", "/proc/uptime").split()[0])
        assert after >= before  # the same boot, not a new one
        assert _read(run, f"far:{name}", "/tmp/mark") == "kept\n"
        ticks = len(_read(run, f"far:{name}", "/tmp/ticks").split())
        time.sleep(2.5)
        assert len(_read(run, f"far:{name}", "/tmp/ticks").split()) > ticks  # still running
        # and back, relayed by the client (control, disk and state websockets)
        run("move", f"far:{name}", name, "--mode", "relay")
        assert far.request("GET", f"/1.0/instances/{name}").status == 404
        assert float(_read(run, name, "/proc/uptime").split()[0]) >= after
        assert _read(run, name, "/tmp/mark") == "kept\n"
    finally:
        daemon.force_delete(name)
        far.force_delete(name)
