"""The host's own network interfaces, as Incus lists them beside its managed networks
(``managed: false``): every interface but veth pairs, typed from sysfs the way Incus types
them. (Blocking: sysfs and netlink reads; callers run these in a thread.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

SYS_NET = Path("/sys/class/net")
IFF_LOOPBACK = 0x8


@dataclass(frozen=True)
class HostInterface:
    name: str
    type: str  # loopback, bridge, vlan, physical, bond or unknown


def _type(name: str, flags: int) -> str:
    """Incus's order of checks: loopback, bridge, vlan, a device behind it, bonding."""
    if flags & IFF_LOOPBACK:
        return "loopback"
    if (SYS_NET / name / "bridge").exists():
        return "bridge"
    if Path("/proc/net/vlan", name).exists():
        return "vlan"
    if (SYS_NET / name / "device").exists():
        return "physical"
    if (SYS_NET / name / "bonding").exists():
        return "bond"
    return "unknown"


def host_interfaces() -> list[HostInterface]:
    """In the kernel's order (by index), as Incus lists them."""
    with IPRoute() as ipr:
        links = sorted(ipr.get_links(), key=lambda link: link["index"])
    found = []
    for link in links:
        name = link.get_attr("IFLA_IFNAME") or ""
        if not name or name.startswith("veth"):  # Incus skips veth pairs
            continue
        found.append(HostInterface(name, _type(name, link["flags"])))
    return found


def find_host_interface(name: str) -> HostInterface | None:
    if not name or "/" in name or name.startswith(".") or name.startswith("veth"):
        return None
    return next((i for i in host_interfaces() if i.name == name), None)
