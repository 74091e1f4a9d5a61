"""THE route table: every endpoint of the API, in one list."""

from __future__ import annotations

from aiohttp import web

import stapes
from stapes.server import openapi, ui
from stapes.server.endpoint import Action, Endpoint, wrap
from stapes.server.handlers import (
    certificates,
    cluster,
    daemon_control,
    events,
    images,
    instance_backups,
    instance_console,
    instance_exec,
    instance_files,
    instance_metadata,
    instance_sftp,
    instance_snapshots,
    instance_state,
    instances,
    internal_sql,
    metrics,
    network_acls,
    network_allocations,
    network_forwards,
    network_zones,
    networks,
    oidc_login,
    operations,
    profiles,
    projects,
    recover,
    server,
    storage_buckets,
    storage_pools,
    storage_volume_backups,
    storage_volumes,
    streams,
    warnings,
)

API: list[Endpoint] = [
    *server.ENDPOINTS,
    *cluster.ENDPOINTS,
    *instances.ENDPOINTS,
    *instance_state.ENDPOINTS,
    *instance_exec.ENDPOINTS,
    *instance_console.ENDPOINTS,  # after exec: logs/{file} would catch logs/exec-output
    *instance_files.ENDPOINTS,
    *instance_metadata.ENDPOINTS,
    *instance_snapshots.ENDPOINTS,
    *instance_backups.ENDPOINTS,
    *instance_sftp.ENDPOINTS,
    *images.ENDPOINTS,
    *profiles.ENDPOINTS,
    *projects.ENDPOINTS,
    *storage_pools.ENDPOINTS,
    *storage_buckets.ENDPOINTS,
    *storage_volumes.ENDPOINTS,
    *storage_volume_backups.ENDPOINTS,
    *networks.ENDPOINTS,
    *network_forwards.ENDPOINTS,
    *network_acls.ENDPOINTS,
    *network_zones.ENDPOINTS,
    *network_allocations.ENDPOINTS,
    *warnings.ENDPOINTS,
    *metrics.ENDPOINTS,
    *certificates.ENDPOINTS,
    *operations.ENDPOINTS,
    *events.ENDPOINTS,
]


async def openapi_json(request: web.Request) -> web.StreamResponse:
    """The API's own description (not in an envelope: OpenAPI tools read it as it is)."""
    return web.json_response(openapi.describe(API, stapes.__version__))


API.append(Endpoint("/openapi.json", get=Action(openapi_json)))

UNVERSIONED: list[Endpoint] = [
    server.ROOT,
    *daemon_control.ENDPOINTS,
    *internal_sql.ENDPOINTS,
    *cluster.INTERNAL,
    *recover.ENDPOINTS,
    *streams.ENDPOINTS,
    *oidc_login.ENDPOINTS,
]
"""Outside /1.0: the root, and Incus's /internal endpoints that its own CLI calls."""


def register(app: web.Application) -> None:
    ui.register(app)
    for endpoint in UNVERSIONED:
        for method, action in endpoint.actions().items():
            app.router.add_route(method, endpoint.path, wrap(action))
    for endpoint in API:
        for method, action in endpoint.actions().items():
            app.router.add_route(method, "/1.0" + endpoint.path, wrap(action))
