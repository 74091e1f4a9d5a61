"""Profiles: CRUD with ETags, used_by, expansion into instances, live reconfiguration, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers import Daemon, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


def test_profile_crud(daemon: Daemon) -> None:
    name = unique("p")
    created = daemon.request(
        "POST",
        "/1.0/profiles",
        {"name": name, "description": "web", "config": {"user.role": "web"}},
    )
    assert created.status == 201
    assert created.headers["Location"] == f"/1.0/profiles/{name}"
    assert daemon.request("POST", "/1.0/profiles", {"name": name}).status == 409
    resp = daemon.request("GET", f"/1.0/profiles/{name}")
    assert resp.metadata["config"] == {"user.role": "web"}
    assert resp.metadata["used_by"] == []
    etag = resp.headers["ETag"].strip('"')
    body = {"description": "web2", "config": {"user.role": "db"}, "devices": {}}
    wrong = daemon.request("PUT", f"/1.0/profiles/{name}", body, headers={"If-Match": "x"})
    assert wrong.status == 412
    assert (
        daemon.request("PUT", f"/1.0/profiles/{name}", body, headers={"If-Match": etag}).status
        == 200
    )
    assert (
        daemon.request("PATCH", f"/1.0/profiles/{name}", {"config": {"user.extra": "1"}}).status
        == 200
    )
    got = daemon.request("GET", f"/1.0/profiles/{name}").metadata
    assert got["config"] == {"user.role": "db", "user.extra": "1"}
    assert got["description"] == "web2"
    new = unique("p")
    assert daemon.request("POST", f"/1.0/profiles/{name}", {"name": new}).status == 201
    assert daemon.request("GET", f"/1.0/profiles/{name}").status == 404
    listed = daemon.request("GET", "/1.0/profiles").metadata
    assert f"/1.0/profiles/{new}" in listed and "/1.0/profiles/default" in listed
    assert daemon.request("DELETE", f"/1.0/profiles/{new}").status == 200
    assert daemon.request("GET", f"/1.0/profiles/{new}").status == 404


def test_profile_refusals(daemon: Daemon) -> None:
    bad = daemon.request("POST", "/1.0/profiles", {"name": unique("p"), "config": {"nope": "1"}})
    assert bad.status == 400 and "nope" in bad.json()["error"]
    bad = daemon.request("POST", "/1.0/profiles", {"name": "a/b"})
    assert bad.status == 400 and "a/b" in bad.json()["error"]
    bad = daemon.request(
        "POST", "/1.0/profiles", {"name": unique("p"), "config": {"volatile.uuid": "x"}}
    )
    assert bad.status == 400
    assert daemon.request("DELETE", "/1.0/profiles/default").status == 403
    assert daemon.request("POST", "/1.0/profiles/default", {"name": "other"}).status == 403


def test_profiles_expand_in_order_and_in_use_is_refused(daemon: Daemon, busybox: str) -> None:
    first, second = unique("p"), unique("p")
    daemon.request(
        "POST",
        "/1.0/profiles",
        {
            "name": first,
            "config": {"user.a": "first", "user.b": "first", "environment.FROM": "profile"},
        },
    )
    daemon.request("POST", "/1.0/profiles", {"name": second, "config": {"user.b": "second"}})
    name = daemon.launch(busybox, profiles=["default", first, second], config={"user.c": "own"})
    try:
        inst = daemon.request("GET", f"/1.0/instances/{name}").metadata
        expanded = inst["expanded_config"]
        assert expanded["user.a"] == "first" and expanded["user.b"] == "second"
        assert expanded["user.c"] == "own" and "user.a" not in inst["config"]
        assert inst["expanded_devices"]["root"]["pool"] == "default"
        out = daemon.cli("exec", name, "--", "sh", "-c", "echo $FROM").stdout
        assert out == "profile\n"
        used = daemon.request("GET", f"/1.0/profiles/{first}").metadata["used_by"]
        assert used == [f"/1.0/instances/{name}"]
        refused = daemon.request("DELETE", f"/1.0/profiles/{first}")
        assert refused.status == 400 and name in refused.json()["error"]
        renamed = unique("p")
        daemon.request("POST", f"/1.0/profiles/{first}", {"name": renamed})
        assert renamed in daemon.request("GET", f"/1.0/instances/{name}").metadata["profiles"]
    finally:
        daemon.force_delete(name)


def test_profile_edit_reaches_running_instances(daemon: Daemon, busybox: str) -> None:
    profile = unique("p")
    daemon.request("POST", "/1.0/profiles", {"name": profile})
    name = daemon.launch(busybox, profiles=["default", profile])
    try:
        assert (
            daemon.request(
                "PATCH", f"/1.0/profiles/{profile}", {"config": {"limits.memory": "48MiB"}}
            ).status
            == 200
        )
        limit = Path(f"/sys/fs/cgroup/memory/lxc.payload.{name}/memory.limit_in_bytes")
        if limit.exists():
            assert int(limit.read_text()) == 48 * 1024 * 1024
        # a change that would take the root disk away from a user is refused, and nothing moves
        refused = daemon.request(
            "PUT", "/1.0/profiles/default", {"config": {}, "description": "", "devices": {}}
        )
        assert refused.status == 400 and "root disk" in refused.json()["error"]
        default = daemon.request("GET", "/1.0/profiles/default").metadata
        assert default["devices"]["root"]["type"] == "disk"
        broken = daemon.request(
            "PATCH", f"/1.0/profiles/{profile}", {"config": {"raw.lxc": "not a key"}}
        )
        assert broken.status == 400
        kept = daemon.request("GET", f"/1.0/profiles/{profile}").metadata["config"]
        assert kept == {"limits.memory": "48MiB"}
    finally:
        daemon.force_delete(name)


def test_profile_and_config_cli(daemon: Daemon, busybox: str) -> None:
    profile = unique("p")
    daemon.cli("profile", "create", profile, "--description", "from the cli")
    daemon.cli("profile", "set", profile, "user.x=1", "user.y=2")
    daemon.cli("profile", "set", profile, "user.z", "3")
    assert daemon.cli("profile", "get", profile, "user.z").stdout == "3\n"
    daemon.cli("profile", "unset", profile, "user.y")
    shown = yaml.safe_load(daemon.cli("profile", "show", profile).stdout)
    assert shown["config"] == {"user.x": "1", "user.z": "3"}
    daemon.cli(
        "profile",
        "edit",
        profile,
        input=b"config:\n  user.edited: 'yes'\ndescription: edited\ndevices: {}\n",
    )
    assert daemon.request("GET", f"/1.0/profiles/{profile}").metadata["config"] == {
        "user.edited": "yes"
    }
    copy = unique("p")
    daemon.cli("profile", "copy", profile, copy)
    assert copy in daemon.cli("profile", "list", "-f", "csv").stdout
    name = unique("c")
    daemon.cli("launch", busybox, name, "-p", "default", "-p", profile)
    try:
        daemon.cli("profile", "add", name, copy)
        assert daemon.request("GET", f"/1.0/instances/{name}").metadata["profiles"] == [
            "default",
            profile,
            copy,
        ]
        daemon.cli("profile", "remove", name, copy)
        daemon.cli("config", "set", name, "user.own=1")
        assert daemon.cli("config", "get", name, "user.own").stdout == "1\n"
        assert "user.own" in daemon.cli("config", "show", name).stdout
        bad = daemon.cli("config", "set", name, "limits.memory=lots", check=False)
        assert bad.returncode == 1 and "limits.memory" in bad.stderr
        daemon.cli("config", "unset", name, "user.own")
        devices = daemon.cli("profile", "device", "list", "default", "-f", "csv").stdout
        assert "root,disk" in devices
        bad = daemon.cli(
            "config", "device", "add", name, "eth0", "nic", "nictype=bridged", check=False
        )
        assert bad.returncode == 1 and "nic" in bad.stderr
        daemon.cli("profile", "rename", copy, copy + "x")
        daemon.cli("profile", "delete", copy + "x")
        in_use = daemon.cli("profile", "delete", profile, check=False)
        assert in_use.returncode == 1 and "in use" in in_use.stderr
    finally:
        daemon.force_delete(name)
