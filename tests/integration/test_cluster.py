"""Clustering on one member: a standalone server becomes the first member of a cluster on
cowsql (its state copied, its own keys kept local), answers the member and group API as
Incus's, and starts again on the cluster's database."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from stapes import certs
from stapes.api.errors import MissingHostFeature
from stapes.api.join_token import token_text
from stapes.db.cowsql.node import library
from tests.helpers import (
    STAPES as STAPES_CLI,
)
from tests.helpers import (
    ClientCert,
    Daemon,
    free_port,
    https_request,
    new_root,
    remove_root,
)

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


def test_clients_cannot_touch_the_cluster_or_its_database(
    standalone: tuple[Daemon, str], tmp_path: Path
) -> None:
    daemon, address = standalone
    assert (
        daemon.request("PATCH", "/1.0", {"config": {"core.https_address": address}}).status == 200
    )
    project = {"name": "p", "config": {"restricted": "true", "features.images": "false"}}
    resp = daemon.request("POST", "/1.0/projects", project)
    assert resp.status == 201, resp.body
    client = ClientCert(tmp_path)
    cert = client.cert.read_text()
    trust = {"type": "client", "certificate": cert, "restricted": True, "projects": ["p"]}
    assert daemon.request("POST", "/1.0/certificates", trust).status == 201
    body = {"server_name": "m1", "enabled": True}
    resp, _ = https_request(address, "PUT", "/1.0/cluster", body, client)
    assert resp.status == 403, resp.body
    assert daemon.request("GET", "/1.0/cluster").metadata["enabled"] is False

    _enable(daemon, "m1")
    daemon.cli("image", "build", "busybox", "--alias", "bb")
    create = {"name": "c", "source": {"type": "image", "alias": "bb"}}
    for path in ("/1.0/instances?project=p&target=m1", "/1.0/instances?project=p&target=@default"):
        resp, _ = https_request(address, "POST", path, create, client)
        assert resp.status == 403 and "restricted.cluster.target" in resp.json()["error"], resp.body
    for path in ("/1.0/cluster/members", "/1.0/cluster/members/m1/state"):
        resp, _ = https_request(address, "GET", path, None, client)
        assert resp.status == 403, (path, resp.body)

    # an administrator's certificate is not a member's: no raft node, no database
    admin = ClientCert(tmp_path, "admin")
    full = {"type": "client", "certificate": admin.cert.read_text()}
    assert daemon.request("POST", "/1.0/certificates", full).status == 201
    node = {"node_id": 12345, "address": "127.0.0.1:1"}
    resp, _ = https_request(address, "POST", "/internal/cluster/assign", node, admin)
    assert resp.status == 403, resp.body
    for who in (admin, client, None):
        resp, _ = https_request(
            address, "POST", "/internal/database", None, who,
            headers={"Upgrade": "dqlite", "Connection": "Upgrade"},
        )  # fmt: skip
        assert resp.status == 403 and "cluster members" in resp.json()["error"], resp.body
    join = {"server_name": "m2", "address": "127.0.0.1:2", "secret": "0" * 64, "schema": 15,
            "api_extensions": 1, "node_id": 7}  # fmt: skip
    resp, _ = https_request(address, "POST", "/internal/cluster/accept", join, None)
    assert resp.status == 403 and "join token is not valid" in resp.json()["error"], resp.body
    assert [
        m["server_name"] for m in daemon.request("GET", "/1.0/cluster/members?recursion=1").metadata
    ] == ["m1"]


def _member(tmp: list[Daemon]) -> tuple[Daemon, str]:
    daemon = Daemon(new_root())
    tmp.append(daemon)
    daemon.start()
    address = f"127.0.0.1:{free_port()}"
    assert (
        daemon.request("PATCH", "/1.0", {"config": {"core.https_address": address}}).status == 200
    )
    return daemon, address


def _clear(daemon: Daemon) -> None:
    """The instances of a member (its own, as it lists them) stopped and deleted; what a dead
    daemon left running is killed: containers outlive their daemon."""
    if daemon.proc is not None and daemon.proc.poll() is None:
        try:
            own = daemon.request("GET", "/1.0/cluster").metadata.get("server_name") or "none"
            listed = daemon.request("GET", "/1.0/instances?all-projects=true&recursion=1")
            for item in listed.metadata or []:
                if item.get("location") not in (own, "none"):
                    continue
                path = f"/1.0/instances/{item['name']}?project={item['project']}"
                stop = {"action": "stop", "force": True}
                daemon.wait(daemon.request("PUT", path.replace("?", "/state?"), stop), 30)
                daemon.wait(daemon.request("DELETE", path), 30)
        except Exception:  # a daemon in a bad state: its containers are killed afterwards
            pass


def monitor_processes_under(root: Path) -> list[str]:
    """The names of the containers liblxc still runs under ``root``."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    prefix = f"[lxc monitor] {root / 'containers'} "
    return [
        line.strip()[len(prefix) :] for line in out.splitlines() if line.strip().startswith(prefix)
    ]


