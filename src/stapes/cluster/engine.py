"""This member's cowsql node and the Database that talks to the cluster's leader through it.

The node listens on an abstract unix socket only (libcowsql then accepts connections from this
process alone): nothing on the host can reach the cluster's database without going through
stapesd. Its raft address is the member's cluster address (HOST:PORT of its HTTPS listener),
which ``dial`` maps back to that socket for this member."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from stapes.cluster.transport import ClusterTransport
from stapes.db.cowsql import wire
from stapes.db.cowsql.database import CowsqlDatabase
from stapes.db.cowsql.node import Node

CONNECT_TIMEOUT = 5.0
"""How long the node waits for a connection to another member."""
NETWORK_LATENCY_MS = 20
"""The round trip cowsql plans its heartbeats and elections around (Incus's figure for a
LAN; loopback members are faster)."""


@dataclass(frozen=True)
class RaftView:
    leader: str
    """The leader's address."""
    roles: dict[str, int]
    """Each node's role (wire.VOTER, STANDBY, SPARE), by address."""


class ClusterEngine:
    def __init__(self, node: Node, address: str, transport: ClusterTransport) -> None:
        self.node = node
        self.address = address
        self.transport = transport

    @property
    def bind(self) -> str:
        return self.node.bind_address

    @classmethod
    def start(
        cls, node_id: int, address: str, data_dir: Path, transport: ClusterTransport
    ) -> ClusterEngine:
        """Start the node ``node_id`` of this member (raft address ``address``) on its data
        in ``data_dir``: a new cluster of one when it is empty and the id is BOOTSTRAP_ID,
        otherwise a node the leader adds (wire.Client.add) or one that was a member."""
        node = Node(node_id, address, data_dir, bind="@", latency_ms=NETWORK_LATENCY_MS)
        engine = cls(node, address, transport)
        try:
            node.set_connect(lambda peer: engine.dial(peer, CONNECT_TIMEOUT).detach())
            node.start()
        except BaseException:
            node.close()
            raise
        return engine

    def dial(self, address: str, timeout: float) -> socket.socket:
        """A connection to the node at ``address``: this member's own through its abstract
        socket, another's through the transport."""
        if address == self.address:
            return wire.dial(self.bind, timeout)
        return self.transport.dial(address, timeout)

    def database(
        self, addresses: list[str], timeout: float = 10.0, upgrade: bool = False
    ) -> CowsqlDatabase:
        """The cluster's database, through whichever of ``addresses`` leads; its schema this
        stapesd's (made so when ``upgrade``: a new cluster)."""
        return CowsqlDatabase(addresses, timeout=timeout, dial=self.dial, upgrade=upgrade)

    def raft_client(self, addresses: list[str], timeout: float = 30.0) -> wire.Client:
        """A connection to the leader, for raft requests (add, assign, cluster)."""
        return wire.connect_leader(addresses, timeout, self.dial)

    def raft(self, addresses: list[str], timeout: float = 5.0) -> RaftView:
        """Who leads and every node's role, as the leader sees them."""
        with self.raft_client(addresses, timeout) as client:
            _, leader = client.leader()
            return RaftView(leader, {address: role for _, address, role in client.cluster()})

    def close(self) -> None:
        # no handover: it waits on a quorum that may be gone (the others elect within a
        # second when this node led)
        self.node.close()
        self.transport.close()
