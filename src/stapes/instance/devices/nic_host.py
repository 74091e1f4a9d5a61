"""NICs made from a host interface: nictype macvlan (a macvlan of ``parent``, in ``mode``) and
physical (``parent`` itself moved into the instance at start, and back to the host by liblxc
when it stops). With
``network=NAME``, a managed macvlan or physical network gives the parent."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from stapes.api.errors import BadRequest
from stapes.config import validate as v
from stapes.instance.devices.device import Device, Nic, RunConfig
from stapes.instance.devices.nic import COMMON_KEYS, random_mac


class _HostInterfaceNic(Device):
    NICTYPE: ClassVar[str]

    def validate(self) -> None:
        super().validate()
        if self.config.get("vlan"):
            raise self.fail("vlan needs 802.1q support, which this kernel lacks")
        network = self.config.get("network", "")
        nictype = self.config.get("nictype", "")
        if network:
            if nictype not in ("", self.NICTYPE):
                raise self.fail(f"nictype {nictype!r} cannot be combined with network")
            if self.config.get("parent"):
                raise self.fail("parent comes from the network: do not set it with network")
            if self.ctx.network is None:
                raise self.fail("managed networks are not available here")
            try:
                self.ctx.network.host_interface(network)
            except BadRequest as exc:
                raise self.fail(exc.message) from None
        elif not self.config.get("parent"):
            raise self.fail(f"nictype {self.NICTYPE} needs parent (the host interface)")

    def parent(self) -> str:
        network = self.config.get("network", "")
        if network and self.ctx.network is not None:
            return self.ctx.network.host_interface(network)
        return self.config["parent"]

    def check_host(self) -> None:
        parent = self.parent()
        if not Path(f"/sys/class/net/{parent}").exists():
            raise self.fail(
                f"parent {parent!r} does not exist on this host"
                + (" (or another instance holds it)" if self.NICTYPE == "physical" else "")
            )


class NicMacvlan(_HostInterfaceNic):
    NICTYPE = "macvlan"
    KEYS: ClassVar = {
        **COMMON_KEYS,
        "mode": v.one_of("bridge", "vepa", "private", "passthru"),
        "vlan": v.is_uint,
        "gvrp": v.is_bool,
    }

    def start(self) -> RunConfig:
        key = f"volatile.{self.name}.hwaddr"
        hwaddr = self.config.get("hwaddr") or self.ctx.config.get(key) or random_mac()
        nic = Nic(
            name=self.interface_name,
            host_name="",
            hwaddr=hwaddr,
            mtu=int(self.config.get("mtu", "0") or 0),
            link=self.parent(),
            kind="macvlan",
            macvlan_mode=self.config.get("mode") or "bridge",
        )
        return RunConfig(nics=[nic], volatile={key: hwaddr})

    def attached(self) -> RunConfig:
        name = self.interface_name
        return RunConfig(nics=[Nic(name, "", "", link=self.parent(), kind="macvlan")])


class NicPhysical(_HostInterfaceNic):
    """Not hot plugged: liblxc gives back at stop only the interfaces it moved in at start (a
    veth moved in later would die with the container's network namespace)."""

    NICTYPE = "physical"
    HOTPLUG = False
    KEYS: ClassVar = {**COMMON_KEYS, "vlan": v.is_uint, "gvrp": v.is_bool}

    def start(self) -> RunConfig:
        nic = Nic(
            name=self.interface_name,
            host_name="",
            hwaddr=self.config.get("hwaddr", ""),
            mtu=int(self.config.get("mtu", "0") or 0),
            link=self.parent(),
            kind="phys",
        )
        return RunConfig(nics=[nic])

    def attached(self) -> RunConfig:
        name = self.interface_name
        return RunConfig(nics=[Nic(name, "", "", link=self.parent(), kind="phys")])
