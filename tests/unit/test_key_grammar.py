"""Validation at the API edge: keys by their full names (each free-form family by the grammar
of what it becomes on the host), volatile keys a client may write only with typed values,
device names by Incus's rule, architectures as names, aliases or Incus's numbers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stapes.api.architecture import architecture_name
from stapes.api.errors import BadRequest
from stapes.api.instance import InstancesPost
from stapes.config.keys import effective_config, validate_instance_config
from stapes.config.validate import is_device_name_ok
from stapes.host.paths import instance_entry


@pytest.mark.parametrize(
    ("config", "why"),
    [
        ({"linux.sysctl.net.ipv4.ip_forward\nlxc.hook.start": "1"}, "newline"),
        ({"linux.sysctl.net/../x": "1"}, "sysctl name"),
        ({"linux.sysctl.net.ipv4.ip_forward": "1\nlxc.hook.start = x"}, "single line"),
        ({"limits.kernel.nofile\nlxc.x": "10"}, "newline"),
        ({"limits.kernel.bogus": "10"}, "kernel resource limit"),
        ({"limits.kernel.nofile": "10\n"}, "limit"),
        ({"environment.A=B": "1"}, "environment variable name"),
        ({"environment.PATH": "/bin\nlxc.hook.pre-start = /bin/sh"}, "single line"),
        ({"oci.entrypoint": "sh\nlxc.hook.start = x"}, "single line"),
        ({"oci.cwd": "relative"}, "absolute path"),
        ({"user.a b": "x"}, "blanks"),
        ({"volatile.eth0.hwaddr": "00:16:3e:00:00:01\nx"}, "MAC"),
        ({"volatile.eth0.hwaddr": "zz"}, "MAC"),
        ({"volatile.../../x.hwaddr": "00:16:3e:00:00:01"}, "Unknown configuration key"),
        ({"volatile.base_image": "../etc"}, "fingerprint"),
        ({"volatile.bogus": "1"}, "Unknown configuration key"),
        ({"security.syscalls.deny": "mount\nreboot allow"}, "syscall"),
        ({"linux.kernel_modules\n": "x"}, "newline"),
        ({"limits.processes": "²"}, "non-negative integer"),
    ],
)
def test_keys_and_values_the_host_cannot_take_are_refused(config: dict[str, str], why: str) -> None:
    with pytest.raises(BadRequest, match=why):
        validate_instance_config(config, "container")


def test_well_formed_free_form_keys_pass() -> None:
    validate_instance_config(
        {
            "linux.sysctl.net.ipv4.conf.all.forwarding": "1",
            "limits.kernel.nofile": "1024:4096",
            "environment.MY_VAR": "a b\tc",
            "user.note": "anything\nat all",  # data only, never written to the host
            "volatile.eth0.hwaddr": "00:16:3e:00:00:01",
            "oci.cwd": "/srv/app",
        },
        "container",
    )


def test_a_client_writes_only_the_volatile_keys_it_may() -> None:
    requested = {
        "volatile.container.oci": "true",
        "volatile.idmap.current": "[]",
        "volatile.eth0.hwaddr": "00:16:3e:00:00:01",
        "volatile.uuid": "00000000-0000-0000-0000-000000000001",
    }
    assert effective_config(requested, {}) == {
        "volatile.eth0.hwaddr": "00:16:3e:00:00:01",
        "volatile.uuid": "00000000-0000-0000-0000-000000000001",
    }
    kept = effective_config(requested, {"volatile.idmap.current": "[x]"})
    assert kept["volatile.idmap.current"] == "[x]"


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("eth0", True),
        ("my/disk:1_x.y", True),
        (".hidden", False),
        ("a b", False),
        ("a\nb", False),
        ("", False),
        ("x" * 64, False),
        ("a,b", False),
    ],
)
def test_device_names_follow_incus(name: str, ok: bool) -> None:
    assert is_device_name_ok(name) is ok


@pytest.mark.parametrize(
    ("given", "name"),
    [("2", "x86_64"), (2, "x86_64"), ("x86_64", "x86_64"), ("amd64", "x86_64"), ("4", "aarch64"),
     ("arm64", "aarch64"), ("", "")],
)  # fmt: skip
def test_architectures_as_names_aliases_or_numbers(given: str | int, name: str) -> None:
    assert architecture_name(given) == name
    assert InstancesPost.model_validate({"architecture": given}).architecture == name


@pytest.mark.parametrize("given", ["x86_64\nlxc.hook.start = x", "99", "z80", "2 "])
def test_unknown_architectures_are_refused(given: str) -> None:
    with pytest.raises(ValidationError, match="Unknown architecture"):
        InstancesPost.model_validate({"architecture": given})


def test_instance_entries_are_keyed_by_project() -> None:
    assert instance_entry("default", "c1") == "c1"
    assert instance_entry("p1", "c1") == "p1_c1"
    for project, name in (("p1", "../c"), ("p/1", "c"), ("p1", ""), ("..", "c")):
        with pytest.raises(ValueError, match="cannot name"):
            instance_entry(project, name)
