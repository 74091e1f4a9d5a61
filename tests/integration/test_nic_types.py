"""NIC types beyond a bridge port: routed (host routes, the host side as gateway), macvlan
(on a host interface, or a managed macvlan network), physical (a host interface moved in and
given back), and MAC/IPv4 filtering on a bridged NIC. Parents are veth pairs the tests make
(this kernel has no dummy interfaces); every address is private and stays on the host."""

from __future__ import annotations

import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Daemon

pytestmark = [pytest.mark.root]

NETS = "/1.0/networks"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def host_routes(address: str) -> str:
    return subprocess.run(["ip", "route", "show", address], capture_output=True, text=True).stdout


def serve(daemon: Daemon, inst: str, port: int = 8080) -> None:
    www = "mkdir -p /www && echo hello > /www/index.html"
    daemon.cli("exec", inst, "--", "sh", "-c", f"{www} && httpd -p {port} -h /www")


def reaches(address: str, port: int = 8080) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def veth_pair() -> Iterator[tuple[str, str, str]]:
    """A veth pair (a, b) up on the host, b with .1 of a private /24: (a, b, subnet prefix)."""
    a, b = "stpa" + secrets.token_hex(4), "stpb" + secrets.token_hex(4)
    prefix = f"10.217.{secrets.randbelow(250) + 1}"
    sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
    try:
        sh("ip", "link", "set", a, "up")
        sh("ip", "link", "set", b, "up")
        yield a, b, prefix
    finally:
        subprocess.run(["ip", "link", "del", a], capture_output=True)
        subprocess.run(["ip", "link", "del", b], capture_output=True)


def test_routed_nic(daemon: Daemon, busybox: str) -> None:
    prefix = f"10.218.{secrets.randbelow(250) + 1}"
    nic = {"type": "nic", "nictype": "routed", "ipv4.address": f"{prefix}.5", "name": "eth0"}
    inst = daemon.launch(busybox, devices={"eth0": nic})
    try:
        serve(daemon, inst)
        assert reaches(f"{prefix}.5")
        routes = daemon.cli("exec", inst, "--", "ip", "route").stdout
        assert "default via 169.254.0.1 dev eth0" in routes
        daemon.cli("exec", inst, "--", "ping", "-c", "1", "-W", "2", "169.254.0.1")

        # hot plugged: the address, the gateway and the host route come with it
        second = {**nic, "ipv4.address": f"{prefix}.6", "name": "eth1", "ipv4.gateway": "none"}
        daemon.cli("config", "device", "add", inst, "eth1", "nic", *[
            f"{k}={v}" for k, v in second.items() if k != "type"
        ])  # fmt: skip
        assert f"{prefix}.6/32" in daemon.cli("exec", inst, "--", "ip", "addr").stdout
        assert reaches(f"{prefix}.6")
        daemon.cli("config", "device", "remove", inst, "eth1")
        assert host_routes(f"{prefix}.6") == ""
        daemon.force_stop(inst)
        assert host_routes(f"{prefix}.5") == ""
    finally:
        daemon.force_delete(inst)


