"""Launch and exec latency of Stapes, beside a bare liblxc start and real Incus, in one run.

Prints medians and p90s (milliseconds) and the ratios the issue names:
  - REST launch (create+start until RUNNING) of the busybox image, 20 times;
  - a bare liblxc start of the same rootfs with the same generated config (the floor);
  - `stapes exec NAME -- true` round trips (the CLI) and the same exec through the API;
  - the same launch and exec through real Incus when it runs (../shared/tools/incus-anchor start);
  - unpacking the image tarball versus copying the unpacked image volume (the dir pool's choice).
Run as root: `make bench`."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lxc
from common import BIN, STATE_PARENT, line, real_incus, stapes_daemon, timed

from stapes.client.instance_server import InstanceServer
from stapes.host.capabilities import probe
from stapes.host.idmap import IdMap
from stapes.instance import lxc_config
from stapes.instance.lxc import remove_stale_cgroups

RUNS = int(os.environ.get("BENCH_RUNS", "20"))


def launch_series(server: InstanceServer, alias: str, prefix: str) -> list[float]:
    """Create+start until RUNNING, timed; each instance is removed (untimed) before the next."""
    samples = []
    for i in range(RUNS):
        name = f"{prefix}{i}"
        start = time.perf_counter()
        op = server.create_instance(
            {"name": name, "start": True, "source": {"type": "image", "alias": alias}}
        )
        op.wait()
        samples.append(time.perf_counter() - start)
        server.update_state(name, "stop", force=True).wait()
        server.delete_instance(name).wait()
    return samples


def api_exec_series(server: InstanceServer, name: str) -> list[float]:
    def once() -> None:
        op = server.exec(
            name,
            {
                "command": ["true"],
                "wait-for-websocket": False,
                "record-output": False,
                "interactive": False,
            },
        )
        op.wait()

    return timed(once, RUNS)


def cli_exec_series(argv: list[str], env: dict[str, str]) -> list[float]:
    return timed(lambda: subprocess.run(argv, env=env, check=True, stdin=subprocess.DEVNULL), RUNS)


def bare_liblxc_series(rootfs: Path, work: Path) -> list[float]:
    """Start the same rootfs with the same generated config straight through liblxc."""
    caps = probe()
    name = "stapes-bench-floor"
    (work / name).mkdir(parents=True)
    # cp -a, not shutil.copytree: copytree reads device nodes (a Debian rootfs has /dev/zero)
    subprocess.run(["cp", "-a", str(rootfs), str(work / name / "rootfs")], check=True)
    host = lxc_config.HostFacts(cgroup=caps.cgroup, cpus=os.cpu_count() or 1, memory_bytes=0)
    items = lxc_config.build(
        lxc_config.LxcInputs(
            name=name,
            architecture="x86_64",
            config={},
            rootfs=work / name / "rootfs",
            log_dir=work / name,
            idmap=IdMap.from_host(),
            systemd=False,
            host=host,
        )
    )
    (work / name / "config").write_text(lxc_config.render(items))
    samples = []
    for _ in range(RUNS):
        c = lxc.Container(name, str(work))
        start = time.perf_counter()
        # lxc-start, as stapesd starts containers: the bindings' start() would move this
        # process into the container's monitor cgroup and leave that cgroup behind
        subprocess.run(["lxc-start", "-P", str(work), "-n", name], check=True)
        assert c.wait("RUNNING", 10)
        samples.append(time.perf_counter() - start)
        c.stop()
        c.wait("STOPPED", 10)
        remove_stale_cgroups(name, payload=True)  # as stapesd does after a stop (untimed)
    return samples


def unpack_vs_copy(server: InstanceServer, root: Path, alias: str, work: Path) -> None:
    fingerprint = (server.alias(alias))["target"]
    tarball = root / "images" / fingerprint
    volume = next(
        p
        for p in (root / "storage-pools/default/images").glob(f"{fingerprint}.*")
        if not p.name.endswith((".spare", ".partial"))
    )
    unpack, copy = [], []
    for i in range(5):
        target = work / f"unpack{i}"
        target.mkdir()
        start = time.perf_counter()
        subprocess.run(
            ["tar", "--numeric-owner", "-xf", str(tarball), "-C", str(target)], check=True
        )
        unpack.append(time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run(
            ["cp", "-a", "--reflink=auto", str(volume), str(work / f"copy{i}")], check=True
        )
        copy.append(time.perf_counter() - start)
    print("Image to instance volume (dir pool), busybox image:")
    u = line("unpack the image tarball (+ shift not counted)", unpack)
    c = line("copy the unpacked, shifted image volume", copy)
    print(f"  copy / unpack ratio: {c / u:.2f}")


@dataclass
class Figures:
    launch: float
    api_exec: float
    cli_exec: float


def measure(
    server: InstanceServer,
    prefix: str,
    cli: list[str],
    env: dict[str, str],
    with_probe: Callable[[str], None] = lambda _: None,
) -> Figures:
    """Launch, REST exec and CLI exec figures of one daemon (Stapes or Incus), busybox alias bb.
    ``with_probe`` runs extra measurements while the probe instance is running."""
    launch = line("launch via REST (create+start, RUNNING)", launch_series(server, "bb", prefix))
    probe = f"{prefix}-probe"
    server.create_instance(
        {"name": probe, "start": True, "source": {"type": "image", "alias": "bb"}}
    ).wait()
    try:
        with_probe(probe)
        api_exec = line(
            "exec `true` via REST (task, no websockets)", api_exec_series(server, probe)
        )
        cli_exec = line(
            f"`{Path(cli[0]).name} exec -- true` (CLI round trip)",
            cli_exec_series([*cli, "exec", probe, "--", "true"], env),
        )
    finally:
        server.update_state(probe, "stop", force=True).wait()
        server.delete_instance(probe).wait()
    return Figures(launch, api_exec, cli_exec)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="stapes-bench-work-", dir=STATE_PARENT))
    work.chmod(0o711)  # container root (an unprivileged uid) must reach the rootfs
    try:
        with stapes_daemon() as daemon:
            root = daemon.root
            floor: list[float] = []

            def bare_floor(probe: str) -> None:
                rootfs = root / "storage-pools/default/containers" / probe / "rootfs"
                floor.append(
                    line("bare liblxc start of the same rootfs", bare_liblxc_series(rootfs, work))
                )

            with InstanceServer.unix(root / "unix.socket") as server:
                launch_series(server, "bb", "warm")  # warms the image volume and its spare
                print(f"Stapes {RUNS} runs each, busybox image, dir pool, no NIC")
                stapes = measure(server, "bench", [str(BIN / "stapes")], daemon.env, bare_floor)
                print(f"  launch / bare liblxc floor: {stapes.launch / floor[0]:.2f}x")
                unpack_vs_copy(server, root, "bb", work)
        compare_incus(stapes)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def compare_incus(stapes: Figures) -> None:
    incus = real_incus()
    if incus is None:
        return
    with incus:
        print(f"Real Incus {RUNS} runs each, same busybox image (alias bb), its default pool")
        real = measure(incus, "stapesbench", ["incus"], dict(os.environ))
    print("Stapes / Incus:")
    print(
        f"  launch {stapes.launch / real.launch:.2f}x   "
        f"exec via REST {stapes.api_exec / real.api_exec:.2f}x   "
        f"exec via CLI {stapes.cli_exec / real.cli_exec:.2f}x"
    )


if __name__ == "__main__":
    main()
