"""Cost as instances and snapshots grow: a throwaway stapesd gets SIZES[-1] stopped instances
(made through the API, BATCH at a time, on a btrfs pool on a loop file: a snapshot there is
a subvolume snapshot, where the dir pool copies the rootfs each time) and SNAPSHOTS snapshots
spread over the first SNAPSHOTTED of them; at each size of SIZES it prints, medians of RUNS:

  - ``GET /1.0/instances?recursion=1`` and ``recursion=2`` (what `incus list` asks);
  - `stapes list --format csv` and `incus list --format csv` (the real client, when installed);
  - ``GET /1.0/instances/NAME/snapshots?recursion=1`` of a snapshotted instance;
  - the daemon's cold start (until /1.0 answers) and its RSS after the lists;
and the growth of each figure from each size to the next (1.0 = flat; the ratio of the sizes =
linear). Defaults: SIZES 15,100,1000 and SNAPSHOTS 45000 over the first 15 instances, so the
first size is the Incus report of lxc/incus#1837 (15 instances with 3,000 snapshots each,
`incus list` 18 s there) and the last the issue's 1,000 instances with 20,000+ snapshots;
BENCH_SIZES / BENCH_SNAPSHOTS / BENCH_SNAPSHOTTED make it smaller. When real Incus runs
(../shared/tools/incus-anchor start), the same is built on it (a btrfs pool of its own, made
and removed here) with BENCH_INCUS_SNAPSHOTS (4500: Incus makes snapshots ~10x slower) and
the same figures are printed beside Stapes's, its incusd's RSS too.
Run as root: `make bench` (it takes a while at the defaults)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence

import aiohttp
from common import (
    BIN,
    INCUS_SOCKET,
    incusd_pid,
    line,
    quiet,
    raw_get,
    rss_kib,
    settle,
    stapes_daemon,
    timed,
)

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "15,100,1000").split(",")]
SNAPSHOTS = int(os.environ.get("BENCH_SNAPSHOTS", "45000"))
SNAPSHOTTED = int(os.environ.get("BENCH_SNAPSHOTTED", "15"))
INCUS_SNAPSHOTS = int(os.environ.get("BENCH_INCUS_SNAPSHOTS", "4500"))
BATCH = 20
POOL = "scale"
ROOT_ON_BTRFS = {"root": {"type": "disk", "path": "/", "pool": POOL}}


async def _post_all(
    socket: str, paths_bodies: Sequence[tuple[str, Mapping[str, object]]], batch: int = BATCH
) -> None:
    """POST each body, ``batch`` at a time, waiting for each operation."""
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket)) as http:

        async def one(path: str, body: Mapping[str, object]) -> None:
            async with http.post(f"http://stapes{path}", json=body) as resp:
                op = (await resp.json())["operation"]
            async with http.get(f"http://stapes{op}/wait?timeout=600") as resp:
                done = await resp.json()
            assert (done.get("metadata") or {}).get("status") == "Success", done

        for start in range(0, len(paths_bodies), batch):
            await asyncio.gather(*(one(p, b) for p, b in paths_bodies[start : start + batch]))


def measure(socket: str, snapshotted: str, env: dict[str, str], ours: bool) -> dict[str, float]:
    """Each figure at the current size (medians, ms)."""
    stapes_list = [str(BIN / "stapes"), "list", "--format", "csv"]
    stapes_json = [str(BIN / "stapes"), "list", "--format", "json"]
    snapshots = f"/1.0/instances/{snapshotted}/snapshots?recursion=1"
    found = {
        "recursion=1": line(
            "GET /1.0/instances?recursion=1",
            timed(lambda: raw_get(socket, "/1.0/instances?recursion=1"), RUNS),
        ),
        "recursion=2": line(
            "GET /1.0/instances?recursion=2",
            timed(lambda: raw_get(socket, "/1.0/instances?recursion=2"), RUNS),
        ),
        "snapshots": line(
            "GET .../snapshots?recursion=1 (one instance)",
            timed(lambda: raw_get(socket, snapshots), RUNS),
        ),
    }
    if ours:
        found["stapes list"] = line(
            "stapes list --format csv", timed(lambda: quiet(stapes_list, env), RUNS)
        )
        found["stapes list json"] = line(  # recursion=2 whole: what json and yaml print
            "stapes list --format json", timed(lambda: quiet(stapes_json, env), RUNS)
        )
    incus = shutil.which("incus")
    if incus:
        with tempfile.TemporaryDirectory() as conf:
            incus_env = {**env, "INCUS_SOCKET": socket, "INCUS_CONF": conf}
            incus_list = [incus, "list", "--format", "csv"]
            found["incus list"] = line(
                "incus list --format csv", timed(lambda: quiet(incus_list, incus_env), RUNS)
            )
    return found


def grow(socket: str, env: dict[str, str], pid: int, snapshots: int) -> dict[str, list[float]]:
    """SIZES instances on the btrfs pool POOL, ``snapshots`` snapshots on the first
    SNAPSHOTTED; the figures at each size; everything made deleted after."""
    names: list[str] = []
    figures: dict[str, list[float]] = {}
    try:
        for size in SIZES:
            new = [f"s{uuid.uuid4().hex[:8]}" for _ in range(size - len(names))]
            bodies = [("/1.0/instances", {"name": n, "source": {"type": "image", "alias": "bb"},
                                          "devices": ROOT_ON_BTRFS}) for n in new]  # fmt: skip
            names += new
            asyncio.run(_post_all(socket, bodies))
            if len(names) == len(new):  # the snapshots, once, on the first SNAPSHOTTED
                targets = new[:SNAPSHOTTED]
                per = snapshots // max(len(targets), 1)
                # one snapshot of each at a time: Incus fails two of one instance at once
                # ("Instance snapshot record count doesn't match ... volume record count")
                snaps = [(f"/1.0/instances/{t}/snapshots", {"name": f"n{i}"})
                         for i in range(per) for t in targets]  # fmt: skip
                asyncio.run(_post_all(socket, snaps, batch=len(targets)))
            waited = settle(pid)
            print(f"{len(names)} instances, {snapshots} snapshots on {SNAPSHOTTED} of them "
                  f"(the daemon idle after {waited:.0f} s)")  # fmt: skip
            found = measure(socket, names[0], env, ours=socket != str(INCUS_SOCKET))
            found["rss MiB"] = rss_kib(pid) / 1024
            print(f"  daemon RSS {found['rss MiB']:.1f} MiB")
            for key, value in found.items():
                figures.setdefault(key, []).append(value)
        for i in range(1, len(SIZES)):
            print(f"growth from {SIZES[i - 1]} to {SIZES[i]} instances (linear would be "
                  f"{SIZES[i] / SIZES[i - 1]:.1f}):")  # fmt: skip
            for key, values in figures.items():
                print(f"  {key:<16} {values[i] / values[i - 1]:.2f}")
    finally:
        if socket == str(INCUS_SOCKET):  # Stapes's throwaway daemon goes whole
            asyncio.run(_delete_all(socket, names))
    return figures


async def _delete_all(socket: str, names: list[str]) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket)) as http:

        async def one(name: str) -> None:
            async with http.delete(f"http://incus/1.0/instances/{name}") as resp:
                op = (await resp.json()).get("operation")
            if op:
                async with http.get(f"http://incus{op}/wait?timeout=600") as resp:
                    await resp.read()

        for start in range(0, len(names), BATCH):
            await asyncio.gather(*(one(n) for n in names[start : start + BATCH]))


def main() -> None:
    with stapes_daemon() as stapes:
        socket = str(stapes.root / "unix.socket")
        quiet([str(BIN / "stapes"), "storage", "create", POOL, "btrfs", "size=30GiB"], stapes.env)
        print(f"Stapes: {SNAPSHOTS} snapshots")
        ours = grow(socket, stapes.env, stapes.pid, SNAPSHOTS)
        cold_start(stapes.env, stapes.pid, socket)
    pid = incusd_pid()
    if pid is None or not INCUS_SOCKET.exists():
        return
    env = dict(os.environ)
    incus = ["incus", "storage", "create", POOL, "btrfs", "size=30GiB"]
    quiet(incus, {**env, "INCUS_SOCKET": str(INCUS_SOCKET)})
    try:
        print(f"Real Incus (its incusd), the same on a btrfs pool, {INCUS_SNAPSHOTS} snapshots "
              "(its snapshots are made ~10x slower)")  # fmt: skip
        theirs = grow(str(INCUS_SOCKET), env, pid, INCUS_SNAPSHOTS)
    finally:
        subprocess.run(["incus", "storage", "delete", POOL], env=env, capture_output=True)
    print("Stapes / Incus at each size (Stapes with the more snapshots):")
    for key in ("recursion=1", "recursion=2", "incus list", "rss MiB"):
        if key in ours and key in theirs:
            ratios = "  ".join(f"{a / b:.2f}" for a, b in zip(ours[key], theirs[key], strict=True))
            print(f"  {key:<14} {ratios}")


def cold_start(env: dict[str, str], pid: int, socket: str) -> None:
    """The daemon stopped and started again on everything it holds: until /1.0 answers."""
    os.kill(pid, signal.SIGTERM)
    while os.path.exists(f"/proc/{pid}") and "zombie" not in _state(pid):
        time.sleep(0.05)
    started = time.perf_counter()
    again = subprocess.Popen([str(BIN / "stapesd")], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        while (
            subprocess.run(
                ["curl", "-sf", "-o", "/dev/null", "--unix-socket", socket, "http://stapes/1.0"]
            ).returncode
            != 0
        ):
            time.sleep(0.02)
        took = (time.perf_counter() - started) * 1000
        print(f"  cold start with {SIZES[-1]} instances: {took:.0f} ms")
    finally:
        again.terminate()
        again.wait(60)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((line for line in status if line.startswith("State:")), "").lower()
    except OSError:
        return "zombie"


if __name__ == "__main__":
    main()
