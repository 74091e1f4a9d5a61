from __future__ import annotations

from pathlib import Path

import pytest

from stapes.api.errors import BadRequest
from stapes.host.idmap import IdMap
from stapes.instance import lxc_config
from stapes.instance.devices.device import Mount, Nic, Node, RunConfig
from stapes.instance.lxc_config import (
    HostFacts,
    LxcInputs,
    build,
    limit_resets,
    limits,
    parse_raw_lxc,
)

V1 = HostFacts(cgroup="v1", cpus=4, memory_bytes=8 * 1024**3)
V2 = HostFacts(cgroup="v2", cpus=4, memory_bytes=8 * 1024**3)


def _inputs(
    config: dict[str, str], idmap: IdMap | None = None, systemd: bool = False, host: HostFacts = V1
) -> LxcInputs:
    return LxcInputs(
        name="c1",
        architecture="x86_64",
        config=config,
        rootfs=Path("/p/rootfs"),
        log_dir=Path("/l"),
        idmap=idmap,
        systemd=systemd,
        host=host,
    )


def test_unprivileged_includes_userns_and_idmap() -> None:
    items = build(_inputs({}, IdMap(1000000, 65536)))
    assert ("lxc.include", "/usr/share/lxc/config/userns.conf") in items
    assert ("lxc.idmap", "u 0 1000000 65536") in items
    assert ("lxc.idmap", "g 0 1000000 65536") in items
    assert ("lxc.rootfs.path", "dir:/p/rootfs") in items


def test_privileged_has_no_idmap() -> None:
    items = build(_inputs({}))
    assert not [k for k, _ in items if k == "lxc.idmap"]
    assert ("lxc.include", "/usr/share/lxc/config/userns.conf") not in items


def test_lxcfs_hooks_are_cleared_where_lxcfs_does_not_run() -> None:
    """common.conf.d's lxcfs hooks (a post-stop one sleeps 0.5 s at every stop) are cleared
    after the includes and before any hook of the instance's own; kept where lxcfs runs."""
    cfg = {"raw.lxc": "lxc.hook.post-stop = /bin/true"}
    items = build(_inputs(cfg, IdMap(1000000, 65536)))
    hooks = [item for item in items if item[0].startswith("lxc.hook.")]
    assert hooks == [
        ("lxc.hook.mount", ""),
        ("lxc.hook.post-stop", ""),
        ("lxc.hook.post-stop", "/bin/true"),
    ]
    last_include = max(i for i, (key, _) in enumerate(items) if key == "lxc.include")
    assert items.index(("lxc.hook.mount", "")) > last_include
    assert "lxc.hook.mount = \n" in lxc_config.render(items)
    with_lxcfs = HostFacts(cgroup="v1", cpus=4, memory_bytes=8 * 1024**3, lxcfs=True)
    kept = build(_inputs(cfg, host=with_lxcfs))
    assert [item for item in kept if item[0].startswith("lxc.hook.")] == [
        ("lxc.hook.post-stop", "/bin/true")
    ]


def test_systemd_gets_its_halt_signal() -> None:
    assert ("lxc.signal.halt", "SIGRTMIN+3") in build(_inputs({}, systemd=True))


def test_environment_and_limits_v1() -> None:
    items = build(
        _inputs(
            {
                "environment.FOO": "bar",
                "limits.memory": "256MiB",
                "limits.cpu": "2",
                "limits.processes": "100",
            }
        )
    )
    assert ("lxc.environment", "FOO=bar") in items
    assert ("lxc.cgroup.memory.limit_in_bytes", str(256 * 1024**2)) in items
    assert ("lxc.cgroup.cpuset.cpus", "0,1") in items
    assert ("lxc.cgroup.pids.max", "100") in items


def test_limits_v2_and_percent() -> None:
    items = build(_inputs({"limits.memory": "50%", "limits.cpu": "1-2"}, host=V2))
    assert ("lxc.cgroup2.memory.max", str(4 * 1024**3)) in items
    assert ("lxc.cgroup2.cpuset.cpus", "1,2") in items


