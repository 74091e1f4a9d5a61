"""The paths users hit most, through the real `incus` client, Stapes beside real Incus in one
run (../shared/tools/incus-anchor start): launch, exec, file push and pull of 1 MiB and of
100 MiB (SFTP, and the same sizes through the files API, POST and GET over the unix socket; the
floor of the large ones: `cp` of the file into the rootfs), snapshot create, start + stop -f,
copy of a stopped container, list, delete.
Both run the same image: Incus's `bb` is exported and imported into the throwaway stapesd
(Stapes's own busybox when Incus does not run). The floor of exec is `lxc-attach` of the same
command into the same Stapes container.

Prints medians and p90s (milliseconds) and the Stapes/Incus ratios. Run as root: `make bench`."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from common import (
    INCUS_SOCKET,
    line,
    quiet,
    real_incus,
    stapes_daemon,
    stream,
    timed,
    use_incus_image,
)

RUNS = int(os.environ.get("BENCH_RUNS", "9"))
LARGE_RUNS = int(os.environ.get("BENCH_LARGE_RUNS", "3"))
LARGE = 100 << 20
INCUS = shutil.which("incus") or "/usr/bin/incus"


def client(socket: Path, conf: Path) -> list[str]:
    return ["env", f"INCUS_SOCKET={socket}", f"INCUS_CONF={conf}", INCUS]


def measure(label: str, incus: list[str], socket: Path, work: Path) -> dict[str, float]:
    """Each path on instances made for it (and removed), with ``incus`` the client command
    and ``socket`` the daemon's (for the files API)."""
    blob = work / "1m.bin"
    blob.write_bytes(os.urandom(1 << 20))
    names = [f"b{uuid.uuid4().hex[:8]}" for _ in range(RUNS)]
    launched = iter(names)
    print(label)
    found = {
        "launch": line(
            "incus launch", timed(lambda: quiet([*incus, "launch", "bb", next(launched)]), RUNS)
        )
    }
    target = names[0]
    run_true = [*incus, "exec", target, "--", "true"]
    found["exec"] = line("incus exec c -- true", timed(lambda: quiet(run_true), RUNS))
    push = [*incus, "file", "push", str(blob), f"{target}/root/1m.bin"]
    found["push"] = line("incus file push 1 MiB", timed(lambda: quiet(push), RUNS))
    pull = [*incus, "file", "pull", f"{target}/root/1m.bin", str(work / "back.bin")]
    found["pull"] = line("incus file pull 1 MiB", timed(lambda: quiet(pull), RUNS))
    large = work / "100m.bin"
    push = [*incus, "file", "push", str(large), f"{target}/root/100m.bin"]
    found["push 100M"] = line("incus file push 100 MiB", timed(lambda: quiet(push), LARGE_RUNS))
    pull = [*incus, "file", "pull", f"{target}/root/100m.bin", str(work / "back.bin")]
    found["pull 100M"] = line("incus file pull 100 MiB", timed(lambda: quiet(pull), LARGE_RUNS))
    files = f"/1.0/instances/{target}/files?path=/root/api.bin"
    for key, upload, runs in (("1M", blob, RUNS), ("100M", large, LARGE_RUNS)):
        size = key.replace("M", " MiB")
        post = functools.partial(stream, socket, "POST", files, upload)
        found[f"POST {key}"] = line(f"files API: POST {size}", timed(post, runs))
        get = functools.partial(stream, socket, "GET", files)
        found[f"GET {key}"] = line(f"files API: GET {size}", timed(get, runs))
    quiet([*incus, "file", "delete", f"{target}/root/100m.bin"])
    quiet([*incus, "file", "delete", f"{target}/root/api.bin"])
    snaps = iter(range(RUNS))
    found["snapshot"] = line(
        "incus snapshot create",
        timed(lambda: quiet([*incus, "snapshot", "create", target, f"s{next(snaps)}"]), RUNS),
    )
    stopped = names[-1]  # stopped for the paths that need it, started again after
    quiet([*incus, "stop", "-f", stopped])

    def start_stop() -> None:
        quiet([*incus, "start", stopped])
        quiet([*incus, "stop", "-f", stopped])

    found["start+stop"] = line("incus start + incus stop -f", timed(start_stop, RUNS))
    copies = [f"{stopped}-copy{i}" for i in range(RUNS)]
    made = iter(copies)
    found["copy"] = line(
        "incus copy (stopped)", timed(lambda: quiet([*incus, "copy", stopped, next(made)]), RUNS)
    )
    for name in copies:
        quiet([*incus, "delete", name])
    quiet([*incus, "start", stopped])
    listing = [*incus, "list"]
    found["list"] = line(f"incus list ({RUNS} running)", timed(lambda: quiet(listing), RUNS))
    doomed = iter(names)
    found["delete"] = line(
        "incus delete -f", timed(lambda: quiet([*incus, "delete", "-f", next(doomed)]), RUNS)
    )
    return found


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-cli-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        incus_conf = work / "incus-conf"
        incus_conf.mkdir()
        incus = client(INCUS_SOCKET, incus_conf) if real_incus() is not None else None
        with stapes_daemon() as stapes:
            stapes_conf = work / "stapes-conf"
            stapes_conf.mkdir()
            ours = client(stapes.root / "unix.socket", stapes_conf)
            if incus is not None:  # the same image on both sides
                use_incus_image(stapes, work)
            (work / "100m.bin").write_bytes(os.urandom(LARGE))
            got = measure("stapes", ours, stapes.root / "unix.socket", work)
            floor_name = f"f{uuid.uuid4().hex[:8]}"
            quiet([*ours, "launch", "bb", floor_name])
            rootfs = stapes.root / "storage-pools/default/containers" / floor_name / "rootfs"
            copy = ["cp", str(work / "100m.bin"), str(rootfs / "root/floor.bin")]
            line(
                "floor: cp of the 100 MiB file into its rootfs",
                timed(lambda: quiet(copy), LARGE_RUNS),
            )
            containers = str(stapes.root / "containers")
            attach = ["lxc-attach", "-P", containers, "-n", floor_name, "--", "true"]
            line("floor: lxc-attach -- true (same container)", timed(lambda: quiet(attach), RUNS))
            # The kernel's cgroup v1 attach waits for an RCU grace period unless another attach
            # came just before (cgroup_threadgroup_rwsem): back to back, lxc-attach takes ~6 ms;
            # after a pause, as between the execs above, ~15-25 ms, for both daemons alike.
            paced = []
            for _ in range(RUNS):
                time.sleep(0.05)
                paced += timed(lambda: quiet(attach), 1)
            line("floor: lxc-attach -- true, 50 ms apart", paced)
            quiet([*ours, "delete", "-f", floor_name])
        if incus is None:
            print("real Incus is not running here: no ratios (../shared/tools/incus-anchor start)")
            return
        theirs = measure("incus", incus, INCUS_SOCKET, work)
        print("ratios (Stapes/Incus, below 1 is faster):")
        for key, value in got.items():
            print(f"  {key:<10} {value / theirs[key]:.2f}")


if __name__ == "__main__":
    main()
