"""Network forwards and ACLs on a managed bridge: a forward's listen address reaches a
container's port from the host; an ACL lets one port through and rejects or drops another,
while DHCP and DNS to the bridge stay open; bad input is refused with nothing written. The
listen address used here is put on the host's loopback for the test, so no packet can leave
the host even without the forward."""

from __future__ import annotations

import secrets
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.helpers import Daemon, unique

pytestmark = [pytest.mark.root]

NETS = "/1.0/networks"
ACLS = "/1.0/network-acls"


def table(network: str) -> str:
    return subprocess.run(
        ["nft", "list", "table", "inet", f"stapes_{network}"], capture_output=True, text=True
    ).stdout


def fetch(url: str, timeout: float = 3) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode())


@pytest.fixture
def web(daemon: Daemon, busybox: str, network: tuple[str, str]) -> Iterator[tuple[str, str]]:
    """A container on the network at .10 serving 'hello' on ports 8080 and 8081: (name, ip)."""
    name, address = network
    ip = address.rsplit(".", 1)[0] + ".10"
    inst = daemon.launch(busybox, devices={"eth0": {"type": "nic", "network": name}})
    try:
        daemon.cli("exec", inst, "--", "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        serve = "mkdir -p /www && echo hello > /www/index.html"
        serve += " && httpd -p 8080 -h /www && httpd -p 8081 -h /www"
        daemon.cli("exec", inst, "--", "sh", "-c", serve)
        yield inst, ip
    finally:
        daemon.force_delete(inst)


def test_forward_reaches_a_container_port(
    daemon: Daemon, network: tuple[str, str], web: tuple[str, str], listen_address: str
) -> None:
    name, _ = network
    _, ip = web
    forwards = f"{NETS}/{name}/forwards"
    port = {"protocol": "tcp", "listen_port": "80,90", "target_address": ip, "target_port": "8080"}
    body = {"listen_address": listen_address, "ports": [port], "description": "web"}
    resp = daemon.request("POST", forwards, body)
    assert resp.status == 201, resp.body
    assert fetch(f"http://{listen_address}:80/") == "hello\n"
    assert fetch(f"http://{listen_address}:90/") == "hello\n"
    listed = daemon.request("GET", forwards).metadata
    assert listed == [f"{forwards}/{listen_address}"]
    got = daemon.request("GET", f"{forwards}/{listen_address}").metadata
    assert got["description"] == "web" and got["ports"][0]["target_address"] == ip

    # one port to several: 8000-8001 -> 8080-8081; the PATCH keeps what it does not name
    ports = [{**port, "listen_port": "8000-8001", "target_port": "8080-8081"}]
    resp = daemon.request("PATCH", f"{forwards}/{listen_address}", {"ports": ports})
    assert resp.status == 200, resp.body
    assert fetch(f"http://{listen_address}:8001/") == "hello\n"
    assert "8000 : 8080, 8001 : 8081" in table(name)
    assert daemon.request("GET", f"{forwards}/{listen_address}").metadata["description"] == "web"

    # the CLI: a default target takes every other port
    daemon.cli("network", "forward", "delete", name, listen_address)
    assert listen_address not in table(name)
    daemon.cli("network", "forward", "create", name, listen_address, f"target_address={ip}")
    assert fetch(f"http://{listen_address}:8081/") == "hello\n"
    out = daemon.cli("network", "forward", "list", name, "--format", "csv").stdout
    assert out.strip() == f"{listen_address},,{ip},0"

    # the network's deletion takes its forwards and table (the container first)
    daemon.force_delete(web[0])
    assert daemon.request("DELETE", f"{NETS}/{name}").status == 200
    assert table(name) == ""


def test_acl_lets_one_port_through_and_blocks_others(
    daemon: Daemon, network: tuple[str, str], web: tuple[str, str]
) -> None:
    name, address = network
    inst, ip = web
    gateway = address.split("/")[0]
    rule = {"action": "allow", "protocol": "tcp", "destination_port": "8080"}
    acl = "web" + secrets.token_hex(3)
    resp = daemon.request("POST", ACLS, {"name": acl, "ingress": [rule]})
    assert resp.status == 201, resp.body
    resp = daemon.request("PATCH", f"{NETS}/{name}", {"config": {"security.acls": acl}})
    assert resp.status == 200, resp.body
    try:
        assert fetch(f"http://{ip}:8080/") == "hello\n"
        with pytest.raises(urllib.error.URLError, match="refused"):
            fetch(f"http://{ip}:8081/")  # rejected: refused at once
        # egress defaults to reject as well: no ping to the host, DHCP still answered
        ping = ["ping", "-c", "1", "-W", "1", gateway]
        assert daemon.cli("exec", inst, "--", *ping, check=False).returncode != 0
        dhcp = ["udhcpc", "-i", "eth0", "-n", "-q", "-t", "3", "-s", "/bin/true"]
        daemon.cli("exec", inst, "--", *dhcp)
        daemon.cli("network", "acl", "rule", "add", acl, "egress", "action=allow", "protocol=icmp4")
        daemon.cli("exec", inst, "--", *ping)

        # default allow, and a drop rule: 8081 now times out instead of being refused
        daemon.cli("network", "set", name, "security.acls.default.ingress.action=allow")
        daemon.cli(
            "network", "acl", "rule", "add", acl, "ingress", "action=drop", "protocol=tcp",
            "destination_port=8081",
        )  # fmt: skip
        with pytest.raises((TimeoutError, urllib.error.URLError)) as caught:
            fetch(f"http://{ip}:8081/", timeout=1)
        assert "refused" not in str(caught.value)
        assert fetch(f"http://{ip}:8080/") == "hello\n"

        used = daemon.request("GET", f"{ACLS}/{acl}").metadata["used_by"]
        assert used == [f"{NETS}/{name}"]
        resp = daemon.request("DELETE", f"{ACLS}/{acl}")
        assert resp.status == 400 and "in use" in resp.json()["error"]
    finally:
        daemon.request("PATCH", f"{NETS}/{name}", {"config": {"security.acls": ""}})
        daemon.request("DELETE", f"{ACLS}/{acl}")
    assert "acl_ingress" not in table(name)
    assert fetch(f"http://{ip}:8081/") == "hello\n"


def test_forward_and_acl_bad_input(daemon: Daemon, network: tuple[str, str]) -> None:
    name, address = network
    inside = address.rsplit(".", 1)[0] + ".20"
    forwards = f"{NETS}/{name}/forwards"
    port = {"protocol": "tcp", "listen_port": "80", "target_address": inside}
    cases = [
        ({"listen_address": "nope"}, "not an IP address"),
        ({"listen_address": "127.0.0.9"}, "loopback"),
        ({"listen_address": inside}, "managed network's subnet"),
        ({"listen_address": "198.51.100.9", "config": {"bogus": "1"}}, "bogus"),
        ({"listen_address": "198.51.100.9", "config": {"target_address": "10.9.9.9"}}, "subnet"),
        ({"listen_address": "198.51.100.9", "ports": [{**port, "protocol": "icmp"}]}, "tcp or udp"),
        ({"listen_address": "198.51.100.9", "ports": [{**port, "listen_port": "0"}]}, "1-65535"),
        ({"listen_address": "198.51.100.9", "ports": [port, port]}, "used twice"),
        (
            {"listen_address": "198.51.100.9", "ports": [{**port, "target_port": "1,2"}]},
            "as many as",
        ),
    ]
    for body, expected in cases:
        resp = daemon.request("POST", forwards, body)
        assert resp.status == 400 and expected in resp.json()["error"], (body, resp.body)
    assert daemon.request("GET", forwards).metadata == []
    assert daemon.request("GET", f"{NETS}/nosuch/forwards").status == 404
    assert daemon.request("GET", f"{forwards}/198.51.100.9").status == 404
    ok = {"listen_address": "198.51.100.9", "ports": [port]}
    assert daemon.request("POST", forwards, ok).status == 201
    assert daemon.request("POST", forwards, ok).status == 409

    rule = {"action": "allow"}
    acl_cases = [
        ({"name": "9lives"}, "Invalid network ACL name"),
        ({"name": "a", "ingress": [{"action": "permit"}]}, "action"),
        ({"name": "a", "ingress": [{**rule, "state": "on"}]}, "state"),
        ({"name": "a", "ingress": [{**rule, "protocol": "sctp"}]}, "protocol"),
        ({"name": "a", "ingress": [{**rule, "source": "@internal"}]}, "OVN"),
        ({"name": "a", "egress": [{**rule, "destination_port": "80"}]}, "needs protocol"),
        ({"name": "a", "egress": [{**rule, "protocol": "icmp4", "source": "fd00::1"}]}, "IPv6"),
        ({"name": "a", "config": {"x": "1"}}, "user.*"),
    ]
    for body, expected in acl_cases:
        resp = daemon.request("POST", ACLS, body)
        assert resp.status == 400 and expected in resp.json()["error"], (body, resp.body)
    assert daemon.request("GET", ACLS).metadata == []
    resp = daemon.request("PATCH", f"{NETS}/{name}", {"config": {"security.acls": "ghost"}})
    assert resp.status == 400 and "ghost" in resp.json()["error"]
    resp = daemon.request(
        "PATCH", f"{NETS}/{name}", {"config": {"security.acls.default.ingress.action": "maybe"}}
    )
    assert resp.status == 400
    assert "security.acls" not in daemon.request("GET", f"{NETS}/{name}").metadata["config"]


def test_acls_belong_to_their_project(daemon: Daemon) -> None:
    """As Incus: a project with features.networks has ACLs of its own, the same names free in
    each; a project without sees the default project's."""
    own, shared = unique("na"), unique("ns")
    for name, networks in ((own, "true"), (shared, "false")):
        config = {"features.networks": networks}
        assert (
            daemon.request("POST", "/1.0/projects", {"name": name, "config": config}).status == 201
        )
    acl = unique("acl")
    try:
        for where in ("", f"?project={own}"):
            assert daemon.request("POST", f"{ACLS}{where}", {"name": acl}).status == 201
        mine = daemon.request("GET", f"{ACLS}?recursion=1&project={own}").metadata
        assert [(a["name"], a["project"]) for a in mine] == [(acl, own)]
        seen = {a["name"]: a["project"] for a in daemon.request(
            "GET", f"{ACLS}?recursion=1&project={shared}").metadata}  # fmt: skip
        assert seen.get(acl) == "default"
        both = daemon.request("GET", f"{ACLS}?recursion=1&all-projects=true").metadata
        assert {(a["name"], a["project"]) for a in both} >= {(acl, own), (acl, "default")}
        assert daemon.request("DELETE", f"{ACLS}/{acl}?project={own}").status == 200
        assert daemon.request("GET", f"{ACLS}/{acl}").status == 200  # the default one stays
    finally:
        daemon.request("DELETE", f"{ACLS}/{acl}")
        daemon.request("DELETE", f"{ACLS}/{acl}?project={own}")
        for name in (own, shared):
            daemon.request("DELETE", f"/1.0/projects/{name}")
