"""Events of every member on every member's /1.0/events (Incus's full mesh): this member
follows each other member's own events over a websocket and hands them to its bus, which
gives them to its clients (not to the other members: each follows every member itself)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import aiohttp

from stapes.cluster.peers import Peers
from stapes.db import cluster as q
from stapes.db.connection import Database
from stapes.runtime.events import EventBus
from stapes.runtime.membership import Membership

log = logging.getLogger(__name__)

CHECK_SECONDS = 5.0
"""How often the list of members to follow is read again."""
RETRY_SECONDS = 2.0


class EventRelay:
    def __init__(self, db: Database, membership: Membership, peers: Peers, bus: EventBus) -> None:
        self.db = db
        self.membership = membership
        self.peers = peers
        self.bus = bus
        self._followed: dict[str, asyncio.Task[None]] = {}
        self._connected: dict[str, asyncio.Event] = {}

    async def run(self) -> None:
        try:
            while True:
                if self.membership.clustered:
                    with contextlib.suppress(Exception):  # the database may be electing
                        self._follow_members()
                await asyncio.sleep(CHECK_SECONDS)
        finally:
            for task in self._followed.values():
                task.cancel()

    def _follow_members(self) -> None:
        wanted = {m.address for m in q.list_members(self.db) if m.name != self.membership.name}
        for address in set(self._followed) - wanted:
            self._followed.pop(address).cancel()
            self._connected.pop(address, None)
        for address in wanted - set(self._followed):
            self._start(address)

    def _start(self, address: str) -> None:
        self._connected[address] = asyncio.Event()
        self._followed[address] = asyncio.get_running_loop().create_task(
            self._follow(address), name=f"events-{address}"
        )

    async def following(self, address: str, timeout: float = 5.0) -> None:
        """Once this member hears the events of the member at ``address`` (a request was
        forwarded there: its operation's events must reach the client)."""
        if address not in self._followed:
            self._start(address)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected[address].wait(), timeout)

    async def _follow(self, address: str) -> None:
        url = f"wss://{address}/1.0/events?all-projects=true"
        connected = self._connected[address]
        while True:
            try:
                async with self.peers.session().ws_connect(url, heartbeat=30) as ws:
                    connected.set()
                    async for message in ws:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            continue
                        event = json.loads(message.data)
                        if isinstance(event, dict):
                            self.bus.relay(event)
            except (aiohttp.ClientError, OSError, ValueError, TimeoutError) as exc:
                log.debug("events of member %s not followed: %s", address, exc)
            connected.clear()
            await asyncio.sleep(RETRY_SECONDS)
