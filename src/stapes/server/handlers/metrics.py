"""/1.0/metrics: instance and daemon metrics in the Prometheus text format."""

from __future__ import annotations

from aiohttp import web

from stapes.server.auth import identify
from stapes.server.endpoint import Action, Endpoint, project_of, state
from stapes.server.metrics import collect


async def get_metrics(request: web.Request) -> web.StreamResponse:
    identity = identify(request)
    projects = [project_of(request)] if "project" in request.query or identity.restricted else None
    text = await collect(state(request).instances, projects)
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


ENDPOINTS = [Endpoint("/metrics", get=Action(get_metrics, allow_metrics=True))]
