"""Network zones (network_dns, network_dns_records): zones and records over the API, the
built-in DNS server of core.dns_address serving them by zone transfer to their peers only
(address and TSIG key), records generated from a bridge's addresses, bad input refused with
nothing written, and zones of projects (features.networks.zones, restricted.networks.zones).
The DNS server listens on loopback; a dnspython client asks it, as a secondary server would."""

from __future__ import annotations

import base64
import secrets
import socket
from collections.abc import Iterator
from typing import Any

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.zone
import pytest

from tests.helpers import Daemon, free_port, unique

pytestmark = [pytest.mark.root]

ZONES = "/1.0/network-zones"
SECRET = base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def dns_port(daemon: Daemon) -> Iterator[int]:
    port = free_port()
    body = {"config": {"core.dns_address": f"127.0.0.1:{port}"}}
    assert daemon.request("PATCH", "/1.0", body).status == 200
    try:
        yield port
    finally:
        daemon.request("PATCH", "/1.0", {"config": {"core.dns_address": ""}})


def make_zone(daemon: Daemon, name: str, config: dict[str, str] | None = None) -> None:
    resp = daemon.request("POST", ZONES, {"name": name, "config": config or {}})
    assert resp.status == 201, resp.body
    assert resp.headers["Location"] == f"{ZONES}/{name}"


def set_zone(daemon: Daemon, name: str, config: dict[str, str]) -> None:
    resp = daemon.request("PATCH", f"{ZONES}/{name}", {"config": config})
    assert resp.status == 200, resp.body


def transfer(port: int, zone: str, **kw: Any) -> list[str]:
    """The zone as a secondary server gets it (AXFR over TCP): its records as text."""
    lines: list[str] = []
    for message in dns.query.xfr("127.0.0.1", zone, port=port, lifetime=10, relativize=False, **kw):
        lines += [rr.to_text() for rr in message.answer]
    return "\n".join(lines).splitlines()


def ask(port: int, zone: str, kind: str, tcp: bool = False, **tsig: Any) -> dns.message.Message:
    query = dns.message.make_query(zone, kind)
    if tsig:
        query.use_tsig(**tsig)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, "127.0.0.1", port=port, timeout=5)


def refused(port: int, zone: str, **tsig: Any) -> bool:
    """Whether the server says the zone does not exist (NXDOMAIN, unsigned as Incus answers
    a request whose key it does not trust: read without checking the signature)."""
    query = dns.message.make_query(zone, "SOA")
    if tsig:
        query.use_tsig(**tsig)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(query.to_wire(), ("127.0.0.1", port))
        reply = dns.message.from_wire(sock.recv(65535), keyring=False)
    return reply.id == query.id and reply.rcode() == dns.rcode.NXDOMAIN


def error(resp: Any) -> str:
    return str(resp.json()["error"])


