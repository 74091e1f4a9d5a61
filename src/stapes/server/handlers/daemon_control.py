"""Incus's /internal endpoints for the daemon's own life: ``incus admin waitready`` asks
whether it is ready (GET /internal/ready), ``incus admin shutdown`` and ``stapesd shutdown``
tell it to stop every instance and exit (PUT /internal/shutdown)."""

from __future__ import annotations

from aiohttp import web

from stapes.server.endpoint import Action, Endpoint, flag, state
from stapes.server.response import Result, Sync


async def ready(request: web.Request) -> Result:
    """The socket answers only once start-up (re-adoption included) is done: ready."""
    return Sync()


async def shutdown(request: web.Request) -> Result:
    """Stop every instance (cleanly, or at once with ?force=true) and exit, as at host
    shutdown: the instances start again with the daemon."""
    st = state(request)
    st.shutdown.force = flag(request, "force")
    st.shutdown.requested.set()
    return Sync()


ENDPOINTS = [
    Endpoint("/internal/ready", get=Action(ready)),
    Endpoint("/internal/shutdown", put=Action(shutdown)),
]
