"""``backup/index.yaml``: what a backup holds (name, pool and driver it came from, its
snapshots, whether it is optimized) and the config of the instance or volume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
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


_YAML11_WORDS = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null"})
_PLAIN_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_PLAIN_REST = _PLAIN_FIRST | frozenset("0123456789.-/")
_UNPRINTABLE = {
    c: f"\\u{c:04x}" for c in [*range(0x7F, 0xA0), 0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF]
}
"""What YAML takes for a line break (NEL, U+2028/9) or refuses raw, even quoted."""


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        if (
            value
            and value[0] in _PLAIN_FIRST
            and set(value) <= _PLAIN_REST
            and value.lower() not in _YAML11_WORDS
        ):
            return value
        return orjson.dumps(value).decode().translate(_UNPRINTABLE)
    if isinstance(value, float):
        if value != value or value in (float("inf"), -float("inf")):
            return ".nan" if value != value else ("-.inf" if value < 0 else ".inf")
        mantissa, e, exponent = repr(value).partition("e")  # YAML 1.1 floats have a dot
        return mantissa + ("" if "." in mantissa else ".0") + e + exponent
    if value is None or isinstance(value, bool | int):
        return orjson.dumps(value).decode()
    raise TypeError(f"{type(value).__name__} is not written as YAML here")


def block_yaml(data: dict[str, Any]) -> str:
    """``data`` (dicts with str keys, lists, str, int, float, bool, None) as block-style YAML
    that loads back equal, several times faster than PyYAML's representer (an instance's
    backup.yaml with 3,000 snapshots took 1.5 s there), most where the same dict or list
    object appears many times (snapshots sharing their expanded config): each is written once.
    Words that are only letters, digits and ``_.-/`` (not starting with a digit, not a YAML
    1.1 boolean or null) are written plain, other strings as JSON strings (valid YAML
    double-quoted scalars; what YAML cannot carry raw is escaped)."""
    return _block(data, "", {}, {})


def _block(
    value: dict[str, Any] | list[Any], pad: str, blocks: dict[tuple[int, str], str],
    scalars: dict[str, str],
) -> str:  # fmt: skip
    """``value``'s lines at indent ``pad``; ``blocks`` and ``scalars`` keep what was written
    (by object and indent, by value) for the objects met again."""
    done = blocks.get((id(value), pad))
    if done is not None:
        return done
    out = []
    items = value.items() if isinstance(value, dict) else (("", item) for item in value)
    for key, item in items:
        lead = f"{pad}{_cached(key, scalars)}:" if isinstance(value, dict) else f"{pad}-"
        if isinstance(item, dict | list) and item:
            if isinstance(item, dict) and not isinstance(value, dict):
                inner = _block(item, pad + "  ", blocks, scalars)
                out.append(f"{lead} {inner.lstrip(' ')}")  # a mapping in a list: dash's line
            else:  # a list under a key keeps the key's indent, as PyYAML writes it
                nested = isinstance(item, dict) or not isinstance(value, dict)
                out.append(
                    lead + "\n" + _block(item, pad + "  " if nested else pad, blocks, scalars)
                )
        elif isinstance(item, dict | list):
            out.append(f"{lead} {'{}' if isinstance(item, dict) else '[]'}\n")
        else:
            out.append(f"{lead} {_cached(item, scalars)}\n")
    blocks[(id(value), pad)] = done = "".join(out)
    return done


def _cached(value: Any, scalars: dict[str, str]) -> str:
    """_scalar(value), strings written once per document (keys and values repeat)."""
    if type(value) is not str:
        return _scalar(value)
    text = scalars.get(value)
    if text is None:
        text = scalars[value] = _scalar(value)
    return text


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