def qemu_processes_under(root: Path) -> list[int]:
    """The pids of the QEMU processes running a VM of the daemon at ``root``."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    found = [line.split(None, 1) for line in out.splitlines()[1:]]
    return [int(pid) for pid, args in found if "qemu-system" in args and f"{root}/" in args]


@pytest.fixture
def servers() -> Iterator[list[Daemon]]:
    made: list[Daemon] = []
    yield made
    try:
        for daemon in made:  # all of them still up: the cluster's database answers
            _clear(daemon)
    finally:
        for daemon in made:
            daemon.stop(signal.SIGKILL)
    for daemon in made:
        for name in monitor_processes_under(daemon.root):  # a daemon killed by a test
            subprocess.run(["lxc-stop", "--kill", "-P", str(daemon.root / "containers"), "-n",
                            name], capture_output=True, timeout=30)  # fmt: skip
        for pid in qemu_processes_under(daemon.root):  # VMs outlive their daemon too
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        remove_root(daemon.root)


def _token(daemon: Daemon, name: str) -> str:
    resp = daemon.request("POST", "/1.0/cluster/members", {"server_name": name})
    assert resp.status == 202, resp.body
    op = resp.json()["metadata"]
    assert op["class"] == "token"
    return token_text(op["metadata"])


def _join(daemon: Daemon, address: str, name: str, leader: Daemon, token: str) -> None:
    env = leader.request("GET", "/1.0").metadata["environment"]
    put = {
        "server_name": name,
        "enabled": True,
        "cluster_address": env["addresses"][0],
        "cluster_certificate": env["certificate"],
        "server_address": address,
        "cluster_token": token,
    }
    daemon.ok(daemon.request("PUT", "/1.0/cluster", put))


def _incus(daemon: Daemon, conf: Path, *args: str, timeout: float = 300) -> str | None:
    """The real incus client's output for ``args`` against ``daemon`` (it must succeed), or
    None when the client is not installed (the caller uses the API instead)."""
    incus = shutil.which("incus")
    if incus is None:
        return None
    env = {**os.environ, "INCUS_SOCKET": daemon.socket, "INCUS_CONF": str(conf)}
    out = subprocess.run([incus, *args], env=env, capture_output=True, text=True,
                         timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
    assert out.returncode == 0, (args, out.stderr)
    return out.stdout


def _roles(daemon: Daemon) -> dict[str, list[str]]:
    members = daemon.request("GET", "/1.0/cluster/members?recursion=1").metadata
    return {m["server_name"]: m["roles"] for m in members}


def _until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.25)


def test_three_members_join_with_tokens_and_survive_one_killed(
    servers: list[Daemon], tmp_path: Path
) -> None:
    m1, a1 = _member(servers)
    _enable(m1, "m1")
    assert (
        m1.request("PATCH", "/1.0", {"config": {"cluster.offline_threshold": "11"}}).status == 200
    )

    # bad joins first: each refused before anything changes on either side
    m2, a2 = _member(servers)
    good = _token(m1, "m2")
    env = m1.request("GET", "/1.0").metadata["environment"]
    base = {"server_name": "m2", "enabled": True, "cluster_address": a1,
            "cluster_certificate": env["certificate"], "server_address": a2}  # fmt: skip
    for change, status, words in (
        ({"cluster_token": ""}, 400, "No join token"),
        ({"cluster_certificate": ""}, 400, "No target cluster member certificate"),
        ({"server_address": "0.0.0.0:1"}, 400, "wildcard"),
        ({"server_address": "127.0.0.1:1"}, 400, "core.https_address"),
        (
            {
                "member_config": [
                    {
                        "entity": "storage-pool",
                        "name": "default",
                        "key": "source",
                        "value": "relative/dir",
                    }
                ]
            },
            400,
            "Invalid source",
        ),
        (
            {
                "member_config": [
                    {"entity": "storage-pool", "name": "default", "key": "driver", "value": "zfs"}
                ]
            },
            400,
            "not a member-specific key",
        ),
        (
            {
                "member_config": [
                    {"entity": "network", "name": "br0", "key": "parent", "value": "eth 0; x"}
                ]
            },
            400,
            "Invalid parent for network",
        ),
    ):
        resp = m2.request("PUT", "/1.0/cluster", {**base, **change, "cluster_token": good} | change)
        assert resp.status == status and words in resp.json()["error"], (change, resp.body)
    for change, words in (
        ({"cluster_token": token_text({"secret": "0" * 64})}, "not valid"),
        ({"server_name": "m9", "cluster_token": good}, "for member 'm2'"),
    ):
        resp = m2.wait(m2.request("PUT", "/1.0/cluster", {**base, **change}))
        assert resp.status in (400, 403) and words in resp.json()["error"], resp.body
        assert m2.request("GET", "/1.0/cluster").metadata["enabled"] is False
    assert [
        m["server_name"] for m in m1.request("GET", "/1.0/cluster/members?recursion=1").metadata
    ] == ["m1"]

    _join(m2, a2, "m2", m1, good)
    assert _roles(m1) == {"m1": ["database-leader", "database"], "m2": ["database-standby"]}
    assert _roles(m2) == _roles(m1)
    assert m2.request("GET", "/1.0").metadata["environment"]["server_name"] == "m2"
    assert m2.request("GET", "/1.0").metadata["config"]["core.https_address"] == a2
    # a used token is gone
    resp = m2.request("GET", "/1.0/cluster")
    assert resp.metadata["enabled"] is True and resp.metadata["server_name"] == "m2"

    # the incus client asks m2 for the third member's token; m3 joins through m1
    m3, a3 = _member(servers)
    printed = _incus(m2, tmp_path / "conf", "cluster", "add", "m3", "-q")
    token = printed.strip().splitlines()[-1] if printed is not None else _token(m2, "m3")
    _join(m3, a3, "m3", m1, token)

    def token_pending() -> bool:  # m2's token operation, used through m1
        listed = m2.request("GET", "/1.0/operations?recursion=1").metadata
        return any(op["class"] == "token" for op in listed.get("running", []))

    _until(lambda: not token_pending(), 20)
    voters = ["database", "database", "database", "database-leader"]
    _until(lambda: sorted(r for roles in _roles(m3).values() for r in roles) == voters)
    for daemon in (m1, m2, m3):
        assert sorted(_roles(daemon)) == ["m1", "m2", "m3"]

    # writes through any member, read through every other
    assert m3.request("POST", "/1.0/profiles", {"name": "from-m3"}).status == 201
    assert m2.request("GET", "/1.0/profiles/from-m3").status == 200
    assert m1.request("PATCH", "/1.0", {"config": {"user.shared": "yes"}}).status == 200
    assert m3.request("GET", "/1.0").metadata["config"]["user.shared"] == "yes"
    m1.cli("image", "build", "busybox", "--alias", "bb")
    fingerprint = m1.request("GET", "/1.0/images/aliases/bb").metadata["target"]
    # cluster.images_minimal_replica (3): the image's files are copied to the two others
    _until(lambda: all((d.root / "images" / fingerprint).exists() for d in (m2, m3)))
    for name in ("m1", "m2", "m3"):
        body = {"name": f"on-{name}", "source": {"type": "image", "alias": "bb"}}
        m1.ok(m1.request("POST", f"/1.0/instances?target={name}", body))

    # kill -9 the leader: the two others elect one and go on taking writes
    leader = next(n for n, r in _roles(m1).items() if "database-leader" in r)
    dead = {"m1": m1, "m2": m2, "m3": m3}[leader]
    alive = [d for d in (m1, m2, m3) if d is not dead]
    dead.stop(signal.SIGKILL)
    started = time.monotonic()
    _until(lambda: alive[0].request("POST", "/1.0/profiles", {"name": "after"}).status == 201)
    assert time.monotonic() - started < 30
    assert alive[1].request("GET", "/1.0/profiles/after").status == 200
    for n in range(3):  # placed on the members that answer, listed with the dead one's
        body = {"name": f"after{n}", "source": {"type": "image", "alias": "bb"}}
        alive[n % 2].ok(alive[n % 2].request("POST", "/1.0/instances", body))
    listed = {i["name"]: i for i in alive[1].request("GET", "/1.0/instances?recursion=1").metadata}
    assert {listed[f"after{n}"]["location"] for n in range(3)} <= {"m1", "m2", "m3"} - {leader}
    assert listed[f"on-{leader}"]["status"] == "Error"

    def offline() -> bool:
        members = alive[0].request("GET", "/1.0/cluster/members?recursion=1").metadata
        return next(m for m in members if m["server_name"] == leader)["status"] == "Offline"

    _until(offline, 40)

    # it comes back, catches up and is online again
    dead.start()
    assert dead.request("GET", "/1.0/profiles/after").status == 200

    def online() -> bool:
        members = alive[1].request("GET", "/1.0/cluster/members?recursion=1").metadata
        return all(m["status"] == "Online" for m in members)

    _until(online, 40)


def test_instances_placed_listed_and_reached_through_any_member(
    servers: list[Daemon], tmp_path: Path
) -> None:
    m1, _ = _member(servers)
    _enable(m1, "m1")
    m1.cli("image", "build", "busybox", "--alias", "bb")  # its files only on m1
    m2, a2 = _member(servers)
    _join(m2, a2, "m2", m1, _token(m1, "m2"))

    # launched through m1 on m2 (the image comes from m1), and placed by the scheduler
    body = {"name": "on2", "source": {"type": "image", "alias": "bb"}, "start": True}
    m1.ok(m1.request("POST", "/1.0/instances?target=m2", body))
    body = {"name": "auto", "source": {"type": "image", "alias": "bb"}}
    m2.ok(m2.request("POST", "/1.0/instances", body))  # m1 has none yet: there
    for daemon in (m1, m2):
        listed = daemon.request("GET", "/1.0/instances?recursion=1").metadata
        assert {(i["name"], i["location"], i["status"]) for i in listed} == {
            ("on2", "m2", "Running"),
            ("auto", "m1", "Stopped"),
        }
    assert m1.request("GET", "/1.0/instances/on2/state").metadata["pid"] > 0
    # the operations of every member, each where it runs, reached through any member
    token = m2.request("POST", "/1.0/certificates", {"name": "laptop", "token": True})
    assert token.status == 202, token.body
    op_id = token.json()["metadata"]["id"]
    running = m1.request("GET", "/1.0/operations?recursion=1").metadata["running"]
    assert {(o["id"], o["location"]) for o in running} >= {(op_id, "m2")}
    assert m1.request("GET", f"/1.0/operations/{op_id}").metadata["location"] == "m2"
    assert m1.request("DELETE", f"/1.0/operations/{op_id}").status == 200
    # a copy is made where the instance's volume is, whichever member is asked
    copy = {"name": "twin", "source": {"type": "copy", "source": "auto"}}
    m2.ok(m2.request("POST", "/1.0/instances", copy))
    assert m2.request("GET", "/1.0/instances/twin").metadata["location"] == "m1"
    m2.wait(m2.request("DELETE", "/1.0/instances/twin"))
    resp = m1.request("POST", "/1.0/instances?target=m9", body | {"name": "x"})
    assert resp.status == 404 and "m9" in resp.json()["error"], resp.body
    resp = m1.request("POST", "/1.0/instances?target=@nogroup", body | {"name": "x"})
    assert resp.status == 404, resp.body

    # exec, files and state changes through the member that does not run it
    incus = shutil.which("incus")
    if incus is not None:
        env = {**os.environ, "INCUS_SOCKET": m1.socket, "INCUS_CONF": str(tmp_path / "conf")}
        out = subprocess.run(
            [incus, "exec", "on2", "--", "cat", "/proc/self/cgroup"],
            env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        out = subprocess.run([incus, "list", "-c", "nsL", "-f", "csv"], env=env,
                             capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)  # fmt: skip
        assert sorted(out.stdout.splitlines()) == ["auto,STOPPED,m1", "on2,RUNNING,m2"]
        out = subprocess.run([incus, "launch", "bb", "viaincus", "--target", "m2"], env=env,
                             capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)  # fmt: skip
        assert out.returncode == 0, out.stderr
        shown = m1.request("GET", "/1.0/instances/viaincus").metadata
        assert (shown["location"], shown["status"]) == ("m2", "Running")
        m1.ok(m1.request("PUT", "/1.0/instances/viaincus/state", {"action": "stop", "force": True}))
        m1.ok(m1.request("DELETE", "/1.0/instances/viaincus"))
        local = tmp_path / "pushed"
        local.write_bytes(os.urandom(300_000))
        for argv in (["file", "push", str(local), "on2/root/pushed"],  # SFTP, relayed
                     ["file", "pull", "on2/root/pushed", str(tmp_path / "pulled")]):  # fmt: skip
            out = subprocess.run([incus, *argv], env=env, capture_output=True, text=True,
                                 timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
            assert out.returncode == 0, (argv, out.stderr)
        assert (tmp_path / "pulled").read_bytes() == local.read_bytes()
    resp = m1.request("POST", "/1.0/instances/on2/files?path=/root/hello", raw=b"hi\n",
                      headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert resp.status == 200, resp.body
    assert m2.request("GET", "/1.0/instances/on2/files?path=/root/hello").body == b"hi\n"
    m1.ok(m1.request("PUT", "/1.0/instances/on2/state", {"action": "stop", "force": True}))
    assert m2.request("GET", "/1.0/instances/on2").metadata["status"] == "Stopped"

    # a member that does not answer: its instances are listed in error
    m2.stop(signal.SIGKILL)
    listed = m1.request("GET", "/1.0/instances?recursion=1").metadata
    assert {(i["name"], i["status"]) for i in listed} == {("on2", "Error"), ("auto", "Stopped")}
    m2.start()
    m1.wait(m1.request("DELETE", "/1.0/instances/on2"))
    assert m2.request("GET", "/1.0/instances/on2").status == 404
    # an image deleted through one member is gone from every member's disk
    fingerprint = m1.request("GET", "/1.0/images/aliases/bb").metadata["target"]
    assert (m2.root / "images" / fingerprint).exists()
    m2.wait(m2.request("DELETE", f"/1.0/images/{fingerprint}"))
    _until(lambda: not any((d.root / "images" / fingerprint).exists() for d in (m1, m2)))


def test_the_stapes_cli_makes_and_uses_a_cluster(servers: list[Daemon], tmp_path: Path) -> None:
    m1, a1 = _member(servers)
    assert "member m1" in m1.cli("cluster", "enable", "m1").stdout
    m1.cli("image", "build", "busybox", "--alias", "bb")
    token = m1.cli("cluster", "add", "m2").stdout.strip().splitlines()[-1]
    m2, a2 = _member(servers)
    bad = m2.cli("cluster", "join", "not-a-token", check=False)
    assert bad.returncode == 1 and "Invalid join token" in bad.stderr
    assert "Joined the cluster as m2" in m2.cli("cluster", "join", token).stdout
    listed = list(csv.reader(io.StringIO(m2.cli("cluster", "list", "-f", "csv").stdout)))
    assert [row[:3] for row in listed] == [
        ["m1", f"https://{a1}", "database-leader\ndatabase"],
        ["m2", f"https://{a2}", "database-standby"],
    ]
    m2.cli("cluster", "set", "m2", "description=second", "user.rack=r2")
    shown = m2.cli("cluster", "show", "m2").stdout
    assert "description: second" in shown and "user.rack: r2" in shown
    m1.cli("cluster", "group", "create", "fast")
    m1.cli("cluster", "group", "assign", "m2", "default,fast")
    assert "fast,,1" in m1.cli("cluster", "group", "list", "-f", "csv").stdout

    m1.cli("init", "bb", "c1", "--target", "m2")
    m1.cli("init", "bb", "c2", "--target", "@fast")
    table = m1.cli("list", "-f", "csv").stdout.splitlines()
    assert sorted(line.split(",")[-1] for line in table) == ["m2", "m2"]
    assert "LOCATION" in m1.cli("list").stdout
    bad = m1.cli("init", "bb", "c3", "--target", "m9", check=False)
    assert bad.returncode == 1 and "m9" in bad.stderr
    out = m1.cli("storage", "create", "cli", "dir", f"source={tmp_path}", "--target", "m2")
    assert "pending on m2" in out.stdout
    m1.cli("storage", "create", "cli", "dir")
    assert m2.request("GET", "/1.0/storage-pools/cli").metadata["config"]["source"] == str(tmp_path)

    # joined by a preseed with a token alone: stapes admin init, and incus admin init
    joiners = [("m3", [STAPES_CLI, "admin", "init", "--preseed"])]
    if shutil.which("incus") is not None:
        joiners.append(("m4", ["incus", "admin", "init", "--preseed"]))
    for name, argv in joiners:
        daemon = Daemon(new_root())
        servers.append(daemon)
        daemon.start()
        token = m1.cli("cluster", "add", name).stdout.strip().splitlines()[-1]
        address = f"127.0.0.1:{free_port()}"
        preseed = {  # server_address too: incus, as Incus, wants it
            "config": {"core.https_address": address},
            "cluster": {"enabled": True, "server_name": name, "cluster_token": token,
                        "server_address": address},
        }  # fmt: skip
        env = {**daemon.env, "INCUS_SOCKET": daemon.socket, "INCUS_CONF": str(daemon.root / "ic")}
        out = subprocess.run(argv, input=yaml.safe_dump(preseed), env=env, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        assert out.returncode == 0, (argv, out.stderr)
        assert daemon.request("GET", "/1.0/cluster").metadata["server_name"] == name
    assert sorted(_roles(m1)) == ["m1", "m2", *(name for name, _ in joiners)]


def test_members_are_removed_and_a_removed_one_stands_alone(servers: list[Daemon]) -> None:
    m1, _ = _member(servers)
    _enable(m1, "m1")
    m1.cli("image", "build", "busybox", "--alias", "bb")
    others = []
    for name in ("m2", "m3"):
        daemon, address = _member(servers)
        _join(daemon, address, name, m1, _token(m1, name))
        others.append(daemon)
    m2, m3 = others
    body = {"name": "held", "source": {"type": "image", "alias": "bb"}}
    m1.ok(m1.request("POST", "/1.0/instances?target=m3", body))
    resp = m1.request("DELETE", "/1.0/cluster/members/m3")
    assert resp.status == 400 and "still has instances (held)" in resp.json()["error"]
    m1.wait(m1.request("DELETE", "/1.0/instances/held"))

    # asked of m3 itself, another member removes it; m3 starts again on its own
    pid = m3.proc.pid if m3.proc else 0
    resp = m3.request("DELETE", "/1.0/cluster/members/m3")
    assert resp.status == 200, resp.body
    assert sorted(_roles(m1)) == ["m1", "m2"]
    _until(
        lambda: (
            _answers(m3)
            and not m3.request("GET", "/1.0").metadata["environment"]["server_clustered"]
        )
    )
    assert m3.proc is not None and m3.proc.pid == pid and m3.proc.poll() is None
    assert m3.request("GET", "/1.0").metadata["config"].get("core.https_address")
    assert m3.request("GET", "/1.0/profiles/default").status == 200
    _until(
        lambda: (
            sorted(r for roles in _roles(m1).values() for r in roles)
            == ["database", "database-leader", "database-standby"]
        )
    )

    # a member that is gone is removed with --force only; the last one not at all
    m2.stop(signal.SIGKILL)
    resp = m1.request("DELETE", "/1.0/cluster/members/m2")
    assert resp.status == 400 and "--force" in resp.json()["error"], resp.body
    resp = m1.request("DELETE", "/1.0/cluster/members/m2?force=1")
    assert resp.status == 200, resp.body
    assert _roles(m1) == {"m1": ["database-leader", "database"]}
    assert m1.request("POST", "/1.0/profiles", {"name": "alone"}).status == 201
    resp = m1.request("DELETE", "/1.0/cluster/members/m1")
    assert resp.status == 400 and "only member" in resp.json()["error"]


def _answers(daemon: Daemon) -> bool:
    try:
        return daemon.request("GET", "/1.0").status == 200
    except OSError:
        return False


def test_instances_move_between_members(servers: list[Daemon], tmp_path: Path) -> None:
    m1, _ = _member(servers)
    _enable(m1, "m1")
    m1.cli("image", "build", "busybox", "--alias", "bb")
    m2, a2 = _member(servers)
    _join(m2, a2, "m2", m1, _token(m1, "m2"))
    body = {"name": "mover", "source": {"type": "image", "alias": "bb"}, "start": True}
    m1.ok(m1.request("POST", "/1.0/instances?target=m1", body))
    resp = m1.request("POST", "/1.0/instances/mover/files?path=/root/kept", raw=b"kept\n",
                      headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert resp.status == 200, resp.body
    m1.ok(m1.request("POST", "/1.0/instances/mover/snapshots", {"name": "s0"}))
    resp = m1.request("POST", "/1.0/instances/mover/files?path=/root/later", raw=b"later\n",
                      headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert resp.status == 200, resp.body
    volume = m1.root / "storage-pools" / "default" / "containers" / "mover"

    # bad moves first: nothing changes
    for target, status in (("m9", 404), ("m1", 400)):
        resp = m1.request("POST", f"/1.0/instances/mover?target={target}", {"migration": True})
        assert resp.status == status, resp.body
    resp = m1.request("POST", "/1.0/instances/mover?target=m2", {"migration": True, "live": True})
    assert resp.status == 400 and "CRIU" in resp.json()["error"], resp.body  # a container

    # asked of m2, done by m1 (the instance's member)
    if _incus(m2, tmp_path / "conf", "move", "mover", "--target", "m2", "--stateless") is None:
        m2.ok(m2.request("POST", "/1.0/instances/mover?target=m2", {"migration": True}))
    shown = m1.request("GET", "/1.0/instances/mover").metadata
    assert shown["location"] == "m2" and shown["status"] == "Running"
    assert m1.request("GET", "/1.0/instances/mover/files?path=/root/kept").body == b"kept\n"
    assert not any(volume.parent.glob("mover*")), "the source member kept its copy"
    assert [
        s["name"] for s in m2.request("GET", "/1.0/instances/mover/snapshots?recursion=1").metadata
    ] == ["s0"]
    m2.ok(m2.request("PUT", "/1.0/instances/mover/state", {"action": "stop", "force": True}))
    m2.ok(m2.request("PUT", "/1.0/instances/mover", {"restore": "s0"}))  # its volume came too
    assert m2.request("GET", "/1.0/instances/mover/files?path=/root/later").status == 404

    # and back, stopped, through the member it leaves (stapes move --target)
    m2.cli("move", "mover", "--target", "m1")
    shown = m2.request("GET", "/1.0/instances/mover").metadata
    assert shown["location"] == "m1" and shown["status"] == "Stopped"
    m1.ok(m1.request("PUT", "/1.0/instances/mover/state", {"action": "start"}))
    assert m1.request("GET", "/1.0/instances/mover/files?path=/root/kept").body == b"kept\n"


def _guest_read(daemon: Daemon, name: str, path: str) -> str:
    """A file inside a VM, through its agent (the member asked forwards to the VM's)."""
    resp = daemon.request("GET", f"/1.0/instances/{name}/files?path={path}")
    assert resp.status == 200, resp.body
    return resp.body.decode()


def _guest_run(daemon: Daemon, name: str, *command: str) -> int:
    body = {"command": list(command), "wait-for-websocket": False, "interactive": False}
    done = daemon.wait(daemon.request("POST", f"/1.0/instances/{name}/exec", body), 60)
    if done.status != 200:  # the agent is not up yet
        return -1
    return int(done.metadata["metadata"]["return"])


@pytest.mark.slow
def test_a_running_vm_moves_live_between_members(servers: list[Daemon], tmp_path: Path) -> None:
    """`incus move vm --target m2` of a running VM, and evacuation with live-migrate: the guest
    goes on running (its uptime, a process it runs and a file in its RAM) on the other member,
    and nothing of it is left running on the member it left."""
    m1, _ = _member(servers)
    _enable(m1, "m1")
    m1.cli("image", "build", "busybox", "--vm", "--alias", "bbvm", timeout=900)
    m2, a2 = _member(servers)
    _join(m2, a2, "m2", m1, _token(m1, "m2"))
    body = {"name": "lvm", "type": "virtual-machine", "start": True,
            "source": {"type": "image", "alias": "bbvm"},
            "config": {"cluster.evacuate": "live-migrate"}}  # fmt: skip
    m1.ok(m1.request("POST", "/1.0/instances?target=m1", body), 300)
    _until(lambda: _guest_run(m2, "lvm", "true") == 0, 240)  # its agent answers
    loop = "while true; do date +%s >> /tmp/ticks; sleep 1; done"
    assert (
        _guest_run(m2, "lvm", "sh", "-c", f"echo kept > /tmp/mark; ({loop}) >/dev/null 2>&1 &") == 0
    )
    time.sleep(2)

    def moved_live(to: Daemon, left: Daemon, uptime: float) -> float:
        shown = to.request("GET", "/1.0/instances/lvm").metadata
        assert shown["status"] == "Running", shown
        now = float(_guest_read(to, "lvm", "/proc/uptime").split()[0])
        assert now >= uptime, "the guest booted again"
        assert _guest_read(to, "lvm", "/tmp/mark") == "kept\n"
        ticks = len(_guest_read(to, "lvm", "/tmp/ticks").split())
        time.sleep(2.5)
        assert len(_guest_read(to, "lvm", "/tmp/ticks").split()) > ticks  # still running
        assert not qemu_processes_under(left.root), "the member it left still runs it"
        assert not (left.root / "storage-pools" / "default" / "virtual-machines" / "lvm").exists()
        return now

    uptime = float(_guest_read(m1, "lvm", "/proc/uptime").split()[0])
    if _incus(m2, tmp_path / "conf", "move", "lvm", "--target", "m2") is None:  # run by m1
        body = {"migration": True, "live": True}
        m2.ok(m2.request("POST", "/1.0/instances/lvm?target=m2", body), 300)
    assert m1.request("GET", "/1.0/instances/lvm").metadata["location"] == "m2"
    uptime = moved_live(m2, m1, uptime)

    # m2 evacuated: the VM goes back live (its cluster.evacuate), and comes again on restore
    m1.ok(m1.request("POST", "/1.0/cluster/members/m2/state", {"action": "evacuate"}), 300)
    assert m2.request("GET", "/1.0/instances/lvm").metadata["location"] == "m1"
    uptime = moved_live(m1, m2, uptime)
    m1.ok(m1.request("POST", "/1.0/cluster/members/m2/state", {"action": "restore"}), 300)
    assert m1.request("GET", "/1.0/instances/lvm").metadata["location"] == "m2"
    moved_live(m2, m1, uptime)


def test_a_member_is_evacuated_and_restored(servers: list[Daemon], tmp_path: Path) -> None:
    m1, _ = _member(servers)
    _enable(m1, "m1")
    m1.cli("image", "build", "busybox", "--alias", "bb")
    m2, a2 = _member(servers)
    _join(m2, a2, "m2", m1, _token(m1, "m2"))
    for name, config in (("roams", {}), ("stays", {"cluster.evacuate": "stop"}), ("idle", {})):
        body = {"name": name, "source": {"type": "image", "alias": "bb"}, "config": config,
                "start": name != "idle"}  # fmt: skip
        m1.ok(m1.request("POST", "/1.0/instances?target=m1", body))

    def where() -> dict[str, tuple[str, str]]:
        listed = m2.request("GET", "/1.0/instances?recursion=1").metadata
        return {i["name"]: (i["location"], i["status"]) for i in listed}

    resp = m2.request("POST", "/1.0/cluster/members/m1/state", {"action": "dance"})
    assert resp.status == 400, resp.body
    if _incus(m2, tmp_path / "conf", "cluster", "evacuate", "m1", "--force") is None:  # by m1
        m2.ok(m2.request("POST", "/1.0/cluster/members/m1/state", {"action": "evacuate"}))
    assert where() == {
        "roams": ("m2", "Running"),
        "stays": ("m1", "Stopped"),
        "idle": ("m2", "Stopped"),
    }
    member = m2.request("GET", "/1.0/cluster/members/m1").metadata
    assert member["status"] == "Evacuated", member
    resp = m2.request("POST", "/1.0/cluster/members/m1/state", {"action": "evacuate"})
    assert resp.status == 400 and "already evacuated" in resp.json()["error"], resp.body
    body = {"name": "new", "source": {"type": "image", "alias": "bb"}}
    m1.ok(m1.request("POST", "/1.0/instances", body))  # never on an evacuated member
    assert where()["new"][0] == "m2"
    state = m1.request("GET", "/1.0/cluster/members/m2/state").metadata
    assert state["sysinfo"]["logical_cpus"] >= 1 and "default" in state["storage_pools"]

    m1.ok(m1.request("POST", "/1.0/cluster/members/m1/state", {"action": "restore"}))
    found = where()
    assert found["roams"] == ("m1", "Running") and found["stays"] == ("m1", "Running")
    assert found["idle"] == ("m1", "Stopped") and found["new"][0] == "m2"
    assert m1.request("GET", "/1.0/cluster/members/m1").metadata["status"] == "Online"
    config = m1.request("GET", "/1.0/instances/roams").metadata["config"]
    assert "volatile.evacuate.origin" not in config


def test_pools_and_networks_are_made_on_every_member(servers: list[Daemon], tmp_path: Path) -> None:
    m1, _ = _member(servers)
    _enable(m1, "m1")
    m1.cli("image", "build", "busybox", "--alias", "bb")
    m2, a2 = _member(servers)
    _join(m2, a2, "m2", m1, _token(m1, "m2"))
    source = tmp_path / "m2-pool"
    source.mkdir()

    # m2's own source first (pending), then the pool on every member
    body = {"name": "shared", "driver": "dir", "config": {"source": str(source)}}
    resp = m1.request("POST", "/1.0/storage-pools", body)
    assert resp.status == 400 and "--target" in resp.json()["error"], resp.body
    assert m1.request("POST", "/1.0/storage-pools?target=m2", body).status == 201
    assert m1.request("GET", "/1.0/storage-pools/shared").metadata["status"] == "Pending"
    bad = {"name": "shared", "driver": "dir", "config": {"volume.size": "1GiB"}}
    resp = m1.request("POST", "/1.0/storage-pools?target=m2", bad)
    assert resp.status == 400 and "not specific to a member" in resp.json()["error"], resp.body
    final = {"name": "shared", "driver": "dir", "config": {}, "description": "both"}
    assert m1.request("POST", "/1.0/storage-pools", final).status == 201
    pool = m2.request("GET", "/1.0/storage-pools/shared").metadata
    assert pool["status"] == "Created" and pool["description"] == "both"
    assert pool["config"]["source"] == str(source)  # as m2 sees it: its own
    seen = m1.cli("storage", "get", "shared", "source", "--target", "m2").stdout.strip()
    assert seen == str(source)  # asked of m1, answered by m2
    assert m1.request("GET", "/1.0/storage-pools/shared").metadata["config"]["source"] != str(
        source
    )
    assert m1.request("POST", "/1.0/storage-pools", final).status == 409

    body = {"name": "onshared", "source": {"type": "image", "alias": "bb"},
            "devices": {"root": {"type": "disk", "path": "/", "pool": "shared"}}}  # fmt: skip
    m1.ok(m1.request("POST", "/1.0/instances?target=m2", body))
    assert (source / "containers" / "onshared").is_dir()
    resp = m1.request("DELETE", "/1.0/storage-pools/shared")
    assert resp.status == 400 and "in use" in resp.json()["error"], resp.body
    m1.wait(m1.request("DELETE", "/1.0/instances/onshared"))
    assert m1.request("DELETE", "/1.0/storage-pools/shared").status == 200
    assert m2.request("GET", "/1.0/storage-pools/shared").status == 404
    assert not (m1.root / "storage-pools" / "shared").exists()

    # a network is up on every member (on one host: the same bridge, each member's check),
    # each member's uplink given first with --target
    bridge = "stpc" + os.urandom(3).hex()
    uplinks = {"m1": bridge + "u1", "m2": bridge + "u2", "later": bridge + "u3"}
    net = {"name": bridge, "config": {"ipv4.address": "none", "ipv6.address": "none"}}
    try:
        for uplink in uplinks.values():  # veth pairs (this kernel has no dummy links)
            subprocess.run(["ip", "link", "add", uplink, "type", "veth", "peer", "name",
                            uplink[:-2] + "p" + uplink[-1]], check=True)  # fmt: skip
        resp = m2.request("POST", "/1.0/networks?target=m1", net)
        assert resp.status == 400 and "not specific to a member" in resp.json()["error"]
        # both asked of m1 (m2's values are kept on m2): through the API and the stapes CLI
        own = {"name": bridge, "config": {"bridge.external_interfaces": uplinks["m1"]}}
        assert m1.request("POST", "/1.0/networks?target=m1", own).status == 201
        # m2's value names no interface of its host: m2 fails, m1 comes up
        m1.cli("network", "create", bridge, "bridge.external_interfaces=nosuch0", "--target", "m2")
        shown = m1.request("GET", f"/1.0/networks/{bridge}").metadata
        assert shown["status"] == "Pending", shown
        assert not Path("/sys/class/net", bridge).exists()
        nic = {"type": "nic", "network": bridge, "name": "eth0"}
        body = {"name": "pn", "source": {"type": "image", "alias": "bb"}, "devices": {"eth0": nic}}
        resp = m1.request("POST", "/1.0/instances?target=m1", body)
        assert resp.status == 400 and "pending" in resp.json()["error"], resp.body
        wrong = {**net, "config": {**net["config"], "bridge.external_interfaces": "eth9"}}
        resp = m1.request("POST", "/1.0/networks", wrong)
        assert resp.status == 400 and "--target" in resp.json()["error"], resp.body
        resp = m1.request("POST", "/1.0/networks", net)
        assert resp.status == 400 and "not on every member" in resp.json()["error"], resp.body
        assert m2.request("GET", f"/1.0/networks/{bridge}").metadata["status"] == "Errored"
        url = f"/1.0/networks/{bridge}"

        def warned() -> list[tuple[str, str]]:  # as every member lists them
            found = m1.request("GET", "/1.0/warnings?recursion=1").metadata
            return [(w["location"], w["status"]) for w in found if w["entity_url"] == url]

        assert warned() == [("m2", "new")]
        listed = m2.cli("warning", "list").stdout
        assert "LOCATION" in listed and "m2" in listed, listed
        resp = m1.request("PATCH", f"/1.0/networks/{bridge}?target=m2",
                          {"config": {"bridge.external_interfaces": uplinks["m2"]}})  # fmt: skip
        assert resp.status == 200, resp.body  # m2's own value fixed: up there too
        assert warned() == [("m2", "resolved")]
        for daemon, member in ((m1, "m1"), (m2, "m2")):
            shown = daemon.request("GET", f"/1.0/networks/{bridge}").metadata
            assert shown["status"] == "Created", shown
            assert shown["config"]["bridge.external_interfaces"] == uplinks[member]
        seen = m1.request("GET", f"/1.0/networks/{bridge}?target=m2").metadata
        assert seen["config"]["bridge.external_interfaces"] == uplinks["m2"]
        for member in ("m1", "m2"):  # each member made its uplink a port of its bridge
            master = Path("/sys/class/net", uplinks[member], "master").resolve().name
            assert master == bridge, member

        # changes: one member's values with --target, the rest for every member
        resp = m1.request("PATCH", f"/1.0/networks/{bridge}",
                          {"config": {"bridge.external_interfaces": uplinks["later"]}})  # fmt: skip
        assert resp.status == 400 and "--target" in resp.json()["error"], resp.body
        resp = m1.request("PATCH", f"/1.0/networks/{bridge}?target=m2",
                          {"config": {"bridge.mtu": "1400"}})  # fmt: skip
        assert resp.status == 400 and "without --target" in resp.json()["error"], resp.body
        key = "bridge.external_interfaces"
        m1.cli("network", "set", bridge, f"{key}={uplinks['later']}", "--target", "m2")
        shown_m2 = m1.cli("network", "get", bridge, key, "--target", "m2").stdout.strip()
        assert shown_m2 == uplinks["later"]
        assert Path("/sys/class/net", uplinks["later"], "master").resolve().name == bridge
        assert not Path("/sys/class/net", uplinks["m2"], "master").exists()  # let go by m2
        shown = m1.request("GET", f"/1.0/networks/{bridge}").metadata["config"]
        assert shown["bridge.external_interfaces"] == uplinks["m1"]
        assert m2.request("PATCH", f"/1.0/networks/{bridge}",
                          {"config": {"bridge.mtu": "1400"}}).status == 200  # fmt: skip
        for daemon in (m1, m2):
            shown = daemon.request("GET", f"/1.0/networks/{bridge}").metadata["config"]
            assert shown["bridge.mtu"] == "1400" and "bridge.external_interfaces" in shown
        assert Path("/sys/class/net", bridge, "mtu").read_text().strip() == "1400"
        assert m1.request("DELETE", f"/1.0/networks/{bridge}").status == 200
        assert not Path("/sys/class/net", bridge).exists()
        assert m2.request("GET", f"/1.0/networks/{bridge}").status == 404
    finally:
        for name in (bridge, *uplinks.values()):
            subprocess.run(["ip", "link", "del", name], capture_output=True)

    # a new cluster certificate for every member, asked of one: they go on talking
    cert, key = certs.generate("new-cluster")
    bad = {"cluster_certificate": cert.decode(), "cluster_certificate_key": "nope"}
    resp = m2.request("PUT", "/1.0/cluster/certificate", bad)
    assert resp.status == 400 and "Invalid cluster certificate" in resp.json()["error"]
    new = {"cluster_certificate": cert.decode(), "cluster_certificate_key": key.decode()}
    resp = m2.request("PUT", "/1.0/cluster/certificate", new)
    assert resp.status == 200, resp.body
    for daemon in (m1, m2):  # each takes it once it has answered
        _until(lambda d=daemon: d.request("GET", "/1.0").metadata["environment"]["certificate"]
               == cert.decode(), 10)  # fmt: skip
    _until(lambda: m2.request("GET", "/1.0/cluster/members/m1/state").status == 200, 10)
    assert m1.request("POST", "/1.0/profiles", {"name": "after-cert"}).status == 201
    assert m2.request("GET", "/1.0/profiles/after-cert").status == 200
    assert sorted(_roles(m2)) == ["m1", "m2"]
    body = {"name": "late", "source": {"type": "image", "alias": "bb"}}
    m2.ok(m2.request("POST", "/1.0/instances?target=m1", body))  # forwarded with the new one
