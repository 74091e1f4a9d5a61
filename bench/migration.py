"""Migration between two local servers: the time to copy a stopped container from one stapesd to
another (Incus's protocol, pull mode, driven by the incus client when it is installed), against
the floor, ``rsync -a`` of the same rootfs to an rsync daemon on loopback; a refresh after a
small change (the bytes it sends, from the source operation's final progress); and copies
between Stapes and the real Incus when incus-anchor runs it. Incus->Incus needs two Incus
daemons, which one machine does not hold: not measured.

    python bench/migration.py [--runs N] [--files N]
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BIN, INCUS_SOCKET, STATE_PARENT, Stapes, line, stapes_daemon, timed

from stapes.client import migration
from stapes.client.instance_server import InstanceServer
from stapes.client.operation import RemoteOperation

INCUS = shutil.which("incus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client(d: Stapes) -> InstanceServer:
    return InstanceServer.unix(d.root / "unix.socket")


def listen(d: Stapes) -> str:
    address = f"127.0.0.1:{free_port()}"
    with client(d) as s:
        s.update_server({"config": {"core.https_address": address}})
    return address


def stapes(d: Stapes, *args: str) -> str:
    return subprocess.run(
        [str(BIN / "stapes"), *args], env=d.env, check=True, capture_output=True, text=True
    ).stdout


def copy_with_client(src: Stapes, dst: Stapes, name: str, new: str, refresh: bool = False) -> str:
    """One pull-mode copy through the client library; the source operation's last progress."""
    with client(src) as s, client(dst) as t:
        body = migration.instance_body(
            s, name, new, instance_only=False, refresh=refresh, keep_volatile=False
        )
        ops: list[RemoteOperation] = []

        def start_source(push):  # type: ignore[no-untyped-def]
            ops.append(s._op("POST", f"/1.0/instances/{name}", json_body={"migration": True}))
            return ops[-1]

        def start_target(fields):  # type: ignore[no-untyped-def]
            return t.create_instance({**body, "source": {**body["source"], **fields}})

        migration.migrate(
            migration.Endpoint.of(s), migration.Endpoint.of(t), start_source, start_target,
            "pull", "bench",
        )  # fmt: skip
        try:
            return str((ops[-1].current().get("metadata") or {}).get("fs_progress", ""))
        except Exception:
            return ""


