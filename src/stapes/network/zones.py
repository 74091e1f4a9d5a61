"""Network zones: what a zone, its config and its records may hold, and the zone's content as
DNS records (the SOA, NS records for ``dns.nameservers``, A/AAAA or PTR records generated for
the addresses on the networks that use the zone, then the records added by hand).

Every name and value goes through dnspython's parsers before it is stored, and the content is
built as dnspython record objects, never as zone-file text: a value the DNS wire format cannot
carry is refused here."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from stapes.api.errors import BadRequest
from stapes.config import validate as v

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_TTL = 300
SOA_TTL = 3600
SOA_TIMERS = (120, 60, 86400, 30)
"""refresh, retry, expire and negative-answer TTL of the SOA, as Incus 6.0 serves them."""

ZONE_KEYS = ("dns.zone.forward", "dns.zone.reverse.ipv4", "dns.zone.reverse.ipv6")
"""The network keys that attach zones to a network."""

_REFUSED_TYPES = {dns.rdatatype.SOA}
"""Record types a zone's own records may not use (the SOA frames the zone transfer)."""


def _printable(what: str, value: str) -> None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise BadRequest(f"{what} must not hold control characters (tabs, newlines...)")


def dns_name(what: str, value: str, origin: dns.name.Name | None = None) -> dns.name.Name:
    """``value`` as a DNS name (relative to ``origin`` when it has no final dot)."""
    _printable(what, value)
    try:
        name = dns.name.from_text(value, origin=origin or dns.name.root)
    except dns.exception.DNSException as exc:
        raise BadRequest(f"{what}: {value!r} is not a DNS name ({exc})") from None
    if any(b" " in label or b"/" in label for label in name.labels):
        raise BadRequest(f"{what}: {value!r} is not a DNS name (spaces and slashes are not)")
    return name


_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def _plain_labels(what: str, name: str, wildcard: bool = False) -> None:
    for label in name.split("."):
        if not (_LABEL.fullmatch(label) or (wildcard and label == "*")):
            raise BadRequest(
                f"{what} {name!r}: each label is letters, digits, '-' and '_' (at most 63)"
            )


def check_zone_name(name: str) -> None:
    """A zone is named by its DNS domain. Incus takes any text that does not start with a
    slash; here it must also be a plain DNS domain, as the zone is served under it."""
    if name == "":
        raise BadRequest("Name is required")
    if name.startswith("/"):
        raise BadRequest('Name cannot start with "/"')
    if name.endswith("."):
        raise BadRequest(f"Zone name {name!r}: give the domain without its final dot")
    try:
        v.is_dns_domain(name)
    except ValueError as exc:
        raise BadRequest(f"Zone name: {exc}") from None


def _is_peer_key(value: str) -> None:
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError(
            'a TSIG key is its base64 secret (as tsig-keygen writes it: secret "...")'
        ) from None


def _is_nameservers(value: str) -> None:
    for entry in (e.strip() for e in value.split(",")):
        if entry:
            dns_name("dns.nameservers", entry)


def check_zone_config(config: dict[str, str]) -> None:
    """Incus's keys of a zone: dns.nameservers, network.nat, peers.NAME.address|key, user.*"""
    rules: dict[str, v.Validator] = {
        "dns.nameservers": _is_nameservers,
        "network.nat": v.is_bool,
    }
    for key, value in config.items():
        _printable(f"Config option {key!r}", value)
        if key.startswith("user."):
            continue
        if key.startswith("peers."):
            fields = key.split(".")
            if len(fields) != 3 or not fields[1]:
                raise BadRequest(f'Invalid network zone configuration key "{key}"')
            peer_rules: dict[str, v.Validator] = {"address": v.is_ip, "key": _is_peer_key}
            rule = peer_rules.get(fields[2])
        else:
            rule = rules.get(key)
        if rule is None:
            raise BadRequest(f'Invalid config option "{key}"')
        try:
            rule(value)
        except ValueError as exc:
            raise BadRequest(f'Invalid value for config option "{key}": {exc}') from None


def check_record_name(name: str) -> None:
    if name == "":
        raise BadRequest("Name is required")
    if name.startswith("/"):
        raise BadRequest('Name cannot start with "/"')
    if name != "@":
        if name.endswith("."):
            raise BadRequest(f"Record name {name!r}: give it relative to the zone (no final dot)")
        _plain_labels("Record name", name, wildcard=True)
        dns_name("Record name", name, dns.name.empty)


def check_record_config(config: dict[str, str]) -> None:
    for key, value in config.items():
        _printable(f"Config option {key!r}", value)
        if not key.startswith("user."):
            raise BadRequest(f'Invalid config option "{key}"')


def entry_rdata(entry: dict[str, Any]) -> dns.rdata.Rdata:
    """One entry of a record ({type, value, ttl}) as DNS record data."""
    kind, value = str(entry.get("type", "")), str(entry.get("value", ""))
    _printable("A record entry's value", value)
    try:
        rdtype = dns.rdatatype.from_text(kind)
    except dns.exception.DNSException:
        raise BadRequest(f'Bad zone record entry: unknown record type "{kind}"') from None
    if dns.rdatatype.is_metatype(rdtype) or rdtype in _REFUSED_TYPES or kind != kind.upper():
        raise BadRequest(f'Bad zone record entry: type "{kind}" cannot be a zone record')
    try:
        return dns.rdata.from_text(
            dns.rdataclass.IN, rdtype, value, origin=dns.name.root, relativize=False
        )
    except (dns.exception.DNSException, ValueError) as exc:
        raise BadRequest(f'Bad zone record entry: {kind} "{value}": {exc}') from None


