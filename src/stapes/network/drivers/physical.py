"""physical: the host interface ``parent`` is handed whole to the one instance whose NIC is on
the network (moved into it at start, given back when it stops)."""

from __future__ import annotations

from stapes.network.drivers.parent import ParentDriver


class PhysicalDriver(ParentDriver):
    TYPE = "physical"
