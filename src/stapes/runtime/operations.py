"""Background operations: lifecycle, events, cancel, wait and websocket secrets. Owned by State."""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest, Forbidden, NotFound, StapesError
from stapes.api.times import now, timestamp
from stapes.runtime.events import EventBus

if TYPE_CHECKING:  # the HTTP layer hands its requests over; nothing here speaks HTTP
    from aiohttp import web

log = logging.getLogger(__name__)

Runner = Callable[["Operation"], Awaitable[None]]
WebsocketConnector = Callable[[str, "web.Request"], Awaitable["web.StreamResponse"]]

KEEP_FINISHED_SECONDS = 5.0
"""How long a finished operation stays listed (Incus: five seconds)."""


class Operation:
    def __init__(
        self,
        registry: Operations,
        *,
        description: str,
        cls: str,
        resources: dict[str, list[str]],
        project: str,
        metadata: Any = None,
        may_cancel: bool = False,
    ) -> None:
        self.registry = registry
        self.id = str(uuid.uuid4())
        self.cls = cls
        self.description = description
        self.created_at = now()
        self.updated_at = self.created_at
        self.status = StatusCode.PENDING
        self.resources = resources
        self.metadata: Any = metadata
        self.may_cancel = may_cancel
        self.err = ""
        self.error_status = 0
        self.project = project
        self.done = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.websocket_connector: WebsocketConnector | None = None
        self.secrets: dict[str, str] = {}

    def render(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "class": self.cls,
            "description": self.description,
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
            "status": self.status.text,
            "status_code": int(self.status),
            "resources": self.resources,
            "metadata": self.metadata,
            "may_cancel": self.may_cancel,
            "err": self.err,
            "location": self.registry.events.membership.location,
        }

    @property
    def finished(self) -> bool:
        return self.done.is_set()

    def _changed(self) -> None:
        self.updated_at = now()
        self.registry.events.send("operation", self.render(), self.project)

    def update_metadata(self, metadata: Any) -> None:
        self.metadata = metadata
        self._changed()

    def progress(self, stage: str, percent: int, speed: float, label: str) -> None:
        self.update_metadata(
            {
                f"{stage}_progress": label,
                "progress": {"percent": str(percent), "speed": str(int(speed)), "stage": stage},
            }
        )

    def _finish(self, status: StatusCode, err: str = "", error_status: int = 0) -> None:
        self.status = status
        self.err = err
        self.error_status = error_status
        self._changed()
        self.done.set()
        asyncio.get_running_loop().call_later(KEEP_FINISHED_SECONDS, self.registry.forget, self.id)

    async def _run(self, runner: Runner) -> None:
        self.status = StatusCode.RUNNING
        self._changed()
        try:
            await runner(self)
        except asyncio.CancelledError:
            self._finish(StatusCode.CANCELLED, "Operation cancelled", 400)
        except StapesError as exc:
            self._finish(StatusCode.FAILURE, exc.message, exc.status)
        except Exception as exc:
            log.exception("operation %s (%s) failed", self.id, self.description)
            self._finish(StatusCode.FAILURE, str(exc) or type(exc).__name__, 500)
        else:
            self._finish(StatusCode.SUCCESS)

    def cancel(self) -> None:
        if self.finished:
            raise BadRequest("Operation is already finished")
        if not self.may_cancel or self.task is None:
            raise Forbidden("This operation can't be cancelled")
        self.status = StatusCode.CANCELLING
        self._changed()
        self.task.cancel()

    async def wait(self, timeout: float | None) -> None:
        if timeout is None or timeout < 0:
            await self.done.wait()
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.done.wait()), timeout)
        except TimeoutError:
            pass

    def new_secret(self, name: str) -> str:
        secret = secrets.token_hex(32)
        self.secrets[name] = secret
        return secret

    async def connect(self, secret: str, request: web.Request) -> web.StreamResponse:
        if self.websocket_connector is None or secret not in self.secrets.values():
            raise Forbidden("Invalid websocket secret")
        return await self.websocket_connector(secret, request)


class Operations:
    def __init__(self, events: EventBus) -> None:
        self.events = events
        self._ops: dict[str, Operation] = {}
        self.stopping = False
        """Set at daemon shutdown, when every task is cancelled."""

    def start(
        self,
        runner: Runner,
        *,
        description: str,
        resources: dict[str, list[str]],
        project: str = "default",
        cls: str = "task",
        metadata: Any = None,
        may_cancel: bool = False,
        prepare: Callable[[Operation], None] | None = None,
    ) -> Operation:
        """Create an operation and run ``runner`` in the background. ``prepare`` sets up secrets
        and the websocket connector before the operation is announced."""
        op = Operation(
            self,
            description=description,
            cls=cls,
            resources=resources,
            project=project,
            metadata=metadata,
            may_cancel=may_cancel,
        )
        if prepare is not None:
            prepare(op)
        self._ops[op.id] = op
        self.events.send("operation", op.render(), project)
        op.status = StatusCode.RUNNING  # as Incus: announced pending, answered running
        op.task = asyncio.get_running_loop().create_task(op._run(runner), name=f"op-{op.id}")
        return op

    def get(self, op_id: str) -> Operation:
        op = self._ops.get(op_id)
        if op is None:
            raise NotFound(f"Operation {op_id!r} not found")
        return op

    def start_token(
        self, metadata: Any, expires: datetime | None, gone: Callable[[], None]
    ) -> Operation:
        """An operation of class token (a trust or join token, as Incus's): pending until it
        is used or revoked (cancelled), or until ``expires`` (then it ends cancelled, as
        Incus's); ``gone`` runs when it ends, not when the daemon shuts down."""

        async def pending(op: Operation) -> None:
            try:
                if expires is None:
                    await asyncio.Event().wait()
                else:
                    await asyncio.sleep(max(0.0, (expires - now()).total_seconds()))
                    raise asyncio.CancelledError
            finally:
                if not self.stopping:
                    gone()

        return self.start(
            pending,
            description="Executing operation",
            resources={},
            cls="token",
            metadata=metadata,
            may_cancel=True,
        )

    def ids(self) -> set[str]:
        return set(self._ops)

    def all(self) -> list[Operation]:
        return list(self._ops.values())

    def forget(self, op_id: str) -> None:
        self._ops.pop(op_id, None)

    async def drain(self, timeout: float) -> None:
        """Let running tasks finish (up to ``timeout`` seconds); websocket sessions (exec,
        console) are interactive and are not waited for."""
        tasks = [
            op.task
            for op in self._ops.values()
            if op.task and not op.task.done() and op.cls == "task"
        ]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def shutdown(self) -> None:
        self.stopping = True
        tasks = [op.task for op in self._ops.values() if op.task and not op.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