def test_cpu_set_beyond_the_host_is_refused() -> None:
    with pytest.raises(BadRequest, match="has 4"):
        build(_inputs({"limits.cpu": "7"[0:1] + "-9"}))


def test_raw_lxc() -> None:
    assert parse_raw_lxc("# c\nlxc.init.cmd = /bin/sh\n\n") == [("lxc.init.cmd", "/bin/sh")]
    with pytest.raises(BadRequest, match="line 1"):
        parse_raw_lxc("not a key")
    items = build(_inputs({"raw.lxc": "lxc.apparmor.profile = unconfined"}))
    assert items[-1] == ("lxc.apparmor.profile", "unconfined")


def test_removed_limits_are_lifted() -> None:
    keys = {"limits.memory", "limits.cpu", "limits.processes"}
    assert limit_resets({"limits.cpu": "1"}, keys, V1) == [
        ("lxc.cgroup.memory.limit_in_bytes", "-1"),
        ("lxc.cgroup.memory.soft_limit_in_bytes", "-1"),
        ("lxc.cgroup.pids.max", "max"),
    ]
    assert ("lxc.cgroup2.memory.max", "max") in limit_resets({}, keys, V2)


def test_memory_enforce_and_swap() -> None:
    hard = build(_inputs({"limits.memory": "64MiB"}))
    assert ("lxc.cgroup.memory.limit_in_bytes", str(64 * 1024**2)) in hard
    soft = build(
        _inputs(
            {
                "limits.memory": "64MiB",
                "limits.memory.enforce": "soft",
                "limits.memory.swap": "false",
            }
        )
    )
    assert ("lxc.cgroup.memory.limit_in_bytes", "-1") in soft
    assert ("lxc.cgroup.memory.soft_limit_in_bytes", str(64 * 1024**2)) in soft
    assert ("lxc.cgroup.memory.swappiness", "0") in soft
    v2 = build(_inputs({"limits.memory": "64MiB", "limits.memory.enforce": "soft"}, host=V2))
    assert ("lxc.cgroup2.memory.high", str(64 * 1024**2)) in v2


def test_cpu_allowance_and_priority() -> None:
    quota = build(_inputs({"limits.cpu.allowance": "25ms/100ms"}))
    assert ("lxc.cgroup.cpu.cfs_quota_us", "25000") in quota
    assert ("lxc.cgroup.cpu.cfs_period_us", "100000") in quota
    v2 = build(_inputs({"limits.cpu.allowance": "25ms/100ms"}, host=V2))
    assert ("lxc.cgroup2.cpu.max", "25000 100000") in v2
    assert ("lxc.cgroup.cpu.shares", "512") in build(_inputs({"limits.cpu.allowance": "50%"}))
    assert ("lxc.cgroup.cpu.shares", "512") in build(_inputs({"limits.cpu.priority": "5"}))
    weighted = build(_inputs({"limits.cpu.priority": "5"}, host=V2))
    assert ("lxc.cgroup2.cpu.weight", "50") in weighted


def test_prlimits_sysctls_nesting() -> None:
    items = build(
        _inputs(
            {
                "limits.kernel.nofile": "1024:2048",
                "linux.sysctl.net.ipv4.ip_forward": "1",
                "security.nesting": "true",
            }
        )
    )
    assert ("lxc.prlimit.nofile", "1024:2048") in items
    assert ("lxc.sysctl.net.ipv4.ip_forward", "1") in items
    assert ("lxc.include", "/usr/share/lxc/config/nesting.conf") in items


