"""security.idmap.*: choosing an instance's host ids."""

from __future__ import annotations

import pytest

from stapes.api.errors import BadRequest
from stapes.host.idmap import IdMap
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