def test_macvlan_nic_and_network(
    daemon: Daemon, busybox: str, veth_pair: tuple[str, str, str]
) -> None:
    parent, _, prefix = veth_pair
    host = "stpm" + secrets.token_hex(4)
    sh("ip", "link", "add", host, "link", parent, "type", "macvlan", "mode", "bridge")
    sh("ip", "addr", "add", f"{prefix}.1/24", "dev", host)
    sh("ip", "link", "set", host, "up")
    nic = {"type": "nic", "nictype": "macvlan", "parent": parent, "name": "eth0"}
    first = daemon.launch(busybox, devices={"eth0": nic})
    network = "stpt" + secrets.token_hex(4)
    second = ""
    try:
        daemon.cli("exec", first, "--", "ip", "addr", "add", f"{prefix}.2/24", "dev", "eth0")
        daemon.cli("exec", first, "--", "ping", "-c", "1", "-W", "2", f"{prefix}.1")

        resp = daemon.request(
            "POST", NETS, {"name": network, "type": "macvlan", "config": {"parent": parent}}
        )
        assert resp.status == 201, resp.body
        second = daemon.launch(
            busybox, devices={"eth0": {"type": "nic", "network": network, "name": "eth0"}}
        )
        daemon.cli("exec", second, "--", "ip", "addr", "add", f"{prefix}.3/24", "dev", "eth0")
        daemon.cli("exec", second, "--", "ping", "-c", "1", "-W", "2", f"{prefix}.2")
        assert daemon.request("GET", f"{NETS}/{network}").metadata["used_by"] == [
            f"/1.0/instances/{second}"
        ]
        assert daemon.request("GET", f"{NETS}/{network}/state").metadata["state"] == "up"
        # hot unplug: the macvlan goes from the container
        daemon.cli("config", "device", "remove", first, "eth0")
        assert "eth0" not in daemon.cli("exec", first, "--", "ip", "link").stdout
    finally:
        daemon.force_delete(first)
        if second:
            daemon.force_delete(second)
        daemon.request("DELETE", f"{NETS}/{network}")
    assert link_exists(parent)


def test_physical_nic_goes_back_to_the_host(
    daemon: Daemon, busybox: str, veth_pair: tuple[str, str, str]
) -> None:
    parent, peer, prefix = veth_pair
    sh("ip", "addr", "add", f"{prefix}.1/24", "dev", peer)
    nic = {"type": "nic", "nictype": "physical", "parent": parent, "name": "eth1"}
    inst = daemon.launch(busybox, devices={"eth1": nic})
    try:
        assert not link_exists(parent)  # it is the container's now
        daemon.cli("exec", inst, "--", "ip", "addr", "add", f"{prefix}.2/24", "dev", "eth1")
        daemon.cli("exec", inst, "--", "ping", "-c", "1", "-W", "2", f"{prefix}.1")
        proc = daemon.cli("config", "device", "remove", inst, "eth1", check=False)
        assert proc.returncode == 1 and "stop it first" in proc.stderr
        daemon.force_stop(inst)
        assert link_exists(parent)
    finally:
        daemon.force_delete(inst)


def test_mac_and_ipv4_filtering(daemon: Daemon, busybox: str, network: tuple[str, str]) -> None:
    name, address = network
    prefix, gateway = address.rsplit(".", 1)[0], address.split("/")[0]
    nic = {
        "type": "nic",
        "network": name,
        "name": "eth0",
        "ipv4.address": f"{prefix}.20",
        "security.mac_filtering": "true",
        "security.ipv4_filtering": "true",
    }
    inst = daemon.launch(busybox, devices={"eth0": nic})
    ping = ["exec", inst, "--", "ping", "-c", "1", "-W", "1"]
    try:
        setup = f"ip addr add {prefix}.20/24 dev eth0 && ip addr add {prefix}.21/24 dev eth0"
        daemon.cli("exec", inst, "--", "sh", "-c", setup)
        daemon.cli(*ping, "-I", f"{prefix}.20", gateway)
        assert daemon.cli(*ping, "-I", f"{prefix}.21", gateway, check=False).returncode != 0
        hwaddr = daemon.cli("exec", inst, "--", "cat", "/sys/class/net/eth0/address").stdout
        daemon.cli("exec", inst, "--", "ip", "link", "set", "eth0", "address", "00:16:3e:aa:bb:cc")
        assert daemon.cli(*ping, "-I", f"{prefix}.20", gateway, check=False).returncode != 0
        daemon.cli("exec", inst, "--", "ip", "link", "set", "eth0", "address", hwaddr.strip())
        daemon.cli(*ping, "-I", f"{prefix}.20", gateway)
        host_name = daemon.request("GET", f"/1.0/instances/{inst}").metadata["config"][
            "volatile.eth0.host_name"
        ]
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        assert f"bridge stapes_nic_{host_name}" in tables
        daemon.force_stop(inst)
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        assert f"stapes_nic_{host_name}" not in tables
    finally:
        daemon.force_delete(inst)


