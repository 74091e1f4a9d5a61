"""One dnsmasq per managed bridge: DHCPv4 (and RA/DHCPv6), DNS for the instances under the
network's domain. The config is rendered by a pure function; the process is started with a
pid file and stopped by that pid only."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from stapes.host.run import run


@dataclass(frozen=True)
class DnsmasqConfig:
    network: str
    bridge: str
    ipv4: ipaddress.IPv4Interface | None
    ipv6: ipaddress.IPv6Interface | None
    dhcp_ranges: list[tuple[str, str]]
    domain: str
    directory: Path


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
            lines.append(f"dhcp-range={first},{last},1h")
        lines.append(f"dhcp-option-force=option:router,{c.ipv4.ip}")
        lines.append(f"dhcp-option-force=option:dns-server,{c.ipv4.ip}")
    if c.ipv6 is not None:
        lines.append(f"listen-address={c.ipv6.ip}")
        lines.append("enable-ra")
        lines.append(f"dhcp-range=::,constructor:{c.bridge},ra-stateless,ra-names")
    return "\n".join(lines) + "\n"


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


def write_hosts(directory: Path, hosts: list[tuple[str, str, str]]) -> None:
    """The static leases ((MAC, address, name)...), then a SIGHUP so dnsmasq reads them."""
    if not directory.is_dir():
        return
    text = "".join(f"{mac},{address},{name}\n" for mac, address, name in hosts)
    path = directory / "dnsmasq.hosts"
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.rename(path)
    pid = pid_of(directory)
    if pid is not None:
        os.kill(pid, signal.SIGHUP)


def leases(directory: Path) -> list[dict[str, str]]:
    """dnsmasq's lease file: expiry, MAC, address, hostname, client id per line."""
    found = []
    try:
        text = (directory / "dnsmasq.leases").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            found.append({"hwaddr": fields[1], "address": fields[2], "hostname": fields[3]})
    return found
