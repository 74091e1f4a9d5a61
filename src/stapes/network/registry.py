"""Network types by name."""

from __future__ import annotations

from stapes.api.errors import BadRequest
from stapes.network.drivers.bridge import BridgeDriver
from stapes.network.drivers.driver import NetworkDriver
from stapes.network.drivers.macvlan import MacvlanDriver
from stapes.network.drivers.ovn import OvnDriver
from stapes.network.drivers.physical import PhysicalDriver

TYPES: dict[str, type[NetworkDriver]] = {
    "bridge": BridgeDriver,
    "macvlan": MacvlanDriver,
    "physical": PhysicalDriver,
    "ovn": OvnDriver,
}
UNSUPPORTED = {"sriov": "this host has no SR-IOV capable interface support in stapesd"}


def network_type(name: str) -> type[NetworkDriver]:
    cls = TYPES.get(name)
    if cls is not None:
        return cls
    if name in UNSUPPORTED:
        raise BadRequest(f"Network type {name!r} is not supported: {UNSUPPORTED[name]}")
    raise BadRequest(f"Unknown network type {name!r}: use {', '.join(TYPES)}")
