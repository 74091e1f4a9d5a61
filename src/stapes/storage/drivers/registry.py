"""Storage drivers by name."""

from __future__ import annotations

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
