"""`stapes image build debian/12` makes a real Debian 12 system image whose systemd boots and
whose eth0 gets an address by DHCP on a managed bridge (the test's own, NAT off)."""

from __future__ import annotations

import secrets
import time

import pytest

from tests.helpers import Daemon

pytestmark = [pytest.mark.root, pytest.mark.liblxc, pytest.mark.debootstrap, pytest.mark.slow]


def test_debian_image_boots_systemd(daemon: Daemon) -> None:
    daemon.cli("image", "build", "debian/12", "--alias", "test-debian/12", timeout=1500)
    image = daemon.request("GET", "/1.0/images/aliases/test-debian%2F12").metadata
    props = daemon.request("GET", f"/1.0/images/{image['target']}").metadata["properties"]
    assert props["os"] == "Debian" and props["release"] == "12"
    network = "stpd" + secrets.token_hex(4)
    subnet = f"10.216.{secrets.randbelow(250) + 1}"
    prefix6 = f"fd42:{secrets.token_hex(2)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    config = {
        "ipv4.address": f"{subnet}.1/24",
        "ipv4.nat": "false",
        "ipv6.address": f"{prefix6}::1/64",
        "ipv6.nat": "false",
        "ipv6.dhcp.stateful": "true",
    }
    assert (
        daemon.request("POST", "/1.0/networks", {"name": network, "config": config}).status == 200
    )
    nic = {
        "eth0": {
            "type": "nic",
            "network": network,
            "name": "eth0",
            "ipv6.address": f"{prefix6}::50",
        }
    }
    name = daemon.launch("test-debian/12", devices=nic)
    try:
        deadline = time.time() + 60
        status = ""
        while time.time() < deadline:
            proc = daemon.cli("exec", name, "--", "systemctl", "is-system-running", check=False)
            status = proc.stdout.strip()
            if status in ("running", "degraded"):
                break
            time.sleep(0.5)
        failed = daemon.cli(
            "exec", name, "--", "systemctl", "--failed", "--plain", "--no-legend", check=False
        ).stdout
        assert status == "running", f"systemd is {status!r}; failed units: {failed}"
        assert daemon.cli("exec", name, "--", "hostname").stdout.strip() == name
        assert "bookworm" in daemon.cli("exec", name, "--", "cat", "/etc/os-release").stdout
        leases = daemon.request("GET", f"/1.0/networks/{network}/leases").metadata
        assert [x["hostname"] for x in leases] == [name]
        # the NIC's ipv6.address, a static lease of the network's stateful DHCPv6
        daemon.cli("exec", name, "--", "dhclient", "-6", "-1", "eth0", timeout=60)
        addr6 = daemon.cli("exec", name, "--", "ip", "-6", "addr", "show", "dev", "eth0").stdout
        assert f"{prefix6}::50/" in addr6
        six = [
            x
            for x in daemon.request("GET", f"/1.0/networks/{network}/leases").metadata
            if ":" in x["address"]
        ]
        assert [(x["address"], x["hostname"]) for x in six] == [(f"{prefix6}::50", name)]
        assert six[0]["hwaddr"] == leases[0]["hwaddr"]
        state = daemon.request("GET", f"/1.0/instances/{name}/state").metadata
        inet = [
            a["address"] for a in state["network"]["eth0"]["addresses"] if a["family"] == "inet"
        ]
        assert inet == [leases[0]["address"]] and inet[0].startswith(subnet + ".")
        daemon.ok(
            daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "stop", "timeout": 30})
        )
    finally:
        daemon.force_delete(name)
        daemon.request("DELETE", f"/1.0/networks/{network}")
        daemon.ok(daemon.request("DELETE", f"/1.0/images/{image['target']}"))
