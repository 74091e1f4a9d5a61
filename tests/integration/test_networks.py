"""Managed bridge networks: the bridge, its address and dnsmasq come up; a container's NIC on the
network gets a DHCP lease that /leases reports; a network in use is not deleted; deleting one
removes the bridge, dnsmasq and its files; bad input leaves nothing. Every bridge here has a
unique name, a private subnet and NAT off, and is removed at the end."""

from __future__ import annotations

import json
import secrets
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import Daemon, unique

pytestmark = [pytest.mark.root]

NETS = "/1.0/networks"


def addresses_of(ifname: str) -> list[str]:
    out = subprocess.run(
        ["ip", "-j", "addr", "show", "dev", ifname], capture_output=True, text=True
    ).stdout
    return [
        f"{a['local']}/{a['prefixlen']}"
        for link in json.loads(out or "[]")
        for a in link["addr_info"]
    ]


def resolve(server: str, name: str) -> list[str]:
    """The A records ``server`` answers for ``name`` (a bare DNS query over UDP)."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(query, (server, 53))
        answer = sock.recv(1024)
    count, offset = struct.unpack(">H", answer[6:8])[0], 12 + len(labels) + 5
    found = []
    for _ in range(count):
        offset += 2  # a compressed pointer to the question's name
        kind, _, _, length = struct.unpack(">HHIH", answer[offset : offset + 10])
        offset += 10
        if kind == 1:
            found.append(socket.inet_ntoa(answer[offset : offset + length]))
        offset += length
    return found


def dnsmasq_of(root: Path, name: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", "dnsmasq"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(root / "networks" / name) in line]


def test_bridge_with_dhcp_for_a_container(
    daemon: Daemon, busybox: str, network: tuple[str, str]
) -> None:
    name, address = network
    assert address in addresses_of(name)
    assert dnsmasq_of(daemon.root, name)
    net = daemon.request("GET", f"{NETS}/{name}").metadata
    assert net["type"] == "bridge" and net["managed"] and net["status"] == "Created"
    assert net["config"]["ipv4.address"] == address
    state = daemon.request("GET", f"{NETS}/{name}/state").metadata
    assert state["state"] == "up"
    assert any(f"{a['address']}/{a['netmask']}" == address for a in state["addresses"])

    inst = daemon.launch(
        busybox, devices={"eth0": {"type": "nic", "network": name, "name": "eth0"}}
    )
    try:
        dhcp = ["udhcpc", "-i", "eth0", "-n", "-q", "-s", "/bin/true", "-x", f"hostname:{inst}"]
        daemon.cli("exec", inst, "--", *dhcp)
        listed = daemon.request("GET", f"{NETS}/{name}/leases").metadata
        gateway = address.split("/")[0]  # Incus lists the network's own address first
        assert listed[0] == {"address": gateway, "hostname": f"{name}.gw", "hwaddr": "",
                             "location": "", "type": "gateway"}  # fmt: skip
        leases = listed[1:]
        assert [(lease["hostname"], lease["type"]) for lease in leases] == [(inst, "dynamic")]
        prefix = address.rsplit(".", 1)[0] + "."
        assert leases[0]["address"].startswith(prefix)
        # its state: eth0 (udhcpc ran without a script: only its link-local address), the
        # host's end of its veth, the DHCP traffic counted
        found = daemon.request("GET", f"/1.0/instances/{inst}").metadata
        eth0 = daemon.request("GET", f"/1.0/instances/{inst}/state").metadata["network"]["eth0"]
        assert [a["scope"] for a in eth0["addresses"] if a["family"] == "inet6"] == ["link"]
        assert eth0["host_name"] == found["config"]["volatile.eth0.host_name"] != ""
        assert eth0["hwaddr"] == found["config"]["volatile.eth0.hwaddr"]
        assert eth0["counters"]["packets_sent"] > 0 and eth0["state"] == "up"
        # the instance's name resolves under the network's domain, from the host too
        assert resolve(address.split("/")[0], f"{inst}.incus") == [leases[0]["address"]]
        assert daemon.request("GET", f"{NETS}/{name}").metadata["used_by"] == [
            f"/1.0/instances/{inst}"
        ]
        resp = daemon.request("DELETE", f"{NETS}/{name}")
        assert resp.status == 400 and "in use" in resp.json()["error"]
    finally:
        daemon.force_delete(inst)

    assert daemon.request("DELETE", f"{NETS}/{name}").status == 200
    assert not Path(f"/sys/class/net/{name}").exists()
    assert not dnsmasq_of(daemon.root, name)
    assert not (daemon.root / "networks" / name).exists()
    assert daemon.request("GET", f"{NETS}/{name}").status == 404


def test_two_containers_ping_each_other_by_name(
    daemon: Daemon, busybox: str, network: tuple[str, str]
) -> None:
    """Both get a DHCP lease under their own names; each resolves and pings the other through
    the bridge's dnsmasq."""
    name, address = network
    gateway = address.split("/")[0]
    nic = {"eth0": {"type": "nic", "network": name, "name": "eth0"}}
    pair = [daemon.launch(busybox, devices=nic), daemon.launch(busybox, devices=nic)]
    try:
        for inst in pair:
            dhcp = ["udhcpc", "-i", "eth0", "-n", "-q", "-s", "/bin/true", "-x", f"hostname:{inst}"]
            daemon.cli("exec", inst, "--", *dhcp)
        leases = {
            x["hostname"]: x["address"]
            for x in daemon.request("GET", f"{NETS}/{name}/leases").metadata
            if x["type"] != "gateway"
        }
        assert sorted(leases) == sorted(pair)
        for inst in pair:
            setup = f"ip addr add {leases[inst]}/24 dev eth0"
            setup += f" && echo nameserver {gateway} > /etc/resolv.conf"
            daemon.cli("exec", inst, "--", "sh", "-c", setup)
        for me, other in (pair, pair[::-1]):
            out = daemon.cli("exec", me, "--", "ping", "-c", "1", "-W", "2", f"{other}.incus")
            assert f"({leases[other]})" in out.stdout
    finally:
        for inst in pair:
            daemon.force_delete(inst)


