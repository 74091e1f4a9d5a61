"""The cluster as the API shows it: enabling it on a standalone server, its members (roles from
the raft view, status from their heartbeats) and its groups."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from datetime import timedelta
from typing import Any

from stapes.api.cluster import ClusterGroupPut, ClusterMemberPut
from stapes.api.errors import BadRequest, Conflict, StapesError
from stapes.api.lifecycle import ClusterAction
from stapes.api.times import now, parse_timestamp, timestamp
from stapes.cluster import bootstrap
from stapes.cluster.engine import ClusterEngine, RaftView
from stapes.cluster.files import ClusterFiles, move_database
from stapes.cluster.transport import ClusterTransport
from stapes.config.server_keys import server_value
from stapes.db import cluster as q
from stapes.db.connection import ServerDatabase, SqliteDatabase, Unavailable
from stapes.db.cowsql import wire
from stapes.db.local import RaftNode, raft_nodes, replace_raft_nodes
from stapes.db.server_config import get_config
from stapes.runtime.events import EventBus
from stapes.runtime.membership import Membership

log = logging.getLogger(__name__)

NOT_CLUSTERED = "This server is not clustered"
LEADER_SECONDS = 10.0
"""How long a statement waits for the cluster to have a leader (an election)."""
RESUME_SECONDS = 120.0
"""How long a starting member waits for its cluster to have a leader."""
HEARTBEAT_SECONDS = 10
"""How often a member records that it is alive."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")
GIVEN_ROLES = frozenset({"event-hub", "ovn-chassis"})
"""Roles an administrator gives; the database ones follow raft."""
MEMBER_CONFIG = re.compile(r"user\..+|scheduler\.instance")
SCHEDULER_VALUES = ("all", "manual", "group")


def check_name(name: str, what: str = "Cluster member") -> None:
    if name.startswith("@"):
        raise BadRequest(f"{what} name may not start with '@'")
    if not _NAME.fullmatch(name):
        raise BadRequest(
            f"Invalid {what.lower()} name {name!r}: 1-63 letters, digits and dashes, starting "
            "with a letter or digit"
        )


def member_url(name: str) -> str:
    return f"/1.0/cluster/members/{name}"


def group_url(name: str) -> str:
    return f"/1.0/cluster/groups/{name}"


