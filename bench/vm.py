"""Time from `launch --vm` to the guest agent answering, and QEMU's memory overhead per VM.

One run, side by side:
  - Stapes: create+start of the busybox VM image through the API, then `stapes exec NAME --
    true` polled until it succeeds (the agent answers), BENCH_VM_RUNS times (default 3);
  - the raw floor: the same QEMU command line (qemu.conf of the last VM), the same disk and
    config drive, started by hand, pinging the agent over its socket until it answers;
  - memory: QEMU's RSS beside what the guest itself uses (MemTotal - MemAvailable), and the
    difference, QEMU's overhead.
The accelerator (KVM or TCG) is printed first. Real Incus is not compared: it needs KVM for VMs
and its VM images come from images.linuxcontainers.org, which this machine cannot reach.
The same figures for the Debian 12 VM image (`image build debian/12 --vm`: UEFI with secure
boot through shim and GRUB, then systemd).
Run as root: `make bench` (or .venv/bin/python bench/vm.py)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from common import BIN, line, rss_kib, stapes_daemon

from stapes.agent import protocol as p
from stapes.client.instance_server import InstanceServer
from stapes.instance.vm import config_drive

RUNS = int(os.environ.get("BENCH_VM_RUNS", "3"))
POLL = 0.2


def until_agent(env: dict[str, str], name: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = subprocess.run(
            [str(BIN / "stapes"), "exec", name, "--", "true"], env=env, capture_output=True
        )
        if done.returncode == 0:
            return
        time.sleep(POLL)
    raise TimeoutError(f"the agent of {name} did not answer within {timeout}s")


def raw_floor(qemu_conf: Path, name: str) -> float:
    """The same QEMU by hand: seconds until the agent answers a ping on its socket."""
    argv = qemu_conf.read_text().replace(" \\\n  ", "\0").strip().split("\0")
    qmp = next(a for a in argv if "qmp.sock" in a)
    run_dir = Path(qmp.split(",")[0].removeprefix("unix:")).parent
    work = Path(tempfile.mkdtemp(prefix="vm-floor-", dir="/run"))
    try:
        argv = [a.replace(str(run_dir), str(work)) for a in argv]
        asyncio.run(config_drive.build(work / "config.iso", name, {}))
        start = time.perf_counter()
        qemu = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                if (work / "agent.sock").exists():
                    with socket.socket(socket.AF_UNIX) as sock:
                        try:
                            sock.connect(str(work / "agent.sock"))
                        except OSError:
                            time.sleep(0.05)
                            continue
                        sock.settimeout(POLL)
                        reader = p.Reader()
                        sent = 0.0
                        while time.perf_counter() - start < 300:
                            # two pings a second: until the guest opens its port QEMU reads
                            # nothing, and the socket's buffer must not fill up
                            if time.perf_counter() - sent >= 0.5:
                                sock.sendall(p.pack_json(1, p.OPEN, {"type": "ping"}))
                                sent = time.perf_counter()
                            try:
                                frames = reader.feed(sock.recv(65536))
                            except TimeoutError:
                                continue
                            if any(kind == p.REPLY for _, kind, _ in frames):
                                return time.perf_counter() - start
                        raise TimeoutError("the agent never answered the bare QEMU")
                time.sleep(0.05)
        finally:
            qemu.kill()
            qemu.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def series(server: InstanceServer, env: dict[str, str], alias: str, label: str) -> None:
    """RUNS launches of ``alias`` to the agent answering, then the bare-QEMU floor."""
    samples, overheads = [], []
    name = ""
    for i in range(RUNS):
        name = f"bench{alias}{i}"
        start = time.perf_counter()
        server.create_instance(
            {"name": name, "type": "virtual-machine", "start": True,
             "source": {"type": "image", "alias": alias}}
        ).wait()  # fmt: skip
        until_agent(env, name)
        samples.append(time.perf_counter() - start)
        state = server.instance_state(name)
        overheads.append((rss_kib(int(state["pid"])) * 1024, int(state["memory"]["usage"])))
        server.update_state(name, "stop", force=True).wait()
        if i < RUNS - 1:
            server.delete_instance(name).wait()
    qemu_conf = Path(env["STAPES_DIR"]) / "logs" / name / "qemu.conf"
    floor = [raw_floor(qemu_conf, name) for _ in range(RUNS)]
    server.delete_instance(name).wait()
    print(f"{label}, {RUNS} runs (agent polled every {POLL}s by the CLI):")
    ours = line("stapes launch --vm -> agent answers", samples)
    bare = line("bare QEMU (same argv) -> agent answers", floor)
    print(f"  ratio Stapes / bare QEMU: {ours / bare:.2f}x")
    rss, used = overheads[-1]
    print(
        f"  memory: QEMU RSS {rss / 2**20:.0f} MiB, guest uses {used / 2**20:.0f} MiB "
        f"-> QEMU overhead {(rss - used) / 2**20:.0f} MiB per VM (limits.memory 1GiB)"
    )
    print(json.dumps({"image": alias, "launch_to_agent_s": samples, "bare_qemu_s": floor}))


def main() -> None:
    with stapes_daemon() as stapes:
        env = stapes.env
        server = InstanceServer.unix(stapes.root / "unix.socket")
        accel = server.server()["environment"].get("vm_accelerator", "?")
        print(f"VM accelerator: {accel}")
        for kind, alias, label in (
            ("busybox", "bbvm", "busybox VM image"),
            ("debian/12", "debvm", "Debian 12 VM image (systemd)"),
        ):
            subprocess.run(
                [str(BIN / "stapes"), "image", "build", kind, "--vm", "--alias", alias],
                env=env, check=True, capture_output=True,
            )  # fmt: skip
            series(server, env, alias, label)
        print("Real Incus: not compared (it needs KVM for VMs; its VM images are not reachable)")


if __name__ == "__main__":
    main()
