"""Instance types as limits."""

from __future__ import annotations

import pytest

from stapes.api.errors import BadRequest
from stapes.instance.types import limits


def test_shorthand_and_table() -> None:
    assert limits("c2-m4") == {"limits.cpu": "2", "limits.memory": "4GiB"}
    assert limits("c1-m0.5") == {"limits.cpu": "1", "limits.memory": "512MiB"}
    assert limits("aws:t2.micro") == {"limits.cpu": "1", "limits.memory": "1GiB"}
    for bad in ("huge", "c0-m1", "c2-m"):
        with pytest.raises(BadRequest, match=r"instance type|Instance type"):
            limits(bad)