def check_entries(entries: list[dict[str, Any]]) -> None:
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        entry_rdata(entry)
        key = (str(entry["type"]), str(entry["value"]))
        if key in seen:
            raise BadRequest(f'Duplicate record for type "{key[0]}" and value "{key[1]}"')
        seen.add(key)


def zone_names(config: dict[str, str], key: str) -> list[str]:
    return [n.strip() for n in config.get(key, "").split(",") if n.strip()]


def is_reverse(zone: str) -> int:
    """4 or 6 for a reverse zone (under in-addr.arpa or ip6.arpa), else 0."""
    if zone.endswith(".in-addr.arpa") or zone == "in-addr.arpa":
        return 4
    if zone.endswith(".ip6.arpa") or zone == "ip6.arpa":
        return 6
    return 0


def peer_keyring(zones: Iterable[tuple[str, dict[str, str]]]) -> dict[dns.name.Name, bytes]:
    """TSIG secrets by key name: ``<zone>_<peer>.`` for each peers.<peer>.key (as Incus)."""
    ring: dict[dns.name.Name, bytes] = {}
    for zone, config in zones:
        for key, value in config.items():
            fields = key.split(".")
            if len(fields) == 3 and fields[0] == "peers" and fields[2] == "key":
                try:
                    ring[dns.name.from_text(f"{zone}_{fields[1]}.")] = base64.b64decode(value)
                except (binascii.Error, dns.exception.DNSException):
                    continue
    return ring


def peer_allowed(
    zone: str, config: dict[str, str], address: str, key_name: dns.name.Name | None
) -> bool:
    """Whether a peer of the zone asks: its address matches (when set) and its request is
    signed with the peer's TSIG key (when set). ``key_name``: of a verified signature."""
    peers: dict[str, dict[str, str]] = {}
    for key, value in config.items():
        fields = key.split(".")
        if len(fields) == 3 and fields[0] == "peers":
            peers.setdefault(fields[1], {})[fields[2]] = value
    for peer, settings in peers.items():
        if settings.get("address") and settings["address"] != address:
            continue
        if settings.get("key") and key_name != dns.name.from_text(f"{zone}_{peer}."):
            continue
        return True
    return False


@dataclass(frozen=True)
class Host:
    """An address a zone names: ``name`` is relative to a forward zone, or the full name a
    reverse zone's PTR record points at."""

    name: str
    address: IPAddress


def _rdata(kind: str, text: str) -> dns.rdata.Rdata:
    """Record data from its text (made here of names and numbers dnspython made already)."""
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(kind), text)


def _rrset(name: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata) -> dns.rrset.RRset:
    return dns.rrset.from_rdata(name, ttl, rdata)


def soa(zone: str, config: dict[str, str], serial: int) -> list[dns.rrset.RRset]:
    """The zone's SOA record and its NS records."""
    origin = dns.name.from_text(zone)
    servers = [dns.name.from_text(n) for n in zone_names(config, "dns.nameservers")]
    contact = servers[0] if servers else dns.name.from_text(f"hostmaster.{zone}")
    timers = " ".join(str(t) for t in (serial, *SOA_TIMERS))
    head = [_rrset(origin, SOA_TTL, _rdata("SOA", f"{origin} {contact} {timers}"))]
    head += [_rrset(origin, DEFAULT_TTL, _rdata("NS", server.to_text())) for server in servers]
    return head


def _generated(zone: str, hosts: Iterable[Host]) -> list[dns.rrset.RRset]:
    origin = dns.name.from_text(zone)
    reverse = is_reverse(zone)
    found: list[dns.rrset.RRset] = []
    for host in hosts:
        if not all(_LABEL.fullmatch(label) for label in host.name.rstrip(".").split(".")):
            continue  # a DHCP client's hostname that is no plain DNS name: no record
        try:
            if reverse:
                if host.address.version != reverse:
                    continue
                owner = dns.reversename.from_address(str(host.address))
                if not owner.is_subdomain(origin):
                    continue
                rdata = _rdata("PTR", dns.name.from_text(host.name).to_text())
            else:
                owner = dns.name.from_text(host.name, origin=origin)
                kind = "A" if host.address.version == 4 else "AAAA"
                rdata = dns.rdata.from_text("IN", kind, str(host.address))
        except dns.exception.DNSException:
            continue  # too long for a DNS name
        found.append(_rrset(owner, DEFAULT_TTL, rdata))
    return found


def content(
    zone: str,
    config: dict[str, str],
    hosts: Iterable[Host],
    records: Iterable[tuple[str, list[dict[str, Any]]]],
    serial: int,
) -> list[dns.rrset.RRset]:
    """The whole zone, as a zone transfer sends it: SOA, NS, generated records, the records
    added by hand (``(name, entries)``), and the SOA again."""
    origin = dns.name.from_text(zone)
    head = soa(zone, config, serial)
    body = _generated(zone, hosts)
    for name, entries in records:
        owner = origin if name == "@" else dns.name.from_text(name, origin=origin)
        for entry in entries:
            ttl = int(entry.get("ttl") or DEFAULT_TTL)
            body.append(_rrset(owner, ttl, entry_rdata(entry)))
    return [*head, *body, head[0]]
