"""Snapshots and copies over the REST API: take, list, rename, expire, restore, delete, copy a
snapshot or an instance (with or without its snapshots), refresh a copy."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import Daemon, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


def put_file(daemon: Daemon, name: str, path: str, body: bytes) -> None:
    resp = daemon.request("POST", f"/1.0/instances/{name}/files?path={path}", raw=body)
    assert resp.status == 200, resp.body


def get_file(daemon: Daemon, name: str, path: str) -> bytes | None:
    resp = daemon.request("GET", f"/1.0/instances/{name}/files?path={path}")
    return resp.body if resp.status == 200 else None


def snap(daemon: Daemon, instance: str, **body: object) -> dict[str, object]:
    return daemon.ok(daemon.request("POST", f"/1.0/instances/{instance}/snapshots", body))


def snapshot_names(daemon: Daemon, name: str) -> list[str]:
    urls = daemon.request("GET", f"/1.0/instances/{name}/snapshots").metadata
    return [u.rsplit("/", 1)[-1] for u in urls]


def synced(daemon: Daemon, method: str, path: str, body: dict[str, object]) -> None:
    resp = daemon.request(method, path, body)
    assert resp.status in (200, 201), resp.body


def pool_dir(daemon: Daemon) -> Path:
    return daemon.root / "storage-pools" / "default"


def test_snapshot_then_restore_brings_back_files_and_config(daemon: Daemon, container: str) -> None:
    put_file(daemon, container, "/root/state", b"before")
    meta = snap(daemon, container)
    assert meta["resources"]["instances_snapshots"] == [
        f"/1.0/instances/{container}/snapshots/snap0"
    ]
    put_file(daemon, container, "/root/state", b"after")
    put_file(daemon, container, "/root/new", b"x")
    resp = daemon.request("PATCH", f"/1.0/instances/{container}", {"config": {"user.later": "1"}})
    assert resp.status == 200, resp.body

    before = daemon.request("GET", f"/1.0/instances/{container}").metadata["config"]
    daemon.ok(daemon.request("PUT", f"/1.0/instances/{container}", {"restore": "snap0"}))

    inst = daemon.request("GET", f"/1.0/instances/{container}").metadata
    assert inst["status"] == "Running"  # restored while running: stopped, restored, started
    assert "user.later" not in inst["config"]
    # as Incus: same instance, a new generation (instance_generation_id)
    assert inst["config"]["volatile.uuid"] == before["volatile.uuid"]
    generation = inst["config"]["volatile.uuid.generation"]
    assert generation != before["volatile.uuid.generation"]
    assert get_file(daemon, container, "/root/state") == b"before"
    assert get_file(daemon, container, "/root/new") is None


def test_snapshot_names_listing_and_bad_input(daemon: Daemon, container: str) -> None:
    snap(daemon, container)
    snap(daemon, container)
    snap(daemon, container, name="mine")
    assert snapshot_names(daemon, container) == ["snap0", "snap1", "mine"]

    full = daemon.request("GET", f"/1.0/instances/{container}/snapshots?recursion=1").metadata
    assert [s["name"] for s in full] == ["snap0", "snap1", "mine"]
    assert full[0]["expires_at"] == "0001-01-01T00:00:00Z"
    assert full[0]["expanded_devices"]["root"]["path"] == "/"
    inst = daemon.request("GET", f"/1.0/instances/{container}?recursion=1").metadata
    assert [s["name"] for s in inst["snapshots"]] == ["snap0", "snap1", "mine"]

    url = f"/1.0/instances/{container}/snapshots"
    dup = daemon.request("POST", url, {"name": "mine"})
    assert dup.status == 409 and "mine" in dup.json()["error"]
    bad = daemon.request("POST", url, {"name": "a b"})
    assert bad.status == 400 and "a b" in bad.json()["error"]
    stateful = daemon.request("POST", url, {"name": "s", "stateful": True})
    assert stateful.status == 400 and "CRIU" in stateful.json()["error"]
    expiry = daemon.request("POST", url, {"name": "e", "expires_at": "tomorrow"})
    assert expiry.status == 400 and "expires_at" in expiry.json()["error"]
    missing = daemon.request("GET", f"{url}/nope")
    assert missing.status == 404 and "nope" in missing.json()["error"]
    restore = daemon.request("PUT", f"/1.0/instances/{container}", {"restore": "nope"})
    assert restore.status == 404
    assert snapshot_names(daemon, container) == ["snap0", "snap1", "mine"]


def test_lists_show_each_snapshot_as_its_own_get(daemon: Daemon, container: str) -> None:
    """Lists share what equal snapshots have in common (db/snapshots.snapshots_to_show): a
    snapshot taken after a config change, and a profile changed after all of them, show in
    every list exactly as each snapshot's own GET shows it."""
    profile = unique("snapprof")
    synced(daemon, "POST", "/1.0/profiles", {"name": profile, "config": {}})
    try:
        synced(daemon, "PATCH", f"/1.0/instances/{container}", {"profiles": ["default", profile]})
        snap(daemon, container)
        snap(daemon, container)
        synced(daemon, "PATCH", f"/1.0/instances/{container}", {"config": {"user.mark": "later"}})
        snap(daemon, container)
        snap(daemon, container)
        synced(
            daemon, "PATCH", f"/1.0/profiles/{profile}", {"config": {"user.from_profile": "new"}}
        )
        url = f"/1.0/instances/{container}/snapshots"
        own = [daemon.request("GET", f"{url}/snap{i}").metadata for i in range(4)]
        assert [s["config"].get("user.mark") for s in own] == [None, None, "later", "later"]
        assert all(s["expanded_config"]["user.from_profile"] == "new" for s in own)
        listed = daemon.request("GET", f"{url}?recursion=1").metadata
        full = daemon.request("GET", f"/1.0/instances/{container}?recursion=1").metadata
        every = daemon.request("GET", "/1.0/instances?recursion=2").metadata
        in_list = next(i for i in every if i["name"] == container)["snapshots"]
        assert listed == own and full["snapshots"] == own and in_list == own
    finally:
        daemon.request("PATCH", f"/1.0/instances/{container}", {"profiles": ["default"]})
        daemon.request("DELETE", f"/1.0/profiles/{profile}")