def test_a_zone_is_served_to_its_peers_with_the_networks_addresses(
    daemon: Daemon, busybox: str, network: tuple[str, str], dns_port: int
) -> None:
    net, address = network
    prefix = address.rsplit(".", 1)[0]  # 10.214.X
    forward = unique("z") + ".example"
    reverse = ".".join(reversed(prefix.split("."))) + ".in-addr.arpa"
    make_zone(daemon, forward, {"peers.me.address": "127.0.0.1"})
    make_zone(daemon, reverse, {"peers.me.address": "127.0.0.1"})
    name = unique("c")
    nic = {"type": "nic", "network": net, "ipv4.address": f"{prefix}.50"}
    body = {"name": name, "source": {"type": "image", "alias": busybox}, "devices": {"eth0": nic}}
    daemon.ok(daemon.request("POST", "/1.0/instances", body))
    keys = {"dns.zone.forward": forward, "dns.zone.reverse.ipv4": reverse}
    try:
        assert daemon.request("PATCH", f"/1.0/networks/{net}", {"config": keys}).status == 200
        records = f"{ZONES}/{forward}/records"
        www = {"name": "www", "entries": [{"type": "A", "value": "192.0.2.7", "ttl": 60}]}
        assert daemon.request("POST", records, www).status == 201
        daemon.cli("network", "zone", "record", "entry", "add", forward, "www", "TXT", '"hi there"')
        apex = {"name": "@", "entries": [{"type": "MX", "value": "10 mail"}]}
        assert daemon.request("POST", records, apex).status == 201

        got = transfer(dns_port, forward)
        soa = got[0]
        assert soa.startswith(f"{forward}. 3600 IN SOA {forward}. hostmaster.{forward}. ")
        assert soa.endswith(" 120 60 86400 30") and got[-1] == soa
        assert got[1:-1] == [
            f"{net}.gw.{forward}. 300 IN A {prefix}.1",
            f"{name}.{forward}. 300 IN A {prefix}.50",
            f"www.{forward}. 60 IN A 192.0.2.7",
            f'www.{forward}. 300 IN TXT "hi there"',
            f"{forward}. 300 IN MX 10 mail.",
        ]
        assert transfer(dns_port, reverse)[1:-1] == [
            f"1.{reverse}. 300 IN PTR {net}.gw.{forward}.",
            f"50.{reverse}. 300 IN PTR {name}.{forward}.",
        ]
        # name servers: NS records, and the first one is the SOA's contact
        set_zone(daemon, forward, {"dns.nameservers": "ns1.example.org,ns2.example.org"})
        # a secondary loads the transfer as a whole zone (SOA and NS at its apex)
        xfr = dns.query.xfr("127.0.0.1", forward, port=dns_port, lifetime=10)
        secondary = dns.zone.from_xfr(xfr, check_origin=True)
        found = secondary.find_rdataset(name, "A")
        assert [r.to_text() for r in found] == [f"{prefix}.50"]
        answer = ask(dns_port, forward, "SOA").answer
        assert [rr.rdtype for rr in answer] == [dns.rdatatype.SOA, dns.rdatatype.NS]
        assert str(answer[0][0].rname) == "ns1.example.org."
        assert sorted(str(r.target) for r in answer[1]) == ["ns1.example.org.", "ns2.example.org."]
        # only zone transfers and SOA queries are served; unknown zones do not exist
        assert ask(dns_port, forward, "A").rcode() == dns.rcode.NOTIMP
        assert ask(dns_port, "nope." + forward, "SOA", tcp=True).rcode() == dns.rcode.NXDOMAIN
        # network.nat=false leaves out NAT-ed families only: this network has no NAT
        set_zone(daemon, forward, {"network.nat": "false"})
        assert f"{name}.{forward}. 300 IN A {prefix}.50" in transfer(dns_port, forward)
    finally:
        unset = dict.fromkeys(keys, "")
        daemon.request("PATCH", f"/1.0/networks/{net}", {"config": unset})
        daemon.force_delete(name)
    # the zones are free again, and go
    assert daemon.request("GET", f"{ZONES}/{forward}").metadata["used_by"] == []
    for zone in (forward, reverse):
        assert daemon.request("DELETE", f"{ZONES}/{zone}").status == 200


def test_peers_are_known_by_address_and_tsig_key(daemon: Daemon, dns_port: int) -> None:
    zone = unique("z") + ".example"
    make_zone(daemon, zone)
    try:
        # no peer: to everyone the zone does not exist
        assert ask(dns_port, zone, "SOA").rcode() == dns.rcode.NXDOMAIN
        set_zone(daemon, zone, {"peers.other.address": "192.0.2.1"})
        assert ask(dns_port, zone, "SOA").rcode() == dns.rcode.NXDOMAIN
        set_zone(daemon, zone, {"peers.other.address": "", "peers.sec.key": SECRET})
        key = f"{zone}_sec."
        signed = ask(dns_port, zone, "SOA", keyring=dns.tsigkeyring.from_text({key: SECRET}))
        assert signed.rcode() == dns.rcode.NOERROR and signed.had_tsig
        wrong = dns.tsigkeyring.from_text({key: base64.b64encode(b"x" * 32).decode()})
        assert refused(dns_port, zone, keyring=wrong)
        other = dns.tsigkeyring.from_text({f"other_{zone}.": SECRET})
        assert refused(dns_port, zone, keyring=other)
        assert refused(dns_port, zone)  # unsigned
        # a big zone comes in several TCP messages, each signed and verified by the client
        entries = [{"type": "TXT", "value": f'"entry {i}"'} for i in range(250)]
        body = {"name": "many", "entries": entries}
        assert daemon.request("POST", f"{ZONES}/{zone}/records", body).status == 201
        ring = dns.tsigkeyring.from_text({key: SECRET})
        got = transfer(dns_port, zone, keyring=ring, keyname=key)
        assert len(got) == 252 and got[0] == got[-1]
    finally:
        assert daemon.request("DELETE", f"{ZONES}/{zone}").status == 200


