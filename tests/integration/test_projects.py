"""Projects: CRUD and their rules (only empty projects are renamed, deleted or change
features), features (a project sees its own images and profiles, or the default project's),
limits (counts and sums, checked before anything is made), restrictions (what a restricted
project's instances may not do), and a restricted certificate kept inside its project."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ClientCert, Daemon, free_port, https_request, unique

pytestmark = [pytest.mark.root]

PROJECTS = "/1.0/projects"


@pytest.fixture
def project(daemon: Daemon) -> Iterator[str]:
    """A project sharing the default project's images, with profiles of its own (as a project
    that may be restricted must have): its default profile has the default one's devices."""
    name = unique("p")
    config = {"features.images": "false", "features.profiles": "true"}
    resp = daemon.request("POST", PROJECTS, {"name": name, "config": config})
    assert resp.status == 201, resp.body
    devices = daemon.request("GET", "/1.0/profiles/default").metadata["devices"]
    resp = daemon.request("PATCH", f"/1.0/profiles/default?project={name}", {"devices": devices})
    assert resp.status == 200, resp.body
    try:
        yield name
    finally:
        for url in daemon.request("GET", f"/1.0/instances?project={name}").metadata:
            inst = url.rsplit("/", 1)[-1].split("?")[0]
            resp = daemon.request("GET", f"/1.0/instances/{inst}?project={name}")
            if resp.metadata["status"] != "Stopped":
                stop = {"action": "stop", "force": True}
                daemon.wait(
                    daemon.request("PUT", f"/1.0/instances/{inst}/state?project={name}", stop)
                )
            daemon.wait(daemon.request("DELETE", f"/1.0/instances/{inst}?project={name}"))
        daemon.request("DELETE", f"{PROJECTS}/{name}")


def create(daemon: Daemon, project: str, name: str, **extra: object) -> tuple[int, str]:
    """(status of the create, error text or "")."""
    body = {"name": name, "source": {"type": "image", "alias": "bb"}, **extra}
    resp = daemon.request("POST", f"/1.0/instances?project={project}", body)
    if resp.status != 202:
        return resp.status, resp.json()["error"]
    done = daemon.wait(resp)
    return (200, "") if done.status == 200 else (done.status, done.json()["error"])