def test_rename_expire_and_delete_snapshots(daemon: Daemon, container: str) -> None:
    snap(daemon, container, name="one")
    volumes = pool_dir(daemon) / "containers-snapshots" / container
    assert (volumes / "one" / "rootfs").is_dir()
    url = f"/1.0/instances/{container}/snapshots"

    daemon.ok(daemon.request("POST", f"{url}/one", {"name": "two"}))
    assert snapshot_names(daemon, container) == ["two"]
    assert (volumes / "two").is_dir() and not (volumes / "one").exists()
    taken = daemon.request("POST", url, {"name": "other"})
    daemon.ok(taken)
    clash = daemon.request("POST", f"{url}/two", {"name": "other"})
    assert clash.status == 409

    daemon.ok(daemon.request("PUT", f"{url}/two", {"expires_at": "2040-01-02T03:04:05Z"}))
    assert (
        daemon.request("GET", f"{url}/two").metadata["expires_at"].startswith("2040-01-02T03:04:05")
    )
    resp = daemon.request(
        "PATCH", f"/1.0/instances/{container}", {"config": {"snapshots.expiry": "2d"}}
    )
    assert resp.status == 200
    snap(daemon, container, name="auto")
    expires = daemon.request("GET", f"{url}/auto").metadata["expires_at"]
    in_two_days = datetime.now(UTC) + timedelta(days=2)
    assert expires[:13] == in_two_days.strftime("%Y-%m-%dT%H")
    snap(daemon, container, name="never", expires_at="0001-01-01T00:00:00Z")
    assert daemon.request("GET", f"{url}/never").metadata["expires_at"].startswith("0001")

    daemon.ok(daemon.request("DELETE", f"{url}/two"))
    assert "two" not in snapshot_names(daemon, container)
    assert not (volumes / "two").exists()


