"""An instance leaving for or arriving from another server (Incus's migration API): the
operations that run ``migration.source`` and ``migration.sink`` for the instance service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest
from stapes.api.instance import InstancePost
from stapes.api.lifecycle import InstanceAction
from stapes.api.urls import instance_url
from stapes.db import instances as q
from stapes.host import criu
from stapes.migration.channel import Dial
from stapes.migration.sink import InstanceSink
from stapes.migration.source import InstanceSource
from stapes.runtime.operations import Operation

if TYPE_CHECKING:
    from stapes.instance.create import Fill
    from stapes.instance.service import InstanceService


def live_refusal(instance_type: str) -> str:
    """Why a live move cannot be done (what the client should do instead)."""
    instead = "move it --stateless (stopped, moved, started again) or copy it as it runs"
    if instance_type == "container":
        reason = criu.problem() or "live container migration (CRIU) is not implemented yet"
        return f"Live migration of a running container needs CRIU: {reason}; {instead}"
    return f"Live migration of a {instance_type} is not possible; {instead}"


def _resources(project: str, name: str) -> dict[str, list[str]]:
    return {"instances": [instance_url(name, project)]}


async def send(
    svc: InstanceService, row: q.InstanceRow, req: InstancePost, *, leaving: bool = False
) -> Operation:
    """The source's operation: a websocket operation whose secrets the target dials with
    (pull), or a task that dials the target's operation itself (push, ``req.target``).
    ``leaving``: a live move within a cluster (the guest here is left paused for the caller)."""
    if req.live and row.type != "virtual-machine":
        raise BadRequest(live_refusal(row.type))
    push = None
    if req.target is not None and req.target.operation:
        push = Dial(req.target.operation, dict(req.target.secrets), req.target.certificate)
    source = InstanceSource(
        svc,
        row,
        instance_only=req.instance_only,
        push=push,
        allow_inconsistent=req.allow_inconsistent,
        live=req.live,
        leaving=leaving,
    )

    async def act(op: Operation) -> None:
        await source.run(op)  # closes its websockets however it ends
        svc.events.lifecycle(
            InstanceAction.MIGRATED, instance_url(row.name, row.project), project=row.project
        )

    return svc.operations.start(
        act,
        description="Migrating instance",
        project=row.project,
        resources=_resources(row.project, row.name),
        cls="task" if push is not None else "websocket",
        metadata=source.metadata,
        prepare=source.prepare,
    )


def fill(svc: InstanceService, sink: InstanceSink) -> Fill:
    async def fill_volume(op: Operation, row: q.InstanceRow) -> None:
        await sink.receive(svc, op, row)

    return fill_volume


async def receive_operation(
    svc: InstanceService,
    sink: InstanceSink,
    act: Callable[[Operation], Awaitable[None]],
    project: str,
    name: str,
) -> Operation:
    """The target's create operation: pull mode reaches the source first (a wrong address,
    secret or certificate fails the request, not the operation); push mode hands out the
    secrets the source dials with."""
    await sink.reach()

    return svc.operations.start(
        sink.closing(act),
        description="Creating instance",
        project=project,
        resources=_resources(project, name),
        cls="websocket" if sink.accepting else "task",
        metadata=sink.metadata,
        prepare=sink.prepare,
    )


async def refresh(svc: InstanceService, sink: InstanceSink, target: q.InstanceRow) -> Operation:
    """``copy --refresh`` from another server: the stopped target instance gets the source's
    missing snapshots and its volume synced (rsync sends only what changed)."""
    if (await svc.status(target)).status != StatusCode.STOPPED:
        raise BadRequest(f"Instance {target.name!r} is running: stop it to refresh it")
    sink.refresh = True

    async def act(op: Operation) -> None:
        async with svc.locks(target.project, target.name):
            await sink.receive(svc, op, svc.get(target.project, target.name))
            svc.events.lifecycle(
                InstanceAction.UPDATED,
                instance_url(target.name, target.project),
                project=target.project,
            )

    return await receive_operation(svc, sink, act, target.project, target.name)