def test_project_crud_and_rules(daemon: Daemon, busybox: str) -> None:
    name, renamed = unique("p"), unique("p")
    assert daemon.request("POST", PROJECTS, {"name": name, "description": "team"}).status == 201
    got = daemon.request("GET", f"{PROJECTS}/{name}").metadata
    assert got["config"]["features.images"] == "true"
    assert got["config"].get("features.networks", "false") == "false"
    assert got["used_by"] == [f"/1.0/profiles/default?project={name}"]
    profile = daemon.request("GET", f"/1.0/profiles/default?project={name}").metadata
    assert profile["devices"] == {}  # a project's own default profile starts empty
    for body, expected in [
        ({"name": name}, "already exists"),
        ({"name": "bad/name"}, "Invalid project name"),
        ({"name": unique("p"), "config": {"bogus": "1"}}, "bogus"),
        ({"name": unique("p"), "config": {"limits.memory": "lots"}}, "limits.memory"),
        ({"name": unique("p"), "config": {"restricted.idmap.uid": "x"}}, "restricted.idmap.uid"),
        ({"name": unique("p"), "config": {"restricted.networks.uplinks": "a"}}, "uplinks"),
    ]:
        resp = daemon.request("POST", PROJECTS, body)
        assert resp.status in (400, 409) and expected in resp.json()["error"], (body, resp.body)
    resp = daemon.request("PATCH", f"{PROJECTS}/{name}", {"config": {"user.team": "ops"}})
    assert resp.status == 200
    assert daemon.request("GET", f"{PROJECTS}/{name}").metadata["config"]["user.team"] == "ops"

    # a project that holds something is not renamed, deleted, nor changes features
    inst = unique("c")
    root = {"root": {"type": "disk", "path": "/", "pool": "default"}}
    body = {"name": inst, "source": {"type": "none"}, "devices": root}
    daemon.ok(daemon.request("POST", f"/1.0/instances?project={name}", body))
    for method, path, payload, expected in [
        ("POST", f"{PROJECTS}/{name}", {"name": renamed}, "Only empty projects"),
        ("DELETE", f"{PROJECTS}/{name}", None, "Only empty projects"),
        ("PATCH", f"{PROJECTS}/{name}", {"config": {"features.images": "false"}}, "empty"),
        (
            "PATCH",
            f"{PROJECTS}/{name}",
            {"config": {"features.storage.buckets": "false"}},
            'Project feature "features.storage.buckets" cannot be disabled on non-empty projects',
        ),
        ("DELETE", f"{PROJECTS}/default", None, "default project"),
        ("POST", f"{PROJECTS}/default", {"name": renamed}, "default project"),
    ]:
        resp = daemon.request(method, path, payload)
        assert resp.status == 400 and expected in resp.json()["error"], (method, path)
    # as in Incus, a project in use may gain its own networks and zones, not lose them
    zones_on = {"config": {"features.networks.zones": "true"}}
    assert daemon.request("PATCH", f"{PROJECTS}/{name}", zones_on).status == 200
    zones_off = {"config": {"features.networks.zones": "false"}}
    assert (
        "cannot be disabled"
        in daemon.request("PATCH", f"{PROJECTS}/{name}", zones_off).json()["error"]
    )
    daemon.wait(daemon.request("DELETE", f"/1.0/instances/{inst}?project={name}"))
    assert daemon.ok(daemon.request("POST", f"{PROJECTS}/{name}", {"name": renamed}))
    assert daemon.request("GET", f"{PROJECTS}/{name}").status == 404
    listing = daemon.cli("project", "list", "--format", "csv").stdout
    assert f"{renamed},YES,YES,YES,YES,NO,YES,team,1" in listing  # NETWORK ZONES too, as incus
    daemon.cli("project", "delete", renamed)
    assert daemon.request("GET", f"{PROJECTS}/{renamed}").status == 404


def test_features_decide_what_a_project_sees(daemon: Daemon, busybox: str, project: str) -> None:
    own = unique("p")
    assert daemon.request("POST", PROJECTS, {"name": own}).status == 201
    try:
        # its own images: the default project's alias is not there
        status, error = create(daemon, own, unique("c"))
        assert status in (400, 404) and "bb" in error
        assert daemon.request("GET", f"/1.0/images/aliases/bb?project={own}").status == 404
    finally:
        daemon.request("DELETE", f"{PROJECTS}/{own}")
    # shared images and profiles: the default profile's root disk, the default project's image
    inst = unique("c")
    assert create(daemon, project, inst) == (200, "")
    assert daemon.request("GET", f"/1.0/images/aliases/bb?project={project}").status == 200
    assert daemon.request("GET", f"/1.0/instances/{inst}").status == 404  # not in default
    listed = daemon.request("GET", "/1.0/instances?all-projects=true").metadata
    assert f"/1.0/instances/{inst}?project={project}" in listed
    out = daemon.cli("list", "--project", project, "--format", "csv").stdout
    assert out.startswith(f"{inst},STOPPED"), out


def test_limits_are_checked_before_anything_is_made(
    daemon: Daemon, busybox: str, project: str
) -> None:
    resp = daemon.request(
        "PATCH",
        f"{PROJECTS}/{project}",
        {"config": {"limits.instances": "2", "limits.memory": "256MiB"}},
    )
    assert resp.status == 200, resp.body
    first, second, third = unique("c"), unique("c"), unique("c")
    status, error = create(daemon, project, first)
    assert status == 400 and "must set limits.memory" in error
    assert create(daemon, project, first, config={"limits.memory": "128MiB"}) == (200, "")
    status, error = create(daemon, project, second, config={"limits.memory": "200MiB"})
    assert status == 400 and "limits.memory" in error
    assert daemon.request("GET", f"/1.0/instances/{second}?project={project}").status == 404
    assert create(daemon, project, second, config={"limits.memory": "128MiB"}) == (200, "")
    status, error = create(daemon, project, third, config={"limits.memory": "1MiB"})
    assert status == 400 and "limits.instances" in error
    # an update that would pass the limit is refused too
    resp = daemon.request(
        "PATCH", f"/1.0/instances/{first}?project={project}", {"config": {"limits.memory": "1GiB"}}
    )
    if resp.status == 202:
        resp = daemon.wait(resp)
    assert resp.status == 400 and "limits.memory" in resp.json()["error"]
    state = daemon.request("GET", f"{PROJECTS}/{project}/state").metadata["resources"]
    assert state["instances"] == {"Limit": 2, "Usage": 2}
    assert state["memory"] == {"Limit": 256 * 1024**2, "Usage": 256 * 1024**2}
    resp = daemon.request("PATCH", f"{PROJECTS}/{project}", {"config": {"limits.instances": "1"}})
    assert resp.status == 400 and "already uses" in resp.json()["error"]


