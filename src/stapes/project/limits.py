"""A project's ``limits.*``: how much its instances use, and the checks that keep them within.
As in Incus, once a project limits CPU, memory, processes or disk, every instance in it must
set the matching instance limit, and the sum of those must fit."""

from __future__ import annotations

from collections.abc import Callable

from stapes.api.errors import BadRequest, Forbidden
from stapes.config import validate as v
from stapes.db.connection import Database
from stapes.db.instances import list_instances
from stapes.db.projects import expand_profiles, get_project
from stapes.instance import root_disk
from stapes.project import restrictions

Devices = dict[str, dict[str, str]]


def _cpus(value: str) -> int:
    """limits.cpu: a count (``2``) or a set of CPUs (``0-3,6``)."""
    if v.digits(value):
        return int(value)
    total = 0
    for part in value.split(","):
        first, _, last = part.partition("-")
        total += int(last or first) - int(first) + 1
    return total


def _root_size(devices: Devices) -> int:
    size = root_disk.size(devices)
    return v.parse_size(size) if size else -1


# project key -> (instance key, what it adds up, how to read an instance's value)
_SUMMED: dict[str, tuple[str, Callable[[dict[str, str], Devices], int]]] = {
    "limits.cpu": (
        "limits.cpu",
        lambda c, d: _cpus(c["limits.cpu"]) if c.get("limits.cpu") else -1,
    ),
    "limits.memory": (
        "limits.memory",
        lambda c, d: (
            v.parse_size(c["limits.memory"])
            if c.get("limits.memory") and not c["limits.memory"].endswith("%")
            else -1
        ),
    ),
    "limits.processes": (
        "limits.processes",
        lambda c, d: int(c["limits.processes"]) if c.get("limits.processes") else -1,
    ),
    "limits.disk": ("size of the root disk", lambda c, d: _root_size(d)),
}


POOL_PREFIX = "limits.disk.pool."


def _parse_limit(key: str, value: str) -> int:
    sized = key in ("limits.memory", "limits.disk") or key.startswith(POOL_PREFIX)
    return v.parse_size(value) if sized else int(value)


def _pool_size(pool: str) -> Callable[[dict[str, str], Devices], int]:
    """The root disk's size when it is on ``pool`` (0 elsewhere), -1 when it sets none."""

    def read(config: dict[str, str], devices: Devices) -> int:
        found = root_disk.find(devices)
        if found is None or found[1].get("pool") != pool:
            return 0
        return _root_size(devices)

    return read


def _summed(
    limits: dict[str, str],
) -> dict[str, tuple[str, Callable[[dict[str, str], Devices], int]]]:
    """The limits to add up: the fixed ones, and limits.disk.pool.NAME for each pool named."""
    found = dict(_SUMMED)
    for key in limits:
        if key.startswith(POOL_PREFIX):
            pool = key.removeprefix(POOL_PREFIX)
            found[key] = (f"size of the root disk on pool {pool!r}", _pool_size(pool))
    return found


def _instances(
    db: Database, project: str, skip: str = ""
) -> list[tuple[str, dict[str, str], Devices]]:
    found = []
    for row in list_instances(db, project):
        if row.name == skip:
            continue
        config, devices = expand_profiles(db, project, row.profiles, row.config, row.devices)
        found.append((row.type, config, devices))
    return found


