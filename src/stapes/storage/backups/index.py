"""``backup/index.yaml``: what a backup holds (name, pool and driver it came from, its
snapshots, whether it is optimized) and the config of the instance or volume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from stapes.api.errors import BadRequest

TYPES = ("container", "virtual-machine", "custom")


_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's: 10x


class _Plain(_Dumper):  # type: ignore[misc,valid-type]
    """No anchors and aliases where one dict appears twice (devices, expanded_devices)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Plain, sort_keys=False)


@dataclass
class BackupIndex:
    name: str
    backend: str
    pool: str
    type: str
    snapshots: list[str] = field(default_factory=list)
    optimized: bool = False
    optimized_header: bool = False
    config: dict[str, Any] = field(default_factory=dict)

    def dump(self) -> str:
        data: dict[str, Any] = {
            "name": self.name,
            "backend": self.backend,
            "pool": self.pool,
        }
        if self.snapshots:
            data["snapshots"] = self.snapshots
        data |= {
            "optimized": self.optimized,
            "optimized_header": self.optimized_header,
            "type": self.type,
            "config": self.config,
        }
        return dump_yaml(data)

    def snapshot_config(self, key: str, name: str) -> dict[str, Any]:
        """The entry for snapshot ``name`` in ``config[key]`` (snapshots / volume_snapshots)."""
        for entry in self.config.get(key) or []:
            if isinstance(entry, dict) and entry.get("name") == name:
                return entry
        return {}


def parse(data: dict[str, Any]) -> BackupIndex:
    """Check what import relies on; a 400 naming the first thing missing."""
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("Invalid backup: index.yaml has no name")
    kind = data.get("type") or "container"
    if kind not in TYPES:
        raise BadRequest(f"Invalid backup: unknown type {kind!r} in index.yaml")
    snapshots = data.get("snapshots") or []
    if not isinstance(snapshots, list) or not all(isinstance(s, str) for s in snapshots):
        raise BadRequest("Invalid backup: snapshots in index.yaml must be a list of names")
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise BadRequest("Invalid backup: config in index.yaml must be a mapping")
    wanted = "volume" if kind == "custom" else "container"
    if not isinstance(config.get(wanted), dict):
        raise BadRequest(f"Invalid backup: index.yaml has no config.{wanted}")
    return BackupIndex(
        name=name,
        backend=str(data.get("backend") or ""),
        pool=str(data.get("pool") or ""),
        type=kind,
        snapshots=list(snapshots),
        optimized=bool(data.get("optimized")),
        optimized_header=bool(data.get("optimized_header")),
        config=config,
    )
