"""/1.0/operations: list, get, cancel, wait, and the websocket endpoint of an operation."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from stapes.api.errors import BadRequest, NotFound, StapesError
from stapes.db import cluster as cluster_db
from stapes.runtime.operations import Operation
from stapes.server.auth import identify, may_see_operation
from stapes.server.endpoint import Action, Endpoint, flag, project_of, recursion, state
from stapes.server.response import Result, Sync

OTHERS_SECONDS = 5.0
"""How long a list waits for each other member's operations."""


async def list_operations(request: web.Request) -> Result:
    st = state(request)
    project = None if flag(request, "all-projects") else project_of(request)
    grouped: dict[str, list[Any]] = {}
    depth = recursion(request)
    identity = identify(request)
    for op in st.operations.all():
        if project is not None and op.project != project:
            continue
        if not may_see_operation(identity, op.project, op.cls):
            continue
        key = op.status.text.lower()
        grouped.setdefault(key, []).append(
            op.render() if depth >= 1 else f"/1.0/operations/{op.id}"
        )
    if st.membership.clustered and not identity.member:
        for key, theirs in await _of_other_members(request):
            if may_see_operation(identity, theirs.get("project", ""), theirs.get("class", "")):
                grouped.setdefault(key, []).append(
                    theirs if depth >= 1 else f"/1.0/operations/{theirs.get('id')}"
                )
    return Sync(grouped)


async def _of_other_members(request: web.Request) -> list[tuple[str, dict[str, Any]]]:
    """The operations the other members run (the cluster's list, as Incus's); each is
    remembered where it runs, for the requests about it that come here."""
    st = state(request)
    if st.forwarder is None:
        return []
    scope = {"recursion": "1"}
    if flag(request, "all-projects"):
        scope["all-projects"] = "true"
    else:
        scope["project"] = project_of(request)
    found: list[tuple[str, dict[str, Any]]] = []
    for member in cluster_db.list_members(st.db):
        if member.name == st.membership.name:
            continue
        url = f"https://{member.address}/1.0/operations"
        try:
            async with st.forwarder.peers.session().get(
                url, params=scope, timeout=aiohttp.ClientTimeout(total=OTHERS_SECONDS)
            ) as resp:
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            continue  # a member that does not answer has no operations to show
        listed = body.get("metadata") if isinstance(body, dict) else None
        for key, ops in (listed or {}).items():
            for op in ops if isinstance(ops, list) else []:
                if isinstance(op, dict) and isinstance(op.get("id"), str):
                    st.forwarder.operations[op["id"]] = member.address
                    found.append((key, op))
    return found


def _operation(request: web.Request) -> Operation:
    """The operation the URL names, if the client may see it (404 otherwise)."""
    op = state(request).operations.get(request.match_info["id"])
    if not may_see_operation(identify(request), op.project, op.cls):
        raise NotFound(f"Operation {op.id!r} not found")
    return op


async def get_operation(request: web.Request) -> Result:
    return Sync(_operation(request).render())


async def delete_operation(request: web.Request) -> Result:
    _operation(request).cancel()
    return Sync()


class OperationFailed(StapesError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


async def wait_operation(request: web.Request) -> Result:
    op = _operation(request)
    try:
        timeout = float(request.query.get("timeout", "-1"))
    except ValueError:
        raise BadRequest("timeout must be a number of seconds") from None
    await op.wait(timeout)
    if op.finished and op.err:
        raise OperationFailed(op.err, op.error_status or 500)
    return Sync(op.render())


async def operation_websocket(request: web.Request) -> Result:
    op = state(request).operations.get(request.match_info["id"])
    return await op.connect(request.query.get("secret", ""), request)


ENDPOINTS = [
    Endpoint("/operations", get=Action(list_operations)),
    Endpoint("/operations/{id}", get=Action(get_operation), delete=Action(delete_operation)),
    Endpoint("/operations/{id}/wait", get=Action(wait_operation)),
    Endpoint("/operations/{id}/websocket", get=Action(operation_websocket, allow_untrusted=True)),
]
