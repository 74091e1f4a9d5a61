"""An instance's network state read over netlink inside its namespace
(host/netns_interfaces.py) says what iproute2 says there, and no daemon thread stays in it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from collections.abc import Iterator

import pytest

from stapes.host.netns_interfaces import interfaces

pytestmark = pytest.mark.root


@pytest.fixture
def namespace() -> Iterator[int]:
    """A process alone in a new network namespace with lo up and a dummy interface carrying
    an IPv4 and an IPv6 address on one end of a veth pair (nothing of it is seen from the host)."""
    proc = subprocess.Popen(["unshare", "--net", "sleep", "120"])
    try:
        inside = ["nsenter", f"--net=/proc/{proc.pid}/ns/net", "ip"]
        for _ in range(100):  # until unshare has made the namespace
            if os.readlink(f"/proc/{proc.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                break
            subprocess.run(["sleep", "0.01"], check=True)
        for args in (
            ["link", "set", "lo", "up"],
            ["link", "add", "d0", "mtu", "1400", "type", "veth", "peer", "name", "d1"],
            ["addr", "add", "192.0.2.5/24", "dev", "d0"],
            ["addr", "add", "2001:db8::5/64", "nodad", "dev", "d0"],
            ["link", "set", "d0", "up"],
        ):
            subprocess.run([*inside, *args], check=True)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_interfaces_are_iproute2s(namespace: int) -> None:
    before = os.readlink("/proc/self/ns/net")
    found = asyncio.run(interfaces(namespace))
    listed = json.loads(
        subprocess.run(
            ["nsenter", f"--net=/proc/{namespace}/ns/net", "ip", "-j", "-s", "addr"],
            check=True, capture_output=True,
        ).stdout
    )  # fmt: skip
    assert sorted(found) == sorted(link["ifname"] for link in listed) == ["d0", "d1", "lo"]
    for link in listed:
        mine = found[link["ifname"]]
        assert mine["mtu"] == link["mtu"]
        assert mine["hwaddr"] == ("" if link["ifname"] == "lo" else link["address"])
        assert mine["state"] == ("up" if "UP" in link["flags"] else "down")
        assert [
            (a["family"], a["address"], a["netmask"], a["scope"]) for a in mine["addresses"]
        ] == [(a["family"], a["local"], str(a["prefixlen"]), a["scope"]) for a in link["addr_info"]]
        assert mine["counters"]["packets_sent"] <= link["stats64"]["tx"]["packets"]
    assert found["lo"]["type"] == "loopback" and found["lo"]["hwaddr"] == ""
    assert found["d0"]["type"] == "broadcast" and found["d0"]["hwaddr"] != ""
    assert ("inet", "192.0.2.5", "24", "global") in [
        (a["family"], a["address"], a["netmask"], a["scope"]) for a in found["d0"]["addresses"]
    ]
    # the reading thread ended; this one, and every other, is still in the host's namespace
    assert os.readlink("/proc/self/ns/net") == before
    for thread in threading.enumerate():
        if thread.native_id is not None:
            task = f"/proc/self/task/{thread.native_id}/ns/net"
            assert os.readlink(task) == before, thread.name


def test_a_gone_process_has_no_interfaces() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert asyncio.run(interfaces(proc.pid)) == {}
