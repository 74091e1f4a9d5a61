"""A state directory an earlier stapesd made, where an instance of another project had its
volume, snapshots, logs and device files under its bare name: the new daemon moves them to
``<project>_<name>`` at start and re-adopts the instance, still running."""

from __future__ import annotations

import os

import pytest

from tests.helpers import Daemon, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


def test_an_earlier_layout_upgrades_and_running_instances_are_readopted(lone: Daemon) -> None:
    d = lone
    d.cli("image", "build", "busybox", "--alias", "bb")
    project, name = unique("p"), unique("c")
    config = {"features.images": "false", "features.profiles": "true"}
    assert d.request("POST", "/1.0/projects", {"name": project, "config": config}).status == 201
    devices = d.request("GET", "/1.0/profiles/default").metadata["devices"]
    d.request("PATCH", f"/1.0/profiles/default?project={project}", {"devices": devices})
    q = f"?project={project}"
    body = {"name": name, "source": {"type": "image", "alias": "bb"}}
    d.ok(d.request("POST", f"/1.0/instances{q}", body))
    d.ok(d.request("POST", f"/1.0/instances/{name}/snapshots{q}", {"name": "s0"}))
    d.ok(d.request("PUT", f"/1.0/instances/{name}/state{q}", {"action": "start"}))
    pid = d.request("GET", f"/1.0/instances/{name}/state{q}").metadata["pid"]
    d.stop()  # the instance runs on

    # put its files where the earlier layout kept them: under the bare name
    entry = f"{project}_{name}"
    pool = d.root / "storage-pools" / "default"
    for place in (pool / "containers", pool / "containers-snapshots", d.root / "logs"):
        (place / entry).rename(place / name)
    link = d.root / "containers" / entry
    link.unlink()
    link.symlink_to(pool / "containers" / name)

    d.start()
    state = d.request("GET", f"/1.0/instances/{name}/state{q}").metadata
    assert state["status"] == "Running" and state["pid"] == pid
    for place in (pool / "containers", pool / "containers-snapshots", d.root / "logs"):
        assert (place / entry).is_dir() and not (place / name).exists(), place
    assert os.readlink(link) == str(pool / "containers" / entry)
    run = {"command": ["sh", "-c", "echo up"], "record-output": True}
    done = d.ok(d.request("POST", f"/1.0/instances/{name}/exec{q}", run))
    assert done["metadata"]["return"] == 0
    d.ok(d.request("PUT", f"/1.0/instances/{name}/state{q}", {"action": "stop", "force": True}))
    d.ok(d.request("PUT", f"/1.0/instances/{name}{q}", {"restore": "s0"}))  # snapshots moved
    d.ok(d.request("PUT", f"/1.0/instances/{name}/state{q}", {"action": "start"}))
