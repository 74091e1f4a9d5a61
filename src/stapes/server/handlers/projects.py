"""/1.0/projects, read-only in this release (only the default project exists)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from stapes.db.images import list_images
from stapes.db.instances import list_instances
from stapes.db.projects import get_project, list_profiles, list_projects
from stapes.server.endpoint import Action, Endpoint, recursion, state
from stapes.server.response import Result, Sync


def _project(request: web.Request, name: str) -> dict[str, Any]:
    st = state(request)
    row = get_project(st.db, name)
    used_by = [f"/1.0/images/{i.fingerprint}" for i in list_images(st.db, name)]
    used_by += [f"/1.0/instances/{i.name}" for i in list_instances(st.db, name)]
    used_by += [f"/1.0/profiles/{p.name}" for p in list_profiles(st.db, name)]
    return {
        "config": row.config,
        "description": row.description,
        "name": row.name,
        "used_by": used_by,
    }


async def list_projects_handler(request: web.Request) -> Result:
    rows = list_projects(state(request).db)
    if recursion(request) >= 1:
        return Sync([_project(request, r.name) for r in rows])
    return Sync([f"/1.0/projects/{r.name}" for r in rows])


async def get_project_handler(request: web.Request) -> Result:
    body = _project(request, request.match_info["name"])
    return Sync(body, etag={"config": body["config"], "description": body["description"]})


ENDPOINTS = [
    Endpoint("/projects", get=Action(list_projects_handler)),
    Endpoint("/projects/{name}", get=Action(get_project_handler)),
]
