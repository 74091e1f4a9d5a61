"""Instance drivers by instance type."""

from __future__ import annotations

from stapes.api.errors import BadRequest
from stapes.instance.driver import InstanceDriver


class InstanceDrivers:
    def __init__(self, drivers: dict[str, InstanceDriver]) -> None:
        self._drivers = drivers

    def get(self, instance_type: str) -> InstanceDriver:
        driver = self._drivers.get(instance_type)
        if driver is None:
            raise BadRequest(
                f"Unsupported instance type {instance_type!r}: this stapesd runs "
                f"{', '.join(sorted(self._drivers))}"
            )
        return driver

    def types(self) -> list[str]:
        return sorted(self._drivers)
