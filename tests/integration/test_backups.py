"""Instance backups over the REST API: make, list, rename, download and delete them; import them
as new instances (with their snapshots) on dir and btrfs pools; tarballs made by real Incus 6.0.4
(tests/data) import here; and the bad input each step must refuse without leaving anything."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.helpers import Daemon, backup_with_index, unique

pytestmark = [pytest.mark.root]

DATA = Path(__file__).parent.parent / "data"
INCUS_DIR_BACKUP = DATA / "incus-6.0.4-dir-backup.tar.gz"
"""`incus init --empty`, files /hello (uid 0) and /owned (uid 1000), snapshot s0, then /hello
changed and user.note set; exported by real Incus 6.0.4 from a dir pool."""
INCUS_BTRFS_BACKUP = DATA / "incus-6.0.4-btrfs-optimized-backup.tar.gz"
"""The same kind of instance on a btrfs pool, exported with --optimized-storage."""
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def backups_url(name: str) -> str:
    return f"/1.0/instances/{name}/backups"


def make_backup(daemon: Daemon, instance: str, **body: object) -> bytes:
    """Make a backup, download it, return the tarball."""
    name = instance
    daemon.ok(daemon.request("POST", backups_url(name), body))
    backup = (
        body.get("name") or daemon.request("GET", backups_url(name)).metadata[-1].split("/")[-1]
    )
    resp = daemon.request("GET", f"{backups_url(name)}/{backup}/export")
    assert resp.status == 200, resp.body
    return resp.body


def import_backup(daemon: Daemon, tarball: bytes, name: str, pool: str = "") -> dict[str, object]:
    headers = {"Content-Type": "application/octet-stream", "X-Incus-name": name}
    if pool:
        headers["X-Incus-pool"] = pool
    resp = daemon.request("POST", "/1.0/instances", raw=tarball, headers=headers)
    return daemon.wait(resp).metadata  # type: ignore[no-any-return]


def plain(tarball: bytes) -> io.BytesIO:
    """The tarball as Python's tarfile can read it (it knows no zstd)."""
    if tarball[:4] == ZSTD_MAGIC:
        tarball = subprocess.run(["zstd", "-dc"], input=tarball, capture_output=True).stdout
    return io.BytesIO(tarball)


def members(tarball: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=plain(tarball)) as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


def cat(daemon: Daemon, name: str, path: str) -> str:
    resp = daemon.request("GET", f"/1.0/instances/{name}/files?path={path}")
    assert resp.status == 200, resp.body
    return resp.body.decode()


def test_backup_export_and_import_with_snapshots(daemon: Daemon, container: str) -> None:
    daemon.cli("exec", container, "--", "sh", "-c", "echo one > /root/f; chown 1000:1000 /root/f")
    daemon.ok(daemon.request("POST", f"/1.0/instances/{container}/snapshots", {"name": "s0"}))
    daemon.cli("exec", container, "--", "sh", "-c", "echo two > /root/f")

    tarball = make_backup(daemon, container, name="b0", compression_algorithm="zstd")
    assert tarball[:4] == ZSTD_MAGIC
    listing = daemon.request("GET", f"{backups_url(container)}?recursion=1").metadata
    assert [(b["name"], b["instance_only"], b["optimized_storage"]) for b in listing] == [
        ("b0", False, False)
    ]

    found = members(tarball)
    names = list(found)
    assert names[0] == "backup/index.yaml"
    assert (
        "backup/container/rootfs/root/f" in found and "backup/snapshots/s0/rootfs/root/f" in found
    )
    assert "backup/container/config" not in found  # liblxc's config stays home
    owner = found["backup/container/rootfs/root/f"]
    assert (owner.uid, owner.gid) == (1000, 1000)  # the instance's own ids, as Incus stores them
    with tarfile.open(fileobj=plain(tarball)) as tar:
        extracted = tar.extractfile("backup/index.yaml")
        assert extracted is not None
        index = yaml.safe_load(extracted.read())
    assert index["name"] == container and index["backend"] == "dir"
    assert index["snapshots"] == ["s0"] and index["optimized"] is False
    assert index["config"]["container"]["name"] == container

    copy = unique("imp")
    op = import_backup(daemon, tarball, copy)
    assert op["status"] == "Success", op
    try:
        snaps = daemon.request("GET", f"/1.0/instances/{copy}/snapshots").metadata
        assert [s.rsplit("/", 1)[-1] for s in snaps] == ["s0"]
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{copy}/state", {"action": "start"}))
        out = daemon.cli("exec", copy, "--", "sh", "-c", "cat /root/f; stat -c %u /root/f").stdout
        assert out.split() == ["two", "1000"]
        daemon.force_stop(copy)
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{copy}", {"restore": "s0"}))
        assert cat(daemon, copy, "/root/f") == "one\n"
    finally:
        daemon.force_delete(copy)

    # rename, instance-only, delete
    resp = daemon.request("POST", f"{backups_url(container)}/b0", {"name": "b1"})
    daemon.ok(resp)
    only = make_backup(daemon, container, instance_only=True, compression_algorithm="none")
    assert not any(n.startswith("backup/snapshots") for n in members(only))
    listing = daemon.request("GET", backups_url(container)).metadata
    assert sorted(u.rsplit("/", 1)[-1] for u in listing) == ["b1", "backup0"]
    files = list((daemon.root / "backups" / "instances").rglob("*.tar"))
    assert len(files) == 2
    daemon.ok(daemon.request("DELETE", f"{backups_url(container)}/b1"))
    assert daemon.request("GET", f"{backups_url(container)}/b1").status == 404
    assert len(list((daemon.root / "backups" / "instances").rglob("*.tar"))) == 1


