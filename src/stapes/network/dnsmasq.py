"""One dnsmasq per managed bridge: DHCPv4 (and RA/DHCPv6), DNS for the instances under the
network's domain. The config is rendered by a pure function; the process is started with a
pid file and stopped by that pid only."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from stapes.api.errors import BadRequest
from stapes.config.text import control_char
from stapes.host.run import run


class StaticLease(NamedTuple):
    """A NIC's fixed addresses ("" for none), handed out to its MAC under its instance's name."""

    hwaddr: str
    ipv4: str
    ipv6: str
    name: str


@dataclass(frozen=True)
class DnsmasqConfig:
    network: str
    bridge: str
    ipv4: ipaddress.IPv4Interface | None
    ipv6: ipaddress.IPv6Interface | None
    dhcp_ranges: list[tuple[str, str]]
    domain: str
    directory: Path
    ipv6_mode: str = "stateless"
    """stateless (SLAAC, DHCPv6 for other information), stateful (DHCPv6 addresses from
    ``dhcp6_ranges``) or ra-only."""
    dhcp6_ranges: tuple[tuple[str, str], ...] = ()
    expiry4: str = "1h"
    expiry6: str = ""
    """Lease times (ipv4.dhcp.expiry, ipv6.dhcp.expiry; 1h), as dnsmasq writes them."""
    gateway4: str = ""
    """The router DHCPv4 announces (ipv4.dhcp.gateway; the bridge's address when empty)."""
    routes4: tuple[tuple[str, str], ...] = ()
    """Classless static routes DHCPv4 hands out (ipv4.dhcp.routes): (subnet, gateway)."""
    search: tuple[str, ...] = ()
    """DNS search domains (dns.search)."""
    raw: tuple[str, ...] = ()
    """raw.dnsmasq: options appended as they are (each still one line)."""


def _checked(lines: list[str]) -> str:
    """The one writer of dnsmasq's config: a line per option, none carrying a control
    character (a newline would add an option of its own)."""
    for line in lines:
        problem = control_char(line)
        if problem is not None:
            raise BadRequest(f"Refusing to write dnsmasq option {line!r}: it contains {problem}")
    return "\n".join(lines) + "\n"


def render(c: DnsmasqConfig) -> str:
    lines = [
        "strict-order",
        "bind-interfaces",
        "except-interface=lo",
        "no-ping",
        "no-resolv",  # names outside the domain are not forwarded anywhere
        "no-hosts",
        f"interface={c.bridge}",
        "dhcp-no-override",
        "dhcp-authoritative",
        f"dhcp-leasefile={c.directory / 'dnsmasq.leases'}",
        f"dhcp-hostsfile={c.directory / 'dnsmasq.hosts'}",
        f"pid-file={c.directory / 'dnsmasq.pid'}",
        f"domain={c.domain}",
        f"local=/{c.domain}/",
        "expand-hosts",
    ]
    if c.ipv4 is not None:
        lines.append(f"listen-address={c.ipv4.ip}")
        for first, last in c.dhcp_ranges:
            lines.append(f"dhcp-range={first},{last},{c.expiry4}")
        lines.append(f"dhcp-option-force=option:router,{c.gateway4 or c.ipv4.ip}")
        lines.append(f"dhcp-option-force=option:dns-server,{c.ipv4.ip}")
        if c.routes4:
            pairs = ",".join(f"{net},{gw}" for net, gw in c.routes4)
            lines.append(f"dhcp-option-force=option:classless-static-route,{pairs}")
    if c.ipv6 is not None:
        lines.append(f"listen-address={c.ipv6.ip}")
        lines.append("enable-ra")
        if c.ipv6_mode == "stateful":
            prefix = c.ipv6.network.prefixlen
            expiry = c.expiry6 or "1h"
            lines += [f"dhcp-range={a},{b},{prefix},{expiry}" for a, b in c.dhcp6_ranges]
        else:
            mode = "ra-only" if c.ipv6_mode == "ra-only" else "ra-stateless,ra-names"
            expiry = f",{c.expiry6}" if c.expiry6 else ""
            lines.append(f"dhcp-range=::,constructor:{c.bridge},{mode}{expiry}")
    if c.search:
        lines.append("dhcp-option-force=option:domain-search," + ",".join(c.search))
    lines += list(c.raw)
    return _checked(lines)


def pid_of(directory: Path) -> int | None:
    """The running dnsmasq of a network, from its pid file (None when it is not running)."""
    try:
        pid = int((directory / "dnsmasq.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"dnsmasq" in cmdline and str(directory).encode() in cmdline else None


async def start(c: DnsmasqConfig) -> None:
    c.directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    (c.directory / "dnsmasq.hosts").touch()
    conf = c.directory / "dnsmasq.conf"
    conf.write_text(render(c))
    await stop(c.directory)
    await run(["dnsmasq", f"--conf-file={conf}", "--user=nobody", "--group=nogroup"])


async def stop(directory: Path) -> None:
    pid = pid_of(directory)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        if pid_of(directory) is None:
            return
        await asyncio.sleep(0.02)


_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def hosts_line(lease: StaticLease) -> str:
    """A line of dnsmasq's hosts file: ``MAC,IPv4,[IPv6],NAME``. Each field is checked for
    what it is (the file is comma separated, one host a line)."""
    try:
        if not _MAC.fullmatch(lease.hwaddr) or not _HOSTNAME.fullmatch(lease.name):
            raise ValueError
        ipv4 = str(ipaddress.IPv4Address(lease.ipv4)) if lease.ipv4 else ""
        ipv6 = "[" + str(ipaddress.IPv6Address(lease.ipv6)) + "]" if lease.ipv6 else ""
    except ValueError:
        raise BadRequest(f"Refusing to write a static DHCP lease for {lease!r}") from None
    return ",".join(f for f in (lease.hwaddr, ipv4, ipv6, lease.name) if f) + "\n"


def write_hosts(directory: Path, hosts: list[StaticLease]) -> None:
    """The static leases, then a SIGHUP so dnsmasq reads them."""
    if not directory.is_dir():
        return
    text = "".join(hosts_line(lease) for lease in hosts)
    path = directory / "dnsmasq.hosts"
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.rename(path)
    pid = pid_of(directory)
    if pid is not None:
        os.kill(pid, signal.SIGHUP)


def leases(directory: Path) -> list[dict[str, str]]:
    """dnsmasq's lease file: IPv4 lines (expiry, MAC, address, hostname, client id), then after
    a ``duid`` line IPv6 ones (expiry, IAID, address, hostname, client DUID); an IPv6 lease
    gets the MAC of its host's IPv4 lease when there is one."""
    found = []
    try:
        text = (directory / "dnsmasq.leases").read_text()
    except OSError:
        return []
    ipv6 = False
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "duid":
            ipv6 = True
        elif len(fields) >= 4:
            hwaddr = "" if ipv6 else fields[1]
            found.append({"hwaddr": hwaddr, "address": fields[2], "hostname": fields[3]})
    macs = {x["hostname"]: x["hwaddr"] for x in found if x["hwaddr"] and x["hostname"] != "*"}
    for lease in found:
        lease["hwaddr"] = lease["hwaddr"] or macs.get(lease["hostname"], "")
    return found