def test_copy_of_snapshot_and_of_instance(daemon: Daemon, container: str) -> None:
    put_file(daemon, container, "/root/v", b"1")
    snap(daemon, container, name="s1")
    put_file(daemon, container, "/root/v", b"2")
    from_snap, whole, alone = unique("cs"), unique("ci"), unique("co")
    try:
        for name, source, only in (
            (from_snap, f"{container}/s1", False),
            (whole, container, False),
            (alone, container, True),
        ):
            body = {
                "name": name,
                "source": {"type": "copy", "source": source, "instance_only": only},
            }
            daemon.ok(daemon.request("POST", "/1.0/instances", body))
        assert get_file(daemon, from_snap, "/root/v") == b"1"
        assert get_file(daemon, whole, "/root/v") == b"2"
        assert snapshot_names(daemon, from_snap) == []
        assert snapshot_names(daemon, whole) == ["s1"]
        assert snapshot_names(daemon, alone) == []
        src = daemon.request("GET", f"/1.0/instances/{container}").metadata
        copy = daemon.request("GET", f"/1.0/instances/{whole}").metadata
        assert copy["status"] == "Stopped"
        assert copy["config"]["volatile.uuid"] != src["config"]["volatile.uuid"]
        assert copy["config"]["volatile.base_image"] == src["config"]["volatile.base_image"]
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{whole}/state", {"action": "start"}))
        out = daemon.cli("exec", whole, "--", "cat", "/root/v").stdout
        assert out == "2"

        # refresh: the copy catches up with the source's files and snapshots
        daemon.ok(
            daemon.request(
                "PUT", f"/1.0/instances/{whole}/state", {"action": "stop", "force": True}
            )
        )
        put_file(daemon, container, "/root/v", b"3")
        snap(daemon, container, name="s2")
        daemon.ok(daemon.request("DELETE", f"/1.0/instances/{container}/snapshots/s1"))
        body = {"name": whole, "source": {"type": "copy", "source": container, "refresh": True}}
        daemon.ok(daemon.request("POST", "/1.0/instances", body))
        assert get_file(daemon, whole, "/root/v") == b"3"
        assert snapshot_names(daemon, whole) == ["s2"]
    finally:
        for name in (from_snap, whole, alone):
            daemon.force_delete(name)
    leftovers = [p.name for p in (pool_dir(daemon) / "containers-snapshots").iterdir()]
    assert not {from_snap, whole, alone} & set(leftovers)


def test_bad_copies_leave_nothing(daemon: Daemon, container: str) -> None:
    name = unique("bad")
    missing = daemon.request(
        "POST", "/1.0/instances", {"name": name, "source": {"type": "copy", "source": "nope"}}
    )
    assert missing.status == 404 and "nope" in missing.json()["error"]
    no_snap = daemon.request(
        "POST",
        "/1.0/instances",
        {"name": name, "source": {"type": "copy", "source": f"{container}/nope"}},
    )
    assert no_snap.status == 404
    exists = daemon.request(
        "POST",
        "/1.0/instances",
        {"name": container, "source": {"type": "copy", "source": container}},
    )
    assert exists.status == 409
    running = daemon.request(
        "POST",
        "/1.0/instances",
        {"name": container, "source": {"type": "copy", "source": container, "refresh": True}},
    )
    assert running.status == 400 and "running" in running.json()["error"]
    assert daemon.request("GET", f"/1.0/instances/{name}").status == 404
    assert not (pool_dir(daemon) / "containers" / name).exists()


def test_rename_and_delete_carry_snapshots(daemon: Daemon, busybox: str) -> None:
    name, renamed = unique("r"), unique("r")
    daemon.ok(
        daemon.request(
            "POST", "/1.0/instances", {"name": name, "source": {"type": "image", "alias": busybox}}
        )
    )
    try:
        snap(daemon, name, name="keep")
        daemon.ok(daemon.request("POST", f"/1.0/instances/{name}", {"name": renamed}))
        assert snapshot_names(daemon, renamed) == ["keep"]
        volumes = pool_dir(daemon) / "containers-snapshots"
        assert (volumes / renamed / "keep").is_dir() and not (volumes / name).exists()
        daemon.ok(daemon.request("DELETE", f"/1.0/instances/{renamed}"))
        assert not (volumes / renamed).exists()
    finally:
        daemon.force_delete(name)
        daemon.force_delete(renamed)


@pytest.mark.slow
def test_scheduled_snapshots_and_expiry(daemon: Daemon, container: str) -> None:
    """Every minute stapesd takes the snapshots a schedule asks for and prunes expired ones."""
    soon = (datetime.now(UTC) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    snap(daemon, container, name="short", expires_at=soon)
    resp = daemon.request(
        "PATCH",
        f"/1.0/instances/{container}",
        {"config": {"snapshots.schedule": "* * * * *", "snapshots.pattern": "auto-%d"}},
    )
    assert resp.status == 200, resp.body
    deadline = time.time() + 75
    while time.time() < deadline:
        names = snapshot_names(daemon, container)
        if "auto-0" in names and "short" not in names:
            break
        time.sleep(1)
    assert "auto-0" in names and "short" not in names, names