def test_devices_become_mounts_rules_and_veths() -> None:
    run = RunConfig(
        mounts=[Mount("/srv/my dir", "/mnt/data", "none", ("bind", "create=dir", "ro"))],
        nodes=[Node("c", 1, 5, "/d/zero", "/dev/zero2")],
        nics=[Nic("eth0", "vethabc", "00:16:3e:00:00:01", 1400)],
    )
    v1 = lxc_config.devices(run, HostFacts("v1", 2, 0))
    assert ("lxc.mount.entry", "/srv/my\\040dir mnt/data none bind,create=dir,ro 0 0") in v1
    assert ("lxc.cgroup.devices.allow", "c 1:5 rwm") in v1
    assert ("lxc.net.0.veth.pair", "vethabc") in v1 and ("lxc.net.0.mtu", "1400") in v1
    assert ("lxc.net.0.type", "empty") not in v1
    v2 = lxc_config.devices(RunConfig(nodes=run.nodes), HostFacts("v2", 2, 0))
    assert ("lxc.cgroup2.devices.allow", "c 1:5 rwm") in v2
    assert ("lxc.net.0.type", "empty") in v2


def test_disk_priority_needs_io_weights() -> None:
    with_weights = HostFacts("v1", 2, 0, io_weight="blkio.bfq.weight")
    assert ("lxc.cgroup.blkio.bfq.weight", "800") in limits(
        {"limits.disk.priority": "8"}, with_weights
    )
    assert ("lxc.cgroup.blkio.bfq.weight", "10") in limits(
        {"limits.disk.priority": "0"}, with_weights
    )
    with pytest.raises(BadRequest, match="block I/O weights"):
        limits({"limits.disk.priority": "8"}, HostFacts("v1", 2, 0))


def test_numa_nodes_hugepages_and_swap_priority() -> None:
    two_nodes = HostFacts("v1", 4, 8 * 1024**3, numa_nodes=(0, 1), hugetlb=True)
    items = limits(
        {"limits.cpu.nodes": "1", "limits.hugepages.2MB": "64MiB",
         "limits.memory.swap.priority": "3"},
        two_nodes,
    )  # fmt: skip
    assert ("lxc.cgroup.cpuset.mems", "1") in items
    assert ("lxc.cgroup.hugetlb.2MB.limit_in_bytes", str(64 * 1024**2)) in items
    assert ("lxc.cgroup.memory.swappiness", "53") in items
    v2 = HostFacts("v2", 4, 8 * 1024**3, numa_nodes=(0, 1), hugetlb=True)
    assert ("lxc.cgroup2.hugetlb.2MB.max", str(64 * 1024**2)) in limits(
        {"limits.hugepages.2MB": "64MiB", "limits.memory.swap.priority": "3"}, v2
    )
    assert not [k for k, _ in limits({"limits.memory.swap.priority": "3"}, v2) if "swap" in k]
    with pytest.raises(BadRequest, match="NUMA nodes"):
        limits({"limits.cpu.nodes": "2"}, two_nodes)
    with pytest.raises(BadRequest, match="hugetlb"):
        limits({"limits.hugepages.1GB": "1GiB"}, V1)
    resets = limit_resets({}, {"limits.cpu.nodes", "limits.memory.swap.priority"}, two_nodes)
    assert ("lxc.cgroup.cpuset.mems", "0,1") in resets
    assert ("lxc.cgroup.memory.swappiness", "60") in resets


def test_nvidia_runtime_needs_the_toolkit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(lxc_config, "NVIDIA_HOOK", tmp_path / "nvidia")
    with pytest.raises(BadRequest, match="nvidia-container-cli"):
        build(_inputs({"nvidia.runtime": "true"}))
    (tmp_path / "nvidia").write_text("#!/bin/sh\n")
    cli = tmp_path / "bin" / "nvidia-container-cli"
    cli.parent.mkdir()
    cli.write_text("#!/bin/sh\n")
    cli.chmod(0o755)
    monkeypatch.setenv("PATH", str(cli.parent))
    items = build(_inputs({"nvidia.runtime": "true", "nvidia.require.cuda": "cuda>=12"}))
    assert ("lxc.environment", "NVIDIA_DRIVER_CAPABILITIES=compute,utility") in items
    assert ("lxc.environment", "NVIDIA_REQUIRE_CUDA=cuda>=12") in items
    assert ("lxc.hook.mount", str(tmp_path / "nvidia")) in items
