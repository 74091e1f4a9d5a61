from __future__ import annotations

import pytest

from stapes.api.errors import BadRequest
from stapes.instance import names
from stapes.server import filter as api_filter


@pytest.mark.parametrize("name", ["c1", "a-b", "Web01", "x" * 63, "1a"])
def test_valid_names(name: str) -> None:
    names.validate(name)


@pytest.mark.parametrize("name", ["", "a_b", "-a", "a-", "x" * 64, "12", "a.b", "a b"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(BadRequest, match="Invalid instance name"):
        names.validate(name)


def test_generated_names_are_valid_and_free() -> None:
    taken = {names.generate(set()) for _ in range(50)}
    name = names.generate(taken)
    assert name not in taken
    names.validate(name)


OBJ = {
    "name": "web1",
    "status": "Running",
    "config": {"image.os": "busybox", "user.a": "1"},
    "ephemeral": False,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name eq web1", True),
        ("name eq web.*", True),
        ("name ne web1", False),
        ("status eq Running and config.image.os eq busybox", True),
        ("status eq Stopped or config.user.a eq 1", True),
        ("not name eq web1", False),
        ("ephemeral eq false", True),
        ("config.missing eq x", False),
        ("name eq 'web1'", True),
    ],
)
def test_filter(text: str, expected: bool) -> None:
    assert api_filter.matches(api_filter.parse(text), OBJ) is expected


@pytest.mark.parametrize(
    "text", ["name", "name eq", "name like x", "name eq a and", "a eq b xor c"]
)
def test_bad_filters(text: str) -> None:
    with pytest.raises(BadRequest):
        api_filter.parse(text)
