"""Back-to-back launches of a Debian 12 container on a dir pool, where the next launch comes
before the spare copy of the image volume is ready, Stapes beside real Incus in one run
(../shared/tools/incus-anchor start), both through the `incus` client with the same image (built
by `stapes image build debian/12`, debootstrap from this host's mirror, cached after the first
build; exported from Stapes and imported into Incus).

Prints each launch of a burst of BURST (5) with no pause between them, the median of the
launches after the first (the first takes the spare copy made while idle), and the floor: one
`cp -a` of the same image volume on the same filesystem, which is what a launch without a ready
copy waits for (Stapes's copy runs several cp at once, host/tree_copy.py, so it can come in under
the floor). Run as root: `make bench`."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from common import BIN, INCUS_SOCKET, quiet, real_incus, stapes_daemon

BURST = int(os.environ.get("BENCH_BURST", "5"))
INCUS = shutil.which("incus") or "/usr/bin/incus"


def unjournaled_ext4(path: Path) -> bool:
    """Whether ``path`` is on an ext4 without a journal (no jbd2 entry for its device)."""
    dev = os.stat(path).st_dev
    uevent = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/uevent")
    if not uevent.exists():
        return False
    name = next(
        (line.split("=", 1)[1] for line in uevent.read_text().splitlines() if "DEVNAME=" in line),
        "",
    )
    ext4 = Path("/proc/fs/ext4") / name
    return bool(name) and ext4.exists() and not any(Path("/proc/fs/jbd2").glob(f"{name}-*"))


def calm() -> None:
    """Write back what set-up left dirty before a timed series."""
    os.sync()


def burst(label: str, incus: list[str], made: list[str]) -> float:
    """BURST launches in a row, each timed, then stopped (untimed; added to ``made``, removed
    at the end: a deletion now would slow the copies that follow); the median after the first,
    in ms."""
    samples = []
    calm()
    for _ in range(BURST):
        name = f"burst-{uuid.uuid4().hex[:8]}"
        made.append(name)
        start = time.perf_counter()
        quiet([*incus, "launch", "deb", name])
        samples.append(time.perf_counter() - start)
    for name in made:
        subprocess.run([*incus, "stop", "-f", name], capture_output=True)
    shown = " ".join(f"{s * 1000:.0f}" for s in samples)
    after_first = statistics.median(samples[1:]) * 1000
    print(f"  {label:<8} launches (ms): {shown}   median after the first: {after_first:.0f} ms")
    return after_first


def remove(incus: list[str], names: list[str]) -> None:
    for name in names:
        subprocess.run([*incus, "delete", "-f", name], capture_output=True)


def copy_floor(image_volume: Path, work: Path) -> float:
    """``cp -a`` of the image volume, three times (the copies are left for the caller to remove
    after the bursts)."""
    samples = []
    calm()
    for i in range(3):
        start = time.perf_counter()
        quiet(["cp", "-a", str(image_volume), str(work / f"floor-{i}")])
        samples.append(time.perf_counter() - start)
    floor = statistics.median(samples) * 1000
    print(f"  floor: cp -a of the image volume: {floor:.0f} ms")
    return floor


def settle_spare(images: Path, limit: float = 120.0) -> None:
    """Wait until the spare copy of the image volume is made (no .partial left)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if any(images.glob("*.spare")) and not any(images.glob("*.partial")):
            return
        time.sleep(0.2)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-burst-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        conf = work / "incus-conf"
        conf.mkdir()
        with stapes_daemon(image=False) as st:
            quiet([str(BIN / "stapes"), "image", "build", "debian/12", "--alias", "deb"], st.env)
            ours = ["env", f"INCUS_SOCKET={st.root / 'unix.socket'}", f"INCUS_CONF={conf}", INCUS]
            ours_made = [f"warm-{uuid.uuid4().hex[:8]}"]  # unpacks the image volume on the pool
            quiet([*ours, "init", "deb", ours_made[0]])
            images = st.root / "storage-pools/default/images"
            settle_spare(images)
            volume = next(
                p for p in images.iterdir() if p.is_dir() and p.suffix not in (".spare", ".partial")
            )
            files = sum(len(f) + len(d) for _, d, f in os.walk(volume / "rootfs"))
            print(f"debian/12 on a dir pool ({files} files), bursts of {BURST}:")
            if unjournaled_ext4(images):
                print(
                    "  (the pool is on an ext4 without a journal: there ext4 skips inodes freed"
                    " in the last 5 s, 300 s while their table block is dirty, when it allocates,"
                    " one lookup each, so creating a tree after others were deleted is up to 10x"
                    " slower, whoever does it: nothing is deleted until all is timed)"
                )
            floors = st.root / "floors"
            floors.mkdir()
            floor = copy_floor(volume, floors)
            stapes = burst("stapes", ours, ours_made)
            incus = None
            if real_incus() is not None:
                quiet([*ours, "image", "export", "deb", str(work / "deb")])
                exported = sorted(str(p) for p in work.glob("deb*") if p.is_file())
                theirs = ["env", f"INCUS_SOCKET={INCUS_SOCKET}", f"INCUS_CONF={conf}", INCUS]
                quiet([*theirs, "image", "import", *exported, "--alias", "deb"])
                theirs_made = [f"warm-{uuid.uuid4().hex[:8]}"]  # Incus's first use of it
                try:
                    quiet([*theirs, "init", "deb", theirs_made[0]])
                    incus = burst("incus", theirs, theirs_made)
                finally:
                    remove(theirs, theirs_made)
                    subprocess.run([*theirs, "image", "delete", "deb"], capture_output=True)
            remove(ours, ours_made)
        print(f"stapes / floor: {stapes / floor:.2f}")
        if incus is None:
            print("real Incus is not running here: no ratio (../shared/tools/incus-anchor start)")
        else:
            print(f"stapes / incus: {stapes / incus:.2f}")


if __name__ == "__main__":
    main()
