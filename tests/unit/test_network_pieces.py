"""The pure parts of bridge networks: address checks and choice, dnsmasq's config, forwards and
ACL rules, the nftables table (rendered, and checked by ``nft -c``, never applied: tests never
enable NAT on this host)."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path

import pytest

from stapes.api.errors import BadRequest
from stapes.api.network import AclRule, ForwardPort
from stapes.host import traffic
from stapes.network import acls, addresses, dnsmasq, firewall, forwards


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


def test_dnsmasq_stateful_dhcpv6_and_static_leases(tmp_path: Path) -> None:
    conf = dnsmasq.render(
        dnsmasq.DnsmasqConfig(
            network="n",
            bridge="n",
            ipv4=None,
            ipv6=ipaddress.IPv6Interface("fd42::1/64"),
            dhcp_ranges=[],
            domain="lab",
            directory=Path("/x/n"),
            ipv6_mode="stateful",
            dhcp6_ranges=(("fd42::2", "fd42::ff"),),
        )
    )
    assert "enable-ra\n" in conf and "dhcp-range=fd42::2,fd42::ff,64,1h\n" in conf
    assert "constructor" not in conf
    lease = dnsmasq.StaticLease("00:16:3e:00:00:01", "", "fd42::50", "c1")
    assert dnsmasq.hosts_line(lease) == "00:16:3e:00:00:01,[fd42::50],c1\n"
    both = dnsmasq.StaticLease("00:16:3e:00:00:01", "10.0.0.5", "fd42::50", "c1")
    assert dnsmasq.hosts_line(both) == "00:16:3e:00:00:01,10.0.0.5,[fd42::50],c1\n"
    (tmp_path / "dnsmasq.leases").write_text(
        "1700000000 00:16:3e:00:00:01 10.0.0.5 c1 01:00:16:3e:00:00:01\n"
        "duid 00:01:00:01:2c:00:00:00:aa:bb:cc:dd:ee:ff\n"
        "1700000000 1234 fd42::50 c1 00:04:aa\n"
    )
    assert dnsmasq.leases(tmp_path) == [
        {"hwaddr": "00:16:3e:00:00:01", "address": "10.0.0.5", "hostname": "c1"},
        {"hwaddr": "00:16:3e:00:00:01", "address": "fd42::50", "hostname": "c1"},
    ]


def test_firewall_table_is_replaced_whole() -> None:
    plan = firewall.FirewallPlan("br-1", "br-1", ipaddress.IPv4Network("10.9.8.0/24"))
    rules = firewall.render(plan)
    lines = rules.splitlines()
    assert lines[:3] == [
        "table inet stapes_br_1 {}",
        "delete table inet stapes_br_1",
        "table inet stapes_br_1 {",
    ]
    assert 'ip saddr 10.9.8.0/24 ip daddr != 10.9.8.0/24 oifname != "br-1" masquerade' in rules
    assert "ip6" not in rules


def test_forward_rules() -> None:
    listen = ipaddress.ip_address("198.51.100.7")
    subnet = [ipaddress.ip_network("10.9.8.0/24")]
    ports = [
        ForwardPort(
            protocol="tcp", listen_port="80", target_address="10.9.8.5", target_port="8080"
        ),
        ForwardPort(protocol="udp", listen_port="53,60-61", target_address="10.9.8.6"),
        ForwardPort(
            protocol="tcp", listen_port="9000-9001", target_address="10.9.8.6", target_port="1-2"
        ),
    ]
    built = forwards.build(listen, {"target_address": "10.9.8.9"}, ports, subnet)
    assert [forwards.dnat_rule(r) for r in built.rules] == [
        "ip daddr 198.51.100.7 tcp dport 80 dnat ip to 10.9.8.5:8080",
        "ip daddr 198.51.100.7 udp dport { 53, 60, 61 } dnat ip to 10.9.8.6",
        "ip daddr 198.51.100.7 tcp dport { 9000, 9001 } dnat ip to 10.9.8.6 : tcp dport map "
        "{ 9000 : 1, 9001 : 2 }",
        "ip daddr 198.51.100.7 dnat ip to 10.9.8.9",
    ]
    six = forwards.build(
        ipaddress.ip_address("2001:db8::7"),
        {"target_address": "fd00::9"},
        [],
        [ipaddress.ip_network("fd00::/64")],
    )
    assert forwards.dnat_rule(six.rules[0]) == "ip6 daddr 2001:db8::7 dnat ip6 to [fd00::9]"
    with pytest.raises(BadRequest, match="IPv4"):
        forwards.build(listen, {"target_address": "fd00::9"}, [], subnet)


def test_acl_rules_are_ordered_and_split_by_family() -> None:
    rules = [
        ("a", AclRule(action="allow", protocol="tcp", destination_port="80,443")),
        ("a", AclRule(action="drop", source="10.0.0.0/8,fd00::/8")),
        ("b", AclRule(action="reject", protocol="icmp4", icmp_type="8", state="logged")),
        ("b", AclRule(action="allow", protocol="udp", state="disabled")),
    ]
    assert acls.render_chain(rules, "drop", False) == [
        "ct state established,related accept",
        "ct state invalid drop",
        "ip saddr 10.0.0.0/8 drop",
        "ip6 saddr fd00::/8 drop",
        'meta l4proto icmp icmp type 8 log prefix "stapes-acl b " reject',
        "meta l4proto tcp tcp dport { 80, 443 } accept",
        "drop",
    ]


def test_whole_firewall_table_is_valid_nftables() -> None:
    """nft itself checks the rendered table (-c: nothing is applied)."""
    listen = ipaddress.ip_address("198.51.100.7")
    port = ForwardPort(protocol="tcp", listen_port="80", target_address="10.9.8.5", snat=True)
    built = forwards.build(listen, {}, [port], [ipaddress.ip_network("10.9.8.0/24")])
    chain = acls.render_chain(
        [("a", AclRule(action="allow", source="10.1.1.1-10.1.1.9"))], "reject", True
    )
    plan = firewall.FirewallPlan(
        "stpcheck", "stpcheck", ipaddress.IPv4Network("10.9.8.0/24"),
        ipaddress.IPv6Network("fd00::/64"), built.rules, chain, chain,
    )  # fmt: skip
    proc = subprocess.run(
        ["nft", "-c", "-f", "-"], input=firewall.render(plan), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_nat_to_an_address_in_the_order_asked() -> None:
    plan = firewall.FirewallPlan(
        "stpcheck", "stpcheck", ipaddress.IPv4Network("10.9.8.0/24"),
        ipaddress.IPv6Network("fd00::/64"), nat4_address="192.0.2.9", nat6_address="2001:db8::9",
        nat_order="before",
    )  # fmt: skip
    text = firewall.render(plan)
    assert "snat ip to 192.0.2.9" in text and "snat ip6 to 2001:db8::9" in text
    assert "priority srcnat - 1" in text and "masquerade" not in text.split("postrouting")[1]
    proc = subprocess.run(["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    bad = firewall.FirewallPlan(
        "stpcheck", "stpcheck", ipaddress.IPv4Network("10.9.8.0/24"), nat4_address="1.2.3.4 drop"
    )
    with pytest.raises(BadRequest):
        firewall.render(bad)


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
