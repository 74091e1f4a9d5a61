"""Storage drivers by name."""

from __future__ import annotations

import time

from stapes.api.errors import BadRequest
from stapes.storage.drivers.btrfs import BtrfsDriver
from stapes.storage.drivers.dir import DirDriver
from stapes.storage.drivers.driver import StorageDriver
from stapes.storage.drivers.lvm import LvmDriver
from stapes.storage.drivers.zfs import ZfsDriver

DRIVERS: dict[str, type[StorageDriver]] = {
    "dir": DirDriver,
    "btrfs": BtrfsDriver,
    "lvm": LvmDriver,
    "zfs": ZfsDriver,
}


def driver_class(name: str) -> type[StorageDriver]:
    cls = DRIVERS.get(name)
    if cls is None:
        raise BadRequest(
            f"Unknown storage driver {name!r}: valid drivers are {', '.join(sorted(DRIVERS))}"
        )
    return cls


def supported() -> list[dict[str, object]]:
    """What GET /1.0 lists as storage_supported_drivers: the drivers this host can run."""
    result: list[dict[str, object]] = []
    for cls in DRIVERS.values():
        try:
            cls.probe()
        except BadRequest:
            continue
        info = cls.info()
        result.append({"Name": info.name, "Version": info.version, "Remote": info.remote})
    return result


RECENT_SECONDS = 30.0
_recent: tuple[float, list[dict[str, object]]] | None = None


def supported_recently() -> list[dict[str, object]]:
    """supported() as found at most RECENT_SECONDS ago: GET /1.0 lists it on every call and
    the probes scan PATH (~0.3 ms). Incus keeps it from its start and from the last pool
    created or deleted."""
    global _recent
    now = time.monotonic()
    if _recent is None or now - _recent[0] > RECENT_SECONDS:
        _recent = (now, supported())
    return [dict(d) for d in _recent[1]]
