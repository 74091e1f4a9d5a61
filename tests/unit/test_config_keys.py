from __future__ import annotations

import pytest

from stapes.api.errors import BadRequest
from stapes.config.keys import effective_config, validate_instance_config
from stapes.config.validate import parse_cpuset, parse_size


def test_known_and_free_form_keys_pass() -> None:
    validate_instance_config(
        {
            "security.privileged": "true",
            "user.x": "y",
            "environment.A": "b",
            "limits.memory": "1GiB",
            "limits.cpu": "0-1",
            "boot.autostart": "false",
        },
        "container",
    )


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"bogus": "1"}, "bogus"),
        ({"user.": "1"}, "user."),
        ({"limits.memory": "much"}, "limits.memory"),
        ({"limits.memory": "150%"}, "limits.memory"),
        ({"limits.cpu": "a-b"}, "limits.cpu"),
        ({"limits.processes": "-1"}, "limits.processes"),
        ({"security.privileged": "perhaps"}, "security.privileged"),
        ({"volatile.uuid": "mine"}, "volatile.uuid"),
        ({"volatile.made.up": "x"}, "volatile.made.up"),
    ],
)
def test_bad_keys_are_named(config: dict[str, str], named: str) -> None:
    with pytest.raises(BadRequest, match=named.replace(".", r"\.")):
        validate_instance_config(config, "container")


def test_unchanged_volatile_keys_are_accepted() -> None:
    validate_instance_config({"volatile.uuid": "u"}, "container", current={"volatile.uuid": "u"})


def test_known_volatile_keys_are_accepted_as_in_incus() -> None:
    validate_instance_config(
        {"volatile.uuid": "0b1c2f0e-7a89-4c7e-9a8e-1a2b3c4d5e6f", "volatile.idmap.base": "5"},
        "container",
    )
    with pytest.raises(BadRequest, match="profile"):
        validate_instance_config({"volatile.uuid": "0b1c2f0e-7a89-4c7e-9a8e-1a2b3c4d5e6f"}, None)


def test_stapesd_keeps_its_own_volatile_keys() -> None:
    current = {"volatile.idmap.base": "1000000", "volatile.uuid": "a", "user.x": "1"}
    sent = {"volatile.idmap.base": "5", "volatile.uuid": "b", "user.y": "2"}
    assert effective_config(sent, current) == {
        "volatile.idmap.base": "1000000",
        "volatile.uuid": "b",
        "user.y": "2",
    }


def test_container_only_keys() -> None:
    with pytest.raises(BadRequest, match="does not apply"):
        validate_instance_config({"raw.lxc": ""}, "virtual-machine")


def test_sizes_and_cpusets() -> None:
    assert parse_size("512MiB") == 512 * 1024**2
    assert parse_size("1GB") == 10**9
    assert parse_size("100") == 100
    assert parse_cpuset("0-2,5") == [0, 1, 2, 5]