def rsync_floor(rootfs: Path, runs: int) -> list[float]:
    """rsync -a of the rootfs to an rsync daemon on loopback (a fresh target each run)."""
    work = Path(tempfile.mkdtemp(prefix="stapes-bench-rsync-", dir=STATE_PARENT))
    port = free_port()
    conf = work / "rsyncd.conf"
    (work / "dst").mkdir()
    conf.write_text(
        f"port = {port}\naddress = 127.0.0.1\nuse chroot = no\n[m]\npath = {work / 'dst'}\n"
        "read only = no\nuid = root\ngid = root\n"
    )
    daemon = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}"])
    try:
        time.sleep(0.3)

        def once() -> None:
            shutil.rmtree(work / "dst" / "x", ignore_errors=True)
            subprocess.run(
                ["rsync", "-a", "--numeric-ids", "--devices", "--sparse", f"{rootfs}/",
                 f"rsync://127.0.0.1:{port}/m/x/"],
                check=True,
            )  # fmt: skip

        return timed(once, runs)
    finally:
        daemon.terminate()
        daemon.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def fill(rootfs: Path, files: int) -> None:
    """Make the container a few thousand files (as a distribution's /usr has)."""
    tree = rootfs / "usr" / "share" / "bench"
    for i in range(files):
        d = tree / f"d{i // 100}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}").write_bytes(os.urandom(2048))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument(
        "--debian", action="store_true",
        help="also a Debian 12 container (stapes image build debian/12: debootstrap, minutes)",
    )  # fmt: skip
    args = parser.parse_args()
    with stapes_daemon() as a, stapes_daemon() as b:
        listen(a)
        listen(b)
        stapes(a, "init", "bb", "c")
        pool = a.root / "storage-pools" / "default" / "containers" / "c"
        fill(pool / "rootfs", args.files)
        stapes(a, "snapshot", "create", "c", "s0")
        files = sum(len(f) for _, _, f in os.walk(pool))
        size = sum(p.lstat().st_size for p in pool.rglob("*") if not p.is_symlink() and p.is_file())
        print(f"Stopped busybox container, {files} files, {size / 1e6:.1f} MB, one snapshot")
        counter = iter(range(10**6))
        moved = timed(lambda: copy_with_client(a, b, "c", f"c{next(counter)}"), args.runs)
        floor = rsync_floor(pool, args.runs)
        m = line("stapes -> stapes copy (pull, with snapshot)", moved)
        f = line("floor: rsync -a of the volume, loopback", floor)
        print(f"  ratio copy/floor (the copy moves the volume twice: snapshot + volume): "
              f"{m / f:.2f}")  # fmt: skip

        big = pool / "rootfs" / "root" / "data"
        big.write_bytes(os.urandom(50 * 1024 * 1024))
        copy_with_client(a, b, "c", "r")
        (big.parent / "changed").write_bytes(os.urandom(1024 * 1024))
        start = time.perf_counter()
        progress = copy_with_client(a, b, "c", "r", refresh=True)
        elapsed = time.perf_counter() - start
        print(f"  refresh after adding 1 MiB to a 50 MiB volume: {elapsed * 1000:.0f} ms, "
              f"last stream sent {progress or '(unknown)'}")  # fmt: skip

        if args.debian:
            debian(a, b, args.runs)
        live_vm(a, b)
        if INCUS and INCUS_SOCKET.exists():
            with_incus(a, b, args.runs)
        else:
            print("Real Incus is not running: no Stapes <-> Incus figures")
        print("Incus -> Incus: needs two Incus daemons on one machine; not measured")


def debian(a: Stapes, b: Stapes, runs: int) -> None:
    """A stopped Debian 12 system container, copied like the busybox one, against its floor."""
    stapes(a, "image", "build", "debian/12", "--alias", "deb")
    stapes(a, "init", "deb", "d")
    volume = a.root / "storage-pools" / "default" / "containers" / "d"
    files = sum(len(f) for _, _, f in os.walk(volume))
    print(f"Stopped Debian 12 container, {files} files, no snapshot")
    counter = iter(range(10**6))
    moved = timed(lambda: copy_with_client(a, b, "d", f"d{next(counter)}"), runs)
    floor = rsync_floor(volume, runs)
    m = line("stapes -> stapes copy (pull)", moved)
    f = line("floor: rsync -a of the volume, loopback", floor)
    print(f"  ratio copy/floor: {m / f:.2f}")


def live_vm(a: Stapes, b: Stapes) -> None:
    """A running busybox VM moved live and back, three times: the whole move and the time its
    guest was paused (the source's own measure, from QEMU's last pass to the target's resume)."""
    stapes(a, "image", "build", "busybox", "--vm", "--alias", "bbvm")
    stapes(a, "launch", "bbvm", "v", "--vm")
    deadline = time.time() + 180
    while subprocess.run([str(BIN / "stapes"), "exec", "v", "--", "true"], env=a.env,
                         capture_output=True).returncode != 0:  # fmt: skip
        if time.time() > deadline:
            print("The VM's agent never answered: no live move figures")
            return
        time.sleep(1)
    moves: list[float] = []
    pauses: list[str] = []
    here, there = a, b
    for _ in range(6):
        with client(here) as s, client(there) as t:
            ops: list[RemoteOperation] = []

            def start_source(push, s=s, ops=ops):  # type: ignore[no-untyped-def]
                body = {"migration": True, "live": True}
                ops.append(s._op("POST", "/1.0/instances/v", json_body=body))
                return ops[-1]

            def start_target(fields, s=s, t=t):  # type: ignore[no-untyped-def]
                body = migration.instance_body(
                    s, "v", "v", instance_only=False, refresh=False, keep_volatile=True
                )
                return t.create_instance(
                    {**body, "source": {**body["source"], **fields, "live": True}}
                )

            started = time.perf_counter()
            migration.migrate(
                migration.Endpoint.of(s), migration.Endpoint.of(t), start_source, start_target,
                "pull", "bench",
            )  # fmt: skip
            moves.append(time.perf_counter() - started)
            try:
                pauses.append(str((ops[-1].current().get("metadata") or {}).get("live_downtime")))
            except Exception:
                pauses.append("?")
            s.update_state("v", "stop", force=True).wait()
            s.delete_instance("v").wait()
        here, there = there, here
    with client(here) as s:  # VMs outlive their daemon: this one goes before the bench ends
        s.update_state("v", "stop", force=True).wait()
        s.delete_instance("v").wait()
    line("live move of a running busybox VM (TCG)", moves)
    print(f"  guest paused: {', '.join(pauses)}")