BAD_ZONES: list[tuple[dict[str, Any], int, str]] = [
    ({"name": ""}, 400, "Name is required"),
    ({"name": "/x"}, 400, 'Name cannot start with "/"'),
    ({"name": "a b.example"}, 400, "is not a DNS domain"),
    ({"name": "a.example\nevil"}, 400, "is not a DNS domain"),
    ({"name": "z.example", "config": {"foo": "bar"}}, 400, 'Invalid config option "foo"'),
    ({"name": "z.example", "config": {"peers.x": "1"}}, 400, "configuration key"),
    ({"name": "z.example", "config": {"peers.x.address": "nope"}}, 400, "Not an IP address"),
    ({"name": "z.example", "config": {"peers.x.key": "not base64!"}}, 400, "base64"),
    ({"name": "z.example", "config": {"network.nat": "maybe"}}, 400, "boolean"),
    ({"name": "z.example", "config": {"dns.nameservers": "a\nb"}}, 400, "control characters"),
]

BAD_ENTRIES: list[tuple[dict[str, Any], str]] = [
    ({"type": "A", "value": "not an ip"}, "Bad zone record entry"),
    ({"type": "BOGUS", "value": "x"}, "unknown record type"),
    ({"type": "SOA", "value": "a. b. 1 2 3 4 5"}, "cannot be a zone record"),
    ({"type": "AXFR", "value": ""}, "cannot be a zone record"),
    ({"type": "A", "value": "192.0.2.1\n192.0.2.2"}, "control characters"),
    ({"type": "TXT", "value": '"a"\r\nevil 300 IN A 1.2.3.4'}, "control characters"),
    ({"type": "A", "value": "192.0.2.1", "ttl": -1}, "ttl"),
]