def test_restricted_project_refuses_what_it_blocks(
    daemon: Daemon, busybox: str, project: str, tmp_path: Path, network: tuple[str, str]
) -> None:
    bridge, _ = network
    config = {"restricted": "true", "restricted.networks.access": "only-this-one"}
    resp = daemon.request("PATCH", f"{PROJECTS}/{project}", {"config": config})
    assert resp.status == 200
    for extra, expected in [
        ({"config": {"security.privileged": "true"}}, "privileged"),
        ({"config": {"security.nesting": "true"}}, "nesting"),
        ({"config": {"raw.lxc": "lxc.apparmor.profile=unconfined"}}, "raw.lxc"),
        ({"devices": {"d": {"type": "unix-char", "source": "/dev/zero"}}}, "unix-char"),
        ({"devices": {"h": {"type": "disk", "source": str(tmp_path), "path": "/h"}}}, "host path"),
        (
            {
                "devices": {
                    "p": {
                        "type": "proxy",
                        "listen": "tcp:127.0.0.1:1",
                        "connect": "tcp:127.0.0.1:2",
                    }
                }
            },
            "proxy",
        ),
        ({"devices": {"n": {"type": "nic", "network": bridge}}}, "restricted.networks.access"),
    ]:
        name = unique("c")
        status, error = create(daemon, project, name, **extra)
        assert status == 403 and expected in error and "restricted" in error, (extra, error)
        assert daemon.request("GET", f"/1.0/instances/{name}?project={project}").status == 404
    inst = unique("c")
    assert create(daemon, project, inst) == (200, "")
    resp = daemon.request(
        "POST", f"/1.0/instances/{inst}/snapshots?project={project}", {"name": "s"}
    )
    assert resp.status == 403 and "restricted.snapshots" in resp.json()["error"]
    resp = daemon.request("POST", f"/1.0/instances/{inst}/backups?project={project}", {})
    assert resp.status == 403 and "restricted.backups" in resp.json()["error"]
    resp = daemon.request(
        "PATCH",
        f"/1.0/instances/{inst}?project={project}",
        {"config": {"security.privileged": "true"}},
    )
    if resp.status == 202:
        resp = daemon.wait(resp)
    assert resp.status == 403
    daemon.request("PATCH", f"{PROJECTS}/{project}", {"config": {"restricted.snapshots": "allow"}})
    resp = daemon.request(
        "POST", f"/1.0/instances/{inst}/snapshots?project={project}", {"name": "s"}
    )
    assert resp.status == 202 and daemon.wait(resp).status == 200


