"""Instance config keys applied for real: cgroup limits, prlimits, sysctls, nesting, protection,
kernel modules, autostart order and host shutdown."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stapes.api.times import parse_timestamp
from tests.helpers import Daemon, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]

CGROUP = Path("/sys/fs/cgroup")


def _cg(controller: str, name: str, knob: str) -> Path:
    path = CGROUP / controller / f"lxc.payload.{name}" / knob
    if not path.exists():
        pytest.skip(f"this host has no cgroup v1 {controller} controller at {path.parent}")
    return path


def test_cpu_and_memory_limits(daemon: Daemon, busybox: str) -> None:
    name = daemon.launch(
        busybox,
        config={
            "limits.cpu.allowance": "25ms/100ms",
            "limits.memory": "96MiB",
            "limits.memory.enforce": "soft",
            "limits.memory.swap": "false",
        },
    )
    try:
        assert _cg("cpu", name, "cpu.cfs_quota_us").read_text().strip() == "25000"
        assert _cg("cpu", name, "cpu.cfs_period_us").read_text().strip() == "100000"
        soft = _cg("memory", name, "memory.soft_limit_in_bytes").read_text().strip()
        assert int(soft) == 96 * 1024 * 1024
        assert _cg("memory", name, "memory.swappiness").read_text().strip() == "0"
        # live: a relative share instead of the quota
        assert (
            daemon.request(
                "PATCH", f"/1.0/instances/{name}", {"config": {"limits.cpu.allowance": "50%"}}
            ).status
            == 200
        )
        assert _cg("cpu", name, "cpu.shares").read_text().strip() == "512"
        assert _cg("cpu", name, "cpu.cfs_quota_us").read_text().strip() == "-1"
    finally:
        daemon.force_delete(name)


def test_prlimit_sysctl_and_nesting(daemon: Daemon, busybox: str) -> None:
    name = daemon.launch(
        busybox,
        config={
            "limits.kernel.nofile": "321",
            "linux.sysctl.net.ipv4.ip_forward": "1",
            "security.nesting": "true",
        },
    )
    try:
        out = daemon.cli(
            "exec", name, "--", "sh", "-c", "ulimit -n; cat /proc/sys/net/ipv4/ip_forward"
        ).stdout
        assert out.split() == ["321", "1"]
    finally:
        daemon.force_delete(name)


def test_protection_delete(daemon: Daemon, busybox: str) -> None:
    name = unique("prot")
    daemon.ok(
        daemon.request(
            "POST",
            "/1.0/instances",
            {
                "name": name,
                "source": {"type": "image", "alias": busybox},
                "config": {"security.protection.delete": "true"},
            },
        )
    )
    refused = daemon.request("DELETE", f"/1.0/instances/{name}")
    assert refused.status == 400 and "security.protection.delete" in refused.json()["error"]
    daemon.request(
        "PATCH", f"/1.0/instances/{name}", {"config": {"security.protection.delete": "false"}}
    )
    daemon.ok(daemon.request("DELETE", f"/1.0/instances/{name}"))


def test_missing_kernel_module_is_named(daemon: Daemon, busybox: str) -> None:
    name = unique("mod")
    daemon.ok(
        daemon.request(
            "POST",
            "/1.0/instances",
            {
                "name": name,
                "source": {"type": "image", "alias": busybox},
                "config": {"linux.kernel_modules": "stapes_no_such_module"},
            },
        )
    )
    try:
        result = daemon.wait(
            daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "start"})
        )
        assert result.status == 400
        assert "stapes_no_such_module" in result.json()["error"]
    finally:
        daemon.force_delete(name)


def test_disk_priority(daemon: Daemon, container: str) -> None:
    resp = daemon.request(
        "PATCH", f"/1.0/instances/{container}", {"config": {"limits.disk.priority": "8"}}
    )
    blkio = CGROUP / "blkio"
    weights = [n for n in ("blkio.weight", "blkio.bfq.weight") if (blkio / n).exists()]
    if not weights:  # this kernel has no block I/O group weights: the 400 says so
        assert resp.status == 400 and "block I/O weights" in resp.json()["error"]
        return
    assert resp.status == 200
    assert _cg("blkio", container, weights[0]).read_text().split()[-1] == "800"


def test_syscall_deny_list(daemon: Daemon, busybox: str) -> None:
    name = daemon.launch(busybox, config={"security.syscalls.deny": "mkdir"})
    try:
        denied = daemon.cli("exec", name, "--", "mkdir", "/denied", check=False)
        assert denied.returncode != 0 and "not permitted" in denied.stderr
        assert daemon.cli("exec", name, "--", "touch", "/allowed").returncode == 0
        both = daemon.request(
            "PATCH", f"/1.0/instances/{name}", {"config": {"security.syscalls.allow": "read"}}
        )
        assert both.status == 400 and "security.syscalls.allow" in both.json()["error"]
        intercept = daemon.request(
            "PATCH",
            f"/1.0/instances/{name}",
            {"config": {"security.syscalls.intercept.mknod": "true"}},
        )
        assert intercept.status == 400 and "intercept.mknod" in intercept.json()["error"]
    finally:
        daemon.force_delete(name)


def _uid_map(daemon: Daemon, name: str) -> list[int]:
    pid = daemon.request("GET", f"/1.0/instances/{name}/state").metadata["pid"]
    return [int(x) for x in Path(f"/proc/{pid}/uid_map").read_text().split()]


def test_isolated_idmaps(daemon: Daemon, busybox: str) -> None:
    first = daemon.launch(busybox, config={"security.idmap.isolated": "true"})
    second = daemon.launch(busybox, config={"security.idmap.isolated": "true"})
    try:
        (_, base1, size1), (_, base2, size2) = _uid_map(daemon, first), _uid_map(daemon, second)
        assert size1 == size2 == 65536
        assert base1 + size1 <= base2 or base2 + size2 <= base1  # no overlap
        owner = daemon.cli("exec", second, "--", "stat", "-c", "%u", "/bin/busybox").stdout
        assert owner == "0\n"  # the rootfs was shifted to the isolated range

        # back to the shared map at the next start, files shifted back
        resp = daemon.request(
            "PATCH", f"/1.0/instances/{second}", {"config": {"security.idmap.isolated": "false"}}
        )
        assert resp.status == 200
        daemon.ok(
            daemon.request(
                "PUT", f"/1.0/instances/{second}/state", {"action": "restart", "force": True}
            )
        )
        assert _uid_map(daemon, second)[2] > 65536
        owner = daemon.cli("exec", second, "--", "stat", "-c", "%u", "/bin/busybox").stdout
        assert owner == "0\n"

        bad = daemon.request(
            "PATCH",
            f"/1.0/instances/{second}",
            {"config": {"security.idmap.isolated": "true", "security.idmap.base": "5"}},
        )
        assert bad.status == 400 and "security.idmap.base" in bad.json()["error"]
    finally:
        daemon.force_delete(first)
        daemon.force_delete(second)


def test_raw_idmap_maps_a_host_id_through(
    daemon: Daemon, busybox: str, subids_for_1000: Callable[[], None]
) -> None:
    """raw.idmap "both 1000 1000": host uid 1000 is uid 1000 inside, both ways."""
    share = daemon.root / unique("share")  # reachable by the container's root (0755 path)
    share.mkdir()
    share.chmod(0o777)
    (share / "mine").write_text("x")
    os.chown(share / "mine", 1000, 1000)
    if "root:1000:1" not in Path("/etc/subuid").read_text():
        refused = daemon.request(
            "POST",
            "/1.0/instances",
            {
                "name": unique("raw"),
                "source": {"type": "image", "alias": busybox},
                "config": {"raw.idmap": "both 1000 1000"},
            },
        )
        assert refused.status == 400 and "root:1000:1" in refused.json()["error"]
    subids_for_1000()
    name = daemon.launch(busybox, config={"raw.idmap": "both 1000 1000"})
    try:
        share_device = {"type": "disk", "source": str(share), "path": "/mnt/s"}
        added = daemon.request(
            "PATCH", f"/1.0/instances/{name}", {"devices": {"share": share_device}}
        )
        assert added.status == 200, added.body
        lines = Path(f"/proc/{_pid(daemon, name)}/uid_map").read_text().split("\n")
        assert ["1000", "1000", "1"] in [line.split() for line in lines]
        stat = daemon.cli("exec", name, "--", "stat", "-c", "%u:%g", "/mnt/s/mine").stdout
        assert stat == "1000:1000\n"
        daemon.cli("exec", name, "--", "touch", "/mnt/s/theirs")
        daemon.cli("exec", name, "--", "chown", "1000:1000", "/mnt/s/theirs")
        assert (share / "theirs").stat().st_uid == 1000
        # the file API speaks container ids through the same map
        daemon.cli("exec", name, "--", "chown", "1000:1000", "/root")
        got = daemon.request("GET", f"/1.0/instances/{name}/files?path=/root")
        assert {k.lower(): val for k, val in got.headers.items()}["x-incus-uid"] == "1000"

        bad = daemon.request(
            "PATCH", f"/1.0/instances/{name}", {"config": {"raw.idmap": "both 1000-1001 5"}}
        )
        assert bad.status == 400 and "differ in size" in bad.json()["error"]
        # back to the plain map: /root's owner follows at the next start
        cleared = daemon.request("PATCH", f"/1.0/instances/{name}", {"config": {"raw.idmap": ""}})
        assert cleared.status == 200, cleared.body
        daemon.ok(
            daemon.request(
                "PUT", f"/1.0/instances/{name}/state", {"action": "restart", "force": True}
            )
        )
        owner = daemon.cli("exec", name, "--", "stat", "-c", "%u", "/root").stdout
        assert owner == "1000\n"
        assert len(Path(f"/proc/{_pid(daemon, name)}/uid_map").read_text().splitlines()) == 1
    finally:
        daemon.force_delete(name)
        shutil.rmtree(share, ignore_errors=True)


def _pid(daemon: Daemon, name: str) -> int:
    return int(daemon.request("GET", f"/1.0/instances/{name}/state").metadata["pid"])


def test_cloud_init_nocloud_seed(daemon: Daemon, busybox: str) -> None:
    user_data = "#cloud-config\nruncmd: [[touch, /root/ran]]\n"
    name = daemon.launch(busybox, config={"cloud-init.user-data": user_data})
    seed = "/var/lib/cloud/seed/nocloud-net"
    try:
        config = daemon.request("GET", f"/1.0/instances/{name}").metadata["config"]
        first_id = config["volatile.cloud-init.instance-id"]
        meta = daemon.cli("exec", name, "--", "cat", f"{seed}/meta-data").stdout
        assert meta == f"instance-id: {first_id}\nlocal-hostname: {name}\n"
        assert daemon.cli("exec", name, "--", "cat", f"{seed}/user-data").stdout == user_data
        owner = daemon.cli("exec", name, "--", "stat", "-c", "%u %a", f"{seed}/user-data")
        assert owner.stdout == "0 600\n"

        bad = daemon.request(
            "PATCH",
            f"/1.0/instances/{name}",
            {"config": {"cloud-init.user-data": "#cloud-config\n- x"}},
        )
        assert bad.status == 400 and "cloud-init.user-data" in bad.json()["error"]
        network = "version: 2\nethernets: {eth0: {dhcp4: true}}\n"
        resp = daemon.request(
            "PATCH", f"/1.0/instances/{name}", {"config": {"cloud-init.network-config": network}}
        )
        assert resp.status == 200
        config = daemon.request("GET", f"/1.0/instances/{name}").metadata["config"]
        assert config["volatile.cloud-init.instance-id"] != first_id  # cloud-init runs again
        daemon.ok(
            daemon.request(
                "PUT", f"/1.0/instances/{name}/state", {"action": "restart", "force": True}
            )
        )
        got = daemon.cli("exec", name, "--", "cat", f"{seed}/network-config").stdout
        assert got == network
    finally:
        daemon.force_delete(name)


def test_host_shutdown_and_autostart_order(daemon: Daemon, busybox: str) -> None:
    first = daemon.launch(
        busybox, config={"boot.autostart.priority": "10", "boot.stop.priority": "1"}
    )
    second = daemon.launch(
        busybox, config={"boot.autostart.priority": "1", "boot.stop.priority": "10"}
    )
    off = daemon.launch(busybox, config={"boot.autostart": "false"})
    try:
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGPWR)
        daemon.proc.wait(120)
        daemon.proc = None
        log = daemon.log.read_text()
        stops = [
            line
            for line in log.splitlines()
            if "instance-shutdown" in line or "host shutdown" in line
        ]
        assert stops, "no host shutdown in the log"
        daemon.start()
        deadline = time.time() + 60
        while time.time() < deadline:
            states = {
                n: daemon.request("GET", f"/1.0/instances/{n}").metadata["status"]
                for n in (first, second, off)
            }
            if states[first] == states[second] == "Running":
                break
            time.sleep(0.2)
        assert states == {first: "Running", second: "Running", off: "Stopped"}
        started = {
            n: daemon.request("GET", f"/1.0/instances/{n}/state").metadata["started_at"]
            for n in (first, second)
        }
        assert parse_timestamp(started[first]) <= parse_timestamp(started[second])
    finally:
        for name in (first, second, off):
            daemon.force_delete(name)


def test_numa_placement_and_swap_priority(daemon: Daemon, busybox: str) -> None:
    name = daemon.launch(
        busybox, config={"limits.cpu.nodes": "0", "limits.memory.swap.priority": "2"}
    )
    try:
        assert _cg("cpuset", name, "cpuset.mems").read_text().strip() == "0"
        assert _cg("memory", name, "memory.swappiness").read_text().strip() == "52"
        resp = daemon.request(
            "PATCH", f"/1.0/instances/{name}", {"config": {"limits.memory.swap.priority": "10"}}
        )
        assert resp.status == 200, resp.body
        assert _cg("memory", name, "memory.swappiness").read_text().strip() == "60"
        bad = daemon.request(
            "PATCH", f"/1.0/instances/{name}", {"config": {"limits.cpu.nodes": "7"}}
        )
        assert bad.status == 400 and "NUMA" in bad.json()["error"]
    finally:
        daemon.force_delete(name)


def test_autorestart_brings_a_crashed_container_back(daemon: Daemon, busybox: str) -> None:
    """boot.autorestart, as Incus: an instance whose init dies is started again; a stop
    through the API is left alone."""
    name = daemon.launch(busybox, config={"boot.autorestart": "true"})
    try:
        first = _pid(daemon, name)
        os.kill(first, signal.SIGKILL)
        deadline = time.time() + 30
        while time.time() < deadline:
            state = daemon.request("GET", f"/1.0/instances/{name}/state").metadata
            if state["status"] == "Running" and state["pid"] not in (0, first):
                break
            time.sleep(0.2)
        assert state["status"] == "Running" and state["pid"] != first
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "stop",
                                                                       "force": True}))  # fmt: skip
        time.sleep(2)
        assert daemon.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Stopped"
    finally:
        daemon.force_delete(name)


def test_protection_shift_refuses_a_new_map(daemon: Daemon, busybox: str) -> None:
    name = daemon.launch(busybox, start=False, config={"security.protection.shift": "true"})
    try:
        resp = daemon.request(
            "PATCH", f"/1.0/instances/{name}", {"config": {"security.idmap.isolated": "true"}}
        )
        assert resp.status == 200, resp.body
        start = daemon.wait(daemon.request("PUT", f"/1.0/instances/{name}/state",
                                           {"action": "start"}))  # fmt: skip
        assert start.status == 400 and "security.protection.shift" in start.json()["error"]
    finally:
        daemon.force_delete(name)


@pytest.mark.parametrize(
    "config",
    [
        {"migration.stateful": "true", "migration.incremental.memory": "true",
         "migration.incremental.memory.goal": "80", "migration.incremental.memory.iterations": "5"},
        {"cluster.evacuate": "stop", "boot.host_shutdown_action": "force-stop"},
        {"security.syscalls.intercept.mount.allowed": "ext4,xfs",
         "security.syscalls.intercept.mount.fuse": "ext4=fuse2fs"},
        {"nvidia.driver.capabilities": "compute", "nvidia.require.cuda": "cuda>=12"},
    ],
)  # fmt: skip
def test_incus_instance_keys_are_accepted(
    daemon: Daemon, busybox: str, config: dict[str, str]
) -> None:
    """Keys of Incus 6.0.4's instance table that Incus takes on a container."""
    name = daemon.launch(busybox, start=False)
    try:
        resp = daemon.request("PATCH", f"/1.0/instances/{name}", {"config": config})
        assert resp.status == 200, resp.body
        got = daemon.request("GET", f"/1.0/instances/{name}").metadata["config"]
        assert {k: got[k] for k in config} == config
    finally:
        daemon.force_delete(name)


def test_raw_lxc_lines_liblxc_does_not_take_are_refused(daemon: Daemon, busybox: str) -> None:
    """As Incus checks raw.lxc when it is set: an unknown liblxc key is a 400 at once."""
    name = daemon.launch(busybox, start=False)
    try:
        bad = daemon.request(
            "PATCH", f"/1.0/instances/{name}", {"config": {"raw.lxc": "lxc.notaconfigkey = x"}}
        )
        assert bad.status == 400 and "lxc.notaconfigkey" in bad.json()["error"]
        good = daemon.request(
            "PATCH", f"/1.0/instances/{name}", {"config": {"raw.lxc": "lxc.environment = A=b"}}
        )
        assert good.status == 200, good.body
    finally:
        daemon.force_delete(name)
