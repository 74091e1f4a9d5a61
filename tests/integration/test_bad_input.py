"""Bad input gets the Incus error envelope, the right status and a message naming the problem;
a failed create leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Daemon, monitor_processes, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


def _error(resp: object, status: int) -> str:
    body = resp.json()  # type: ignore[attr-defined]
    assert resp.status == status, body  # type: ignore[attr-defined]
    assert body["type"] == "error" and body["error_code"] == status and body["metadata"] is None
    return str(body["error"])


def test_invalid_json(daemon: Daemon) -> None:
    resp = daemon.request("POST", "/1.0/instances", raw=b'{"name": ')
    assert "Invalid JSON" in _error(resp, 400)


def test_wrong_field_type(daemon: Daemon) -> None:
    resp = daemon.request("POST", "/1.0/instances", {"name": "x", "config": {"user.a": 1}})
    assert "config.user.a" in _error(resp, 400)


@pytest.mark.parametrize("name", ["a_b", "-ab", "ab-", "x" * 64, "123", "a.b"])
def test_invalid_names(daemon: Daemon, busybox: str, name: str) -> None:
    resp = daemon.request(
        "POST", "/1.0/instances", {"name": name, "source": {"type": "image", "alias": busybox}}
    )
    assert _error(resp, 400).startswith("Invalid instance name")


def test_duplicate_name(daemon: Daemon, container: str) -> None:
    resp = daemon.request(
        "POST", "/1.0/instances", {"name": container, "source": {"type": "image", "alias": "bb"}}
    )
    assert container in _error(resp, 409)


def test_unknown_image(daemon: Daemon) -> None:
    resp = daemon.request(
        "POST",
        "/1.0/instances",
        {"name": unique("x"), "source": {"type": "image", "alias": "no-such"}},
    )
    assert "no-such" in _error(resp, 404)
    resp = daemon.request(
        "POST",
        "/1.0/instances",
        {"name": unique("x"), "source": {"type": "image", "fingerprint": "abc"}},
    )
    assert "abc" in _error(resp, 404)
    resp = daemon.request(
        "POST", "/1.0/instances", {"name": unique("x"), "source": {"type": "image"}}
    )
    assert "Image not provided" in _error(resp, 400)


def test_unknown_and_malformed_config(daemon: Daemon, busybox: str) -> None:
    base = {"name": unique("x"), "source": {"type": "image", "alias": busybox}}
    resp = daemon.request("POST", "/1.0/instances", {**base, "config": {"limits.bogus": "1"}})
    assert "limits.bogus" in _error(resp, 400)
    resp = daemon.request("POST", "/1.0/instances", {**base, "config": {"limits.memory": "lots"}})
    assert "limits.memory" in _error(resp, 400)
    resp = daemon.request(
        "POST", "/1.0/instances", {**base, "config": {"security.privileged": "maybe"}}
    )
    assert "security.privileged" in _error(resp, 400)
    resp = daemon.request("POST", "/1.0/instances", {**base, "profiles": ["nope"]})
    assert "nope" in _error(resp, 400)
    resp = daemon.request("POST", "/1.0/instances", {**base, "type": "virtual-machine"})
    assert "virtual-machine" in _error(resp, 400)


def test_unknown_instance(daemon: Daemon) -> None:
    resp = daemon.request("GET", "/1.0/instances/does-not-exist")
    assert _error(resp, 404) == (
        "Failed to fetch instance 'does-not-exist' in project 'default': Instance not found"
    )
    assert (
        daemon.request("PUT", "/1.0/instances/does-not-exist/state", {"action": "start"}).status
        == 404
    )
    assert (
        daemon.request("POST", "/1.0/instances/does-not-exist/exec", {"command": ["true"]}).status
        == 404
    )


def test_exec_on_a_stopped_instance(daemon: Daemon, busybox: str) -> None:
    name = unique("stopped")
    daemon.ok(
        daemon.request(
            "POST", "/1.0/instances", {"name": name, "source": {"type": "image", "alias": busybox}}
        )
    )
    try:
        resp = daemon.request("POST", f"/1.0/instances/{name}/exec", {"command": ["true"]})
        assert _error(resp, 400) == "Instance is not running"
        resp = daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "explode"})
        assert "explode" in _error(resp, 400)
        stateful = daemon.request(
            "PUT", f"/1.0/instances/{name}/state", {"action": "start", "stateful": True}
        )
        assert "CRIU" in _error(stateful, 400)
        stop = daemon.wait(
            daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "stop"})
        )
        assert "already stopped" in _error(stop, 400)
    finally:
        daemon.force_delete(name)


def test_missing_operation(daemon: Daemon) -> None:
    assert daemon.request("GET", "/1.0/operations/nope").status == 404


def test_failed_create_leaves_nothing_behind(daemon: Daemon, tmp_path: Path) -> None:
    # A valid image whose file is then damaged on disk: the unpack fails part-way.
    daemon.cli(
        "image",
        "build",
        "busybox",
        "--alias",
        "doomed",
        "--output",
        str(tmp_path / "doomed.tar.gz"),
    )
    fingerprint = daemon.request("GET", "/1.0/images/aliases/doomed").metadata["target"]
    image_file = daemon.root / "images" / fingerprint
    data = image_file.read_bytes()
    image_file.write_bytes(data[: len(data) // 2])
    name = unique("doomed")
    try:
        result = daemon.wait(
            daemon.request(
                "POST",
                "/1.0/instances",
                {"name": name, "source": {"type": "image", "alias": "doomed"}, "start": True},
            )
        )
        assert result.json()["type"] == "error"
        assert "tar" in result.json()["error"]
        assert daemon.request("GET", f"/1.0/instances/{name}").status == 404
        assert not (daemon.root / "storage-pools/default/containers" / name).exists()
        assert not (daemon.root / "containers" / name).exists()
        assert not list((daemon.root / "storage-pools/default/images").glob(f"{fingerprint}*"))
        assert not monitor_processes(daemon.root, name)
    finally:
        daemon.wait(daemon.request("DELETE", f"/1.0/images/{fingerprint}"))


def test_failed_start_on_create_leaves_nothing_behind(daemon: Daemon, busybox: str) -> None:
    name = unique("nostart")
    result = daemon.wait(
        daemon.request(
            "POST",
            "/1.0/instances",
            {
                "name": name,
                "source": {"type": "image", "alias": busybox},
                "start": True,
                "config": {"raw.lxc": "lxc.init.cmd = /no/such/init"},
            },
        )
    )
    assert result.json()["type"] == "error"
    assert daemon.request("GET", f"/1.0/instances/{name}").status == 404
    assert not (daemon.root / "storage-pools/default/containers" / name).exists()
    assert not monitor_processes(daemon.root, name)


def test_moves_to_missing_pools_and_projects(daemon: Daemon, container: str) -> None:
    url = f"/1.0/instances/{container}"
    to_pool = daemon.request("POST", url, {"name": container, "pool": "nope"})
    assert to_pool.status == 404 and "nope" in to_pool.json()["error"]
    to_project = daemon.request("POST", url, {"name": container, "project": "nope"})
    assert to_project.status == 404 and "nope" in to_project.json()["error"]
    same = daemon.request("POST", url, {"name": container})
    assert same.status == 400