def test_a_restricted_certificate_cannot_reach_another_project(
    daemon: Daemon, busybox: str, project: str, tmp_path: Path
) -> None:
    other = unique("p")
    config = {"features.images": "false", "features.profiles": "false"}
    assert daemon.request("POST", PROJECTS, {"name": other, "config": config}).status == 201
    theirs = unique("c")
    address = f"127.0.0.1:{free_port()}"
    client = ClientCert(tmp_path, "team")
    try:
        assert create(daemon, other, theirs) == (200, "")
        running = daemon.request("PUT", f"/1.0/instances/{theirs}/state?project={other}",
                                 {"action": "stop", "force": True})  # fmt: skip
        their_op = running.json()["metadata"]["id"]
        daemon.wait(running)
        assert (
            daemon.request("PATCH", "/1.0", {"config": {"core.https_address": address}}).status
            == 200
        )
        cert = {"type": "client", "certificate": client.cert.read_text(), "restricted": True,
                "projects": [project]}  # fmt: skip
        assert daemon.request("POST", "/1.0/certificates", cert).status == 201

        def call(method: str, path: str, body: object = None) -> int:
            return https_request(address, method, path, body, client=client)[0].status

        mine = unique("c")
        body = {"name": mine, "source": {"type": "image", "alias": "bb"}}
        created = https_request(address, "POST", f"/1.0/instances?project={project}", body, client)[
            0
        ]
        assert created.status == 202, created.body
        assert (
            call(
                "GET", f"/1.0/operations/{created.json()['metadata']['id']}/wait?project={project}"
            )
            == 200
        )
        assert call("GET", f"/1.0/instances/{mine}?project={project}") == 200
        for method, path in [
            ("GET", f"/1.0/instances/{theirs}?project={other}"),
            ("PUT", f"/1.0/instances/{theirs}/state?project={other}"),
            ("DELETE", f"/1.0/instances/{theirs}?project={other}"),
            ("GET", f"/1.0/instances?project={other}"),
            ("GET", "/1.0/instances?all-projects=true"),
            ("GET", f"/1.0/projects/{other}"),
            ("GET", f"/1.0/events?project={other}"),
            ("GET", f"/1.0/images?project={other}"),
            ("GET", "/1.0/images?all-projects=true"),
        ]:
            assert call(method, path, {"action": "start"}) == 403, (method, path)
        # its project's name on another project's operation id does not help
        assert call("GET", f"/1.0/operations/{their_op}?project={project}") == 404
        listed = https_request(address, "GET", "/1.0/projects", client=client)[0].metadata
        assert listed == [f"/1.0/projects/{project}"]
        assert (
            daemon.request("GET", f"/1.0/instances/{theirs}?project={other}").metadata["status"]
            == "Stopped"
        )
    finally:
        daemon.request("PATCH", "/1.0", {"config": {"core.https_address": ""}})
        daemon.request("DELETE", f"/1.0/certificates/{client.fingerprint}")
        daemon.wait(daemon.request("DELETE", f"/1.0/instances/{theirs}?project={other}"))
        daemon.request("DELETE", f"{PROJECTS}/{other}")


def test_a_project_with_its_own_networks(
    daemon: Daemon, busybox: str, network: tuple[str, str]
) -> None:
    """features.networks: the project sees only its own networks (none of the host's bridges),
    may only make OVN ones (as in Incus; refused here, where OVN cannot run), within
    limits.networks. Without the feature, a project uses the default project's networks."""
    bridge, _ = network
    own = unique("p")
    config = {"features.networks": "true", "features.images": "false", "limits.networks": "1"}
    assert daemon.request("POST", PROJECTS, {"name": own, "config": config}).status == 201
    try:
        assert daemon.request("GET", f"/1.0/networks?project={own}").metadata == []
        assert daemon.request("GET", f"/1.0/networks/{bridge}?project={own}").status == 404
        resp = daemon.request("POST", f"/1.0/networks?project={own}", {"name": unique("n")})
        assert resp.status == 400 and "only OVN" in resp.json()["error"]
        resp = daemon.request(
            "POST", f"/1.0/networks?project={own}", {"name": unique("n"), "type": "ovn"}
        )
        assert resp.status == 400 and "OVN networks need" in resp.json()["error"]
        nic = {"eth0": {"type": "nic", "network": bridge},
               "root": {"type": "disk", "path": "/", "pool": "default"}}  # fmt: skip
        status, error = create(daemon, own, unique("c"), devices=nic)
        assert status == 400 and bridge in error and "does not exist" in error
        state = daemon.request("GET", f"{PROJECTS}/{own}/state").metadata["resources"]
        assert state["networks"] == {"Limit": 1, "Usage": 0}
        resp = daemon.request("PATCH", f"{PROJECTS}/{own}", {"config": {"limits.networks": "0"}})
        assert resp.status == 200
        resp = daemon.request(
            "POST", f"/1.0/networks?project={own}", {"name": unique("n"), "type": "ovn"}
        )
        assert resp.status == 400 and "limits.networks" in resp.json()["error"]
    finally:
        daemon.request("DELETE", f"{PROJECTS}/{own}")
    # a project without the feature uses the default project's networks
    shared = unique("p")
    config = {"features.images": "false", "features.profiles": "false"}
    assert daemon.request("POST", PROJECTS, {"name": shared, "config": config}).status == 201
    try:
        listed = daemon.request("GET", f"/1.0/networks?project={shared}").metadata
        assert f"/1.0/networks/{bridge}" in listed
        nic = {"eth1": {"type": "nic", "network": bridge}}
        name = unique("c")
        assert create(daemon, shared, name, devices=nic) == (200, "")
        daemon.wait(daemon.request("DELETE", f"/1.0/instances/{name}?project={shared}"))
    finally:
        daemon.request("DELETE", f"{PROJECTS}/{shared}")


