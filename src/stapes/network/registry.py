"""Network types by name."""

from __future__ import annotations

from stapes.api.errors import BadRequest
from stapes.network.drivers.bridge import BridgeDriver
from stapes.network.drivers.driver import NetworkDriver

TYPES: dict[str, type[NetworkDriver]] = {"bridge": BridgeDriver}
PLANNED = ("macvlan", "physical", "ovn", "sriov")


def network_type(name: str) -> type[NetworkDriver]:
    cls = TYPES.get(name)
    if cls is not None:
        return cls
    if name in PLANNED:
        raise BadRequest(f"Network type {name!r} is not supported by this stapesd yet: use bridge")
    raise BadRequest(f"Unknown network type {name!r}: use bridge")
