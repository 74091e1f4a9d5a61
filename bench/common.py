"""What every benchmark shares: timing summaries, a throwaway stapesd with the busybox image,
and the real Incus daemon when it runs here (../shared/tools/incus-anchor start)."""

from __future__ import annotations

import http.client
import os
import shutil
import socket as socket_module
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stapes.client.instance_server import InstanceServer
from stapes.host.mounts import unmount_below

INCUS_SOCKET = Path("/var/lib/incus/unix.socket")
STATE_PARENT = "/var/lib"
"""Where throwaway daemons (and the floors copied beside them) keep their state: beside real
Incus's /var/lib/incus and a Stapes install's /var/lib/stapes, so both daemons copy trees in
the same part of the filesystem. That matters on this host: its root ext4 has no journal, and
a tree takes up to 10x longer to create where trees were deleted in the last minutes (burst.py
explains why); copy-bound figures move with what ran before them, wherever they run."""
BIN = Path(sys.executable).parent


def quiet(argv: list[str], env: dict[str, str] | None = None) -> None:
    """Run ``argv`` (with ``env`` if given), its output kept from the bench's; it must succeed."""
    subprocess.run(argv, check=True, capture_output=True, env=env)


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p90 * 1000


def line(label: str, samples: list[float]) -> float:
    """Print the median and p90 of samples in seconds, as milliseconds; return the median."""
    median, p90 = summary(samples)
    print(f"  {label:<44} median {median:8.1f} ms   p90 {p90:8.1f} ms")
    return median


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


@dataclass
class Stapes:
    root: Path
    env: dict[str, str]
    pid: int


@contextmanager
def stapes_daemon(image: bool = True) -> Iterator[Stapes]:
    """A stapesd on a temporary STAPES_DIR with the busybox image under alias bb (without
    it when ``image`` is False: a server to join to a cluster must have none)."""
    root = Path(tempfile.mkdtemp(prefix="stapes-bench-", dir=STATE_PARENT))
    env = {**os.environ, "STAPES_DIR": str(root)}
    daemon = subprocess.Popen(
        [str(BIN / "stapesd")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(200):
            if (root / "unix.socket").exists():
                break
            time.sleep(0.05)
        steps = [["admin", "init", "--minimal"]]
        if image:
            steps.append(["image", "build", "busybox", "--alias", "bb"])
        for argv in steps:
            subprocess.run([str(BIN / "stapes"), *argv], env=env, check=True, capture_output=True)
        yield Stapes(root, env, daemon.pid)
    finally:
        daemon.terminate()
        daemon.wait(30)
        unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)


def real_incus() -> InstanceServer | None:
    """A client of the real Incus daemon with the bb alias, or None (and why, printed)."""
    if not INCUS_SOCKET.exists() or shutil.which("incus") is None:
        print(
            "Real Incus is not running here: start it with ../shared/tools/incus-anchor start "
            "for the Stapes/Incus ratios"
        )
        return None
    server = InstanceServer.unix(INCUS_SOCKET)
    try:
        server.alias("bb")
    except Exception:
        server.close()
        print("Real Incus has no image alias bb: run ../shared/tools/incus-anchor start")
        return None
    return server


def rss_kib(pid: int) -> int:
    for entry in Path(f"/proc/{pid}/status").read_text().splitlines():
        if entry.startswith("VmRSS:"):
            return int(entry.split()[1])
    return 0


def settle(pid: int, limit: float = 120.0) -> float:
    """Wait until the process has used under 5% of a CPU over a second (what a burst of creates
    left to do in the background, such as backup.yaml files, is done): measuring during it
    mixes that work into the figures. Returns the seconds waited."""
    started = time.monotonic()

    def cpu_ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    hz = os.sysconf("SC_CLK_TCK")
    while time.monotonic() - started < limit:
        before = cpu_ticks()
        time.sleep(1.0)
        if cpu_ticks() - before < 0.05 * hz:
            break
    return time.monotonic() - started


def incusd_pid() -> int | None:
    """The daemon's pid: liblxc's monitors of Incus's containers are also named incusd."""
    found = subprocess.run(["pidof", "incusd"], capture_output=True, text=True).stdout.split()
    for pid in found:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        if argv0.endswith(b"/incusd") or argv0 == b"incusd":
            return int(pid)
    return None


def use_incus_image(stapes: Stapes, work: Path) -> bool:
    """Replace Stapes's busybox (alias bb) with Incus's own bb, exported and imported, so both
    sides run the same image (ours has 268 applet links, Incus's 10: every copy differs). False
    when real Incus does not run."""
    server = real_incus()
    if server is None:
        return False
    server.close()
    conf = work / "incus-conf"
    conf.mkdir(exist_ok=True)
    incus = ["env", f"INCUS_CONF={conf}", shutil.which("incus") or "/usr/bin/incus"]
    ours = ["env", f"INCUS_SOCKET={stapes.root / 'unix.socket'}", *incus[1:]]
    quiet([*incus, "image", "export", "bb", str(work / "bb")])
    quiet([*ours, "image", "delete", "bb"])
    files = sorted(  # the metadata tarball first, then a split image's rootfs
        (str(p) for p in work.glob("bb*") if p.is_file()), key=lambda p: ".tar" not in p
    )
    quiet([*ours, "image", "import", *files, "--alias", "bb"])
    return True


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", blocksize=1 << 20)  # request bodies sent 1 MiB a write
        self.path = path

    def connect(self) -> None:
        self.sock = socket_module.socket(socket_module.AF_UNIX)
        self.sock.connect(self.path)


def stream(socket: Path, method: str, path: str, upload: Path | None = None) -> None:
    """One request over a daemon's unix socket, the body streamed from ``upload`` and the
    answer read in 1 MiB pieces and dropped (a file transfer without a client's own costs); it
    must be a 200."""
    conn = _Unix(str(socket))
    try:
        if upload is None:
            conn.request(method, path)
        else:
            with upload.open("rb") as body:
                size = str(upload.stat().st_size)
                conn.request(method, path, body=body, headers={"Content-Length": size})
        resp = conn.getresponse()
        while resp.read(1 << 20):
            pass
        assert resp.status == 200, (method, path, resp.status)
    finally:
        conn.close()


def raw_get(socket: str, path: str) -> bytes:
    """A daemon's answer to GET ``path`` over its unix socket, read whole and not decoded (what
    the daemon takes, without a client's JSON decoding); it must be a 200."""
    conn = _Unix(socket)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, (path, resp.status)
        return body
    finally:
        conn.close()
