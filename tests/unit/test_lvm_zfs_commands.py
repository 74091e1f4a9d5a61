"""The lvm and zfs drivers cannot run on this host (no device-mapper, no ZFS module): their
names and commands are checked here, and pool creation's refusal in the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from stapes.api.errors import MissingHostFeature
from stapes.storage.drivers import lvm, zfs


def test_lv_names_round_trip_with_incus_escaping() -> None:
    assert lvm.lv_name("containers", "c1") == "containers_c1"
    assert lvm.lv_name("custom", "default_my-vol") == "custom_default_my--vol"
    assert lvm.lv_name("containers", "web-1", "snap-0") == "containers_web--1-snap--0"
    assert lvm.parse_lv_name("containers_web--1-snap--0") == ("containers", "web-1", "snap-0")
    assert lvm.parse_lv_name("custom_default_my--vol") == ("custom", "default_my-vol", None)
    assert lvm.parse_lv_name("StapesThinPool") is None
    assert lvm.parse_lv_name("home_x") is None


def test_lvm_commands() -> None:
    assert lvm.lv_create_argv("vg", "containers_c1", 10 * 1024**3, "tp") == [
        "lvcreate", "--yes", "--wipesignatures", "y", "--name", "containers_c1",
        "--thin", "--virtualsize", "10737418240b", "vg/tp",
    ]  # fmt: skip
    assert lvm.lv_create_argv("vg", "custom_v", 1000, None)[-3:] == ["--size", "1024b", "vg"]
    assert lvm.lv_snapshot_argv("vg", "containers_c1", "containers_c1-s0", readonly=True) == [
        "lvcreate", "--yes", "--snapshot", "--name", "containers_c1-s0",
        "--setactivationskip", "n", "--permission", "r", "vg/containers_c1",
    ]  # fmt: skip
    thick = lvm.lv_snapshot_argv("vg", "a", "b", readonly=False, thick_size=4096)
    assert thick[-3:] == ["--size", "4096b", "vg/a"]
    assert lvm.thinpool_argv("vg", "tp", 1 << 30)[-3:] == [
        "--poolmetadatasize",
        "1073741824b",
        "vg",
    ]
    assert lvm.lv_extend_argv("vg", "x", 2048) == ["lvextend", "--size", "2048b", "vg/x"]
    assert lvm.lv_remove_argv("vg", "x") == ["lvremove", "--force", "vg/x"]
    assert lvm.mkfs_argv("xfs", "/dev/vg/x") == ["mkfs.xfs", "-q", "-f", "/dev/vg/x"]
    assert lvm.grow_fs_argv("ext4", "/dev/vg/x", Path("/m")) == ["resize2fs", "/dev/vg/x"]
    assert lvm.grow_fs_argv("xfs", "/dev/vg/x", Path("/m")) == ["xfs_growfs", "/m"]
    assert lvm.parse_lvs("  StapesThinPool|1073741824\n  containers_c1|10737418240.00\n") == {
        "StapesThinPool": 1073741824,
        "containers_c1": 10737418240,
    }


def test_zfs_commands() -> None:
    ds = "tank/containers/c1"
    assert zfs.snapshot_name(ds, "s0") == "tank/containers/c1@snapshot-s0"
    assert zfs.zpool_create_argv("tank", "/var/lib/stapes/disks/tank.img") == [
        "zpool", "create", "-f", "-m", "none", "-O", "compression=on", "tank",
        "/var/lib/stapes/disks/tank.img",
    ]  # fmt: skip
    assert zfs.dataset_create_argv(ds, Path("/p/containers/c1")) == [
        "zfs", "create", "-p", "-o", "mountpoint=/p/containers/c1", ds,
    ]  # fmt: skip
    assert zfs.dataset_create_argv("tank/custom", None)[-2:] == ["mountpoint=none", "tank/custom"]
    assert zfs.zvol_create_argv("tank/custom/v", 10000) == [
        "zfs", "create", "-p", "-V", "16384", "tank/custom/v",
    ]  # fmt: skip
    assert zfs.clone_argv("tank/images/x@copy-1", ds, Path("/m")) == [
        "zfs", "clone", "-o", "mountpoint=/m", "tank/images/x@copy-1", ds,
    ]  # fmt: skip
    assert zfs.send_argv(f"{ds}@snapshot-s1", f"{ds}@snapshot-s0") == [
        "zfs", "send", "-i", f"{ds}@snapshot-s0", f"{ds}@snapshot-s1",
    ]  # fmt: skip
    assert zfs.receive_argv(ds) == ["zfs", "receive", "-F", "-u", ds]
    assert zfs.set_argv(ds, "refquota", "none") == ["zfs", "set", "refquota=none", ds]
    listing = "tank\t1000\t-\ntank/containers/c1\t200\ttank/images/x@copy-1\n"
    assert zfs.parse_list(listing) == {
        "tank": (1000, "-"),
        "tank/containers/c1": (200, "tank/images/x@copy-1"),
    }


@pytest.mark.skipif(Path("/dev/mapper/control").exists(), reason="this host has device-mapper")
def test_lvm_probe_names_device_mapper() -> None:
    with pytest.raises(MissingHostFeature, match="device-mapper"):
        lvm.LvmDriver.probe()


@pytest.mark.skipif(Path("/dev/zfs").exists(), reason="this host has the ZFS module")
def test_zfs_probe_names_the_module() -> None:
    with pytest.raises(MissingHostFeature, match="ZFS kernel module"):
        zfs.ZfsDriver.probe()
