"""Validation of pool and volume config against what a driver understands."""

from __future__ import annotations

from stapes.api.errors import BadRequest
from stapes.config import validate as v
from stapes.storage.drivers.driver import StorageDriver

# Volume keys stapesd itself writes (and clients may send back unchanged).
VOLATILE_VOLUME_KEYS: dict[str, v.Validator] = {
    "volatile.idmap.last": v.any_value,
    "volatile.idmap.next": v.any_value,
    "volatile.uuid": v.is_uuid,
}


def _check(key: str, validator: v.Validator, value: str) -> None:
    try:
        validator(value)
    except ValueError as exc:
        raise BadRequest(f"Invalid value for {key!r}: {exc}") from None


def validate_pool_config(driver: type[StorageDriver], config: dict[str, str]) -> None:
    """Every key must be the driver's, a ``volume.KEY`` default of a volume key, or user.*."""
    name = driver.info().name
    volume_keys = driver.volume_keys()
    for key, value in config.items():
        if key.startswith("user."):
            continue
        if key.startswith("volume."):
            validator = volume_keys.get(key.removeprefix("volume."))
        else:
            validator = driver.POOL_KEYS.get(key)
        if validator is None:
            raise BadRequest(f"Invalid option {key!r} for a {name} storage pool")
        _check(key, validator, value)


def validate_volume_config(
    driver: type[StorageDriver], config: dict[str, str], content_type: str
) -> None:
    name = driver.info().name
    keys = {**driver.volume_keys(), **VOLATILE_VOLUME_KEYS}
    for key, value in config.items():
        if key.startswith("user."):
            continue
        validator = keys.get(key)
        if validator is None:
            raise BadRequest(f"Invalid option {key!r} for a volume on a {name} storage pool")
        if content_type == "block" and key in ("security.shifted", "security.unmapped"):
            raise BadRequest(f"{key!r} only applies to filesystem volumes, not block volumes")
        _check(key, validator, value)


def volume_defaults(pool_config: dict[str, str]) -> dict[str, str]:
    """The ``volume.*`` defaults a pool gives new volumes."""
    return {
        key.removeprefix("volume."): value
        for key, value in pool_config.items()
        if key.startswith("volume.")
    }


def check_volume_name(name: str) -> None:
    """Incus's rules for storage volume (and pool) names, plus no ``..`` path games."""
    if not name:
        raise BadRequest("No name provided")
    if "/" in name:
        raise BadRequest("Storage volume names may not contain slashes")
    if name in (".", "..") or name.startswith("."):
        raise BadRequest(f"Invalid name {name!r}: it must not start with a dot")
    problem = v.name_problem(name)
    if problem is not None:
        raise BadRequest(f"Invalid name {name!r}: {problem}")
