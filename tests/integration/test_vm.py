"""Virtual machines under QEMU (TCG here: the host's /dev/kvm cannot run guests): a busybox VM
image with the Debian cloud kernel, booted directly; lifecycle over QMP, crashes noticed."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import STAPES, Daemon, unique

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]

BOOTED = "stapes-vm: ready"


@pytest.fixture(scope="module")
def vm_image(daemon: Daemon) -> str:
    """`stapes image build busybox --vm` (the kernel comes from the host's Debian mirror)."""
    if daemon.request("GET", "/1.0/images/aliases/bbvm").status != 200:
        daemon.cli("image", "build", "busybox", "--vm", "--alias", "bbvm", timeout=900)
    return "bbvm"


@pytest.fixture
def vm(daemon: Daemon, vm_image: str) -> Iterator[str]:
    name = daemon.launch(vm_image, unique("vm"), type="virtual-machine")
    try:
        yield name
    finally:
        daemon.force_delete(name)


def console_log(daemon: Daemon, name: str) -> str:
    resp = daemon.request("GET", f"/1.0/instances/{name}/console")
    return resp.body.decode(errors="replace") if resp.status == 200 else ""


def wait_booted(daemon: Daemon, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while BOOTED not in console_log(daemon, name):
        assert time.monotonic() < deadline, console_log(daemon, name)[-2000:]
        time.sleep(0.5)


def state(daemon: Daemon, name: str) -> dict:  # type: ignore[type-arg]
    meta: dict = daemon.request("GET", f"/1.0/instances/{name}/state").metadata  # type: ignore[type-arg]
    return meta


def put_state(daemon: Daemon, name: str, action: str, **extra: object) -> int:
    resp = daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": action, **extra})
    return daemon.wait(resp, timeout=180).status


def test_vm_boots_pauses_and_powers_off(daemon: Daemon, vm: str) -> None:
    env = daemon.request("GET", "/1.0").metadata["environment"]
    assert "virtual-machine" in env["instance_types"] and "qemu" in env["driver"]
    assert env["vm_accelerator"].startswith(("kvm", "tcg"))
    wait_booted(daemon, vm)
    running = state(daemon, vm)
    assert running["status"] == "Running" and running["pid"] > 0
    assert running["memory"]["total"] == 1024**3 and running["memory"]["usage"] > 0
    inst = daemon.request("GET", f"/1.0/instances/{vm}").metadata
    assert inst["type"] == "virtual-machine"
    root = daemon.root / "storage-pools" / "default" / "virtual-machines" / vm / "root.img"
    assert root.stat().st_size == 10 * 1024**3  # Incus's default root size, sparse

    assert put_state(daemon, vm, "freeze") == 200
    assert state(daemon, vm)["status"] == "Frozen"
    # a clean stop: ACPI power button (the guest powers off), even from frozen
    assert put_state(daemon, vm, "stop", timeout=60) == 200
    assert state(daemon, vm)["status"] == "Stopped"
    logs = daemon.request("GET", f"/1.0/instances/{vm}/logs/qemu.log").body.decode()
    assert "QEMU exited: powered off" in logs
    assert not _qemu_processes(vm)


def test_a_crashed_qemu_is_noticed(daemon: Daemon, vm: str) -> None:
    """QEMU killed behind stapesd's back: stopped, an event with the reason, nothing left."""
    wait_booted(daemon, vm)
    pid = state(daemon, vm)["pid"]
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    qmp = next(a for a in args if "qmp.sock" in a).split(",")[0].removeprefix("unix:")
    argv = [STAPES, "monitor", "--type", "lifecycle"]
    monitor = subprocess.Popen(argv, env=daemon.env, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while state(daemon, vm)["status"] != "Stopped":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(1)
    finally:
        monitor.terminate()
        out, _ = monitor.communicate(timeout=10)
    events = [e for e in yaml.safe_load_all(out) if e]
    shutdown = [e for e in events if e["metadata"]["action"] == "instance-shutdown"]
    assert shutdown and "SIGKILL" in shutdown[-1]["metadata"]["context"]["reason"]
    assert not Path(qmp).parent.exists()  # no stale socket or pid file
    assert not _qemu_processes(vm)
    # and it starts again
    assert put_state(daemon, vm, "start") == 200
    wait_booted(daemon, vm)


def test_vm_bad_input(daemon: Daemon, vm_image: str, busybox: str) -> None:
    def create(image: str, **extra: object) -> tuple[int, str]:
        name = unique("vm")
        body = {
            "name": name,
            "type": "virtual-machine",
            "source": {"type": "image", "alias": image},
        }
        resp = daemon.request("POST", "/1.0/instances", {**body, **extra})
        if resp.status == 202:
            resp = daemon.wait(resp)
        assert daemon.request("GET", f"/1.0/instances/{name}").status == 404  # nothing kept
        return resp.status, resp.json()["error"] if resp.status != 200 else ""

    status, error = create(busybox)
    assert status == 400 and "container image" in error
    status, error = create(vm_image, config={"limits.memory": "4TiB"}, start=True)
    assert status == 400 and "limits.memory" in error
    status, error = create(vm_image, config={"limits.cpu": "512"}, start=True)
    assert status == 400 and "limits.cpu" in error
    root = {"root": {"type": "disk", "path": "/", "pool": "default", "size": "1MiB"}}
    status, error = create(vm_image, devices=root)
    assert status == 400 and "below the image" in error
    status, error = create(vm_image, config={"raw.qemu": "-device 'unclosed"}, start=True)
    assert status == 400 and "raw.qemu" in error


def _qemu_processes(name: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "qemu-system" in line and f"-name {name} " in line]
