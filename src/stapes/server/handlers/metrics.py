"""/1.0/metrics: instance and daemon metrics in the Prometheus text format; and
/1.0/instances/{name}/metrics: the last hour of one instance's, as JSON (a Stapes addition)."""

from __future__ import annotations

from aiohttp import web

from stapes.server.auth import identify
from stapes.server.endpoint import Action, Endpoint, instance_row, project_of, state
from stapes.server.metrics import collect
from stapes.server.response import Result, Sync


async def get_metrics(request: web.Request) -> web.StreamResponse:
    identity = identify(request)
    projects = [project_of(request)] if "project" in request.query or identity.restricted else None
    text = await collect(state(request).instances, projects)
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def get_instance_history(request: web.Request) -> Result:
    """The samples the daemon took of the instance over the last hour, oldest first: counters
    as totals (cpu_seconds, network_*_bytes), gauges as they were (memory_bytes,
    disk_used_bytes, processes); ``interval`` is the seconds between two samples."""
    row = instance_row(request)
    history = state(request).metrics_history
    assert history is not None
    return Sync(history.render(row.project, row.name))


ENDPOINTS = [
    Endpoint("/metrics", get=Action(get_metrics, allow_metrics=True)),
    Endpoint("/instances/{name}/metrics", get=Action(get_instance_history)),
]
