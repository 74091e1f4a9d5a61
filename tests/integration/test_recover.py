"""After a database loss the pools still hold the instances and volumes: `stapes admin recover`
(and the real `incus admin recover`) records them again, instances from the backup.yaml each
volume keeps, running ones re-adopted, a btrfs pool the database forgot mounted again."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import Daemon, unique

pytestmark = [pytest.mark.root]


def wait_for(path: Path, text: str) -> None:
    deadline = time.time() + 10
    while time.time() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never held {text!r}")


@pytest.mark.btrfs
def test_recover_after_losing_the_database(lone: Daemon) -> None:
    d = lone
    d.cli("image", "build", "busybox", "--alias", "bb")
    resp = d.request(
        "POST",
        "/1.0/storage-pools",
        {"name": "fast", "driver": "btrfs", "config": {"size": "300MiB"}},
    )
    assert resp.status == 201, resp.body
    source = d.request("GET", "/1.0/storage-pools/fast").metadata["config"]["source"]
    running = d.launch("bb", config={"user.note": "kept"})
    d.ok(d.request("POST", f"/1.0/instances/{running}/snapshots", {"name": "s0"}))
    on_btrfs = d.launch(
        "bb", start=False, devices={"root": {"type": "disk", "path": "/", "pool": "fast"}}
    )
    volume = unique("v")
    assert (
        d.request("POST", "/1.0/storage-pools/default/volumes/custom", {"name": volume}).status
        == 200
    )
    d.ok(
        d.request(
            "POST", f"/1.0/storage-pools/default/volumes/custom/{volume}/snapshots", {"name": "vs"}
        )
    )
    pools = d.root / "storage-pools"
    wait_for(pools / "default" / "containers" / running / "backup.yaml", "name: s0")
    wait_for(pools / "fast" / "containers" / on_btrfs / "backup.yaml", on_btrfs)
    pid = d.request("GET", f"/1.0/instances/{running}/state").metadata["pid"]

    d.stop()
    shutil.rmtree(d.root / "database")
    d.start()
    assert d.request("GET", "/1.0/instances").metadata == []
    assert d.request("GET", "/1.0/storage-pools").metadata == ["/1.0/storage-pools/default"]

    lost = [{"name": "fast", "driver": "btrfs", "config": {"source": source}}]
    scan = d.request("POST", "/internal/recover/validate", {"pools": lost}).metadata
    assert scan["dependencyErrors"] == []
    found = {(v["type"], v["name"], v["pool"], v["snapshotCount"]) for v in scan["unknownVolumes"]}
    assert found == {
        ("container", running, "default", 1),
        ("container", on_btrfs, "fast", 0),
        ("custom", volume, "default", 1),
    }

    out = d.cli("admin", "recover", "--yes", "--pool", f"fast:btrfs:source={source}").stdout
    assert "Recovered 3 volumes" in out
    inst = d.request("GET", f"/1.0/instances/{running}").metadata
    assert inst["config"]["user.note"] == "kept" and inst["status"] == "Running"
    assert d.request("GET", f"/1.0/instances/{running}/state").metadata["pid"] == pid
    assert d.cli("exec", running, "--", "echo", "back").stdout == "back\n"
    snaps = d.request("GET", f"/1.0/instances/{running}/snapshots").metadata
    assert [s.rsplit("/", 1)[-1] for s in snaps] == ["s0"]
    assert (
        d.request("GET", f"/1.0/instances/{on_btrfs}").metadata["expanded_devices"]["root"]["pool"]
        == "fast"
    )
    d.ok(d.request("PUT", f"/1.0/instances/{on_btrfs}/state", {"action": "start"}))
    vol_snaps = d.request("GET", f"/1.0/storage-pools/default/volumes/custom/{volume}/snapshots")
    assert [s.rsplit("/", 1)[-1] for s in vol_snaps.metadata] == ["vs"]
    again = d.request("POST", "/internal/recover/validate", {}).metadata
    assert again == {"unknownVolumes": [], "dependencyErrors": []}


def test_recover_refuses_a_volume_it_cannot_describe(lone: Daemon) -> None:
    d = lone
    ghost = d.root / "storage-pools" / "default" / "containers" / "ghost"
    (ghost / "rootfs").mkdir(parents=True)
    scan = d.request("POST", "/internal/recover/validate", {}).metadata
    assert scan["unknownVolumes"] == []
    assert any("ghost" in e and "backup.yaml" in e for e in scan["dependencyErrors"])
    resp = d.request("POST", "/internal/recover/import", {})
    assert resp.status == 400 and "ghost" in resp.json()["error"]
    assert d.request("GET", "/1.0/instances").metadata == []
    assert ghost.is_dir()  # recovery never deletes what it finds
    proc = d.cli("admin", "recover", "--yes", check=False)
    assert proc.returncode == 1 and "ghost" in proc.stderr
    resp = d.request(
        "POST", "/internal/recover/validate", {"pools": [{"name": "x", "driver": "nosuch"}]}
    )
    assert resp.status == 400 and "nosuch" in resp.json()["error"]


def test_the_real_incus_client_recovers(lone: Daemon, tmp_path: Path) -> None:
    incus = shutil.which("incus")
    if incus is None:
        pytest.skip("the incus client is not installed (make test installs incus-client)")
    d = lone
    d.cli("image", "build", "busybox", "--alias", "bb")
    name = d.launch("bb", start=False)
    wait_for(d.root / "storage-pools" / "default" / "containers" / name / "backup.yaml", name)
    d.stop()
    shutil.rmtree(d.root / "database")
    d.start()
    env = {"INCUS_SOCKET": d.socket, "INCUS_CONF": str(tmp_path / "conf"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [incus, "admin", "recover"],
        input="no\n\nyes\n",  # no other pool; scan; recover what was found
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f'Container "{name}" on pool "default"' in proc.stdout
    assert d.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Stopped"