def test_nic_types_bad_input(
    daemon: Daemon, busybox: str, network: tuple[str, str], veth_pair: tuple[str, str, str]
) -> None:
    name, _ = network
    parent, _, _ = veth_pair
    cases = [
        ({"nictype": "ipvlan", "parent": parent}, "ipvlan"),
        ({"nictype": "routed"}, "needs ipv4.address or ipv6.address"),
        ({"nictype": "routed", "ipv4.address": "10.1.1.1", "network": name}, "routed"),
        ({"nictype": "routed", "ipv4.address": "fd00::1"}, "not an IPv4 address"),
        ({"nictype": "macvlan"}, "needs parent"),
        ({"nictype": "macvlan", "parent": parent, "mode": "loud"}, "mode"),
        ({"nictype": "macvlan", "parent": parent, "vlan": "10"}, "802.1q"),
        ({"network": name, "security.acls": "x"}, "CONFIG_NF_CONNTRACK_BRIDGE"),
        ({"network": name, "security.ipv4_filtering": "true"}, "needs ipv4.address"),
        ({"network": name, "security.ipv6_filtering": "true"}, "ipv6_filtering"),
    ]
    for config, expected in cases:
        body = {
            "name": "c" + secrets.token_hex(4),
            "source": {"type": "image", "alias": busybox},
            "devices": {"eth0": {"type": "nic", **config}},
        }
        resp = daemon.request("POST", "/1.0/instances", body)
        assert resp.status == 400 and expected in resp.json()["error"], (config, resp.body)
        assert daemon.request("GET", f"/1.0/instances/{body['name']}").status == 404

    # a parent that is missing at start: the start fails, naming it, and nothing is left
    missing = {"type": "nic", "nictype": "macvlan", "parent": "stpnosuch0"}
    inst = daemon.launch(busybox, start=False, devices={"eth0": missing})
    try:
        proc = daemon.cli("start", inst, check=False)
        assert proc.returncode == 1 and "stpnosuch0" in proc.stderr
        assert daemon.request("GET", f"/1.0/instances/{inst}").metadata["status"] == "Stopped"
    finally:
        daemon.force_delete(inst)

    for body, expected in [
        ({"name": "stpovn0", "type": "ovn"}, "OVN networks need"),
        ({"name": "stpmv0", "type": "macvlan"}, "needs parent"),
        ({"name": "stpmv0", "type": "macvlan", "config": {"parent": "stpnosuch0"}}, "stpnosuch0"),
        ({"name": "stpmv0", "type": "sriov"}, "sriov"),
    ]:
        resp = daemon.request("POST", NETS, body)
        assert resp.status == 400 and expected in resp.json()["error"], (body, resp.body)
        assert daemon.request("GET", f"{NETS}/{body['name']}").status == 404


def test_nic_routes_on_p2p_and_bridged_nics(
    daemon: Daemon, busybox: str, network: tuple[str, str]
) -> None:
    """ipv4.routes of a NIC: routed to it through its veth (p2p), or through its bridge to its
    ipv4.address (bridged); the routes go when the instance stops."""
    name, address = network
    static = address.rsplit(".", 1)[0] + ".66"
    p2p_route = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250)}.0/24"
    bridged_route = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250)}.128/25"
    devices = {
        "eth0": {"type": "nic", "nictype": "p2p", "name": "eth0", "ipv4.routes": p2p_route},
        "eth1": {"type": "nic", "network": name, "name": "eth1", "ipv4.address": static,
                 "ipv4.routes": bridged_route},
    }  # fmt: skip
    inst = daemon.launch(busybox, devices=devices)
    try:
        config = daemon.request("GET", f"/1.0/instances/{inst}").metadata["config"]
        host_side = config["volatile.eth0.host_name"]
        routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
        assert f"{p2p_route} dev {host_side}" in routes
        assert f"{bridged_route} via {static} dev {name}" in routes
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{inst}/state", {"action": "stop",
                                                                       "force": True}))  # fmt: skip
        routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
        assert p2p_route not in routes and bridged_route not in routes
    finally:
        daemon.force_delete(inst)