def test_network_bad_input(daemon: Daemon, network: tuple[str, str]) -> None:
    name, address = network
    fresh = "stpt" + secrets.token_hex(4)
    cases = [
        ({"name": fresh, "config": {"ipv4.nat": "maybe"}}, "ipv4.nat"),
        ({"name": fresh, "config": {"ipv4.address": "10.1.2.3"}}, "ipv4.address"),
        ({"name": fresh, "config": {"bogus.key": "1"}}, "bogus.key"),
        ({"name": "x" * 16, "config": {}}, "Invalid network name"),
        ({"name": fresh, "type": "macvlan"}, "macvlan"),
        ({"name": fresh, "type": "nosuch"}, "nosuch"),
    ]
    for body, expected in cases:
        resp = daemon.request("POST", NETS, body)
        assert resp.status == 400 and expected in resp.json()["error"], (body, resp.body)
        assert not Path(f"/sys/class/net/{body['name']}").exists()
    resp = daemon.request("POST", NETS, {"name": name, "config": {"ipv6.address": "none"}})
    assert resp.status == 409
    assert daemon.request("GET", f"{NETS}/{fresh}").status == 404
    bad_nic = {"eth0": {"type": "nic", "network": fresh}}
    resp = daemon.request(
        "POST",
        "/1.0/instances",
        {"name": unique("c"), "source": {"type": "none"}, "devices": bad_nic},
    )
    assert resp.status == 400 and fresh in resp.json()["error"]
    prefix = address.rsplit(".", 1)[0]
    for nic, expected in [
        ({"ipv4.address": f"{prefix}.1"}, "not a free host address"),
        ({"ipv4.address": "10.1.2.3"}, "not a free host address"),
        ({"ipv6.address": "fd00::5"}, "no IPv6 subnet"),
        ({"ipv6.address": "10.1.2.3"}, "not an IPv6 address"),
    ]:
        devices = {"eth0": {"type": "nic", "network": name, **nic}}
        body = {"name": unique("c"), "source": {"type": "none"}, "devices": devices}
        resp = daemon.request("POST", "/1.0/instances", body)
        assert resp.status == 400 and expected in resp.json()["error"], (nic, resp.body)


def test_a_network_named_after_a_host_interface_leaves_it_alone(daemon: Daemon) -> None:
    """A create refused because an interface of another kind has the name answers why, and
    the interface stays: the clean-up after the failed start deleted it (pylxd's suite,
    whose random names can be eth0, got an internal error when the kernel refused that)."""
    name = "stpd" + secrets.token_hex(4)
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"],
                   check=True)  # fmt: skip
    try:
        body = {"name": name, "config": {"ipv4.nat": "false", "ipv6.nat": "false"}}
        resp = daemon.request("POST", NETS, body)
        assert resp.status == 400 and "exists and is not a bridge" in resp.json()["error"]
        assert Path(f"/sys/class/net/{name}").exists()
        assert daemon.request("GET", f"{NETS}/{name}").metadata["managed"] is False
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)