class Cluster:
    def __init__(
        self,
        db: ServerDatabase,
        files: ClusterFiles,
        membership: Membership,
        events: EventBus,
        transport: ClusterTransport,
        api_extensions: int,
    ) -> None:
        self.db = db
        self.files = files
        self.membership = membership
        self.events = events
        self.transport = transport
        self.api_extensions = api_extensions
        self.engine: ClusterEngine | None = None

    def node_socket(self) -> str:
        """Where this member's cowsql node listens ("" when it has none)."""
        return self.engine.bind if self.engine is not None else ""

    def resume(self) -> None:
        """A member starting: its node on its raft data, then the cluster's database through
        the nodes it last knew (its HTTPS listener is up: the others reach its node through
        it). Blocks until the cluster has a leader (runs in a thread)."""
        local = self.db.member_local
        address = server_value(get_config(local), "cluster.https_address")
        nodes = raft_nodes(local)
        own = next((n for n in nodes if n.address == address), None)
        if own is None:
            raise StapesError(
                f"this member's cluster address {address!r} is not among its raft nodes "
                f"({', '.join(n.address for n in nodes)}): its local database is damaged"
            )
        engine = ClusterEngine.start(own.id, address, self.files.cowsql, self.transport)
        try:
            shared = engine.database([n.address for n in nodes], timeout=RESUME_SECONDS)
        except BaseException:
            engine.close()
            raise
        shared.timeout = LEADER_SECONDS  # found: from now on an election is waited for so long
        self.engine = engine
        self.db.replace_engine(shared, local)
        member = q.member_at(shared, address)
        self.membership.name = member.name if member is not None else own.name
        self.membership.address = address
        log.info("cluster member %s at %s: database reached", self.membership.name, address)

    # -- enabling ---------------------------------------------------------------------------

    def check_enable(self, name: str) -> str:
        """The cluster address this server would have as member ``name``; 4xx otherwise."""
        if self.membership.clustered:
            raise BadRequest("This server is already clustered")
        if not name:
            raise BadRequest("ServerName is required when enabling clustering")
        check_name(name)
        config = get_config(self.db)
        address = config.get("cluster.https_address") or config.get("core.https_address", "")
        if not address:
            raise BadRequest(
                "Clustering needs an address the other members can reach this server at: set "
                "core.https_address (or cluster.https_address) first"
            )
        host, _, _ = address.rpartition(":")
        if host.strip("[]") in ("", "0.0.0.0", "::"):
            raise BadRequest(
                f"Cannot use wildcard address {address!r} as the cluster address: set "
                "cluster.https_address (or core.https_address) to an address of this host"
            )
        return address

    def enable(self, name: str, address: str) -> None:
        """Make this server the first member of a new cluster (runs in a thread: the copy
        holds the database, so nothing writes between it and the switch)."""
        with self.db.exclusive():
            engine, shared, local = bootstrap.bootstrap(
                self.files, self.db.engine, name, address, self.api_extensions, self.transport
            )
            old = self.db.replace_engine(shared, local)
        old.close()
        self.engine = engine
        move_database(self.files.standalone, self.files.standalone_kept)
        self.membership.name = name
        self.membership.address = address
        log.info("clustering enabled: this server is member %s at %s", name, address)
        self.events.lifecycle(ClusterAction.ENABLED, member_url(name), context={})

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    # -- members ----------------------------------------------------------------------------

    def check_clustered(self, message: str = "Server is not clustered") -> None:
        """Incus's words differ by endpoint: "This server is not clustered" for the groups
        and for adding a member."""
        if not self.membership.clustered:
            raise BadRequest(message)

    def raft_addresses(self) -> list[str]:
        """The raft nodes this member knows of (the leader is among them)."""
        return [n.address for n in raft_nodes(self.db.member_local)]

    def raft(self) -> RaftView:
        assert self.engine is not None
        try:
            return self.engine.raft(self.raft_addresses())
        except (OSError, wire.WireError) as exc:
            log.warning("cluster database roles unknown: %s", exc)
            return RaftView("", {})

    def members(self) -> list[q.MemberRow]:
        self.check_clustered()
        return q.list_members(self.db)

    def member(self, name: str) -> q.MemberRow:
        self.check_clustered()
        return q.get_member(self.db, name)

    def render_members(self, rows: list[q.MemberRow]) -> list[dict[str, Any]]:
        view = self.raft()
        groups = q.member_groups(self.db)
        threshold = int(server_value(get_config(self.db), "cluster.offline_threshold"))
        return [self._render(row, view, groups.get(row.id, []), threshold) for row in rows]

    def _render(
        self, row: q.MemberRow, view: RaftView, groups: list[str], threshold: int
    ) -> dict[str, Any]:
        roles: list[str] = []
        role = view.roles.get(row.address)
        if role == wire.VOTER:
            roles = ["database-leader", "database"] if view.leader == row.address else ["database"]
        elif role == wire.STANDBY:
            roles = ["database-standby"]
        status, message = "Online", "Fully operational"
        seen = parse_timestamp(row.heartbeat)
        silent = now() - seen if seen is not None else None
        if row.state == "evacuated":
            status, message = "Evacuated", "Unavailable due to maintenance"
        elif row.name != self.membership.name and (
            silent is None or silent > timedelta(seconds=threshold)
        ):
            status = "Offline"
            message = f"No heartbeat for {silent} ({row.heartbeat})"
        return {
            "server_name": row.name,
            "url": f"https://{row.address}",
            "database": role == wire.VOTER,
            "status": status,
            "message": message,
            "architecture": row.architecture,
            "failure_domain": row.failure_domain,
            "description": row.description,
            "config": row.config,
            "groups": groups,
            "roles": [*roles, *row.roles],
        }

    def writable(self, rendered: dict[str, Any]) -> dict[str, Any]:
        keys = ("description", "config", "failure_domain", "groups", "roles")
        return {k: rendered[k] for k in keys}

    def update_member(self, name: str, put: ClusterMemberPut) -> None:
        with self.db.transaction():
            row = self.member(name)
            current = self.render_members([row])[0]
            automatic = [r for r in current["roles"] if r not in GIVEN_ROLES]
            given = [r for r in put.roles if r in GIVEN_ROLES]
            unknown = [r for r in put.roles if r not in GIVEN_ROLES and r not in automatic]
            if unknown or any(r not in put.roles for r in automatic):
                raise BadRequest(
                    "The database roles follow the cluster's database and cannot be changed; "
                    f"roles that may be given: {', '.join(sorted(GIVEN_ROLES))}"
                )
            for key, value in put.config.items():
                if not MEMBER_CONFIG.fullmatch(key):
                    raise BadRequest(f"Invalid cluster member config key {key!r}")
                if key == "scheduler.instance" and value not in SCHEDULER_VALUES:
                    raise BadRequest(
                        f"Invalid value for scheduler.instance {value!r}: one of "
                        + ", ".join(SCHEDULER_VALUES)
                    )
            groups = []
            for group in put.groups or [q.DEFAULT_GROUP]:
                found = q.find_group(self.db, group)
                if found is None:
                    raise BadRequest(f"Cluster group {group!r} does not exist")
                groups.append(found.id)
            row.description = put.description
            row.config = put.config
            row.failure_domain = put.failure_domain or "default"
            row.roles = given
            q.update_member(self.db, row)
            q.set_member_groups(self.db, row.id, groups)
        self.events.lifecycle(ClusterAction.MEMBER_UPDATED, member_url(name), context={})

    def rename_member(self, name: str, new: str) -> None:
        check_name(new)
        with self.db.transaction():
            row = self.member(name)
            if q.find_member(self.db, new) is not None:
                raise Conflict(f"The cluster member {new!r} already exists")
            q.rename_member(self.db, row, new)
        if name == self.membership.name:
            self.membership.name = new
            with self.db.member_local.transaction():
                self.db.member_local.execute(
                    "UPDATE raft_nodes SET name = ? WHERE address = ?", (new, row.address)
                )
        self.events.lifecycle(
            ClusterAction.MEMBER_RENAMED, member_url(new), context={"old_name": name}
        )

    def check_removal(self, name: str, force: bool) -> q.MemberRow:
        """The member ``name`` if it may be removed (by another member); 4xx otherwise."""
        row = self.member(name)
        if len(self.members()) == 1:
            raise BadRequest(
                f"Cluster member {name!r} is the only member of the cluster: it cannot be "
                "removed (a cluster cannot go back to a standalone server)"
            )
        held = self.db.all(
            "SELECT name FROM instances WHERE location = ? ORDER BY name LIMIT 5", (name,)
        )
        if held and not force:
            names = ", ".join(r["name"] for r in held)
            raise BadRequest(
                f"Cluster member {name!r} still has instances ({names}): move or delete them "
                "first, or remove it with --force (its instances are forgotten)"
            )
        return row

    def remove_member(self, row: q.MemberRow) -> None:
        """Take the member out of raft (its leadership handed over first) and out of the
        database with what was located on it, then give the nodes their roles again
        (blocking)."""
        engine = self.engine
        assert engine is not None
        with engine.raft_client(self.raft_addresses()) as client:
            _, leader = client.leader()
            nodes = client.cluster()
            node = next((n for n in nodes if n[1] == row.address), None)
            if node is not None and leader == row.address:
                heir = next(n for n in nodes if n[1] != row.address and n[2] == wire.VOTER)
                client.transfer(heir[0])
        if node is not None:
            with engine.raft_client(self.raft_addresses()) as client:
                client.remove(node[0])
        with self.db.transaction():
            for instance in self.db.all("SELECT id FROM instances WHERE location = ?", (row.name,)):
                for table in ("instance_snapshots", "backups"):
                    self.db.execute(f"DELETE FROM {table} WHERE instance_id = ?", (instance["id"],))
                self.db.execute("DELETE FROM instances WHERE id = ?", (instance["id"],))
            self.db.execute("DELETE FROM cluster_group_members WHERE member_id = ?", (row.id,))
            q.delete_member(self.db, row.id)
        self.rebalance()
        log.info("cluster member %s (%s) removed", row.name, row.address)
        self.events.lifecycle(ClusterAction.MEMBER_REMOVED, member_url(row.name), context={})

    def leave(self) -> None:
        """This member was removed: back to a server of its own, with a new database that
        keeps its own keys (core.https_address...), before the daemon starts again."""
        own = {
            k: v
            for k, v in get_config(self.db.member_local).items()
            if k != "cluster.https_address"
        }
        old = self.db.replace_engine(Unavailable("this server left its cluster: restarting"), None)
        old.close()
        local = self.db.member_local
        local.close()
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        move_database(self.files.local, self.files.local.with_name("local.db.left"))
        shutil.rmtree(self.files.cowsql, ignore_errors=True)
        fresh = SqliteDatabase(self.files.standalone)
        with fresh.transaction():
            for key, value in own.items():
                fresh.execute("INSERT INTO config (key, value) VALUES (?, ?)", (key, value))
        fresh.close()
        for path in (self.transport.cert, self.transport.key):
            kept = path.with_name(path.name + ".standalone")
            if kept.exists():  # a member that joined: its own certificate again
                kept.rename(path)
        self.membership.name = ""
        self.membership.address = ""
        log.info("this server left its cluster: it starts again on a database of its own")

    def rebalance(self) -> None:
        """Voters and stand-bys as Incus keeps them: an odd number of voters up to
        cluster.max_voters (one of two members votes, the other stands by), then stand-bys up
        to cluster.max_standby; the local list of nodes follows."""
        engine = self.engine
        assert engine is not None
        config = get_config(self.db)
        max_voters = int(server_value(config, "cluster.max_voters"))
        max_standby = int(server_value(config, "cluster.max_standby"))
        names = {m.address: m.name for m in q.list_members(self.db)}
        with engine.raft_client(self.raft_addresses()) as client:
            _, leader = client.leader()
            nodes = client.cluster()
            count = len(nodes)
            voters = min(max_voters, count if count % 2 else count - 1)
            standbys = min(max_standby, count - voters)
            # the leader first (it cannot step down here), then voters, then by address
            ranked = sorted(nodes, key=lambda n: (n[1] != leader, n[2], n[1]))
            for index, (node_id, _address, role) in enumerate(ranked):
                wanted = (
                    wire.VOTER
                    if index < voters
                    else wire.STANDBY
                    if index < voters + standbys
                    else wire.SPARE
                )
                if role != wanted:
                    client.assign(node_id, wanted)
            nodes = client.cluster()
        with self.db.member_local.transaction():
            replace_raft_nodes(
                self.db.member_local,
                [RaftNode(i, a, r, names.get(a, "")) for i, a, r in nodes],
            )

    async def heartbeats(self) -> None:
        """Record this member alive every HEARTBEAT_SECONDS while it is clustered."""
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            if not self.membership.clustered:
                continue
            try:
                await asyncio.to_thread(self.beat)
            except Exception as exc:  # the cluster may be electing: the next beat will do
                log.debug("cluster heartbeat failed: %s", exc)

    def beat(self) -> None:
        """Record this member alive, and the raft nodes as they are now (a member starting
        again looks for the cluster at those addresses)."""
        self.db.execute(
            "UPDATE cluster_members SET heartbeat = ? WHERE name = ?",
            (timestamp(now()), self.membership.name),
        )
        if self.engine is None:
            return
        with self.engine.raft_client(self.raft_addresses()) as client:
            nodes = client.cluster()
        names = {m.address: m.name for m in q.list_members(self.db)}
        with self.db.member_local.transaction():
            replace_raft_nodes(
                self.db.member_local, [RaftNode(i, a, r, names.get(a, "")) for i, a, r in nodes]
            )

    # -- groups -----------------------------------------------------------------------------

    def groups(self) -> list[q.GroupRow]:
        self.check_clustered(NOT_CLUSTERED)
        return q.list_groups(self.db)

    def group(self, name: str) -> q.GroupRow:
        self.check_clustered(NOT_CLUSTERED)
        return q.get_group(self.db, name)

    @staticmethod
    def render_group(row: q.GroupRow) -> dict[str, Any]:
        return {
            "name": row.name,
            "description": row.description,
            "config": row.config,
            "members": row.members,
            "used_by": [member_url(m) for m in row.members],
        }

    def _member_ids(self, names: list[str]) -> list[int]:
        ids = []
        for name in names:
            member = q.find_member(self.db, name)
            if member is None:
                raise BadRequest(f"Cluster member {name!r} does not exist")
            ids.append(member.id)
        return ids

    def create_group(self, name: str, put: ClusterGroupPut) -> None:
        self.check_clustered(NOT_CLUSTERED)
        check_name(name, "Cluster group")
        with self.db.transaction():
            if q.find_group(self.db, name) is not None:
                raise Conflict(f"The cluster group {name!r} already exists")
            group_id = q.insert_group(self.db, name, put.description)
            q.set_group_members(self.db, group_id, self._member_ids(put.members))
        self.events.lifecycle(ClusterAction.GROUP_CREATED, group_url(name), context={})

    def update_group(self, name: str, put: ClusterGroupPut) -> None:
        with self.db.transaction():
            row = self.group(name)
            members = self._member_ids(put.members)
            left = set(row.members) - set(put.members)
            groups = q.member_groups(self.db)
            for gone in sorted(left):
                member = q.get_member(self.db, gone)
                if groups.get(member.id, []) == [row.name]:
                    raise BadRequest(
                        f"Cluster member {gone!r} would belong to no group: add it to another "
                        "group first"
                    )
            row.description = put.description
            row.config = put.config
            q.update_group(self.db, row)
            q.set_group_members(self.db, row.id, members)
        self.events.lifecycle(ClusterAction.GROUP_UPDATED, group_url(name), context={})

    def rename_group(self, name: str, new: str) -> None:
        check_name(new, "Cluster group")
        if name == q.DEFAULT_GROUP:
            raise BadRequest("The default cluster group cannot be renamed")
        with self.db.transaction():
            row = self.group(name)
            if q.find_group(self.db, new) is not None:
                raise Conflict(f"The cluster group {new!r} already exists")
            row.name = new
            q.update_group(self.db, row)
        self.events.lifecycle(
            ClusterAction.GROUP_RENAMED, group_url(new), context={"old_name": name}
        )

    def delete_group(self, name: str) -> None:
        if name == q.DEFAULT_GROUP:
            raise BadRequest("The default cluster group cannot be deleted")
        with self.db.transaction():
            row = self.group(name)
            if row.members:
                raise BadRequest(
                    f"Cluster group {name!r} still has members ({', '.join(row.members)}): "
                    "move them to other groups first"
                )
            q.delete_group(self.db, row.id)
        self.events.lifecycle(ClusterAction.GROUP_DELETED, group_url(name), context={})
