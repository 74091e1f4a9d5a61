"""backup.yaml's fast writer (storage/backups/index.block_yaml) writes YAML that loads back
equal to what it was given, for the strings YAML reads as something else too."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from stapes.storage.backups.index import block_yaml, dump_yaml

TRICKY = [
    "", "true", "True", "no", "Off", "y", "N", "null", "~", "123", "0x1F", "1e3", "1_000",
    "0001-01-01T00:00:00Z", "2026-12-06", "-", "- x", "a: b", "#c", "x #y", "@at", "`b", "!tag",
    "&anchor", "*alias", "[1]", "{a: 1}", "'q'", '"dq"', "multi\nline", " lead", "trail ",
    "tab\there", "é ü ✓ \U0001f600", "\x7f del", "\x85 nel", "\ufeff bom", "\u2028 sep",
    "\x00 nul", "\x1b esc", "back\\slash", "volatile.eth0.hwaddr", "x86_64", "a/b-c.d_e",
    ".inf", "-.inf", ".nan", "<<", "=", "?", "%", "|", ">",
]  # fmt: skip


def document() -> dict[str, Any]:
    return {
        "container": {
            "config": {s: s for s in TRICKY if s},
            "devices": {"root": {"path": "/", "pool": "default", "type": "disk"}},
            "ephemeral": False,
            "size": -1,
            "ratio": 0.5,
            "big": 1e20,
            "small": -2.5e-07,
            "none": None,
            "empty_map": {},
            "empty_list": [],
        },
        "snapshots": [
            {"name": "snap0", "config": {"a": "1"}, "profiles": ["default", "x"]},
            {"name": "snap1", "config": {}, "profiles": []},
        ],
        "nested": [[1, [2, "three"]], [], [{}], [{"a": [{"b": None}]}]],
        "keys": {s: i for i, s in enumerate(TRICKY)},
    }


@pytest.mark.parametrize("loader", [yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)])
def test_loads_back_equal(loader: type[yaml.SafeLoader]) -> None:
    data = document()
    assert yaml.load(block_yaml(data), Loader=loader) == data


def test_reads_as_pyyaml_writes() -> None:
    """Plain words plain, a list under a key at the key's indent: a file people read."""
    data = {"name": "c1", "profiles": ["default"], "config": {"limits.cpu": "2", "a": "true"}}
    assert block_yaml(data) == dump_yaml(data).replace("'", '"')


@pytest.mark.parametrize("value", [b"bytes", {"a": {"b": [object()]}}, {2j}])
def test_refuses_what_it_cannot_write(value: object) -> None:
    with pytest.raises(TypeError):
        block_yaml({"x": value})
