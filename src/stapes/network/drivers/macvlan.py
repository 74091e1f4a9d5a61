"""macvlan: NICs on the network are macvlans of the host interface ``parent``."""

from __future__ import annotations

from stapes.network.drivers.parent import ParentDriver


class MacvlanDriver(ParentDriver):
    TYPE = "macvlan"
