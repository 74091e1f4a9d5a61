"""Snapshots, listing at scale and daemon memory, Stapes beside real Incus, in one run.

Prints medians and p90s (milliseconds) and ratios:
  - snapshot create and restore of a stopped busybox container on the dir pool, beside the
    floor of a dir snapshot: ``cp -a`` of the same volume;
  - ``GET /1.0/instances?recursion=1`` and ``recursion=2`` with BENCH_RUNNING (50) running and
    BENCH_STOPPED (500) stopped busybox containers (the answer read whole, not decoded);
  - the resident memory of the daemon with those instances (stapesd; incusd alone: the
    liblxc monitor processes of both are left out);
  - the same on real Incus when it runs (../shared/tools/incus-anchor start).
Run as root: `make bench`."""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import (
    INCUS_SOCKET,
    incusd_pid,
    line,
    raw_get,
    real_incus,
    rss_kib,
    settle,
    stapes_daemon,
    timed,
    use_incus_image,
)

from stapes.client.instance_server import InstanceServer
from stapes.client.operation import RemoteOperation

RUNS = int(os.environ.get("BENCH_RUNS", "10"))
RUNNING = int(os.environ.get("BENCH_RUNNING", "50"))
STOPPED = int(os.environ.get("BENCH_STOPPED", "500"))
BATCH = 10


@dataclass
class Figures:
    snapshot: float
    restore: float
    listing: float
    full_listing: float
    rss_kib: int


def snapshot_series(server: InstanceServer, name: str) -> tuple[float, float]:
    """Create then restore a snapshot, RUNS times each (the snapshots are deleted untimed)."""
    created, restored = [], []
    for i in range(RUNS):
        start = time.perf_counter()
        server.create_snapshot(name, f"b{i}").wait()
        created.append(time.perf_counter() - start)
        start = time.perf_counter()
        server.restore_snapshot(name, f"b{i}").wait()
        restored.append(time.perf_counter() - start)
    for i in range(RUNS):
        server.delete_snapshot(name, f"b{i}").wait()
    return (
        line("snapshot create (stopped container)", created),
        line("snapshot restore (stopped container)", restored),
    )


def copy_floor(volume: Path) -> float:
    """The floor of a dir-pool snapshot: copying the same volume with cp -a."""
    work = Path(tempfile.mkdtemp(prefix="stapes-bench-cp-", dir=volume.parent))
    samples = []
    try:
        for i in range(RUNS):
            start = time.perf_counter()
            subprocess.run(["cp", "-a", str(volume), str(work / str(i))], check=True)
            samples.append(time.perf_counter() - start)
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=True)
    return line("cp -a of the same volume (the floor)", samples)


def in_batches(ops: list[RemoteOperation]) -> None:
    for op in ops:
        op.wait()


def populate(server: InstanceServer, prefix: str) -> list[str]:
    """RUNNING running and STOPPED stopped busybox containers, created BATCH at a time."""
    names = [f"{prefix}{i}" for i in range(RUNNING + STOPPED)]
    for first in range(0, len(names), BATCH):
        batch = names[first : first + BATCH]
        in_batches(
            [
                server.create_instance(
                    {
                        "name": n,
                        "start": names.index(n) < RUNNING,
                        "source": {"type": "image", "alias": "bb"},
                    }
                )
                for n in batch
            ]
        )
    return names


def clean_up(server: InstanceServer, names: list[str]) -> None:
    for first in range(0, len(names), BATCH):
        batch = names[first : first + BATCH]
        in_batches(
            [server.update_state(n, "stop", force=True) for n in batch if n in names[:RUNNING]]
        )
        in_batches([server.delete_instance(n) for n in batch])


def listing_series(server: InstanceServer, socket: str) -> tuple[float, float]:
    """The daemon's answers to GET /1.0/instances?recursion=1 and recursion=2, read whole
    over its socket and not decoded (the Python client's decoding of 550 instances, ~10 ms,
    is the same for both daemons and not the daemon's time)."""
    listed = server.instances(recursion=1)
    assert len(listed) >= RUNNING + STOPPED, len(listed)
    found = []
    for recursion in (1, 2):
        path = f"/1.0/instances?recursion={recursion}"
        found.append(
            line(
                f"GET instances?recursion={recursion} ({RUNNING} running, {STOPPED} stopped)",
                timed(functools.partial(raw_get, socket, path), RUNS),
            )
        )
    return found[0], found[1]


def measure(server: InstanceServer, socket: str, prefix: str, pid: int, volume_of: str) -> Figures:
    name = f"{prefix}-snap"
    server.create_instance({"name": name, "source": {"type": "image", "alias": "bb"}}).wait()
    try:
        snapshot, restore = snapshot_series(server, name)
        if volume_of:
            settle(pid)  # its backup.yaml, rewritten after the snapshots, is not copied midway
            copy_floor(Path(volume_of) / name)
    finally:
        server.delete_instance(name).wait()
    names = populate(server, prefix)
    try:
        time.sleep(2)
        listing, full_listing = listing_series(server, socket)
        rss = rss_kib(pid)
        print(f"  daemon resident memory with {RUNNING} running: {rss / 1024:.1f} MiB")
    finally:
        clean_up(server, names)
    return Figures(snapshot, restore, listing, full_listing, rss)


def main() -> None:
    with (
        stapes_daemon() as daemon,
        InstanceServer.unix(daemon.root / "unix.socket") as server,
        tempfile.TemporaryDirectory(prefix="bench-instances-", dir="/var/tmp") as work,
    ):
        same = use_incus_image(daemon, Path(work))
        image = "Incus's busybox image (bb)" if same else "Stapes's busybox image"
        print(f"Stapes, {image}, dir pool, {RUNS} runs each")
        stapes = measure(
            server,
            str(daemon.root / "unix.socket"),
            "bench",
            daemon.pid,
            str(daemon.root / "storage-pools/default/containers"),
        )
    incus = real_incus()
    pid = incusd_pid()
    if incus is None or pid is None:
        return
    with incus:
        print(f"Real Incus, same busybox image (alias bb), its default pool, {RUNS} runs each")
        real = measure(incus, str(INCUS_SOCKET), "stapesbench", pid, "")
    print("Stapes / Incus:")
    print(
        f"  snapshot create {stapes.snapshot / real.snapshot:.2f}x   "
        f"restore {stapes.restore / real.restore:.2f}x   "
        f"list {stapes.listing / real.listing:.2f}x   "
        f"recursion=2 {stapes.full_listing / real.full_listing:.2f}x   "
        f"daemon memory {stapes.rss_kib / real.rss_kib:.2f}x"
    )


if __name__ == "__main__":
    main()