def test_cli_export_and_import(daemon: Daemon, container: str, tmp_path: Path) -> None:
    daemon.cli("exec", container, "--", "sh", "-c", "echo cli > /root/f")
    daemon.ok(daemon.request("POST", f"/1.0/instances/{container}/snapshots", {"name": "s0"}))
    target = tmp_path / "c.tar.xz"
    out = daemon.cli("export", container, str(target), "--instance-only", "--compression", "xz")
    assert "exported" in out.stdout
    assert target.read_bytes()[:6] == b"\xfd7zXZ\x00"
    assert daemon.request("GET", backups_url(container)).metadata == []  # the export's own, gone
    copy = unique("cli")
    daemon.cli("import", str(target), copy, "--storage", "default")
    try:
        assert cat(daemon, copy, "/root/f") == "cli\n"
        assert daemon.request("GET", f"/1.0/instances/{copy}/snapshots").metadata == []
    finally:
        daemon.force_delete(copy)
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"garbage")
    proc = daemon.cli("import", str(bad), unique("bad"), check=False)
    assert proc.returncode == 1 and "Not a backup tarball" in proc.stderr


def test_deleting_an_instance_removes_its_backups(daemon: Daemon, busybox: str) -> None:
    name = daemon.launch(busybox, start=False)
    daemon.ok(daemon.request("POST", backups_url(name), {}))
    files = list((daemon.root / "backups" / "instances").rglob("*.tar"))
    assert files
    daemon.force_delete(name)
    assert not any(f.exists() for f in files)


def test_backup_bad_input(daemon: Daemon, container: str) -> None:
    url = backups_url(container)
    resp = daemon.request("POST", url, {"compression_algorithm": "rar"})
    assert resp.status == 400 and "compression algorithm" in resp.json()["error"]
    resp = daemon.request("POST", url, {"name": "a/b"})
    assert resp.status == 400 and "Invalid backup name" in resp.json()["error"]
    daemon.ok(daemon.request("POST", url, {"name": "x"}))
    resp = daemon.request("POST", url, {"name": "x"})
    assert resp.status == 409
    assert daemon.request("GET", f"{url}/nope").status == 404

    before = daemon.request("GET", "/1.0/instances").metadata
    headers = {"Content-Type": "application/octet-stream", "X-Incus-name": unique("bad")}
    resp = daemon.request("POST", "/1.0/instances", raw=b"not a tarball", headers=headers)
    assert resp.status == 400 and "Not a backup tarball" in resp.json()["error"]
    resp = daemon.request("POST", "/1.0/instances", raw=b"", headers=headers)
    assert resp.status == 400 and "empty" in resp.json()["error"]

    tarball = make_backup(daemon, container)
    resp = daemon.request(
        "POST",
        "/1.0/instances",
        raw=tarball,
        headers={"Content-Type": "application/octet-stream", "X-Incus-name": container},
    )
    assert resp.status == 409
    resp = daemon.request(
        "POST",
        "/1.0/instances",
        raw=tarball,
        headers={**headers, "X-Incus-pool": "nosuchpool"},
    )
    assert resp.status == 400 and "nosuchpool" in resp.json()["error"]
    vm = backup_with_index(tarball, lambda index: index.update(type="virtual-machine"))
    resp = daemon.request("POST", "/1.0/instances", raw=vm, headers=headers)
    assert resp.status == 400 and "virtual-machine" in resp.json()["error"]
    assert daemon.request("GET", "/1.0/instances").metadata == before
    assert not list((daemon.root / "backups" / "uploads").iterdir())
    pool = daemon.root / "storage-pools" / "default"
    assert not [p for p in pool.iterdir() if p.name.startswith(".import-")]


def test_import_of_a_backup_made_by_incus(daemon: Daemon) -> None:
    name = unique("inc")
    op = import_backup(daemon, INCUS_DIR_BACKUP.read_bytes(), name)
    assert op["status"] == "Success", op
    try:
        inst = daemon.request("GET", f"/1.0/instances/{name}").metadata
        assert inst["config"]["user.note"] == "from-incus"
        assert inst["config"]["volatile.last_state.power"] == "STOPPED"
        assert cat(daemon, name, "/hello") == "second\n"
        rootfs = daemon.root / "storage-pools" / "default" / "containers" / name / "rootfs"
        base = int(inst["config"].get("volatile.idmap.base", "0"))
        assert (rootfs / "owned").stat().st_uid == base + 1000
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}", {"restore": "s0"}))
        assert cat(daemon, name, "/hello") == "first\n"
    finally:
        daemon.force_delete(name)