def test_network_update_moves_the_bridge_address(daemon: Daemon, network: tuple[str, str]) -> None:
    name, address = network
    moved = address.replace(".1/24", ".254/24")
    resp = daemon.request("PATCH", f"{NETS}/{name}", {"config": {"ipv4.address": moved}})
    assert resp.status == 200, resp.body
    assert moved in addresses_of(name) and address not in addresses_of(name)
    conf = (daemon.root / "networks" / name / "dnsmasq.conf").read_text()
    assert f"listen-address={moved.split('/')[0]}" in conf


def test_network_cli(daemon: Daemon, busybox: str) -> None:
    name, renamed = "stpt" + secrets.token_hex(4), "stpt" + secrets.token_hex(4)
    address = f"10.215.{secrets.randbelow(250) + 1}.1/24"
    inst = daemon.launch(busybox, start=False)
    try:
        daemon.cli(
            "network", "create", name, f"ipv4.address={address}", "ipv4.nat=false",
            "ipv6.address=none",
        )  # fmt: skip
        listing = daemon.cli("network", "list", "--format", "csv").stdout
        assert f"{name},bridge,YES,{address},none" in listing
        daemon.cli("network", "set", name, "dns.domain=lab")
        assert daemon.cli("network", "get", name, "dns.domain").stdout.strip() == "lab"
        assert address.split("/")[0] in daemon.cli("network", "info", name).stdout
        other = unique("n")
        daemon.cli("init", busybox, other, "--network", name, "--storage", "default")
        devices = daemon.request("GET", f"/1.0/instances/{other}").metadata["devices"]
        assert devices == {
            "eth0": {"type": "nic", "network": name, "name": "eth0"},
            "root": {"type": "disk", "path": "/", "pool": "default"},
        }
        daemon.force_delete(other)
        daemon.cli("network", "attach", name, inst, "eth0")
        devices = daemon.request("GET", f"/1.0/instances/{inst}").metadata["devices"]
        assert devices["eth0"] == {"type": "nic", "network": name, "name": "eth0"}
        proc = daemon.cli("network", "rename", name, renamed, check=False)
        assert proc.returncode == 1 and "in use" in proc.stderr
        daemon.cli("network", "detach", name, inst)
        assert daemon.request("GET", f"/1.0/instances/{inst}").metadata["devices"] == {}
        daemon.cli("network", "rename", name, renamed)
        assert Path(f"/sys/class/net/{renamed}").exists()
        assert not Path(f"/sys/class/net/{name}").exists()
        listed = daemon.cli("network", "list-leases", renamed, "--format", "csv").stdout
        assert listed.splitlines() == [f"{renamed}.gw,,{address.split('/')[0]},GATEWAY"]
        daemon.cli("network", "delete", renamed)
        assert not Path(f"/sys/class/net/{renamed}").exists()
    finally:
        daemon.force_delete(inst)
        for net in (name, renamed):
            daemon.request("DELETE", f"{NETS}/{net}")
            subprocess.run(["ip", "link", "del", net], capture_output=True)


def test_networks_come_back_after_a_host_restart(daemon: Daemon, network: tuple[str, str]) -> None:
    name, address = network
    daemon.stop()
    # what a reboot does behind the daemon's back: no bridge, no dnsmasq
    for line in dnsmasq_of(daemon.root, name):
        subprocess.run(["kill", line.split()[0]], check=True)
    subprocess.run(["ip", "link", "del", name], check=True)
    daemon.start()
    assert address in addresses_of(name)
    assert dnsmasq_of(daemon.root, name)
    assert daemon.request("GET", f"{NETS}/{name}").metadata["status"] == "Created"


