"""The pure parts of bridge networks: address checks and choice, dnsmasq's config, the nftables
table (rendered only: tests never enable NAT on this host)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from stapes.host import traffic
from stapes.network import addresses, dnsmasq, firewall


def test_address_values() -> None:
    check = addresses.is_address(4)
    for good in ("auto", "none", "10.0.3.1/24"):
        check(good)
    for bad in ("10.0.3.1", "10.0.3.0/24", "fd00::1/64", "10.0.3.1/31", "x"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            check(bad)
    taken = [ipaddress.IPv4Network("10.0.0.0/9")]
    chosen = addresses.choose_ipv4(taken)
    assert chosen.network.prefixlen == 24 and not chosen.network.overlaps(taken[0])
    assert str(chosen.ip).endswith(".1")
    assert addresses.choose_ipv6().network.prefixlen == 64
    assert str(addresses.choose_ipv6()).startswith("fd")
    iface = ipaddress.IPv4Interface("10.9.8.1/24")
    assert addresses.dhcp_range(iface) == ("10.9.8.2", "10.9.8.254")


def test_dnsmasq_config() -> None:
    conf = dnsmasq.render(
        dnsmasq.DnsmasqConfig(
            network="n",
            bridge="n",
            ipv4=ipaddress.IPv4Interface("10.9.8.1/24"),
            ipv6=None,
            dhcp_ranges=[("10.9.8.2", "10.9.8.254")],
            domain="lab",
            directory=Path("/x/n"),
        )
    )
    assert "interface=n\n" in conf and "bind-interfaces\n" in conf
    assert "dhcp-range=10.9.8.2,10.9.8.254,1h\n" in conf
    assert "domain=lab\n" in conf and "local=/lab/\n" in conf
    assert "dhcp-leasefile=/x/n/dnsmasq.leases\n" in conf
    assert "enable-ra" not in conf


def test_firewall_table_is_replaced_whole() -> None:
    rules = firewall.render("br-1", "br-1", ipaddress.IPv4Network("10.9.8.0/24"), None)
    lines = rules.splitlines()
    assert lines[:3] == [
        "table inet stapes_br_1 {}",
        "delete table inet stapes_br_1",
        "table inet stapes_br_1 {",
    ]
    assert 'ip saddr 10.9.8.0/24 ip daddr != 10.9.8.0/24 oifname != "br-1" masquerade' in rules
    assert "ip6" not in rules


def test_rates_and_tc_commands() -> None:
    assert traffic.parse_rate("100Mbit") == 100_000_000
    assert traffic.parse_rate("1.5Gbit") == 1_500_000_000
    assert traffic.parse_rate("64000") == 64000
    for bad in ("fast", "10MB", "-1Mbit", "0"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            traffic.parse_rate(bad)
    assert traffic.ifb_name("veth1234abcd") == "ifbveth1234abcd"
    assert traffic.tbf_argv("v", 8_000_000)[-6:] == [
        "rate", "8000000bit", "burst", "32768", "latency", "50ms",
    ]  # fmt: skip
    qdisc, redirect = traffic.redirect_argv("v", "ifbv")
    assert qdisc[-3:] == ["handle", "ffff:", "ingress"]
    assert redirect[-6:] == ["action", "mirred", "egress", "redirect", "dev", "ifbv"]
