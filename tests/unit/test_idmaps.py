"""security.idmap.*: choosing an instance's host ids."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stapes.api.errors import BadRequest
from stapes.host.idmap import IdMap, parse_raw, reshift_tree, shift_tree
from stapes.instance.idmaps import choose

HOST = IdMap(1_000_000, 1_000_000_000)


def test_shared_privileged_and_isolated() -> None:
    assert choose({}, HOST, HOST, []) == HOST
    assert choose({"security.idmap.isolated": "true"}, None, None, []) is None
    first = choose({"security.idmap.isolated": "true"}, HOST, HOST, [])
    assert first == IdMap(1_065_536, 65536)
    second = choose({"security.idmap.isolated": "true"}, HOST, HOST, [first])
    assert second == IdMap(1_131_072, 65536)
    big = choose(
        {"security.idmap.isolated": "true", "security.idmap.size": "200000"}, HOST, HOST, [first]
    )
    assert big is not None and not big.overlaps(first)


def test_kept_explicit_and_exhausted() -> None:
    held = IdMap(2_000_000, 65536)
    config = {"security.idmap.isolated": "true", "volatile.idmap.next": held.volatile()}
    assert choose(config, HOST, HOST, []) == held  # an instance keeps its range
    explicit = {"security.idmap.isolated": "true", "security.idmap.base": "3000000"}
    assert choose(explicit, HOST, HOST, []) == IdMap(3_000_000, 65536)
    with pytest.raises(BadRequest, match="outside"):
        choose({**explicit, "security.idmap.base": "10"}, HOST, HOST, [])
    small = IdMap(1_000_000, 100_000)
    with pytest.raises(BadRequest, match="No free range"):
        choose({"security.idmap.isolated": "true"}, small, small, [])


def test_raw_idmap_cuts_a_hole_in_the_range() -> None:
    mapped = choose({"raw.idmap": "both 1000 1000\nuid 50-51 2000-2001"}, HOST, HOST, [])
    assert mapped is not None
    assert mapped.to_host(1000, True) == 1000 and mapped.to_host(1000, False) == 1000
    assert mapped.to_host(2001, True) == 51 and mapped.to_host(2001, False) == 1_002_001
    assert mapped.to_host(999, True) == 1_000_999 and mapped.to_host(1001, True) == 1_001_001
    assert mapped.to_ns(1000, True) == 1000 and mapped.to_ns(1_001_000, True) is None
    assert mapped.root_uid == 1_000_000
    items = [value for _, value in mapped.lxc_items()]
    assert "u 0 1000000 1000" in items and "u 1000 1000 1" in items
    assert "u 1001 1001001 999" in items and "u 2002 1002002 999997998" in items
    assert "g 1000 1000 1" in items and "g 1001 1001001 999998999" in items
    assert IdMap.from_volatile(mapped.volatile()) == mapped  # survives volatile.idmap.*
    assert IdMap.from_volatile(HOST.volatile()) == HOST


def test_raw_idmap_bad_input() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        parse_raw("both 1000-1001 1000")
    with pytest.raises(ValueError, match="uid\\|gid\\|both"):
        parse_raw("user 1000 1000")
    with pytest.raises(ValueError, match="overlaps"):
        parse_raw("both 1000 1000\nuid 1000 2000")
    with pytest.raises(BadRequest, match="maps past"):
        choose({"raw.idmap": "both 1000 70000", "security.idmap.isolated": "true"}, HOST, HOST, [])


def test_reshift_through_raw_entries(tmp_path: Path) -> None:
    tree = tmp_path / "rootfs"
    tree.mkdir()
    (tree / "user").touch()
    (tree / "root").touch()
    os.chown(tree / "user", 1000, 1000)
    shared = HOST
    raw = HOST.with_raw(parse_raw("both 1000 1000"))
    shift_tree(tree, shared.base)  # unpacked for the shared map
    reshift_tree(tree, shared, raw)
    assert (tree / "user").stat().st_uid == 1000 and (tree / "root").stat().st_uid == 1_000_000
    reshift_tree(tree, raw, None)  # back to the image's own ids
    assert (tree / "user").stat().st_uid == 1000 and (tree / "root").stat().st_uid == 0
