"""/1.0/projects[/{name}[/state]]: projects (create, show, update, rename, delete) and what
they use against their limits."""

from __future__ import annotations

from aiohttp import web

from stapes.api.project import ProjectPost, ProjectPut, ProjectsPost
from stapes.api.urls import project_url
from stapes.db.projects import ProjectRow
from stapes.runtime.operations import Operation
from stapes.server.auth import identify
from stapes.server.endpoint import Action, Endpoint, body_as, check_etag, patched, recursion, state
from stapes.server.response import Async, Result, Sync, created


def _project(request: web.Request) -> ProjectRow:
    return state(request).projects.get(request.match_info["name"])


async def list_projects(request: web.Request) -> Result:
    projects = state(request).projects
    identity = identify(request)
    rows = [r for r in projects.list_projects() if identity.may_use_project(r.name)]
    if recursion(request) >= 1:
        return Sync([projects.render(r) for r in rows])
    return Sync([project_url(r.name) for r in rows])


async def create_project(request: web.Request) -> Result:
    req = await body_as(request, ProjectsPost)
    state(request).projects.create(req)
    return created(project_url(req.name))


async def get_project(request: web.Request) -> Result:
    projects = state(request).projects
    row = _project(request)
    return Sync(projects.render(row), etag=projects.writable(row))


async def put_project(request: web.Request) -> Result:
    projects = state(request).projects
    row = _project(request)
    check_etag(request, projects.writable(row))
    projects.update(row, await body_as(request, ProjectPut))
    return Sync()


async def patch_project(request: web.Request) -> Result:
    projects = state(request).projects
    row = _project(request)
    current = projects.writable(row)
    check_etag(request, current)
    projects.update(row, await patched(request, current, ("config",), ProjectPut))
    return Sync()


async def rename_project(request: web.Request) -> Result:
    """A rename is an operation, as in Incus (its client waits on one)."""
    st = state(request)
    row = _project(request)
    req = await body_as(request, ProjectPost)
    st.projects.rename(row, req.name)

    async def done(op: Operation) -> None:
        return None

    return Async(
        st.operations.start(
            done,
            description="Renaming project",
            project=req.name,
            resources={"projects": [project_url(req.name)]},
        )
    )


async def delete_project(request: web.Request) -> Result:
    state(request).projects.delete(_project(request))
    return Sync()


async def project_state(request: web.Request) -> Result:
    return Sync(state(request).projects.state(_project(request)))


ENDPOINTS = [
    Endpoint("/projects", get=Action(list_projects), post=Action(create_project)),
    Endpoint(
        "/projects/{name}",
        get=Action(get_project),
        put=Action(put_project),
        patch=Action(patch_project),
        post=Action(rename_project),
        delete=Action(delete_project),
    ),
    Endpoint("/projects/{name}/state", get=Action(project_state)),
]
