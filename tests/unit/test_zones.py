"""Zone content and peer checks (network/zones.py), without a daemon."""

from __future__ import annotations

import ipaddress

import dns.name
import pytest

from stapes.api.errors import BadRequest
from stapes.network import zones


def texts(rrsets: list) -> list[str]:  # type: ignore[type-arg]
    return [r.to_text() for r in rrsets]


def test_forward_content_in_incus_order() -> None:
    hosts = [
        zones.Host("lan.gw", ipaddress.ip_address("10.0.0.1")),
        zones.Host("web", ipaddress.ip_address("fd00::5")),
        zones.Host("bad name\n", ipaddress.ip_address("10.0.0.9")),  # a DHCP client's
    ]
    records = [("@", [{"type": "MX", "value": "10 mail", "ttl": 0}])]
    got = texts(zones.content("lab.example", {}, hosts, records, 7))
    soa = "lab.example. 3600 IN SOA lab.example. hostmaster.lab.example. 7 120 60 86400 30"
    assert got == [
        soa,
        "lan.gw.lab.example. 300 IN A 10.0.0.1",
        "web.lab.example. 300 IN AAAA fd00::5",
        "lab.example. 300 IN MX 10 mail.",
        soa,
    ]


def test_reverse_content_keeps_to_its_zone() -> None:
    hosts = [
        zones.Host("c1.lab.example.", ipaddress.ip_address("10.1.2.3")),
        zones.Host("c2.lab.example.", ipaddress.ip_address("10.9.9.9")),  # another /24
        zones.Host("c3.lab.example.", ipaddress.ip_address("fd00::1")),  # another family
    ]
    got = texts(zones.content("2.1.10.in-addr.arpa", {}, hosts, [], 1))
    assert got[1:-1] == ["3.2.1.10.in-addr.arpa. 300 IN PTR c1.lab.example."]


def test_peers() -> None:
    config = {"peers.a.address": "192.0.2.1", "peers.b.key": "c2VjcmV0"}
    key_b = dns.name.from_text("lab.example_b.")
    assert zones.peer_allowed("lab.example", config, "192.0.2.1", None)
    assert not zones.peer_allowed("lab.example", config, "192.0.2.2", None)
    assert zones.peer_allowed("lab.example", config, "192.0.2.2", key_b)
    other = dns.name.from_text("other.example_b.")
    assert not zones.peer_allowed("lab.example", config, "192.0.2.2", other)
    assert not zones.peer_allowed("lab.example", {}, "192.0.2.1", None)
    assert list(zones.peer_keyring([("lab.example", config)])) == [key_b]


@pytest.mark.parametrize(
    "entry",
    [
        {"type": "A", "value": "1.2.3.4 5.6.7.8"},
        {"type": "A", "value": "1.2.3.4\nevil"},
        {"type": "a", "value": "1.2.3.4"},
        {"type": "TSIG", "value": "x"},
    ],
)
def test_entries_the_wire_cannot_carry_are_refused(entry: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        zones.entry_rdata(entry)
