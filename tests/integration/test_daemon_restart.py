"""A killed daemon restarts with every record intact and re-adopts running instances."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.helpers import STAPES, Daemon, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


def test_kill_and_restart_readopts_running_instances(daemon: Daemon, busybox: str) -> None:
    running = daemon.launch(busybox)
    stopped = unique("stopped")
    daemon.ok(
        daemon.request(
            "POST",
            "/1.0/instances",
            {"name": stopped, "source": {"type": "image", "alias": busybox}},
        )
    )
    try:
        pid = daemon.request("GET", f"/1.0/instances/{running}/state").metadata["pid"]
        daemon.stop(signal.SIGKILL)
        daemon.start()
        state = daemon.request("GET", f"/1.0/instances/{running}/state").metadata
        assert state["status"] == "Running" and state["pid"] == pid
        assert daemon.request("GET", f"/1.0/instances/{stopped}").metadata["status"] == "Stopped"
        proc = daemon.cli("exec", running, "--", "echo", "still here")
        assert proc.stdout == "still here\n"
        daemon.ok(
            daemon.request(
                "PUT", f"/1.0/instances/{running}/state", {"action": "stop", "force": True}
            )
        )
    finally:
        daemon.force_delete(running)
        daemon.force_delete(stopped)


def test_instances_that_were_running_come_back_after_a_host_stop(
    daemon: Daemon, busybox: str
) -> None:
    name = daemon.launch(busybox)
    try:
        daemon.stop()
        # What a host reboot does to a container: stopped behind the daemon's back.
        import lxc

        container = lxc.Container(name, str(daemon.root / "containers"))
        assert container.stop()
        daemon.start()
        # the restart happens once the API is up, in the background
        deadline = time.time() + 30
        status = daemon.request("GET", f"/1.0/instances/{name}").metadata["status"]
        while status != "Running" and time.time() < deadline:
            time.sleep(0.2)
            status = daemon.request("GET", f"/1.0/instances/{name}").metadata["status"]
        assert status == "Running"
    finally:
        daemon.force_delete(name)


def test_poweroff_inside_is_noticed_and_survives_a_restart(daemon: Daemon, busybox: str) -> None:
    name = daemon.launch(busybox)
    try:
        daemon.cli("exec", name, "--", "poweroff", check=False)
        deadline = time.time() + 20
        inst = daemon.request("GET", f"/1.0/instances/{name}").metadata
        while time.time() < deadline and inst["status"] != "Stopped":
            time.sleep(0.2)
            inst = daemon.request("GET", f"/1.0/instances/{name}").metadata
        assert inst["status"] == "Stopped"
        for _ in range(50):
            power = daemon.request("GET", f"/1.0/instances/{name}").metadata["config"]
            if power["volatile.last_state.power"] == "STOPPED":
                break
            time.sleep(0.1)
        assert power["volatile.last_state.power"] == "STOPPED"
        daemon.stop()
        daemon.start()
        assert daemon.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Stopped"
    finally:
        daemon.force_delete(name)


def test_daemon_stops_promptly_with_listeners_connected(daemon: Daemon) -> None:
    monitor = subprocess.Popen(
        [STAPES, "monitor"], env=daemon.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(1)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.proc.wait(15)  # aiohttp would otherwise wait out its shutdown timeout per socket
        assert monitor.wait(15) == 0
    finally:
        monitor.kill()
        monitor.wait()
        daemon.proc = None
        daemon.start()