def test_restricted_idmap_ranges(
    daemon: Daemon, busybox: str, project: str, subids_for_1000: Callable[[], None]
) -> None:
    """raw.idmap in a restricted project maps only the host ids restricted.idmap.* allow, and
    those keys cannot be taken away while an instance uses them (as Incus's tests check)."""
    subids_for_1000()
    # a PUT replaces the whole config: the project's features go along unchanged
    features = daemon.request("GET", f"{PROJECTS}/{project}").metadata["config"]
    restricted = {**features, "restricted": "true"}
    assert daemon.request("PATCH", f"{PROJECTS}/{project}", {"config": restricted}).status == 200
    inst = unique("c")
    assert create(daemon, project, inst) == (200, "")
    url = f"/1.0/instances/{inst}?project={project}"

    def set_raw(value: str) -> tuple[int, str]:
        resp = daemon.request("PATCH", url, {"config": {"raw.idmap": value}})
        return resp.status, resp.json()["error"]

    status, error = set_raw("both 1000 1000")
    assert status == 403 and "restricted.idmap.uid" in error
    daemon.request("PATCH", f"{PROJECTS}/{project}", {"config": {"restricted.idmap.uid": "1000"}})
    assert set_raw("both 1000 1000")[0] == 403  # the gid is not allowed yet
    status, error = set_raw("gid 1000 1000")
    assert status == 403 and "restricted.idmap.gid" in error
    assert set_raw("uid 1000 1000") == (200, "")
    daemon.request("PATCH", f"{PROJECTS}/{project}", {"config": {"restricted.idmap.gid": "1000"}})
    assert set_raw("both 1000 1000") == (200, "")
    assert set_raw("both 1001 1001")[0] == 403  # outside the allowed range
    # taking the allowance away while c uses it is refused, naming the instance
    resp = daemon.request(
        "PUT", f"{PROJECTS}/{project}", {"config": {**restricted, "restricted.idmap.gid": "1000"}}
    )
    assert resp.status == 400 and inst in resp.json()["error"]
    resp = daemon.request(
        "PATCH", f"{PROJECTS}/{project}", {"config": {"restricted.idmap.uid": "1000-x"}}
    )
    assert resp.status == 400 and "1000-x" in resp.json()["error"]


def test_shared_custom_volumes_live_under_the_holding_projects_name(daemon: Daemon) -> None:
    """A project without features.storage.volumes uses the default project's volumes: one made
    through it is the default project's (default_<name> on the pool), and goes whole."""
    name, volume = unique("p"), unique("v")
    config = {"features.profiles": "true", "features.storage.volumes": "false"}
    assert daemon.request("POST", PROJECTS, {"name": name, "config": config}).status == 201
    url = f"/1.0/storage-pools/default/volumes/custom/{volume}?project={name}"
    try:
        body = {"name": volume, "type": "custom"}
        resp = daemon.request("POST", f"/1.0/storage-pools/default/volumes?project={name}", body)
        assert resp.status == 200, resp.body
        custom = daemon.root / "storage-pools" / "default" / "custom"
        assert (custom / f"default_{volume}").is_dir() and not (
            custom / f"{name}_{volume}"
        ).exists()
        assert daemon.request("GET", url).metadata["project"] == "default"
        # its operations are the requesting project's (a client confined to it sees them)
        snapshots = url.replace("?", "/snapshots?")
        op = daemon.request("POST", snapshots, {"name": "s0"})
        assert op.status == 202, op.body
        assert daemon.wait(op).status == 200
        listed = daemon.request("GET", f"/1.0/operations?project={name}").metadata
        ids = [url for urls in listed.values() for url in urls]
        assert f"/1.0/operations/{op.json()['metadata']['id']}" in ids
        assert (
            daemon.wait(daemon.request("DELETE", url.replace("?", "/snapshots/s0?"))).status == 200
        )
        assert daemon.request("DELETE", url).status == 200
        assert not (custom / f"default_{volume}").exists()
    finally:
        daemon.request("DELETE", url)
        daemon.request("DELETE", f"{PROJECTS}/{name}")