def with_incus(a: Stapes, b: Stapes, runs: int) -> None:
    """The incus client copies a stopped busybox container with a snapshot: Stapes -> Stapes,
    Stapes -> Incus and Incus -> Stapes (Incus listens on a loopback port for the run)."""
    assert INCUS is not None
    conf = Path(tempfile.mkdtemp(prefix="stapes-bench-incus-"))
    local = {**os.environ, "INCUS_SOCKET": str(INCUS_SOCKET), "INCUS_CONF": str(conf / "l")}
    env = {k: v for k, v in os.environ.items() if k != "INCUS_SOCKET"}
    env["INCUS_CONF"] = str(conf / "c")

    def incus(*argv: str, on: dict[str, str] = env) -> str:
        return subprocess.run([INCUS, *argv], env=on, check=True, capture_output=True,
                              text=True).stdout  # fmt: skip

    before = incus("config", "get", "core.https_address", on=local).strip()
    if not before:
        incus("config", "set", "core.https_address", f"127.0.0.1:{free_port()}", on=local)
    address = incus("config", "get", "core.https_address", on=local).strip()
    made: list[str] = []
    try:
        token = incus("config", "trust", "add", "stapes-bench", on=local).strip().splitlines()[-1]
        incus("remote", "add", "in", token)
        for name, d in (("sa", a), ("sb", b)):
            incus(
                "remote",
                "add",
                name,
                stapes(d, "config", "trust", "add", "bench").strip().splitlines()[-1],
            )
        incus("launch", "in:bb", "in:mbench", "-q")
        made.append("mbench")
        incus("snapshot", "create", "in:mbench", "s0")
        incus("stop", "-f", "in:mbench")
        stapes(a, "init", "bb", "small")
        stapes(a, "snapshot", "create", "small", "s0")
        n = iter(range(10**6))
        ss = timed(lambda: incus("copy", "sa:small", f"sb:small{next(n)}"), runs)
        si = []
        for _ in range(runs):
            name = f"fromst{next(n)}"
            si += timed(functools.partial(incus, "copy", "sa:small", f"in:{name}"), 1)
            made.append(name)
        is_ = timed(lambda: incus("copy", "in:mbench", f"sa:frominc{next(n)}"), runs)
        print(f"incus client, busybox with one snapshot (Incus at {address}):")
        base = line("Stapes -> Stapes", ss)
        line("Stapes -> Incus", si)
        line("Incus -> Stapes", is_)
        print(f"  Stapes->Stapes / Incus->Stapes: {base / (sorted(is_)[len(is_) // 2] * 1000):.2f}")
    finally:
        for name in made:
            subprocess.run([INCUS, "delete", "-f", name], env=local, capture_output=True)
        fingerprints = incus("config", "trust", "list", "--format", "csv", "-c", "nf", on=local)
        for row in fingerprints.splitlines():
            if row.startswith("stapes-bench,"):
                incus("config", "trust", "remove", row.split(",")[1], on=local)
        if not before:
            incus("config", "unset", "core.https_address", on=local)
        shutil.rmtree(conf, ignore_errors=True)


if __name__ == "__main__":
    main()
