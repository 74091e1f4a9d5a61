"""The real incus client (6.0, from bookworm-backports) drives stapesd unchanged."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest
import yaml

from stapes.host.idmap import IdMap
from tests.helpers import Daemon, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc, pytest.mark.incus_cli]

INCUS = shutil.which("incus")


def test_incus_info_list_launch_exec_stop_delete(incus, busybox: str) -> None:  # type: ignore[no-untyped-def]
    info = incus("info").stdout
    assert 'api_version: "1.0"' in info or "api_version: 1.0" in info
    assert "server: stapes" in info
    name = unique("inc")
    incus("launch", busybox, name)
    try:
        listing = incus("list", "--format", "csv", "-c", "ns").stdout
        assert f"{name},RUNNING" in listing
        proc = incus("exec", name, "--", "sh", "-c", "echo hi; exit 3", check=False)
        assert proc.stdout == "hi\n" and proc.returncode == 3
        incus("stop", name, "--force")
        assert f"{name},STOPPED" in incus("list", "--format", "csv", "-c", "ns").stdout
    finally:
        incus("delete", name, "--force", check=False)
    assert name not in incus("list", "--format", "csv").stdout


def test_incus_errors_come_through(incus) -> None:  # type: ignore[no-untyped-def]
    proc = incus("info", "does-not-exist", check=False)
    assert proc.returncode == 1 and "Instance not found" in proc.stderr
    proc = incus("launch", "no-such-alias", unique("x"), check=False)
    assert proc.returncode == 1


def test_incus_image_list_and_config_show(incus, container: str) -> None:  # type: ignore[no-untyped-def]
    assert "bb" in incus("image", "list", "--format", "csv").stdout
    shown = incus("config", "show", container).stdout
    assert "volatile.base_image" in shown and "profiles:" in shown


def test_incus_profiles_and_config(incus, container: str) -> None:  # type: ignore[no-untyped-def]
    profile = unique("ip")
    incus("profile", "create", profile)
    incus("profile", "set", profile, "user.from", "incus")
    assert incus("profile", "get", profile, "user.from").stdout.strip() == "incus"
    incus("profile", "add", container, profile)
    shown = incus("config", "show", container, "--expanded").stdout
    assert "user.from: incus" in shown
    incus("config", "set", container, "user.own=1")
    assert incus("config", "get", container, "user.own").stdout.strip() == "1"
    assert incus("profile", "delete", profile, check=False).returncode == 1
    incus("profile", "remove", container, profile)
    incus("profile", "rename", profile, profile + "r")
    incus("profile", "delete", profile + "r")
    assert profile not in incus("profile", "list", "--format", "csv").stdout


def test_incus_snapshots_copy_and_refresh(incus, daemon: Daemon, container: str) -> None:  # type: ignore[no-untyped-def]
    incus("snapshot", "create", container, "s0")
    incus("exec", container, "--", "touch", "/root/later")
    listing = incus("snapshot", "list", container, "--format", "csv").stdout
    assert listing.startswith("s0,")
    incus("snapshot", "restore", container, "s0")
    assert incus("exec", container, "--", "ls", "/root/later", check=False).returncode != 0
    copy = unique("icp")
    try:
        incus("copy", container, copy)
        assert incus("snapshot", "list", copy, "--format", "csv").stdout.startswith("s0,")
        incus("exec", container, "--", "touch", "/root/fresh")
        incus("copy", container, copy, "--refresh")
        incus("start", copy)
        assert incus("exec", copy, "--", "ls", "/root/fresh").returncode == 0
        incus("snapshot", "rename", container, "s0", "s1")
        incus("snapshot", "delete", container, "s1")
        assert incus("snapshot", "list", container, "--format", "csv").stdout == ""
    finally:
        incus("delete", copy, "--force", check=False)


def test_incus_console_log(incus, container: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(50):
        shown = incus("console", container, "--show-log").stdout
        if "Please press Enter" in shown:
            break
        time.sleep(0.1)
    assert "Please press Enter" in shown
    assert "Log:" in incus("info", container, "--show-log").stdout


def test_incus_device_add_and_remove(incus, daemon: Daemon, container: str) -> None:  # type: ignore[no-untyped-def]
    share = daemon.root / unique("share")
    share.mkdir(mode=0o755)
    (share / "f").write_text("hi\n")
    incus("config", "device", "add", container, "s", "disk", f"source={share}", "path=/mnt/s")
    assert incus("exec", container, "--", "cat", "/mnt/s/f").stdout == "hi\n"
    assert "/mnt/s" in incus("config", "device", "show", container).stdout
    incus("config", "device", "remove", container, "s")
    # unmounted, and the empty mount point gone with it (as Incus leaves it)
    assert incus("exec", container, "--", "test", "-e", "/mnt/s", check=False).returncode == 1
    bad = incus("config", "device", "add", container, "b", "disk", "path=/x", check=False)
    assert bad.returncode != 0 and "source" in bad.stderr


def test_incus_file_verbs_over_sftp(incus, daemon: Daemon, busybox: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """incus file push/pull/delete speak SFTP over an upgraded connection."""
    name = unique("sftp")
    incus("launch", busybox, name)
    try:
        source = tmp_path / "hello.txt"
        source.write_text("over sftp\n")
        incus("file", "push", str(source), f"{name}/root/hello.txt", "--mode", "0640")
        listing = incus("exec", name, "--", "stat", "-c", "%u %a", "/root/hello.txt").stdout
        assert listing == "0 640\n"
        assert incus("file", "pull", f"{name}/root/hello.txt", "-").stdout == "over sftp\n"
        big = tmp_path / "big"  # many packets, in flight together, on the handed-over socket
        big.write_bytes(os.urandom(5 * 1024 * 1024 + 17))
        incus("file", "push", str(big), f"{name}/root/big")
        incus("file", "pull", f"{name}/root/big", str(tmp_path / "big.back"))
        assert (tmp_path / "big.back").read_bytes() == big.read_bytes()
        tree = tmp_path / "tree" / "sub"
        tree.mkdir(parents=True)
        (tree / "a").write_text("a\n")
        (tree / "link").symlink_to("a")
        incus("file", "push", "-r", str(tmp_path / "tree"), f"{name}/root/")
        assert incus("exec", name, "--", "readlink", "/root/tree/sub/link").stdout == "a\n"
        back = tmp_path / "back"
        incus("file", "pull", "-r", f"{name}/root/tree", str(back))
        assert (back / "tree" / "sub" / "a").read_text() == "a\n"
        incus("file", "delete", f"{name}/root/hello.txt")
        assert incus("exec", name, "--", "ls", "/root/hello.txt", check=False).returncode != 0

        # a link pointing out of the instance stays inside it, running or stopped
        incus("exec", name, "--", "ln", "-s", "/../../../../../../tmp", "/root/escape")
        marker = f"stapes-sftp-{name}"
        incus("file", "push", str(source), f"{name}/root/escape/{marker}")
        assert not Path("/tmp", marker).exists()
        incus("stop", name, "--force")
        incus("file", "push", str(source), f"{name}/root/escape/{marker}-stopped", "--uid", "7")
        assert not Path("/tmp", f"{marker}-stopped").exists()
        rootfs = daemon.root / "storage-pools/default/containers" / name / "rootfs"
        pushed = rootfs / "tmp" / f"{marker}-stopped"
        idmap = IdMap.from_host()
        assert idmap is not None
        assert pushed.stat().st_uid == idmap.base + 7  # container uid 7 through the idmap
        assert incus("file", "pull", f"{name}/root/escape/{marker}", "-").stdout == "over sftp\n"
    finally:
        incus("delete", name, "--force", check=False)


@pytest.mark.btrfs
def test_incus_storage_pools_and_volumes(incus, daemon: Daemon, container: str) -> None:  # type: ignore[no-untyped-def]
    pool = unique("ibt")
    incus("storage", "create", pool, "btrfs", "size=256MiB")
    try:
        assert f"{pool},btrfs" in incus("storage", "list", "--format", "csv").stdout
        incus("storage", "volume", "create", pool, "v", "size=16MiB")
        incus("storage", "volume", "snapshot", "create", pool, "v", "s0")
        incus("storage", "volume", "copy", f"{pool}/v", f"{pool}/w")
        listing = incus("storage", "volume", "list", pool, "--format", "csv").stdout
        assert "custom,v," in listing and "custom,w," in listing and "v/s0" in listing
        incus("storage", "volume", "set", pool, "v", "user.owner=ops")
        assert incus("storage", "volume", "get", pool, "v", "user.owner").stdout == "ops\n"
        incus("storage", "volume", "unset", pool, "v", "size")
        assert "size" not in incus("storage", "volume", "show", pool, "v").stdout
        incus("storage", "volume", "attach", pool, "v", container, "/srv")
        incus("exec", container, "--", "touch", "/srv/mark")
        proc = incus("storage", "volume", "delete", pool, "v", check=False)
        assert proc.returncode == 1 and "in use" in proc.stderr
        incus("storage", "volume", "detach", pool, "v", container)
        incus("storage", "volume", "snapshot", "restore", pool, "v", "s0")
        assert not (daemon.root / f"storage-pools/{pool}/custom/default_v/mark").exists()
        incus("storage", "volume", "rename", pool, "w", "w2")
        for name in ("v", "w2"):
            incus("storage", "volume", "delete", pool, name)
    finally:
        incus("storage", "delete", pool, check=False)
    assert pool not in incus("storage", "list", "--format", "csv").stdout


def test_incus_storage_info_and_host_resources(incus) -> None:  # type: ignore[no-untyped-def]
    info = incus("storage", "info", "default").stdout
    assert "driver: dir" in info and "total space:" in info
    resources = incus("info", "--resources").stdout
    assert "CPU:" in resources and "Memory:" in resources


def test_incus_networks(incus) -> None:  # type: ignore[no-untyped-def]
    name = "stpi" + uuid.uuid4().hex[:8]
    subnet = f"10.217.{uuid.uuid4().int % 250 + 1}"
    try:
        incus(
            "network", "create", name, f"ipv4.address={subnet}.1/24", "ipv4.nat=false",
            "ipv6.address=none",
        )  # fmt: skip
        assert f"{name},bridge,YES,{subnet}.1/24" in incus("network", "list", "-f", "csv").stdout
        assert "State: up" in incus("network", "info", name).stdout
        incus("network", "set", name, "dns.domain=lab")
        assert incus("network", "get", name, "dns.domain").stdout.strip() == "lab"
        leases = incus("network", "list-leases", name, "-f", "csv").stdout
        assert leases == f"{name}.gw,,{subnet}.1,GATEWAY\n"
    finally:
        incus("network", "delete", name, check=False)


def test_incus_copy_and_move_across_projects_keep_the_root_disk(  # type: ignore[no-untyped-def]
    incus, daemon: Daemon, container: str
) -> None:
    """As Incus: the copy in another project gets the source's root disk as a device of its
    own; moving it on to a third project keeps it."""
    first, second = unique("cp"), unique("cp")
    for project in (first, second):
        incus("project", "create", project, "-c", "features.images=false")
    copy = unique("c")
    try:
        incus("copy", container, copy, "--target-project", first)
        shown = yaml.safe_load(incus("config", "device", "show", copy, "--project", first).stdout)
        assert shown == {"root": {"path": "/", "pool": "default", "type": "disk"}}
        incus("move", copy, "--project", first, "--target-project", second)
        listing = incus("list", "--project", second, "--format", "csv", "-c", "n").stdout
        assert listing.split() == [copy]
        shown = yaml.safe_load(incus("config", "device", "show", copy, "--project", second).stdout)
        assert "root" in shown
    finally:
        for project in (first, second):
            incus("delete", copy, "--project", project, "--force", check=False)
            incus("project", "delete", project, check=False)


def test_incus_start_and_stop_all(incus, daemon: Daemon, busybox: str) -> None:  # type: ignore[no-untyped-def]
    """instance_bulk_state_change: `incus start --all` is one PUT /1.0/instances for the
    project; instances already in the end state are left alone."""
    project = unique("bulk")
    incus("project", "create", project, "-c", "features.images=false")
    names = [unique("b") for _ in range(3)]
    try:
        incus("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default",
              "--project", project)  # fmt: skip
        for name in names:
            incus("init", busybox, name, "--project", project)
        incus("start", names[0], "--project", project)
        incus("start", "--all", "--project", project)
        listing = incus("list", "--project", project, "--format", "csv", "-c", "ns").stdout
        assert sorted(listing.split()) == sorted(f"{n},RUNNING" for n in names)
        incus("stop", "--all", "--force", "--project", project)
        listing = incus("list", "--project", project, "--format", "csv", "-c", "ns").stdout
        assert sorted(listing.split()) == sorted(f"{n},STOPPED" for n in names)
        resp = daemon.request(
            "PUT", f"/1.0/instances?project={project}", {"state": {"action": "x"}}
        )
        assert resp.status == 400 and "Unknown action" in resp.json()["error"]
    finally:
        for name in names:
            incus("delete", name, "--force", "--project", project, check=False)
        incus("project", "delete", project, check=False)


def test_stapes_tables_are_the_ones_incus_prints(incus, daemon: Daemon, container: str) -> None:  # type: ignore[no-untyped-def]
    """The stapes CLI draws its tables itself (no rich on the hot path): they are incus's,
    byte for byte, in the compact form and with incus's column letters too, an image with two
    aliases and a stopped instance among them."""
    incus("snapshot", "create", container, "t1")
    fingerprint = json.loads(incus("query", "/1.0/images").stdout)[0].rsplit("/", 1)[1]
    alias = unique("second")  # listed as "bb (1 more)"
    incus("image", "alias", "create", alias, fingerprint)
    stopped = unique("stopped")  # no PID, no processes
    incus("init", fingerprint, stopped)
    try:
        tables(incus, daemon, container)
    finally:
        incus("delete", stopped)
        incus("image", "alias", "delete", alias)


def tables(incus, daemon: Daemon, container: str) -> None:  # type: ignore[no-untyped-def]
    for argv in (
        ["list"],
        ["list", "--format", "compact"],
        ["list", "-c", "nsdpNclbPeaf"],  # incus's column letters, a stopped one among them
        ["list", "-c", "n,s,t", "--format", "csv"],
        ["snapshot", "list", container],
        ["project", "list"],
        ["profile", "list"],
        ["storage", "list"],
        ["image", "list"],
    ):
        assert daemon.cli(*argv).stdout == incus(*argv).stdout, argv
