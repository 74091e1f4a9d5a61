"""Storage drivers side by side, in one run: for each pool driver that runs here (dir, btrfs on a
loop file), the busybox image (and the Debian image with BENCH_DEBIAN=1, built with debootstrap
the first time):
  - launch (create+start until RUNNING) of a container on that pool;
  - copy of a stopped container (with no snapshots);
  - snapshot create and restore of a stopped container;
as medians and p90s (milliseconds), as ratios against the dir pool, and launch against the floor:
a bare liblxc start of the same rootfs with the same generated config. Then `export` (backup
made, downloaded, deleted; gzip) and `import` of a busybox container with one snapshot on the
default pool, against real Incus when it runs here.
Run as root: `make bench`."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from common import BIN, line, real_incus, stapes_daemon
from launch import bare_liblxc_series

from stapes.client.instance_server import InstanceServer

RUNS = int(os.environ.get("BENCH_RUNS", "10"))
DRIVERS = {"dir": {}, "btrfs": {"size": "4GiB"}}


def root_on(pool: str) -> dict[str, dict[str, str]]:
    return {"root": {"type": "disk", "path": "/", "pool": pool}}


def series(server: InstanceServer, pool: str, alias: str) -> dict[str, float]:
    launch, copy, snap, restore = [], [], [], []
    base = f"bench-{pool}-{alias.replace('/', '-')}"
    warm = f"{base}-warm"  # the image volume is unpacked on the pool once, untimed
    server.create_instance(
        {"name": warm, "source": {"type": "image", "alias": alias}, "devices": root_on(pool)}
    ).wait()
    server.delete_instance(warm).wait()
    for i in range(RUNS):
        name = f"{base}-{i}"
        start = time.perf_counter()
        server.create_instance(
            {
                "name": name,
                "start": True,
                "source": {"type": "image", "alias": alias},
                "devices": root_on(pool),
            }
        ).wait()
        launch.append(time.perf_counter() - start)
        server.update_state(name, "stop", force=True).wait()

        start = time.perf_counter()
        server.create_instance(
            {"name": f"{name}-copy", "source": {"type": "copy", "source": name}}
        ).wait()
        copy.append(time.perf_counter() - start)

        start = time.perf_counter()
        server.create_snapshot(name, "s").wait()
        snap.append(time.perf_counter() - start)
        start = time.perf_counter()
        server.restore_snapshot(name, "s").wait()
        restore.append(time.perf_counter() - start)

        for victim in (name, f"{name}-copy"):
            server.delete_instance(victim).wait()
    return {
        "launch": line(f"{pool}: launch {alias}", launch),
        "copy": line(f"{pool}: copy stopped {alias}", copy),
        "snapshot": line(f"{pool}: snapshot {alias}", snap),
        "restore": line(f"{pool}: restore {alias}", restore),
    }


def backup_series(server: InstanceServer, label: str, alias: str) -> tuple[float, float]:
    """Median export and import of a container with one snapshot (default pool)."""
    name = "bench-backup"
    server.create_instance({"name": name, "source": {"type": "image", "alias": alias}}).wait()
    server.create_snapshot(name, "s").wait()
    exports, imports = [], []
    with tempfile.TemporaryDirectory(dir="/var/tmp") as work:
        tarball = Path(work) / "b.tar.gz"
        try:
            for i in range(RUNS):
                start = time.perf_counter()
                server.export_instance(name, tarball, {"compression_algorithm": "gzip"})
                exports.append(time.perf_counter() - start)
                start = time.perf_counter()
                server.import_backup(tarball, f"{name}-{i}").wait()
                imports.append(time.perf_counter() - start)
                server.delete_instance(f"{name}-{i}").wait()
        finally:
            server.delete_instance(name).wait()
    return line(f"{label}: export", exports), line(f"{label}: import", imports)


def main() -> None:
    aliases = ["bb"] + (["debian/12"] if os.environ.get("BENCH_DEBIAN") == "1" else [])
    with stapes_daemon() as st:
        server = InstanceServer.unix(st.root / "unix.socket")
        if "debian/12" in aliases:
            subprocess.run(
                [str(BIN / "stapes"), "image", "build", "debian/12", "--alias", "debian/12"],
                env=st.env,
                check=True,
                capture_output=True,
            )
        pools = []
        for driver, config in DRIVERS.items():
            pool = f"bench{driver}"
            try:
                server.create_pool({"name": pool, "driver": driver, "config": config})
            except Exception as exc:  # a driver this host cannot run: say so, go on
                print(f"{driver}: not measured ({exc})")
                continue
            pools.append(pool)
        figures: dict[tuple[str, str], dict[str, float]] = {}
        for alias in aliases:
            print(f"\n{alias} (RUNS={RUNS})")
            for pool in pools:
                figures[(pool, alias)] = series(server, pool, alias)
        floors = {}
        for alias in aliases:
            probe = f"floor-{alias.replace('/', '-')}"
            server.create_instance(
                {"name": probe, "source": {"type": "image", "alias": alias}}
            ).wait()
            rootfs = st.root / "storage-pools/default/containers" / probe / "rootfs"
            with tempfile.TemporaryDirectory(dir="/var/tmp") as work:
                Path(work).chmod(0o711)  # the container's root (unprivileged) must reach it
                samples = bare_liblxc_series(rootfs, Path(work))
            floors[alias] = line(f"floor: bare liblxc start of {alias}", samples)
            server.delete_instance(probe).wait()
        print("\nRatios")
        for (pool, alias), fig in figures.items():
            dir_fig = figures.get(("benchdir", alias))
            for what, value in fig.items():
                parts = []
                if dir_fig:
                    parts.append(f"{value / dir_fig[what]:.2f}x dir")
                if what == "launch" and alias in floors:
                    parts.append(f"{value / floors[alias]:.2f}x the bare liblxc floor")
                print(f"  {pool} {alias} {what:<9} {value:8.1f} ms  " + ", ".join(parts))
        for pool in pools:
            server.delete_pool(pool)
        # the same image on both sides: real Incus's bb has 10 applet links, ours 268, and
        # every file made costs about a millisecond on this disk
        incus = real_incus()
        alias = "bb"
        if incus is not None:
            alias = "incus-bb"
            with tempfile.TemporaryDirectory(dir="/var/tmp") as work:
                subprocess.run(
                    ["incus", "image", "export", "bb", f"{work}/bb"],
                    env={**os.environ, "INCUS_SOCKET": "/var/lib/incus/unix.socket"},
                    check=True,
                    capture_output=True,
                )
                (tarball,) = Path(work).glob("bb*")
                subprocess.run(
                    [str(BIN / "stapes"), "image", "import", str(tarball), "--alias", alias],
                    env=st.env,
                    check=True,
                    capture_output=True,
                )
        print(f"\nBackups of a container of {alias} with one snapshot (gzip)")
        ours = backup_series(server, "stapes", alias)
        server.close()
    if incus is not None:
        theirs = backup_series(incus, "incus", "bb")
        incus.close()
        for what, a, b in zip(("export", "import"), ours, theirs, strict=True):
            print(f"  {what}: stapes {a:.1f} ms, incus {b:.1f} ms ({a / b:.2f}x Incus)")


if __name__ == "__main__":
    main()