def test_disk_limits_per_pool(daemon: Daemon, busybox: str) -> None:
    """limits.disk.pool.NAME, as Incus: 0 keeps the project off the pool, a size caps the
    root disks on it (each must then set its size)."""
    project = unique("pl")
    config = {"features.images": "false", "features.profiles": "false",
              "limits.disk.pool.default": "0"}  # fmt: skip
    assert daemon.request("POST", PROJECTS, {"name": project, "config": config}).status == 201
    try:
        body = {"name": unique("c"), "source": {"type": "image", "alias": busybox}}
        resp = daemon.request("POST", f"/1.0/instances?project={project}", body)
        refused = daemon.wait(resp) if resp.status == 202 else resp
        assert (
            refused.status == 400
            and "may not use storage pool 'default'" in refused.json()["error"]
        )
        patch = {"config": {"limits.disk.pool.default": "100MiB"}}
        assert daemon.request("PATCH", f"{PROJECTS}/{project}", patch).status == 200
        root = {"root": {"type": "disk", "path": "/", "pool": "default", "size": "60MiB"}}
        first = {**body, "devices": root}
        daemon.ok(daemon.request("POST", f"/1.0/instances?project={project}", first))
        resp = daemon.request("POST", f"/1.0/instances?project={project}",
                              {**body, "name": unique("c"), "devices": root})  # fmt: skip
        over = daemon.wait(resp) if resp.status == 202 else resp
        assert over.status == 400 and "limits.disk.pool.default" in over.json()["error"]
        low = {"config": {"limits.disk.pool.default": "10MiB"}}
        assert daemon.request("PATCH", f"{PROJECTS}/{project}", low).status == 400
    finally:
        daemon.wait(daemon.request("DELETE", f"/1.0/instances/{body['name']}?project={project}"))
        daemon.request("DELETE", f"{PROJECTS}/{project}")


def test_move_an_instance_to_another_project(daemon: Daemon, busybox: str, incus: Any) -> None:
    """incus move NAME --target-project P (instance_project_move): a stopped instance goes
    with its snapshots; the root disk its old profiles gave becomes its own device."""
    project = unique("mv")
    config = {"features.images": "false", "features.profiles": "true"}
    assert daemon.request("POST", PROJECTS, {"name": project, "config": config}).status == 201
    name = daemon.launch(busybox)
    try:
        refused = incus("move", name, "--target-project", project, check=False)
        assert "Instance must be stopped to be moved across projects" in refused.stderr
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "stop",
                                                                       "force": True}))  # fmt: skip
        daemon.ok(daemon.request("POST", f"/1.0/instances/{name}/snapshots", {"name": "s1"}))
        uuid = daemon.request("GET", f"/1.0/instances/{name}").metadata["config"]["volatile.uuid"]
        incus("move", name, "--target-project", project)
        assert daemon.request("GET", f"/1.0/instances/{name}").status == 404
        moved = daemon.request("GET", f"/1.0/instances/{name}?project={project}").metadata
        assert moved["devices"]["root"] == {"path": "/", "pool": "default", "type": "disk"}
        assert moved["config"]["volatile.uuid"] == uuid
        snaps = daemon.request("GET", f"/1.0/instances/{name}/snapshots?project={project}")
        assert [s.rsplit("/", 1)[-1].split("?")[0] for s in snaps.metadata] == ["s1"]
        start = {"action": "start"}
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state?project={project}", start))
        assert (
            daemon.cli("exec", name, "--project", project, "--", "hostname").stdout.strip() == name
        )
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state?project={project}",
                                 {"action": "stop", "force": True}))  # fmt: skip
        incus("move", name, "--project", project, "--target-project", "default")
        assert daemon.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Stopped"
    finally:
        daemon.force_delete(name)
        gone = daemon.request("DELETE", f"/1.0/instances/{name}?project={project}")
        if gone.status == 202:
            daemon.wait(gone)
        daemon.request("DELETE", f"{PROJECTS}/{project}")


