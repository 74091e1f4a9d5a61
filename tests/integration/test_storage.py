"""Storage pools and custom volumes over the REST API: dir and btrfs pools (on a loop file the
pool makes, or a host directory), volumes with snapshots, copies, moves, quotas enforced inside a
container, attach as disk devices, and the bad input each must refuse without leaving anything."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import Daemon, unique

pytestmark = [pytest.mark.root]

POOLS = "/1.0/storage-pools"


def error(resp: object) -> tuple[int, str]:
    body = resp.json()  # type: ignore[attr-defined]
    return body["error_code"], body["error"]


def mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return any(line.split()[4] == str(path) for line in f)


def volume(daemon: Daemon, pool: str, name: str, **body: object) -> None:
    resp = daemon.request("POST", f"{POOLS}/{pool}/volumes/custom", {"name": name, **body})
    assert resp.status == 200, resp.body


def shell(daemon: Daemon, name: str, script: str) -> str:
    """What ``sh -c script`` prints in an instance (scripts end with echo, so exit 0)."""
    return daemon.cli("exec", name, "--", "sh", "-c", script).stdout


def vol_url(pool: str, name: str) -> str:
    return f"{POOLS}/{pool}/volumes/custom/{name}"


@pytest.mark.btrfs
def test_btrfs_pool_on_its_own_loop_file(daemon: Daemon) -> None:
    name = unique("bt")
    resp = daemon.request(
        "POST",
        POOLS,
        {"name": name, "driver": "btrfs", "description": "d", "config": {"size": "300MiB"}},
    )
    assert resp.status == 201, resp.body
    pool = daemon.request("GET", f"{POOLS}/{name}").metadata
    image = Path(pool["config"]["source"])
    assert pool["driver"] == "btrfs" and pool["status"] == "Created"
    assert pool["config"]["size"] == "300MiB"
    assert image == daemon.root / "disks" / f"{name}.img" and image.stat().st_size == 300 << 20
    mount = daemon.root / "storage-pools" / name
    assert mounted(mount)
    space = daemon.request("GET", f"{POOLS}/{name}/resources").metadata["space"]
    assert 250 << 20 < space["total"] <= 300 << 20

    # grow the loop file and the filesystem with it
    resp = daemon.request("PATCH", f"{POOLS}/{name}", {"config": {"size": "400MiB"}})
    assert resp.status == 200, resp.body
    assert image.stat().st_size == 400 << 20
    assert daemon.request("GET", f"{POOLS}/{name}/resources").metadata["space"]["total"] > (
        300 << 20
    )
    code, message = error(
        daemon.request("PATCH", f"{POOLS}/{name}", {"config": {"size": "200MiB"}})
    )
    assert code == 400 and "shrink" in message

    assert daemon.request("DELETE", f"{POOLS}/{name}").status == 200
    assert not mounted(mount) and not image.exists() and not mount.exists()
    assert daemon.request("GET", f"{POOLS}/{name}").status == 404


def test_pool_bad_input_leaves_nothing(daemon: Daemon, tmp_path: Path) -> None:
    cases = [
        ({"name": "x", "driver": "nodriver"}, 400, "Unknown storage driver"),
        ({"name": "x", "driver": "dir", "config": {"foo": "bar"}}, 400, "'foo'"),
        ({"name": "x/y", "driver": "dir"}, 400, "slashes"),
        ({"name": "..", "driver": "dir"}, 400, "dot"),
        ({"name": "default", "driver": "dir"}, 409, "already exists"),
        ({"name": "x", "driver": "btrfs", "config": {"size": "1MiB"}}, 400, "too small"),
        ({"name": "x", "driver": "dir", "config": {"volume.size": "huge"}}, 400, "volume.size"),
    ]
    for body, status, text in cases:
        code, message = error(daemon.request("POST", POOLS, body))
        assert (code, text in message) == (status, True), (body, code, message)

    full = tmp_path / "full"
    full.mkdir()
    (full / "data").write_text("mine")
    code, message = error(
        daemon.request(
            "POST", POOLS, {"name": "x", "driver": "dir", "config": {"source": str(full)}}
        )
    )
    assert code == 400 and "isn't empty" in message
    code, message = error(
        daemon.request(
            "POST", POOLS, {"name": "x", "driver": "btrfs", "config": {"source": str(full)}}
        )
    )
    assert code == 400 and "not on a btrfs filesystem" in message
    assert [p for p in daemon.request("GET", POOLS).metadata if p.endswith("/x")] == []
    assert not (daemon.root / "storage-pools" / "x").exists()
    assert (full / "data").read_text() == "mine"

    code, message = error(daemon.request("DELETE", f"{POOLS}/default"))
    assert code == 400 and "in use" in message
    code, message = error(daemon.request("DELETE", f"{POOLS}/nope"))
    assert code == 404


def test_dir_pool_on_a_host_directory_keeps_what_it_does_not_own(
    daemon: Daemon, tmp_path: Path
) -> None:
    source = tmp_path / "pool"
    name = unique("dp")
    resp = daemon.request(
        "POST", POOLS, {"name": name, "driver": "dir", "config": {"source": str(source)}}
    )
    assert resp.status == 201, resp.body
    assert daemon.request("GET", f"{POOLS}/{name}").metadata["config"]["source"] == str(source)
    volume(daemon, name, "v")
    assert (source / "custom" / "default_v").is_dir()
    (source / "notes.txt").write_text("the admin's")

    code, message = error(daemon.request("DELETE", f"{POOLS}/{name}"))
    assert code == 400 and "/volumes/custom/v" in message
    assert daemon.request("DELETE", vol_url(name, "v")).status == 200
    assert daemon.request("DELETE", f"{POOLS}/{name}").status == 200
    assert (source / "notes.txt").read_text() == "the admin's"
    assert not (source / "custom").exists()
    assert not (daemon.root / "storage-pools" / name).exists()


def test_volume_bad_input(daemon: Daemon) -> None:
    base = f"{POOLS}/default/volumes/custom"
    cases = [
        ({"name": "a/b"}, 400, "slashes"),
        ({"name": ".."}, 400, "dot"),
        ({"name": ""}, 400, "No name"),
        ({"name": "v", "config": {"bogus": "1"}}, 400, "'bogus'"),
        ({"name": "v", "content_type": "tape"}, 400, "content type"),
    ]
    for body, status, text in cases:
        code, message = error(daemon.request("POST", base, body))
        assert (code, text in message) == (status, True), (body, code, message)
    for body, status, text in [({"name": "v", "type": "container"}, 400, "Only custom")]:
        code, message = error(daemon.request("POST", f"{POOLS}/default/volumes", body))
        assert (code, text in message) == (status, True), (body, code, message)
    assert not list((daemon.root / "storage-pools/default/custom").iterdir())
    assert error(daemon.request("POST", f"{POOLS}/nope/volumes/custom", {"name": "v"}))[0] == 404

    volume(daemon, "default", "dup")
    try:
        code, _ = error(daemon.request("POST", base, {"name": "dup"}))
        assert code == 409
        assert error(daemon.request("GET", f"{base}/other"))[0] == 404
        assert error(daemon.request("GET", f"{POOLS}/default/volumes/tape/dup"))[0] == 400
    finally:
        daemon.request("DELETE", f"{base}/dup")


@pytest.mark.btrfs
def test_volume_life_on_btrfs(daemon: Daemon, btrfs_pool: str) -> None:
    pool_dir = daemon.root / "storage-pools" / btrfs_pool
    volume(daemon, btrfs_pool, "data", description="first", config={"user.k": "v"})
    on_pool = pool_dir / "custom" / "default_data"
    assert on_pool.stat().st_ino == 256  # a subvolume
    (on_pool / "f").write_text("one")

    listed = daemon.request("GET", f"{POOLS}/{btrfs_pool}/volumes?recursion=1").metadata
    mine = [v for v in listed if v["name"] == "data"]
    assert mine[0]["config"] == {"user.k": "v"} and mine[0]["content_type"] == "filesystem"

    snap = daemon.ok(
        daemon.request("POST", vol_url(btrfs_pool, "data") + "/snapshots", {"name": "s1"})
    )
    assert snap["status"] == "Success"
    snap_dir = pool_dir / "custom-snapshots" / "default_data" / "s1"
    assert (
        subprocess.run(
            ["btrfs", "property", "get", str(snap_dir), "ro"], capture_output=True, text=True
        ).stdout.strip()
        == "ro=true"
    )
    (on_pool / "f").write_text("two")
    urls = daemon.request("GET", f"{POOLS}/{btrfs_pool}/volumes").metadata
    assert vol_url(btrfs_pool, "data") + "/snapshots/s1" in urls

    resp = daemon.request("PUT", vol_url(btrfs_pool, "data"), {"restore": "s1"})
    assert resp.status == 200, resp.body
    assert (on_pool / "f").read_text() == "one"

    # a copy on the same pool keeps the snapshots; a move to the dir pool takes them along
    daemon.ok(
        daemon.request(
            "POST",
            f"{POOLS}/{btrfs_pool}/volumes/custom",
            {"name": "copy", "source": {"type": "copy", "name": "data", "pool": btrfs_pool}},
        )
    )
    assert (pool_dir / "custom-snapshots" / "default_copy" / "s1" / "f").read_text() == "one"
    daemon.ok(
        daemon.request("POST", vol_url(btrfs_pool, "copy"), {"name": "moved", "pool": "default"})
    )
    moved = daemon.root / "storage-pools/default/custom/default_moved"
    assert (moved / "f").read_text() == "one"
    snaps = daemon.request("GET", vol_url("default", "moved") + "/snapshots").metadata
    assert snaps == [vol_url("default", "moved") + "/snapshots/s1"]
    assert daemon.request("GET", vol_url(btrfs_pool, "copy")).status == 404
    assert not (pool_dir / "custom" / "default_copy").exists()

    daemon.ok(daemon.request("POST", vol_url(btrfs_pool, "data"), {"name": "renamed"}))
    assert (pool_dir / "custom" / "default_renamed" / "f").exists()
    assert (pool_dir / "custom-snapshots" / "default_renamed" / "s1").exists()
    for pool, name in ((btrfs_pool, "renamed"), ("default", "moved")):
        assert daemon.request("DELETE", vol_url(pool, name)).status == 200
    assert not any((pool_dir / "custom").iterdir())
    assert not (pool_dir / "custom-snapshots" / "default_renamed").exists()


@pytest.mark.btrfs
@pytest.mark.liblxc
def test_quota_enforced_inside_a_container(daemon: Daemon, busybox: str, btrfs_pool: str) -> None:
    name = daemon.launch(
        busybox,
        devices={"root": {"type": "disk", "path": "/", "pool": btrfs_pool, "size": "64MiB"}},
    )
    try:
        rootfs = daemon.root / "storage-pools" / btrfs_pool / "containers" / name
        assert rootfs.stat().st_ino == 256  # a snapshot of the image's subvolume
        volume(daemon, btrfs_pool, "q", config={"size": "8MiB"})
        inst = daemon.request("GET", f"/1.0/instances/{name}").metadata
        devices = {
            **inst["devices"],
            "q": {"type": "disk", "pool": btrfs_pool, "source": "q", "path": "/q"},
        }
        resp = daemon.request("PATCH", f"/1.0/instances/{name}", {"devices": devices})
        assert resp.status == 200, resp.body
        assert daemon.request("GET", vol_url(btrfs_pool, "q")).metadata["used_by"] == [
            f"/1.0/instances/{name}"
        ]

        out = shell(daemon, name, "dd if=/dev/zero of=/q/big bs=1M count=20 2>&1; echo rc=$?")
        assert "rc=1" in out and "quota" in out.lower(), out
        out = shell(daemon, name, "dd if=/dev/zero of=/big bs=1M count=100 2>&1; echo rc=$?")
        assert "rc=1" in out and "quota" in out.lower(), out

        code, message = error(
            daemon.request("PATCH", vol_url(btrfs_pool, "q"), {"config": {"size": "1MiB"}})
        )
        assert code == 400 and "below what volume" in message
        resp = daemon.request("PATCH", vol_url(btrfs_pool, "q"), {"config": {"size": "64MiB"}})
        assert resp.status == 200, resp.body
        out = shell(
            daemon, name, "rm /q/big; dd if=/dev/zero of=/q/big bs=1M count=20 2>&1; echo rc=$?"
        )
        assert "rc=0" in out, out
        state = daemon.request("GET", vol_url(btrfs_pool, "q") + "/state").metadata
        assert state["usage"]["used"] >= 20 << 20 and state["usage"]["total"] == 64 << 20

        code, message = error(daemon.request("DELETE", vol_url(btrfs_pool, "q")))
        assert code == 400 and "in use" in message
        code, message = error(daemon.request("PUT", vol_url(btrfs_pool, "q"), {"restore": "nope"}))
        assert code == 404
    finally:
        daemon.force_delete(name)
        daemon.request("DELETE", vol_url(btrfs_pool, "q"))


@pytest.mark.liblxc
def test_custom_volume_attached_to_unprivileged_container(daemon: Daemon, container: str) -> None:
    volume(daemon, "default", "shared")
    block = unique("blk")
    volume(daemon, "default", block, content_type="block", config={"size": "4MiB"})
    try:
        inst = daemon.request("GET", f"/1.0/instances/{container}").metadata
        disk = {"type": "disk", "pool": "default", "path": "/data"}
        code, message = error(
            daemon.request(
                "PATCH",
                f"/1.0/instances/{container}",
                {"devices": {**inst["devices"], "b": {**disk, "source": block}}},
            )
        )
        assert code == 400 and "block volumes cannot be used on containers" in message.lower()
        code, message = error(
            daemon.request(
                "PATCH",
                f"/1.0/instances/{container}",
                {"devices": {**inst["devices"], "m": {**disk, "source": "missing"}}},
            )
        )
        assert code == 404 or (code == 400 and "not found" in message), message
        # hot plugged into the running container; root inside, host root on the volume
        resp = daemon.request(
            "PATCH",
            f"/1.0/instances/{container}",
            {"devices": {**inst["devices"], "v": {**disk, "source": "shared"}}},
        )
        assert resp.status == 200, resp.body
        daemon.cli("exec", container, "--", "sh", "-c", "echo hi > /data/f")
        on_pool = daemon.root / "storage-pools/default/custom/default_shared/f"
        assert on_pool.read_text() == "hi\n" and os.stat(on_pool).st_uid == 0
        listed = daemon.cli("exec", container, "--", "ls", "-ln", "/data").stdout
        assert " 0 " in listed
        block_file = daemon.root / f"storage-pools/default/custom/default_{block}/root.img"
        assert block_file.stat().st_size == 4 << 20
    finally:
        daemon.force_delete(container)
        for name in ("shared", block):
            daemon.request("DELETE", vol_url("default", name))


@pytest.mark.parametrize(
    ("driver", "feature", "present"),
    [("lvm", "device-mapper", "/dev/mapper/control"), ("zfs", "ZFS kernel module", "/dev/zfs")],
)
def test_drivers_this_host_cannot_run_are_refused_at_creation(
    daemon: Daemon, driver: str, feature: str, present: str
) -> None:
    if Path(present).exists():
        pytest.skip(f"this host has {present}: the {driver} driver could run")
    name = unique(driver)
    resp = daemon.request("POST", POOLS, {"name": name, "driver": driver})
    assert resp.status == 400 and feature in error(resp)[1]
    assert daemon.request("GET", f"{POOLS}/{name}").status == 404
    assert not (daemon.root / "disks" / f"{name}.img").exists()
    assert not (daemon.root / "storage-pools" / name).exists()
    drivers = daemon.request("GET", "/1.0").metadata["environment"]["storage_supported_drivers"]
    assert driver not in {d["Name"] for d in drivers}


@pytest.mark.btrfs
def test_copy_and_move_instances_between_pools(
    daemon: Daemon, busybox: str, btrfs_pool: str
) -> None:
    name = daemon.launch(busybox)
    copy, other = unique("cp"), unique("mv")
    try:
        shell(daemon, name, "echo one > /root/f; echo")
        daemon.ok(daemon.request("POST", f"/1.0/instances/{name}/snapshots", {"name": "s0"}))
        shell(daemon, name, "echo two > /root/f; echo")
        root = {"root": {"type": "disk", "path": "/", "pool": btrfs_pool}}
        body = {"name": copy, "source": {"type": "copy", "source": name}, "devices": root}
        daemon.ok(daemon.request("POST", "/1.0/instances", body))
        on_btrfs = daemon.root / "storage-pools" / btrfs_pool / "containers" / copy
        assert on_btrfs.stat().st_ino == 256  # a btrfs subvolume
        snaps = daemon.request("GET", f"/1.0/instances/{copy}/snapshots").metadata
        assert [s.rsplit("/", 1)[-1] for s in snaps] == ["s0"]
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{copy}", {"restore": "s0"}))
        rootfs = on_btrfs / "rootfs" / "root" / "f"
        assert rootfs.read_text() == "one\n"

        # refresh the copy across pools: the new snapshot, then the current files
        shell(daemon, name, "echo three > /root/f; echo")
        daemon.ok(daemon.request("POST", f"/1.0/instances/{name}/snapshots", {"name": "s1"}))
        refresh = {"type": "copy", "source": name, "refresh": True}
        daemon.ok(daemon.request("POST", "/1.0/instances", {**body, "source": refresh}))
        snaps = daemon.request("GET", f"/1.0/instances/{copy}/snapshots").metadata
        assert [s.rsplit("/", 1)[-1] for s in snaps] == ["s0", "s1"]
        assert rootfs.read_text() == "three\n"
        s1 = daemon.root / "storage-pools" / btrfs_pool / "containers-snapshots" / copy / "s1"
        assert (s1 / "rootfs" / "root" / "f").read_text() == "three\n"

        # a running instance does not move; a missing pool is a 404
        resp = daemon.request("POST", f"/1.0/instances/{name}", {"name": name, "pool": btrfs_pool})
        assert resp.status == 400 and "stop it" in error(resp)[1]
        resp = daemon.request("POST", f"/1.0/instances/{name}", {"name": name, "pool": "nope"})
        assert resp.status == 404
        daemon.force_stop(name)
        daemon.cli("rename", name, other)
        daemon.cli("move", other, "--storage", btrfs_pool)
        inst = daemon.request("GET", f"/1.0/instances/{other}").metadata
        assert inst["expanded_devices"]["root"]["pool"] == btrfs_pool
        old = daemon.root / "storage-pools" / "default" / "containers" / other
        assert not old.exists()
        moved = daemon.root / "storage-pools" / btrfs_pool / "containers" / other
        assert (moved / "rootfs" / "root" / "f").read_text() == "three\n"
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{other}/state", {"action": "start"}))
        assert shell(daemon, other, "cat /root/f") == "three\n"
        snaps = daemon.request("GET", f"/1.0/instances/{other}/snapshots").metadata
        assert [s.rsplit("/", 1)[-1] for s in snaps] == ["s0", "s1"]
    finally:
        for victim in (name, copy, other):
            daemon.force_delete(victim)
