"""`stapes image build debian/12` makes a real Debian 12 system image whose systemd boots and
whose eth0 gets an address by DHCP on a managed bridge (the test's own, NAT off)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

import stapes as stapes_src
from stapes.images import builder
from tests.helpers import Daemon

pytestmark = [pytest.mark.root, pytest.mark.liblxc, pytest.mark.debootstrap, pytest.mark.slow]


def test_debian_image_boots_systemd(daemon: Daemon) -> None:
    daemon.cli("image", "build", "debian/12", "--alias", "test-debian/12", timeout=1500)
    image = daemon.request("GET", "/1.0/images/aliases/test-debian%2F12").metadata
    props = daemon.request("GET", f"/1.0/images/{image['target']}").metadata["properties"]
    assert props["os"] == "Debian" and props["release"] == "12"
    network = "stpd" + secrets.token_hex(4)
    subnet = f"10.216.{secrets.randbelow(250) + 1}"
    # written as ip and the API show it (no leading zeros in a group)
    prefix6 = f"fd42:{secrets.randbits(16):x}:{secrets.randbits(16):x}:{secrets.randbits(16):x}"
    config = {
        "ipv4.address": f"{subnet}.1/24",
        "ipv4.nat": "false",
        "ipv6.address": f"{prefix6}::1/64",
        "ipv6.nat": "false",
        "ipv6.dhcp.stateful": "true",
    }
    assert (
        daemon.request("POST", "/1.0/networks", {"name": network, "config": config}).status == 201
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
        leases = [
            x
            for x in daemon.request("GET", f"/1.0/networks/{network}/leases").metadata
            if x["type"] == "dynamic"
        ]
        assert [x["hostname"] for x in leases] == [name]
        # the NIC's ipv6.address, a static lease of the network's stateful DHCPv6
        # (one try each: the first can go out before the link-local address is usable)
        addr6 = ""
        for _ in range(3):
            daemon.cli("exec", name, "--", "dhclient", "-6", "-1", "eth0", timeout=60, check=False)
            addr6 = daemon.cli("exec", name, "--", "ip", "-6", "addr", "show", "dev", "eth0").stdout
            if f"{prefix6}::50/" in addr6:
                break
            time.sleep(1)
        assert f"{prefix6}::50/" in addr6
        six = [
            x
            for x in daemon.request("GET", f"/1.0/networks/{network}/leases").metadata
            if ":" in x["address"] and x["type"] != "gateway"
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


def test_recipes_variants_and_the_bootstrap_cache(daemon: Daemon, tmp_path: Path) -> None:
    """A recipe of one's own (the built-in one plus a file and a command) reuses the cached
    bootstrap of the same packages; the cloud variant adds cloud-init."""
    recipe = tmp_path / "mine.yaml"
    builtin = Path(stapes_src.__file__).parent / "images" / "recipes" / "debian.yaml"
    text = builtin.read_text().replace(
        "commands: []", "commands:\n  - echo built-by-recipe > /etc/recipe-mark"
    )
    recipe.write_text(text)
    if not list(builder.cache_dir().glob("debian-bookworm-*.tar")):  # run alone: warm it
        daemon.cli("image", "build", "debian/12", "--alias", "test-warm", timeout=1500)
        warm = daemon.request("GET", "/1.0/images/aliases/test-warm").metadata["target"]
        daemon.ok(daemon.request("DELETE", f"/1.0/images/{warm}"))
    proc = daemon.cli("image", "build", str(recipe), "--alias", "test-mine", timeout=1500)
    assert "Using the cached bootstrap" in proc.stderr
    image = daemon.request("GET", "/1.0/images/aliases/test-mine").metadata["target"]
    name = daemon.launch("test-mine", start=True)
    try:
        out = daemon.cli("exec", name, "--", "cat", "/etc/recipe-mark").stdout
        assert out == "built-by-recipe\n"
    finally:
        daemon.force_delete(name)
        daemon.ok(daemon.request("DELETE", f"/1.0/images/{image}"))

    daemon.cli("image", "build", "debian/12", "--variant", "cloud", "--alias", "test-cloud",
               timeout=1500)  # fmt: skip
    cloud = daemon.request("GET", "/1.0/images/aliases/test-cloud").metadata["target"]
    props = daemon.request("GET", f"/1.0/images/{cloud}").metadata["properties"]
    assert props["variant"] == "cloud"
    name = daemon.launch("test-cloud", start=False)
    try:
        rootfs = next(daemon.root.glob(f"storage-pools/*/containers/*{name}/rootfs"))
        assert (rootfs / "usr/bin/cloud-init").exists()
        assert (rootfs / "etc/cloud/cloud.cfg.d/90-stapes.cfg").exists()
    finally:
        daemon.force_delete(name)
        daemon.ok(daemon.request("DELETE", f"/1.0/images/{cloud}"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("distribution: arch\n")
    proc = daemon.cli("image", "build", str(bad), check=False)
    assert proc.returncode == 1 and "distribution must be debian" in proc.stderr
    proc = daemon.cli("image", "build", "debian/12", "--variant", "nosuch", check=False)
    assert proc.returncode == 1 and "no variant 'nosuch'" in proc.stderr
