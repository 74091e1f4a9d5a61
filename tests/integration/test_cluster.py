"""Clustering on one member: a standalone server becomes the first member of a cluster on
cowsql (its state copied, its own keys kept local), answers the member and group API as
Incus's, and starts again on the cluster's database."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stapes.api.errors import MissingHostFeature
from stapes.db.cowsql.node import library
from tests.helpers import ClientCert, Daemon, free_port, https_request, new_root, remove_root

try:
    library()
except MissingHostFeature as exc:
    pytest.skip(exc.message, allow_module_level=True)

pytestmark = [pytest.mark.root]


@pytest.fixture
def standalone() -> Iterator[tuple[Daemon, str]]:
    """A daemon of its own, listening on a loopback port, with one stopped container."""
    daemon = Daemon(new_root())
    daemon.start()
    address = f"127.0.0.1:{free_port()}"
    try:
        yield daemon, address
    finally:
        try:
            if daemon.proc is not None:
                for url in daemon.request("GET", "/1.0/instances").metadata:
                    daemon.force_delete(url.rsplit("/", 1)[-1])
        finally:
            daemon.stop()
            remove_root(daemon.root)


def _enable(daemon: Daemon, name: str) -> dict[str, object]:
    resp = daemon.request("PUT", "/1.0/cluster", {"server_name": name, "enabled": True})
    return daemon.ok(resp)


def test_enable_moves_the_state_to_cowsql_and_survives_a_restart(
    standalone: tuple[Daemon, str],
) -> None:
    daemon, address = standalone
    daemon.cli("image", "build", "busybox", "--alias", "bb")
    create = {"name": "c1", "source": {"type": "image", "alias": "bb"}}
    daemon.ok(daemon.request("POST", "/1.0/instances", create))
    assert daemon.request("GET", "/1.0/instances/c1").metadata["location"] == "none"
    patch = {"config": {"images.auto_update_interval": "7"}}
    assert daemon.request("PATCH", "/1.0", patch).status == 200
    cluster = daemon.request("GET", "/1.0/cluster").metadata
    assert cluster["server_name"] == "" and cluster["enabled"] is False

    # bad input first: no address, a wildcard one, no name, a name for a group
    resp = daemon.request("PUT", "/1.0/cluster", {"server_name": "m1", "enabled": True})
    assert resp.status == 400 and "core.https_address" in resp.json()["error"], resp.body
    wildcard = {"config": {"core.https_address": f":{address.rsplit(':', 1)[1]}"}}
    assert daemon.request("PATCH", "/1.0", wildcard).status == 200
    resp = daemon.request("PUT", "/1.0/cluster", {"server_name": "m1", "enabled": True})
    assert resp.status == 400 and "wildcard" in resp.json()["error"], resp.body
    assert (
        daemon.request("PATCH", "/1.0", {"config": {"core.https_address": address}}).status == 200
    )
    for body, words in (
        ({"server_name": "", "enabled": True}, "ServerName is required"),
        ({"server_name": "@g", "enabled": True}, "may not start with '@'"),
        ({"server_name": "a b", "enabled": True}, "Invalid cluster member name"),
        ({"server_name": "m1", "enabled": False}, "ServerName must be empty"),
    ):
        resp = daemon.request("PUT", "/1.0/cluster", body)
        assert resp.status == 400 and words in resp.json()["error"], (body, resp.body)
    database = daemon.root / "database"
    assert not (database / "local.db").exists() and not (database / "global").exists()

    _enable(daemon, "m1")
    assert (database / "local.db").exists() and (database / "global").is_dir()
    assert not (database / "stapes.db").exists() and (database / "stapes.db.standalone").exists()

    def check() -> None:
        cluster = daemon.request("GET", "/1.0/cluster").metadata
        assert cluster["server_name"] == "m1" and cluster["enabled"] is True
        server = daemon.request("GET", "/1.0").metadata
        assert server["environment"]["server_clustered"] is True
        assert server["environment"]["server_name"] == "m1"
        assert server["config"]["core.https_address"] == address  # the member's own
        assert server["config"]["cluster.https_address"] == address
        assert server["config"]["images.auto_update_interval"] == "7"  # the cluster's
        members = daemon.request("GET", "/1.0/cluster/members").metadata
        assert members == ["/1.0/cluster/members/m1"]
        (member,) = daemon.request("GET", "/1.0/cluster/members?recursion=1").metadata
        assert member["server_name"] == "m1" and member["url"] == f"https://{address}"
        assert member["roles"] == ["database-leader", "database"] and member["database"]
        assert member["status"] == "Online" and member["message"] == "Fully operational"
        assert member["groups"] == ["default"] and member["failure_domain"] == "default"
        instance = daemon.request("GET", "/1.0/instances/c1").metadata
        assert instance["location"] == "m1" and instance["status"] == "Stopped"

    check()
    # the cluster's database takes writes: an instance created now lives on this member
    create = {"name": "c2", "source": {"type": "image", "alias": "bb"}}
    daemon.ok(daemon.request("POST", "/1.0/instances", create))
    assert daemon.request("GET", "/1.0/instances/c2").metadata["location"] == "m1"
    resp = daemon.request("PUT", "/1.0/cluster", {"server_name": "m2", "enabled": True})
    assert resp.status == 400 and "already clustered" in resp.json()["error"]

    daemon.stop()
    daemon.start()
    check()
    assert daemon.request("GET", "/1.0/instances/c2").metadata["location"] == "m1"
    daemon.ok(daemon.request("PUT", "/1.0/instances/c2/state", {"action": "start"}))
    assert daemon.request("GET", "/1.0/instances/c2").metadata["status"] == "Running"


def test_members_and_groups_as_incus(standalone: tuple[Daemon, str], tmp_path: Path) -> None:
    daemon, address = standalone
    for path in ("/1.0/cluster/members", "/1.0/cluster/groups"):
        resp = daemon.request("GET", path)
        assert resp.status == 400 and "not clustered" in resp.json()["error"], resp.body
    assert (
        daemon.request("PATCH", "/1.0", {"config": {"core.https_address": address}}).status == 200
    )
    _enable(daemon, "m1")

    url = "/1.0/cluster/members/m1"
    member = daemon.request("GET", url)
    put = {**{k: member.metadata[k] for k in ("config", "failure_domain", "groups", "roles")}}
    put.update(description="the first", failure_domain="rack1")
    put["config"] = {"user.site": "here", "scheduler.instance": "manual"}
    resp = daemon.request("PUT", url, put, headers={"If-Match": "nope"})
    assert resp.status == 412, resp.body
    resp = daemon.request("PUT", url, put, headers={"If-Match": member.headers["ETag"]})
    assert resp.status == 200, resp.body
    shown = daemon.request("GET", url).metadata
    assert shown["description"] == "the first" and shown["failure_domain"] == "rack1"
    assert shown["config"] == {"user.site": "here", "scheduler.instance": "manual"}
    for change, words in (
        ({"config": {"core.foo": "x"}}, "Invalid cluster member config key"),
        ({"config": {"scheduler.instance": "some"}}, "scheduler.instance"),
        ({"roles": []}, "database roles"),
        ({"roles": ["database-leader", "database", "database-standby"]}, "database roles"),
        ({"groups": ["nope"]}, "does not exist"),
    ):
        resp = daemon.request("PATCH", url, change)
        assert resp.status == 400 and words in resp.json()["error"], (change, resp.body)
    resp = daemon.request("PATCH", url, {"roles": ["database-leader", "database", "event-hub"]})
    assert resp.status == 200, resp.body
    assert daemon.request("GET", url).metadata["roles"][-1] == "event-hub"

    groups = "/1.0/cluster/groups"
    assert daemon.request("GET", groups).metadata == [f"{groups}/default"]
    resp = daemon.request("POST", groups, {"name": "fast", "description": "d", "members": ["m1"]})
    assert resp.status == 201 and resp.headers["Location"] == f"{groups}/fast", resp.body
    assert daemon.request("POST", groups, {"name": "fast"}).status == 409
    assert daemon.request("POST", groups, {"name": "x", "members": ["m9"]}).status == 400
    assert daemon.request("GET", url).metadata["groups"] == ["default", "fast"]
    fast = daemon.request("GET", f"{groups}/fast").metadata
    assert fast == {
        "name": "fast",
        "description": "d",
        "config": {},
        "members": ["m1"],
        "used_by": ["/1.0/cluster/members/m1"],
    }
    resp = daemon.request("DELETE", f"{groups}/default")
    assert resp.status == 400 and "cannot be deleted" in resp.json()["error"]
    resp = daemon.request("DELETE", f"{groups}/fast")
    assert resp.status == 400 and "still has members" in resp.json()["error"]
    resp = daemon.request("PUT", f"{groups}/default", {"members": []})
    assert resp.status == 200, resp.body  # m1 stays in "fast"
    resp = daemon.request("PUT", f"{groups}/fast", {"members": []})
    assert resp.status == 400 and "no group" in resp.json()["error"], resp.body
    assert daemon.request("POST", f"{groups}/fast", {"name": "quick"}).status == 201
    assert daemon.request("GET", url).metadata["groups"] == ["quick"]

    resp = daemon.request("DELETE", url)
    assert resp.status == 400 and "only member" in resp.json()["error"], resp.body
    assert daemon.request("POST", url, {"server_name": "bad name"}).status == 400
    resp = daemon.request("POST", url, {"server_name": "first"})
    assert resp.status == 201, resp.body
    assert daemon.request("GET", "/1.0/cluster").metadata["server_name"] == "first"
    assert daemon.request("GET", url).status == 404
    assert daemon.request("GET", "/1.0/cluster/members/first").metadata["groups"] == ["quick"]

    # the incus client sees the same cluster
    incus = shutil.which("incus")
    if incus is None:
        return
    env = {**os.environ, "INCUS_SOCKET": daemon.socket, "INCUS_CONF": str(tmp_path / "conf")}
    out = subprocess.run(
        [incus, "cluster", "list", "-f", "csv"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    roles = '"database-leader,database,event-hub"'
    line = f"first,https://{address},{roles},x86_64,rack1,the first,ONLINE,Fully operational"
    assert out.stdout.splitlines()[0] == line, out.stdout


def test_a_restricted_client_cannot_touch_the_cluster(
    standalone: tuple[Daemon, str], tmp_path: Path
) -> None:
    daemon, address = standalone
    assert (
        daemon.request("PATCH", "/1.0", {"config": {"core.https_address": address}}).status == 200
    )
    client = ClientCert(tmp_path)
    cert = client.cert.read_text()
    trust = {"type": "client", "certificate": cert, "restricted": True, "projects": ["default"]}
    assert daemon.request("POST", "/1.0/certificates", trust).status == 201
    body = {"server_name": "m1", "enabled": True}
    resp, _ = https_request(address, "PUT", "/1.0/cluster", body, client)
    assert resp.status == 403, resp.body
    assert daemon.request("GET", "/1.0/cluster").metadata["enabled"] is False
