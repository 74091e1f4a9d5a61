"""nic: a veth pair (nictype p2p); bridged, macvlan and managed networks come with networking."""

from __future__ import annotations

import re
import secrets
from typing import ClassVar

from stapes.config import validate as v
from stapes.instance.devices.device import Device, Nic, RunConfig

_IFNAME = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


def is_ifname(value: str) -> None:
    if not _IFNAME.match(value) or value in (".", ".."):
        raise ValueError(f"{value!r} is not an interface name (1-15 of A-Z a-z 0-9 _ . : -)")


def is_mac(value: str) -> None:
    if not _MAC.match(value):
        raise ValueError(f"{value!r} is not a MAC address such as 00:16:3e:12:34:56")


def random_mac() -> str:
    """In the 00:16:3e range, as Incus does (Xensource's OUI)."""
    tail = secrets.token_bytes(3)
    return "00:16:3e:" + ":".join(f"{b:02x}" for b in tail)


class NicP2P(Device):
    KEYS: ClassVar = {
        "nictype": v.one_of("p2p", "bridged", "macvlan", "physical", "routed", "ipvlan", "sriov"),
        "network": v.any_value,
        "name": is_ifname,
        "host_name": is_ifname,
        "hwaddr": is_mac,
        "mtu": v.is_uint,
        "parent": v.any_value,
    }

    def validate(self) -> None:
        super().validate()
        if self.config.get("network"):
            raise self.fail(
                "managed networks are not supported by this stapesd yet: use nictype p2p"
            )
        nictype = self.config.get("nictype", "")
        if nictype != "p2p":
            raise self.fail(
                f"nictype {nictype!r} is not supported by this stapesd yet: use nictype p2p "
                "(a veth pair)"
                if nictype
                else "nictype is required (p2p: a veth pair)"
            )

    def attached(self) -> RunConfig:
        host_name = self.ctx.config.get(f"volatile.{self.name}.host_name", "")
        if not host_name:
            return RunConfig()
        return RunConfig(nics=[Nic(self.config.get("name") or self.name, host_name, "")])

    def start(self) -> RunConfig:
        prefix = f"volatile.{self.name}."
        hwaddr = self.config.get("hwaddr") or self.ctx.config.get(prefix + "hwaddr") or random_mac()
        host_name = self.config.get("host_name") or "veth" + secrets.token_hex(4)
        nic = Nic(
            name=self.config.get("name") or self.name,
            host_name=host_name,
            hwaddr=hwaddr,
            mtu=int(self.config.get("mtu", "0") or 0),
        )
        volatile = {prefix + "hwaddr": hwaddr, prefix + "host_name": host_name}
        return RunConfig(nics=[nic], volatile=volatile)


class NoneDevice(Device):
    """``type: none``: hides a device of the same name inherited from a profile."""

    TYPES = frozenset({"container", "virtual-machine"})

    def start(self) -> RunConfig:
        return RunConfig()