@pytest.mark.btrfs
def test_optimized_btrfs_backups(daemon: Daemon, busybox: str, btrfs_pool: str) -> None:
    name = daemon.launch(
        busybox, devices={"root": {"type": "disk", "path": "/", "pool": btrfs_pool}}
    )
    copy = unique("opt")
    try:
        daemon.cli("exec", name, "--", "sh", "-c", "echo one > /root/f")
        daemon.ok(daemon.request("POST", f"/1.0/instances/{name}/snapshots", {"name": "s0"}))
        daemon.cli("exec", name, "--", "sh", "-c", "echo two > /root/f")
        tarball = make_backup(daemon, name, optimized_storage=True)
        found = members(tarball)
        assert {
            "backup/container.bin",
            "backup/snapshots/s0.bin",
            "backup/optimized_header.yaml",
        } <= set(found)
        assert not any(n.startswith("backup/container/") for n in found)
        with tarfile.open(fileobj=plain(tarball)) as tar:
            stream = tar.extractfile("backup/container.bin")
            assert stream is not None
            dump = subprocess.run(
                ["btrfs", "receive", "--dump"], input=stream.read(), capture_output=True
            ).stdout.decode()
        assert "./.backup/rootfs/root/f" in dump  # Incus's name for the volume's stream
        assert "./.backup/config" not in dump  # liblxc's config stays home

        resp = daemon.request(
            "POST",
            "/1.0/instances",
            raw=tarball,
            headers={
                "Content-Type": "application/octet-stream",
                "X-Incus-name": copy,
                "X-Incus-pool": "default",
            },
        )
        assert resp.status == 400 and "optimized for btrfs" in resp.json()["error"]

        op = import_backup(daemon, tarball, copy)
        assert op["status"] == "Success", op
        assert cat(daemon, copy, "/root/f") == "two\n"
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{copy}", {"restore": "s0"}))
        assert cat(daemon, copy, "/root/f") == "one\n"
        volume = daemon.root / "storage-pools" / btrfs_pool / "containers" / copy
        assert volume.stat().st_ino == 256  # a subvolume of its own
    finally:
        daemon.force_delete(copy)
        daemon.force_delete(name)


@pytest.mark.btrfs
def test_import_of_an_optimized_backup_made_by_incus(daemon: Daemon, btrfs_pool: str) -> None:
    name = unique("incbt")
    op = import_backup(daemon, INCUS_BTRFS_BACKUP.read_bytes(), name, pool=btrfs_pool)
    assert op["status"] == "Success", op
    try:
        inst = daemon.request("GET", f"/1.0/instances/{name}").metadata
        assert inst["expanded_devices"]["root"]["pool"] == btrfs_pool
        assert cat(daemon, name, "/hello") == "third\n"
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}", {"restore": "s0"}))
        assert cat(daemon, name, "/hello") == "second\n"
    finally:
        daemon.force_delete(name)


REAL_INCUS = Path("/var/lib/incus/unix.socket")


def _real_incus_running() -> bool:
    if not REAL_INCUS.exists() or shutil.which("incus") is None:
        return False
    env = {**os.environ, "INCUS_SOCKET": str(REAL_INCUS)}
    proc = subprocess.run(["incus", "info"], env=env, capture_output=True, timeout=30)
    return proc.returncode == 0


@pytest.mark.skipif(
    not _real_incus_running(),
    reason="no real Incus daemon on /var/lib/incus/unix.socket "
    "(../shared/tools/incus-anchor start runs one)",
)
def test_backup_imports_into_real_incus(daemon: Daemon, container: str, tmp_path: Path) -> None:
    daemon.cli("exec", container, "--", "sh", "-c", "echo stapes > /root/f")
    daemon.ok(daemon.request("POST", f"/1.0/instances/{container}/snapshots", {"name": "s0"}))
    tarball = tmp_path / "b.tar.gz"
    tarball.write_bytes(make_backup(daemon, container))
    env = {**os.environ, "INCUS_SOCKET": str(REAL_INCUS), "INCUS_CONF": str(tmp_path / "conf")}
    name = unique("fromstapes")

    def incus(*args: str) -> str:
        proc = subprocess.run(
            ["incus", *args], env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    incus("import", str(tarball), name)
    try:
        assert "s0" in incus("snapshot", "list", name, "-f", "csv")
        incus("start", name)
        assert incus("exec", name, "--", "cat", "/root/f") == "stapes\n"
    finally:
        subprocess.run(["incus", "delete", "-f", name], env=env, capture_output=True, timeout=300)
