"""/1.0/events: the event stream as a websocket, one JSON text frame per event."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from aiohttp import web

from stapes.api.errors import BadRequest, Forbidden
from stapes.runtime.events import EVENT_TYPES, pump
from stapes.server.auth import identify
from stapes.server.endpoint import Action, Endpoint, flag, project_of, state
from stapes.server.response import Result

log = logging.getLogger(__name__)


async def get_events(request: web.Request) -> Result:
    st = state(request)
    wanted = [t for t in request.query.get("type", "").split(",") if t]
    unknown = [t for t in wanted if t not in EVENT_TYPES]
    if unknown:
        raise BadRequest(
            f"Unknown event type {unknown[0]!r}: valid types are {', '.join(EVENT_TYPES)}"
        )
    project = None if flag(request, "all-projects") else project_of(request)
    confined = identify(request).restricted
    if confined and wanted == ["logging"]:
        raise Forbidden("Certificate is restricted: the daemon's log is not for restricted clients")
    listener = st.events.subscribe(
        frozenset(wanted or EVENT_TYPES),
        project,
        confined=confined,
        local_only=identify(request).member,  # a member relays them itself
    )
    ws = web.WebSocketResponse(heartbeat=30)
    try:
        await ws.prepare(request)
        peer = identify(request).peer
        log.debug(
            "Event listener server handler started",
            extra={
                "context": {
                    "id": str(uuid.uuid4()),
                    "local": str(st.paths.socket) if peer is None else "",
                    "remote": "@" if peer is None else peer.address,
                }
            },
        )

        async def drain_client() -> None:
            async for _ in ws:
                pass

        reader = asyncio.get_running_loop().create_task(drain_client())
        try:
            await pump(listener.queue, reader, ws.send_str)
        finally:
            reader.cancel()
            with contextlib.suppress(Exception):
                await ws.close()
    finally:
        st.events.unsubscribe(listener)
    return ws


ENDPOINTS = [Endpoint("/events", get=Action(get_events))]
