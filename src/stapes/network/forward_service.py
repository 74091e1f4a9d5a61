"""Network forwards: rows per network and listen address, checked in full before they are
written, and the network's firewall rebuilt after every change (the row is put back when
the rules cannot be applied)."""

from __future__ import annotations

import ipaddress
from typing import Any

from stapes.api.errors import BadRequest, Conflict
from stapes.api.lifecycle import NetworkForwardAction
from stapes.api.network import NetworkForwardPut, NetworkForwardsPost
from stapes.api.urls import forward_url
from stapes.db import network_policies as pq
from stapes.db import networks as q
from stapes.db.connection import Database
from stapes.network import addresses, forwards, policy
from stapes.network.registry import network_type
from stapes.network.service import Networks
from stapes.runtime.events import EventBus


class NetworkForwards:
    def __init__(self, db: Database, networks: Networks, events: EventBus) -> None:
        self.db = db
        self.networks = networks
        self.events = events

    def list_forwards(self, network: q.NetworkRow) -> list[pq.ForwardRow]:
        return pq.list_forwards(self.db, network.id)

    def get(self, network: q.NetworkRow, listen_address: str) -> pq.ForwardRow:
        return pq.get_forward(self.db, network.id, _canonical(listen_address))

    @staticmethod
    def render(row: pq.ForwardRow) -> dict[str, Any]:
        return {
            "listen_address": row.listen_address,
            "description": row.description,
            "config": row.config,
            "ports": row.ports,
            "location": "none",
        }

    @staticmethod
    def writable(row: pq.ForwardRow) -> dict[str, Any]:
        return {"config": row.config, "description": row.description, "ports": row.ports}

    def _check(self, network: q.NetworkRow, row: pq.ForwardRow) -> None:
        if not network_type(network.type).FORWARDS:
            raise BadRequest(f"Network {network.name!r} ({network.type}) does not take forwards")
        taken = [
            subnet
            for other in q.list_networks(self.db)
            for subnet in addresses.subnets(other.config)
        ]
        forwards.check_listen_address(row.listen_address, taken)
        for other in pq.all_forwards(self.db):
            if other.listen_address == row.listen_address and other.network_id != network.id:
                raise Conflict(
                    f"Listen address {row.listen_address} is already forwarded by another network"
                )
        policy.forward_of(row, network)

    async def _apply(self, network: q.NetworkRow, undo: Any) -> None:
        try:
            await self.networks.apply_policy(network)
        except BaseException:
            with self.db.transaction():
                undo()
            await self.networks.apply_policy(network)
            raise

    async def create(self, network: q.NetworkRow, req: NetworkForwardsPost) -> str:
        listen = _canonical(req.listen_address)
        if pq.find_forward(self.db, network.id, listen) is not None:
            raise Conflict(f"A forward for {listen} already exists on network {network.name!r}")
        row = pq.ForwardRow(
            0,
            network.id,
            listen,
            req.description,
            {k: v for k, v in req.config.items() if v != ""},
            [p.model_dump() for p in req.ports],
        )
        self._check(network, row)
        with self.db.transaction():
            pq.insert_forward(self.db, row)
        await self._apply(network, lambda: pq.delete_forward(self.db, row.id))
        url = forward_url(network.name, listen)
        self.events.lifecycle(NetworkForwardAction.CREATED, url)
        return url

    async def update(
        self, network: q.NetworkRow, row: pq.ForwardRow, put: NetworkForwardPut
    ) -> None:
        old = pq.ForwardRow(**vars(row))
        row.description = put.description
        row.config = {k: v for k, v in put.config.items() if v != ""}
        row.ports = [p.model_dump() for p in put.ports]
        self._check(network, row)
        with self.db.transaction():
            pq.update_forward(self.db, row)
        await self._apply(network, lambda: pq.update_forward(self.db, old))
        self.events.lifecycle(
            NetworkForwardAction.UPDATED, forward_url(network.name, row.listen_address)
        )

    async def delete(self, network: q.NetworkRow, row: pq.ForwardRow) -> None:
        with self.db.transaction():
            pq.delete_forward(self.db, row.id)
        await self._apply(network, lambda: pq.insert_forward(self.db, row))
        self.events.lifecycle(
            NetworkForwardAction.DELETED, forward_url(network.name, row.listen_address)
        )


def _canonical(value: str) -> str:
    """The address as it is stored and shown (``2001:DB8::01`` -> ``2001:db8::1``)."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise BadRequest(f"Invalid listen_address {value!r}: it is not an IP address") from None
