"""A fresh stapesd is a fresh incusd: no storage pool, a default profile without devices,
until `admin init` sets it up: `stapes admin init --auto|--minimal|--preseed|--dump`, and the
real `incus admin init --preseed` with a preseed written for Incus."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import Daemon, new_root, remove_root, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


@pytest.fixture
def fresh() -> Iterator[Daemon]:
    daemon = Daemon(new_root(), init=False)
    daemon.start()
    try:
        yield daemon
    finally:
        try:
            for url in daemon.request("GET", "/1.0/instances").metadata:
                daemon.force_delete(url.rsplit("/", 1)[-1])
            # the networks go once no profile names them
            daemon.request("PUT", "/1.0/profiles/default", {"devices": {}, "config": {}})
            for net in daemon.request("GET", "/1.0/networks?recursion=1").metadata:
                if net["managed"]:
                    gone = daemon.request("DELETE", f"/1.0/networks/{net['name']}")
                    assert gone.status == 200, gone.body
        finally:
            daemon.stop()
            remove_root(daemon.root)


def test_a_fresh_daemon_is_empty_until_admin_init(fresh: Daemon) -> None:
    assert fresh.request("GET", "/1.0/storage-pools").metadata == []
    profile = fresh.request("GET", "/1.0/profiles/default").metadata
    assert profile["devices"] == {} and profile["description"] == "Default Incus profile"
    fresh.cli("image", "build", "busybox", "--alias", "bb")
    body = {"name": unique("c"), "source": {"type": "image", "alias": "bb"}}
    resp = fresh.request("POST", "/1.0/instances", body)
    refused = fresh.wait(resp) if resp.status == 202 else resp
    assert refused.status == 400 and "root" in refused.json()["error"], refused.body
    fresh.cli("admin", "init", "--minimal")
    assert fresh.request("GET", "/1.0/storage-pools").metadata == ["/1.0/storage-pools/default"]
    assert fresh.request("GET", "/1.0/networks?recursion=1").metadata == [] or all(
        not n["managed"] for n in fresh.request("GET", "/1.0/networks?recursion=1").metadata
    )
    name = fresh.launch("bb")
    assert fresh.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Running"
    dumped = yaml.safe_load(fresh.cli("admin", "init", "--dump").stdout)
    assert [p["name"] for p in dumped["storage_pools"]] == ["default"]
    default = next(p for p in dumped["profiles"] if p["name"] == "default")
    assert default["devices"]["root"] == {"path": "/", "pool": "default", "type": "disk"}
    fresh.cli("admin", "init", "--minimal")  # again: nothing more to make, no error


def test_the_real_incus_client_applies_an_incus_preseed(fresh: Daemon, tmp_path: Path) -> None:
    if shutil.which("incus") is None:
        pytest.fail("the incus client is missing: make test installs incus-client")
    bridge = "stpi" + secrets.token_hex(4)
    subnet = f"10.215.{secrets.randbelow(250) + 1}"
    project = unique("team")
    preseed = {
        "config": {"images.auto_update_interval": "12"},
        "storage_pools": [{"name": "default", "driver": "dir", "description": "main"}],
        "networks": [
            {
                "name": bridge,
                "type": "bridge",
                "config": {
                    "ipv4.address": f"{subnet}.1/24",
                    "ipv4.nat": "false",
                    "ipv6.address": "none",
                },
            },
        ],
        "projects": [{"name": project, "description": "a team", "config": {}}],
        "profiles": [
            {
                "name": "default",
                "description": "Default Incus profile",
                "devices": {
                    "root": {"type": "disk", "path": "/", "pool": "default"},
                    "eth0": {"type": "nic", "network": bridge, "name": "eth0"},
                },
            },
            {"name": "small", "config": {"limits.memory": "256MiB"}, "devices": {}},
        ],
    }
    env = {**os.environ, "INCUS_SOCKET": fresh.socket, "INCUS_CONF": str(tmp_path / "conf")}
    done = subprocess.run(
        ["incus", "admin", "init", "--preseed"], input=yaml.safe_dump(preseed), env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr
        server = fresh.request("GET", "/1.0").metadata
        assert server["config"]["images.auto_update_interval"] == "12"
        pool = fresh.request("GET", "/1.0/storage-pools/default").metadata
        assert pool["driver"] == "dir" and pool["description"] == "main"
        net = fresh.request("GET", f"/1.0/networks/{bridge}").metadata
        assert net["config"]["ipv4.address"] == f"{subnet}.1/24"
        assert net["config"]["ipv4.nat"] == "false"
        assert fresh.request("GET", f"/1.0/projects/{project}").metadata["description"] == "a team"
        default = fresh.request("GET", "/1.0/profiles/default").metadata
        assert set(default["devices"]) == {"root", "eth0"}
        small = fresh.request("GET", "/1.0/profiles/small").metadata
        assert small["config"] == {"limits.memory": "256MiB"}
        dump = subprocess.run(
            ["incus", "admin", "init", "--dump"], env=env, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert dump.returncode == 0 and bridge in dump.stdout, dump.stderr
    finally:
        fresh.request("PUT", "/1.0/profiles/default", {"devices": {}, "config": {}})
        fresh.request("DELETE", f"/1.0/projects/{project}")
        fresh.request("DELETE", f"/1.0/networks/{bridge}")
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


def test_the_real_incus_admin_init_minimal(fresh: Daemon, tmp_path: Path) -> None:
    """`incus admin init --minimal` sends the pool with an empty source, as Incus accepts: the
    dir pool's default place. (The client also makes a NAT bridge unless the daemon has a
    managed network: one without NAT is made first, so no test bridge routes outside.)"""
    if shutil.which("incus") is None:
        pytest.fail("the incus client is missing: make test installs incus-client")
    bridge = "stpi" + secrets.token_hex(4)
    config = {"ipv4.address": "none", "ipv6.address": "none",
              "ipv4.nat": "false", "ipv6.nat": "false"}  # fmt: skip
    made = fresh.request("POST", "/1.0/networks", {"name": bridge, "config": config})
    assert made.status == 201, made.body
    env = {**os.environ, "INCUS_SOCKET": fresh.socket, "INCUS_CONF": str(tmp_path / "conf")}
    done = subprocess.run(
        ["incus", "admin", "init", "--minimal"], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pool = fresh.request("GET", "/1.0/storage-pools/default").metadata
    assert pool["driver"] == "dir"
    assert pool["config"]["source"] == str(fresh.root / "storage-pools" / "default")
    root = fresh.request("GET", "/1.0/profiles/default").metadata["devices"]["root"]
    assert root == {"path": "/", "pool": "default", "type": "disk"}
    managed = [n["name"] for n in fresh.request("GET", "/1.0/networks?recursion=1").metadata
               if n["managed"]]  # fmt: skip
    assert managed == [bridge]