def test_move_a_custom_volume_to_another_project(daemon: Daemon, incus: Any) -> None:
    """storage_volume_project_move: a custom volume (and its snapshots) into a project with
    volumes of its own, named <project>_<name> on the pool there, as Incus keeps it."""
    project = unique("vp")
    config = {"features.images": "false", "features.profiles": "false",
              "features.storage.volumes": "true"}  # fmt: skip
    assert daemon.request("POST", PROJECTS, {"name": project, "config": config}).status == 201
    volume = unique("v")
    base = "/1.0/storage-pools/default/volumes/custom"
    try:
        assert daemon.request("POST", base, {"name": volume}).status == 200
        daemon.ok(daemon.request("POST", f"{base}/{volume}/snapshots", {"name": "s1"}))
        incus("storage", "volume", "move", f"default/{volume}", f"default/{volume}",
              "--target-project", project)  # fmt: skip
        assert daemon.request("GET", f"{base}/{volume}").status == 404
        moved = daemon.request("GET", f"{base}/{volume}?project={project}")
        assert moved.status == 200 and moved.metadata["project"] == project
        snaps = daemon.request("GET", f"{base}/{volume}/snapshots?project={project}").metadata
        assert len(snaps) == 1
        pool = daemon.root / "storage-pools" / "default" / "custom"
        assert (pool / f"{project}_{volume}").is_dir() and not (pool / f"default_{volume}").exists()
        incus("storage", "volume", "move", f"default/{volume}", f"default/{volume}",
              "--project", project, "--target-project", "default")  # fmt: skip
        assert daemon.request("GET", f"{base}/{volume}").status == 200
    finally:
        for where in ("", f"?project={project}"):
            daemon.request("DELETE", f"{base}/{volume}/snapshots/s1{where}")
            daemon.request("DELETE", f"{base}/{volume}{where}")
        daemon.request("DELETE", f"{PROJECTS}/{project}")


def test_profiles_of_every_project(daemon: Daemon) -> None:
    """profiles_all_projects: ?all-projects lists each project's own profiles."""
    own, shared = unique("p"), unique("p")
    daemon.request("POST", PROJECTS, {"name": own})
    daemon.request("POST", PROJECTS, {"name": shared, "config": {"features.profiles": "false"}})
    try:
        every = daemon.request("GET", "/1.0/profiles?all-projects=true").metadata
        assert "/1.0/profiles/default" in every
        assert f"/1.0/profiles/default?project={own}" in every
        assert not any(url.endswith(f"project={shared}") for url in every)
        rows = daemon.request("GET", "/1.0/profiles?all-projects=true&recursion=1").metadata
        assert {(p["name"], p["project"]) for p in rows} >= {("default", own)}
    finally:
        for project in (own, shared):
            daemon.request("DELETE", f"{PROJECTS}/{project}")


def test_project_errors_in_incus_words(daemon: Daemon) -> None:
    """Scripts compare these: a missing project and an unknown key (unset too) as Incus says."""
    resp = daemon.request("GET", f"{PROJECTS}/nope")
    assert (resp.status, resp.json()["error"]) == (404, "Project not found")
    for value in ("1", ""):  # incus project unset sends the key empty
        resp = daemon.request("PATCH", f"{PROJECTS}/default", {"config": {"nope": value}})
        assert (resp.status, resp.json()["error"]) == (
            400,
            'Invalid project configuration key "nope"',
        )