def check_instance(
    db: Database, project: str, name: str, instance_type: str, config: dict[str, str],
    devices: Devices, *, new: bool,
) -> None:  # fmt: skip
    """Whether ``name`` (a new instance when ``new``) fits the project's limits."""
    limits = get_project(db, project).config
    if not any(key.startswith("limits.") for key in limits):
        return  # nothing to add up (every start is admitted: no walk over the project)
    others = _instances(db, project, skip=name)
    counts = {
        "limits.instances": len(others),
        "limits.containers": sum(1 for t, _, _ in others if t == "container"),
        "limits.virtual-machines": sum(1 for t, _, _ in others if t == "virtual-machine"),
    }
    counted = {"limits.instances": True, "limits.containers": instance_type == "container"}
    counted["limits.virtual-machines"] = instance_type == "virtual-machine"
    for key, used in counts.items():
        if new and counted[key] and key in limits and used + 1 > int(limits[key]):
            raise BadRequest(
                f"Project {project!r} is at its {key} ({limits[key]}): no room for another instance"
            )
    for key, (instance_key, read) in _summed(limits).items():
        if key not in limits:
            continue
        if key.startswith(POOL_PREFIX) and _parse_limit(key, limits[key]) == 0:
            if read(config, devices) != 0:  # as Incus: 0 keeps the project off the pool
                pool = key.removeprefix(POOL_PREFIX)
                raise BadRequest(f"Project {project!r} may not use storage pool {pool!r} ({key}=0)")
            continue
        mine = read(config, devices)
        if mine < 0:
            raise BadRequest(
                f"Project {project!r} sets {key}: the instance must set {instance_key}"
                + (" (an absolute size)" if key == "limits.memory" else "")
            )
        total = mine + sum(max(read(c, d), 0) for _, c, d in others)
        if total > _parse_limit(key, limits[key]):
            raise BadRequest(
                f"Project {project!r} {key} is {limits[key]}: the instances would use more "
                f"({total}{'' if key in ('limits.cpu', 'limits.processes') else ' bytes'})"
            )


def usage(db: Database, project: str) -> dict[str, dict[str, int]]:
    """Incus's project state: each limit (-1: none) and what is used."""
    limits = get_project(db, project).config
    instances = _instances(db, project)
    used: dict[str, int] = {
        "instances": len(instances),
        "containers": sum(1 for t, _, _ in instances if t == "container"),
        "virtual-machines": sum(1 for t, _, _ in instances if t == "virtual-machine"),
        "networks": _count_networks(db, project),
    }
    for key, (_, read) in _summed(limits).items():
        used[key.removeprefix("limits.")] = sum(max(read(c, d), 0) for _, c, d in instances)
    return {
        name: {
            "Limit": _parse_limit(f"limits.{name}", limits[f"limits.{name}"])
            if f"limits.{name}" in limits
            else -1,
            "Usage": value,
        }
        for name, value in used.items()
    }


def _count_networks(db: Database, project: str) -> int:
    found = db.one("SELECT COUNT(*) AS n FROM networks WHERE project = ?", (project,))
    return int(found["n"]) if found is not None else 0


def check_project(db: Database, project: str, config: dict[str, str]) -> None:
    """New limits must hold what the project already uses."""
    current = usage(db, project)
    for name, state in current.items():
        key = f"limits.{name}"
        if key in config and state["Usage"] > _parse_limit(key, config[key]):
            raise BadRequest(
                f"{key}={config[key]} is below what project {project!r} already uses "
                f"({state['Usage']})"
            )
    for row in list_instances(db, project):
        expanded, devices = expand_profiles(db, project, row.profiles, row.config, row.devices)
        try:
            restrictions.check_against(project, config, row.type, expanded, devices)
        except Forbidden as exc:
            raise BadRequest(f"Instance {row.name!r} would break the new config: {exc}") from exc
    instances = _instances(db, project)
    for key in config:
        if key.startswith(POOL_PREFIX):
            on_pool = sum(max(_pool_size(key.removeprefix(POOL_PREFIX))(c, d), 0)
                          for _, c, d in instances)  # fmt: skip
            if on_pool > _parse_limit(key, config[key]):
                raise BadRequest(
                    f"{key}={config[key]} is below what project {project!r} already uses "
                    f"on that pool ({on_pool})"
                )
    for key, (instance_key, read) in _summed(config).items():
        if key in config and any(read(c, d) < 0 for _, c, d in instances):
            raise BadRequest(
                f"{key} needs every instance of project {project!r} to set {instance_key}"
            )


def check_network_limit(db: Database, project: str) -> None:
    """``limits.networks``: room for one more network in ``project``."""
    limit = get_project(db, project).config.get("limits.networks")
    if limit is None:
        return
    used = db.one("SELECT COUNT(*) AS n FROM networks WHERE project = ?", (project,))
    if used is not None and used["n"] + 1 > int(limit):
        raise BadRequest(f"Project {project!r} is at its limits.networks ({limit})")