def test_bad_input_is_refused_and_writes_nothing(daemon: Daemon, network: tuple[str, str]) -> None:
    before = daemon.request("GET", ZONES).metadata
    for body, status, message in BAD_ZONES:
        resp = daemon.request("POST", ZONES, body)
        assert (resp.status, message in error(resp)) == (status, True), (body, resp.body)
    assert daemon.request("GET", ZONES).metadata == before
    zone = unique("z") + ".example"
    make_zone(daemon, zone)
    try:
        assert daemon.request("POST", ZONES, {"name": zone}).status == 409
        records = f"{ZONES}/{zone}/records"
        for entry, message in BAD_ENTRIES:
            resp = daemon.request("POST", records, {"name": "r", "entries": [entry]})
            assert resp.status == 400 and message in error(resp), (entry, resp.body)
        twice = [{"type": "A", "value": "192.0.2.1"}] * 2
        resp = daemon.request("POST", records, {"name": "r", "entries": twice})
        assert 'Duplicate record for type "A" and value "192.0.2.1"' in error(resp)
        for name in ("", "a b", "x.", "a\nb", "/r"):
            assert daemon.request("POST", records, {"name": name}).status == 400, name
        resp = daemon.request("POST", records, {"name": "r", "config": {"k": "v"}})
        assert error(resp) == 'Invalid config option "k"'
        assert daemon.request("GET", records).metadata == []
        assert daemon.request("GET", f"{records}/r").status == 404
        assert error(daemon.request("GET", f"{ZONES}/nope.example")) == "Network zone not found"

        # networks name zones that exist, one forward zone per project, one reverse zone
        net = f"/1.0/networks/{network[0]}"
        for config, message in [
            ({"dns.zone.forward": "nope.example"}, 'network zone "nope.example" not found'),
            ({"dns.zone.forward": f"{zone},{zone}"}, "multiple zones from the same project"),
            ({"dns.zone.reverse.ipv4": zone}, "is not an IPv4 reverse zone"),
        ]:
            resp = daemon.request("PATCH", net, {"config": config})
            assert resp.status == 400 and message in error(resp), (config, resp.body)
        assert daemon.request("PATCH", net, {"config": {"dns.zone.forward": zone}}).status == 200
        resp = daemon.request("DELETE", f"{ZONES}/{zone}")
        assert (resp.status, error(resp)) == (400, "Cannot delete a zone that is in use")
        daemon.request("PATCH", net, {"config": {"dns.zone.forward": ""}})
        # an address the DNS server cannot take leaves the config as it was
        taken = "192.0.2.254:53"  # not an address of this host
        resp = daemon.request("PATCH", "/1.0", {"config": {"core.dns_address": taken}})
        assert resp.status == 400 and "cannot serve DNS" in error(resp), resp.body
        config = daemon.request("GET", "/1.0").metadata["config"]
        assert "core.dns_address" not in config
    finally:
        daemon.request("DELETE", f"{ZONES}/{zone}")


def test_zones_of_projects(daemon: Daemon) -> None:
    own, shared = unique("pz"), unique("ps")
    for project, zones_on in ((own, "true"), (shared, "false")):
        config = {"features.networks.zones": zones_on}
        body = {"name": project, "config": config}
        assert daemon.request("POST", "/1.0/projects", body).status == 201
    mine, common = unique("m") + ".example", unique("d") + ".example"
    try:
        resp = daemon.request("POST", f"{ZONES}?project={own}", {"name": mine})
        assert resp.status == 201 and resp.headers["Location"] == f"{ZONES}/{mine}?project={own}"
        # a project without features.networks.zones makes and sees the default project's
        assert daemon.request("POST", f"{ZONES}?project={shared}", {"name": common}).status == 201
        assert f"{ZONES}/{common}" in daemon.request("GET", ZONES).metadata
        assert daemon.request("GET", f"{ZONES}?project={own}").metadata == [f"{ZONES}/{mine}"]
        assert daemon.request("GET", f"{ZONES}/{mine}").status == 404
        # names are unique across projects
        assert daemon.request("POST", ZONES, {"name": mine}).status == 409
        every = daemon.request("GET", f"{ZONES}?all-projects=true&recursion=1").metadata
        assert {(z["name"], z["project"]) for z in every} >= {(mine, own), (common, "default")}
        # a restricted project uses only the zones (and what is under them) it is given
        limits = {"restricted": "true", "restricted.networks.zones": "lab.example"}
        assert daemon.request("PATCH", f"/1.0/projects/{own}", {"config": limits}).status == 200
        assert daemon.request("GET", f"{ZONES}?project={own}").metadata == []
        assert daemon.request("GET", f"{ZONES}/{mine}?project={own}").status == 403
        resp = daemon.request("POST", f"{ZONES}?project={own}", {"name": "lab.example.evil"})
        assert resp.status == 403 and "restricted.networks.zones" in error(resp)
        ok = daemon.request("POST", f"{ZONES}?project={own}", {"name": "a.lab.example"})
        assert ok.status == 201, ok.body
        assert daemon.request("DELETE", f"{ZONES}/a.lab.example?project={own}").status == 200
        daemon.request("PATCH", f"/1.0/projects/{own}", {"config": {"restricted": "false"}})
    finally:
        daemon.request("DELETE", f"{ZONES}/{mine}?project={own}")
        daemon.request("DELETE", f"{ZONES}/{common}")
        for project in (own, shared):
            daemon.request("DELETE", f"/1.0/projects/{project}")