def test_a_network_that_cannot_come_up_is_left_down_with_a_warning(
    daemon: Daemon, network: tuple[str, str]
) -> None:
    """Its name taken by an interface that is not a bridge: the daemon serves on, the network
    is Errored, `network info` and a warning say why; once fixed, an update brings it up and
    resolves the warning."""
    name, address = network
    daemon.stop()
    for line in dnsmasq_of(daemon.root, name):
        subprocess.run(["kill", line.split()[0]], check=True)
    subprocess.run(["ip", "link", "del", name], check=True)
    subprocess.run(
        ["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"], check=True
    )
    try:
        daemon.start()
        assert daemon.request("GET", "/1.0").status == 200
        assert daemon.request("GET", f"{NETS}/{name}").metadata["status"] == "Errored"
        assert address not in addresses_of(name)  # the veth was not touched
        warnings = daemon.request("GET", "/1.0/warnings?recursion=1").metadata
        (warning,) = [w for w in warnings if w["entity_url"] == f"{NETS}/{name}"]
        assert warning["status"] == "new" and "is not a bridge" in warning["last_message"]
        info = daemon.cli("network", "info", name).stdout
        assert "Errored" in info and "is not a bridge" in info
        assert warning["uuid"][:8] in daemon.cli("warning", "list").stdout
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    resp = daemon.request("PATCH", f"{NETS}/{name}", {"description": "back"})
    assert resp.status == 200, resp.body
    assert address in addresses_of(name)
    assert daemon.request("GET", f"{NETS}/{name}").metadata["status"] == "Created"
    uuid = warning["uuid"]
    assert daemon.request("GET", f"/1.0/warnings/{uuid}").metadata["status"] == "resolved"
    daemon.cli("warning", "ack", uuid[:8])
    assert daemon.request("GET", f"/1.0/warnings/{uuid}").metadata["status"] == "acknowledged"
    resp = daemon.request("PUT", f"/1.0/warnings/{uuid}", {"status": "gone"})
    assert resp.status == 400 and "acknowledged" in resp.json()["error"]
    daemon.cli("warning", "delete", uuid[:8])
    assert daemon.request("GET", f"/1.0/warnings/{uuid}").status == 404


def test_nic_limits_cap_throughput(daemon: Daemon, busybox: str, network: tuple[str, str]) -> None:
    """limits.egress shapes what leaves the container (through an ifb device), limits.ingress
    what enters it: 4 MiB through a 16 Mbit/s limit take about 2 s either way."""
    name, address = network
    subnet = address.rsplit(".", 1)[0]
    nic = {"type": "nic", "network": name, "name": "eth0"}
    nic |= {"limits.egress": "16Mbit", "limits.ingress": "16Mbit"}
    inst = daemon.launch(busybox, devices={"eth0": nic})
    host_name = daemon.request("GET", f"/1.0/instances/{inst}").metadata["config"][
        "volatile.eth0.host_name"
    ]
    served = Path(f"/var/tmp/{inst}-srv")
    served.mkdir()
    server = None
    try:
        setup = f"ip addr add {subnet}.50/24 dev eth0; mkdir -p /srv; "
        setup += "dd if=/dev/zero of=/srv/big bs=1M count=4 2>/dev/null; httpd -p 8080 -h /srv"
        daemon.cli("exec", inst, "--", "sh", "-c", setup)
        start = time.perf_counter()
        url = f"http://{subnet}.50:8080/big"
        subprocess.run(["busybox", "wget", "-q", "-O", "/dev/null", url], check=True, timeout=60)
        out_rate = 4 * 8 / (time.perf_counter() - start)  # Mbit/s out of the container
        assert out_rate < 16 * 1.3, f"egress not capped: {out_rate:.1f} Mbit/s"

        (served / "big").write_bytes(bytes(4 << 20))
        host = address.split("/")[0]
        server = subprocess.Popen(
            ["busybox", "httpd", "-f", "-p", f"{host}:8081", "-h", str(served)]
        )
        time.sleep(0.3)
        fetch = f"wget -q -O /dev/null http://{host}:8081/big"
        start = time.perf_counter()
        daemon.cli("exec", inst, "--", "sh", "-c", fetch)
        in_rate = 4 * 8 / (time.perf_counter() - start)
        assert in_rate < 16 * 1.3, f"ingress not capped: {in_rate:.1f} Mbit/s"
        assert Path(f"/sys/class/net/ifb{host_name[-12:]}").exists()
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        subprocess.run(["rm", "-rf", str(served)], check=False)
        daemon.force_delete(inst)
    assert not Path(f"/sys/class/net/ifb{host_name[-12:]}").exists()


