"""Custom volume backups: make and download them, import them as new volumes (with their
snapshots) on dir and btrfs pools, through the API and `stapes storage volume export|import`;
a volume tarball made by real Incus 6.0.4 imports here; bad input leaves nothing behind."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tests.helpers import Daemon, unique

pytestmark = [pytest.mark.root]

POOLS = "/1.0/storage-pools"
INCUS_VOLUME_BACKUP = Path(__file__).parent.parent / "data" / "incus-6.0.4-volume-backup.tar.gz"
"""An empty custom volume with snapshot t0, exported by real Incus 6.0.4 from a dir pool."""


def vol_url(pool: str, name: str) -> str:
    return f"{POOLS}/{pool}/volumes/custom/{name}"


def write_into(daemon: Daemon, pool: str, name: str, text: str) -> None:
    """Write file ``a`` of a volume on the host (custom volumes keep host ids)."""
    on_pool = daemon.root / "storage-pools" / pool / "custom" / f"default_{name}"
    (on_pool / "a").write_text(text)


def read_from(daemon: Daemon, pool: str, name: str, snap: str = "") -> str:
    base = daemon.root / "storage-pools" / pool
    if snap:
        return (base / "custom-snapshots" / f"default_{name}" / snap / "a").read_text()
    return (base / "custom" / f"default_{name}" / "a").read_text()


def upload(daemon: Daemon, pool: str, tarball: bytes, name: str) -> object:
    headers = {"Content-Type": "application/octet-stream", "X-Incus-name": name}
    return daemon.request("POST", f"{POOLS}/{pool}/volumes/custom", raw=tarball, headers=headers)


def make_volume(daemon: Daemon, pool: str) -> str:
    name = unique("v")
    resp = daemon.request("POST", f"{POOLS}/{pool}/volumes/custom", {"name": name})
    assert resp.status == 200, resp.body
    write_into(daemon, pool, name, "one\n")
    daemon.ok(daemon.request("POST", f"{vol_url(pool, name)}/snapshots", {"name": "s0"}))
    write_into(daemon, pool, name, "two\n")
    return name


def backup_of(daemon: Daemon, pool: str, name: str, **body: object) -> bytes:
    op = daemon.ok(daemon.request("POST", f"{vol_url(pool, name)}/backups", body))
    backup = op["resources"]["backups"][0].rsplit("/", 1)[-1]
    resp = daemon.request("GET", f"{vol_url(pool, name)}/backups/{backup}/export")
    assert resp.status == 200, resp.body
    return resp.body


def test_volume_backup_round_trip_on_dir(daemon: Daemon) -> None:
    name = make_volume(daemon, "default")
    copy = unique("vc")
    try:
        tarball = backup_of(daemon, "default", name)
        with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
            names = [m.name for m in tar.getmembers()]
        assert names[0] == "backup/index.yaml"
        assert "backup/volume/a" in names and "backup/volume-snapshots/s0/a" in names
        listing = daemon.request("GET", f"{vol_url('default', name)}/backups?recursion=1")
        assert [b["volume_only"] for b in listing.metadata] == [False]

        daemon.ok(upload(daemon, "default", tarball, copy))  # type: ignore[arg-type]
        assert read_from(daemon, "default", copy) == "two\n"
        assert read_from(daemon, "default", copy, "s0") == "one\n"
        snaps = daemon.request("GET", f"{vol_url('default', copy)}/snapshots").metadata
        assert [s.rsplit("/", 1)[-1] for s in snaps] == ["s0"]

        resp = upload(daemon, "default", tarball, copy)
        assert resp.status == 409  # type: ignore[attr-defined]
    finally:
        for vol in (name, copy):
            daemon.request("DELETE", vol_url("default", vol))
    assert not list((daemon.root / "backups" / "volumes").rglob("*.tar"))


def test_volume_backup_bad_input(daemon: Daemon, busybox: str) -> None:
    before = daemon.request("GET", f"{POOLS}/default/volumes/custom").metadata
    resp = upload(daemon, "default", b"junk", unique("bad"))
    assert resp.status == 400 and "Not a backup tarball" in resp.json()["error"]  # type: ignore[attr-defined]
    resp = upload(daemon, "default", INCUS_VOLUME_BACKUP.read_bytes(), "a/b")
    assert resp.status == 400  # type: ignore[attr-defined]
    name = daemon.launch(busybox, start=False)
    try:
        op = daemon.ok(daemon.request("POST", f"/1.0/instances/{name}/backups", {}))
        backup = op["resources"]["backups"][0].rsplit("/", 1)[-1]
        instance_backup = daemon.request(
            "GET", f"/1.0/instances/{name}/backups/{backup}/export"
        ).body
    finally:
        daemon.force_delete(name)
    resp = upload(daemon, "default", instance_backup, unique("bad"))
    assert resp.status == 400 and "stapes import" in resp.json()["error"]  # type: ignore[attr-defined]
    resp = daemon.request("POST", f"{POOLS}/default/volumes/container/{name}/backups", {})
    assert resp.status in (400, 404)
    assert daemon.request("GET", f"{POOLS}/default/volumes/custom").metadata == before
    pool = daemon.root / "storage-pools" / "default"
    assert not [p for p in pool.iterdir() if p.name.startswith(".import-")]


def test_import_of_a_volume_backup_made_by_incus(daemon: Daemon) -> None:
    name = unique("iv")
    daemon.ok(upload(daemon, "default", INCUS_VOLUME_BACKUP.read_bytes(), name))  # type: ignore[arg-type]
    try:
        snaps = daemon.request("GET", f"{vol_url('default', name)}/snapshots").metadata
        assert [s.rsplit("/", 1)[-1] for s in snaps] == ["t0"]
    finally:
        daemon.request("DELETE", vol_url("default", name))


@pytest.mark.btrfs
def test_volume_backups_with_the_cli_on_btrfs(
    daemon: Daemon, btrfs_pool: str, tmp_path: Path
) -> None:
    name = make_volume(daemon, btrfs_pool)
    plain, optimized = tmp_path / "plain.tar.gz", tmp_path / "opt.tar.zst"
    try:
        daemon.cli("storage", "volume", "export", btrfs_pool, name, str(plain))
        daemon.cli(
            "storage", "volume", "export", btrfs_pool, name, str(optimized),
            "--optimized-storage", "--compression", "zstd",
        )  # fmt: skip
        assert daemon.request("GET", f"{vol_url(btrfs_pool, name)}/backups").metadata == []
        for pool, source, copy in (
            ("default", plain, "p1"),
            (btrfs_pool, plain, "p2"),
            (btrfs_pool, optimized, "o1"),
        ):
            daemon.cli("storage", "volume", "import", pool, str(source), name + copy)
            assert read_from(daemon, pool, name + copy) == "two\n"
            assert read_from(daemon, pool, name + copy, "s0") == "one\n"
        proc = daemon.cli("storage", "volume", "import", "default", str(optimized), check=False)
        assert proc.returncode == 1 and "optimized for btrfs" in proc.stderr
    finally:
        daemon.request("DELETE", vol_url("default", name + "p1"))
        for vol in (name, name + "p2", name + "o1"):
            daemon.request("DELETE", vol_url(btrfs_pool, vol))
