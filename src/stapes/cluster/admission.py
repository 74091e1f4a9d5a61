"""How a server becomes a member, seen from the cluster: join tokens (an operation of class
token, as Incus's, whose metadata the CLI turns into the token text), the acceptance of a
server that presents one (it gets the cluster's key and the raft nodes), the addition of its
node to raft, and the roles of the nodes (voters, stand-bys) as members come and go."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from stapes import certs
from stapes.api.errors import BadRequest, Conflict, Forbidden
from stapes.api.lifecycle import ClusterAction
from stapes.api.times import ZERO_TIME, now, parse_timestamp, timestamp
from stapes.cluster.service import NOT_CLUSTERED, Cluster, check_name, member_url
from stapes.config.server_keys import server_value
from stapes.config.validate import add_expiry, split_address
from stapes.db import cluster as q
from stapes.db.local import raft_nodes
from stapes.db.schema import MIGRATIONS
from stapes.db.server_config import get_config
from stapes.runtime.operations import Operation, Operations

log = logging.getLogger(__name__)

TOKEN_SWEEP_SECONDS = 5.0
"""How often a member ends the operations of its tokens used or revoked on another member."""


@dataclass(frozen=True)
class JoinRequest:
    """What a joining server tells the member it asks (POST /internal/cluster/accept)."""

    server_name: str
    address: str
    secret: str
    schema: int
    api_extensions: int
    architecture: str
    node_id: int

    @classmethod
    def parse(cls, body: object) -> JoinRequest:
        if not isinstance(body, dict):
            raise BadRequest("The join request must be a JSON object")
        try:
            return cls(
                server_name=str(body["server_name"]),
                address=str(body["address"]),
                secret=str(body["secret"]),
                schema=int(body["schema"]),
                api_extensions=int(body["api_extensions"]),
                architecture=str(body.get("architecture", "")),
                node_id=int(body["node_id"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"Invalid join request: {exc}") from None


class Admission:
    def __init__(self, cluster: Cluster, operations: Operations) -> None:
        self.cluster = cluster
        self.db = cluster.db
        self.operations = operations
        self._token_ops: dict[str, Operation] = {}

    # -- tokens -------------------------------------------------------------------------------

    def new_token(self, name: str) -> Operation:
        self.cluster.check_clustered(NOT_CLUSTERED)
        check_name(name)
        expiry = server_value(get_config(self.db), "cluster.join_token_expiry")
        expires_at = timestamp(add_expiry(now(), expiry)) if expiry else ""
        token = q.JoinToken(name, secrets.token_hex(32), expires_at)
        with self.db.transaction():
            if q.find_member(self.db, name) is not None:
                raise BadRequest(f"The cluster already has a member with name: {name}")
            if any(t.name == name for t in q.list_join_tokens(self.db)):
                raise BadRequest(f"A join token already exists for the name: {name}")
            q.insert_join_token(self.db, token)
        op = self._token_operation(token)
        self.cluster.events.lifecycle(ClusterAction.TOKEN_CREATED, member_url(name), context={})
        return op

    def _token_operation(self, token: q.JoinToken) -> Operation:
        metadata = {  # the keys Incus's clients read from a join token's operation
            "serverName": token.name,
            "fingerprint": self.cluster.transport.fingerprint(),
            "addresses": [m.address for m in q.list_members(self.db)],
            "secret": token.secret,
            "expiresAt": token.expires_at or ZERO_TIME,
        }
        expires = parse_timestamp(token.expires_at)

        def gone() -> None:  # used, revoked or expired: the token goes
            self._token_ops.pop(token.secret, None)
            with self.db.transaction():
                q.delete_join_token(self.db, token.secret)

        op = self.operations.start_token(metadata, expires, gone)
        self._token_ops[token.secret] = op
        return op

    async def sweep_tokens(self) -> None:
        """Tokens used or revoked through another member (their rows gone): their operations
        here end too, rather than wait for their expiry."""
        while True:
            await asyncio.sleep(TOKEN_SWEEP_SECONDS)
            if not self._token_ops or not self.cluster.membership.clustered:
                continue
            try:
                tokens = await asyncio.to_thread(q.list_join_tokens, self.db)
            except Exception as exc:  # the cluster may be electing: the next sweep will do
                log.debug("join token sweep failed: %s", exc)
                continue
            live = {token.secret for token in tokens}
            for secret, op in list(self._token_ops.items()):
                if secret not in live and not op.finished:
                    with contextlib.suppress(BadRequest, Forbidden):
                        op.cancel()

    def restore_tokens(self) -> None:
        """At daemon start: this cluster's tokens not used yet are operations again."""
        if not self.cluster.membership.clustered:
            return
        for token in q.list_join_tokens(self.db):
            expires = parse_timestamp(token.expires_at)
            if expires is not None and expires <= now():
                with self.db.transaction():
                    q.delete_join_token(self.db, token.secret)
            elif token.secret not in self._token_ops:
                self._token_operation(token)

    # -- accepting a server -------------------------------------------------------------------

    def accept(self, req: JoinRequest) -> dict[str, Any]:
        """Record ``req``'s server as a member (its token used up); what it needs to join: the
        raft nodes and the cluster's key. 4xx for a token that does not fit."""
        self.cluster.check_clustered(NOT_CLUSTERED)
        check_name(req.server_name)
        split_address(req.address)
        with self.db.transaction():
            token = next(
                (
                    t
                    for t in q.list_join_tokens(self.db)
                    if hmac.compare_digest(t.secret.encode(), req.secret.encode())
                ),
                None,
            )
            expires = parse_timestamp(token.expires_at) if token is not None else None
            if token is None or (expires is not None and expires <= now()):
                raise Forbidden("The join token is not valid: it was used, revoked or expired")
            if token.name != req.server_name:
                raise BadRequest(
                    f"The join token is for member {token.name!r}, not {req.server_name!r}"
                )
            if req.schema != len(MIGRATIONS) or req.api_extensions != self.cluster.api_extensions:
                raise BadRequest(
                    "The joining server runs another version of stapesd: schema "
                    f"{req.schema} and {req.api_extensions} API extensions, against "
                    f"{len(MIGRATIONS)} and {self.cluster.api_extensions} in the cluster "
                    "(rolling upgrades are not supported: run the same version everywhere)"
                )
            if q.member_at(self.db, req.address) is not None:
                raise Conflict(f"A cluster member already has the address {req.address}")
            member = q.MemberRow(
                id=0,
                name=req.server_name,
                address=req.address,
                architecture=req.architecture,
                schema=req.schema,
                api_extensions=req.api_extensions,
                heartbeat=timestamp(now()),
            )
            member_id = q.insert_member(self.db, member)
            default = q.get_group(self.db, q.DEFAULT_GROUP)
            q.set_member_groups(self.db, member_id, [default.id])
            q.delete_join_token(self.db, token.secret)
        op = self._token_ops.pop(token.secret, None)
        if op is not None and not op.finished:
            op.cancel()
        key = self.cluster.transport.key  # the cluster's: this member's server key
        nodes = raft_nodes(self.db.member_local)
        log.info("cluster: accepted %s at %s", req.server_name, req.address)
        self.cluster.events.lifecycle(
            ClusterAction.MEMBER_ADDED, member_url(req.server_name), context={}
        )
        return {
            "raft_nodes": [
                {"id": n.id, "address": n.address, "role": n.role, "name": n.name} for n in nodes
            ],
            "cluster_key": key.read_text(),
        }

    # -- raft ---------------------------------------------------------------------------------

    def assign(self, node_id: int, address: str) -> None:
        """Add an accepted member's node to raft and give the nodes their roles (blocking:
        a voter is promoted once it has caught up)."""
        self.cluster.check_clustered(NOT_CLUSTERED)
        if q.member_at(self.db, address) is None:
            raise BadRequest(f"No cluster member has the address {address}: join first")
        engine = self.cluster.engine
        assert engine is not None
        with engine.raft_client(self.cluster.raft_addresses()) as client:
            known = {a for _, a, _ in client.cluster()}
            if address not in known:
                client.add(node_id, address)
        self.cluster.rebalance()


def fingerprint_of(pem: str) -> str:
    try:
        return certs.fingerprint(certs.parse(pem))
    except ValueError as exc:
        raise BadRequest(f"Invalid cluster certificate: {exc}") from None