def test_static_ipv4_address_on_a_nic(
    daemon: Daemon, busybox: str, network: tuple[str, str]
) -> None:
    name, address = network
    subnet = address.rsplit(".", 1)[0]
    nic = {"type": "nic", "network": name, "name": "eth0", "ipv4.address": f"{subnet}.77"}
    inst = daemon.launch(busybox, devices={"eth0": nic})
    try:
        dhcp = ["udhcpc", "-i", "eth0", "-n", "-q", "-s", "/bin/true", "-x", f"hostname:{inst}"]
        daemon.cli("exec", inst, "--", *dhcp)
        leases = daemon.request("GET", f"{NETS}/{name}/leases").metadata
        assert [x["address"] for x in leases if x["hostname"] == inst] == [f"{subnet}.77"]
    finally:
        daemon.force_delete(inst)
    for bad, expected in ((f"{subnet}.1", "free host address"), ("10.1.2.3", "free host address")):
        nic["ipv4.address"] = bad
        body = {"name": unique("c"), "source": {"type": "none"}, "devices": {"eth0": nic}}
        resp = daemon.request("POST", "/1.0/instances", body)
        assert resp.status == 400 and expected in resp.json()["error"], resp.body


def test_incus_bridge_keys(daemon: Daemon, network: tuple[str, str]) -> None:
    """dnsmasq options (lease times, gateway, classless routes, search domains, raw lines),
    an external interface as a port, a VXLAN tunnel; and what this host cannot do refused."""
    name, address = network
    dummy, peer = "stpx" + secrets.token_hex(4), "stpy" + secrets.token_hex(4)
    # (a veth end: this kernel has no dummy interfaces)
    subprocess.run(["ip", "link", "add", dummy, "type", "veth", "peer", "name", peer], check=True)
    tunnel = f"{name}-t1"
    try:
        keys = {
            "ipv4.dhcp.expiry": "30m",
            "ipv4.dhcp.gateway": address.split("/")[0],
            "ipv4.dhcp.routes": "10.99.0.0/16," + address.split("/")[0],
            "dns.search": "lab.example,example",
            "raw.dnsmasq": "log-dhcp\nlog-queries",
            "bridge.external_interfaces": dummy,
            "tunnel.t1.protocol": "vxlan",
            "tunnel.t1.remote": "127.0.0.1",
            "tunnel.t1.id": "42",
            "ipv4.routing": "true",
        }
        resp = daemon.request("PATCH", f"{NETS}/{name}", {"config": keys})
        assert resp.status == 200, resp.body
        conf = (daemon.root / "networks" / name / "dnsmasq.conf").read_text().splitlines()
        first = address.split("/")[0].rsplit(".", 1)[0]
        assert f"dhcp-range={first}.2,{first}.254,30m" in conf
        assert f"dhcp-option-force=option:classless-static-route,10.99.0.0/16,{first}.1" in conf
        assert "dhcp-option-force=option:domain-search,lab.example,example" in conf
        assert conf[-2:] == ["log-dhcp", "log-queries"]
        assert Path(f"/sys/class/net/{dummy}/master").resolve().name == name
        assert Path(f"/sys/class/net/{tunnel}/master").resolve().name == name
        kind = subprocess.run(["ip", "-d", "link", "show", tunnel], capture_output=True, text=True)
        assert "vxlan id 42" in kind.stdout

        # dropped keys: the interface is let go, the tunnel removed
        resp = daemon.request("PUT", f"{NETS}/{name}", {"config": {
            "ipv4.address": address, "ipv4.nat": "false", "ipv6.address": "none"}})  # fmt: skip
        assert resp.status == 200, resp.body
        assert not Path(f"/sys/class/net/{dummy}/master").exists()
        assert not Path(f"/sys/class/net/{tunnel}").exists()
        for key, value, reason in [
            ("bridge.driver", "openvswitch", "Open vSwitch"),
            ("bridge.mode", "fan", "FAN"),
            ("maas.subnet.ipv4", "x", "MAAS"),
            ("tunnel.t1.protocol", "ipip", "gre"),
            ("ipv4.dhcp.routes", "10.0.0.0/8", "pairs"),
        ]:
            bad = daemon.request("PATCH", f"{NETS}/{name}", {"config": {key: value}})
            assert bad.status == 400 and reason in bad.json()["error"], (key, bad.body)
    finally:
        subprocess.run(["ip", "link", "del", dummy], capture_output=True)
        subprocess.run(["ip", "link", "del", tunnel], capture_output=True)
