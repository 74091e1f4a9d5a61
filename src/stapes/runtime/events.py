"""The event bus: every state change becomes an event, fanned out to /1.0/events listeners."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from stapes.api.envelope import event_envelope, go_json
from stapes.api.times import now, timestamp
from stapes.runtime.membership import Membership

EVENT_TYPES = ("lifecycle", "operation", "logging")

LOCAL_REQUESTOR = {"username": "root", "protocol": "unix", "address": "@"}
requestor: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
    "requestor", default=LOCAL_REQUESTOR
)
"""Who the request being served comes from (set per request; operations started by it inherit
it), for the ``requestor`` of lifecycle events."""


async def pump(
    queue: asyncio.Queue[dict[str, Any] | None],
    reader: asyncio.Future[Any],
    send: Callable[[str], Awaitable[None]],
) -> None:
    """Send each event of ``queue`` (as Go's encoder writes JSON) until the daemon ends the
    queue (None), the peer hangs up (``reader`` ends) or a send finds the peer gone."""
    while True:
        getter = asyncio.ensure_future(queue.get())
        done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            return
        event = getter.result()
        if event is None:
            return
        try:
            await send(go_json(event))
        except (ConnectionResetError, RuntimeError):  # the peer went away: a normal end
            return


@dataclass(eq=False)
class Listener:
    types: frozenset[str]
    project: str | None
    confined: bool = False
    """A restricted client's: only its project's own events, never the daemon-wide ones
    (logging, and events of no project)."""
    local_only: bool = False
    """Another cluster member's: this member's own events, not those it relays."""
    queue: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=10000)
    )
    """Events for this listener; None means the daemon is shutting down."""

    def wants(self, event: dict[str, Any]) -> bool:
        if event["type"] not in self.types:
            return False
        if self.confined:
            return event["type"] != "logging" and bool(event["project"] == self.project)
        return self.project is None or event["project"] in (self.project, "")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class EventBus:
    def __init__(self, membership: Membership | None = None) -> None:
        self._listeners: set[Listener] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop the listeners wait on (an event sent from another thread goes through it)."""
        self.membership = membership or Membership()
        """Whose events these are (their ``location``)."""

    def subscribe(
        self,
        types: frozenset[str],
        project: str | None,
        *,
        confined: bool = False,
        local_only: bool = False,
    ) -> Listener:
        listener = Listener(types, project, confined, local_only)
        self._loop = asyncio.get_running_loop()
        self._listeners.add(listener)
        return listener

    def listens_for(self, kind: str) -> bool:
        """Whether any listener takes events of type ``kind`` (the daemon's own lifecycle
        listener is always there: a debug record nobody takes is not even made). Log records
        ask from worker threads too: the set is copied (one step under the GIL) first."""
        return any(kind in listener.types for listener in tuple(self._listeners))

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    def close(self) -> None:
        """Tell every listener to hang up (daemon shutdown)."""
        for listener in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):
                listener.queue.put_nowait(None)
        self._listeners.clear()

    def send(self, kind: str, metadata: Any, project: str = "default") -> None:
        location = self.membership.location
        self._deliver(event_envelope(kind, metadata, timestamp(now()), project, location), False)

    def relay(self, event: dict[str, Any]) -> None:
        """An event of another cluster member, for this member's clients."""
        self._deliver(event, True)

    def _deliver(self, event: dict[str, Any], relayed: bool) -> None:
        loop = self._loop
        if loop is not None and _running_loop() is not loop:
            # sent from another thread (a worker, a log record): the listeners' loop delivers it
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._deliver, event, relayed)
            return
        for listener in list(self._listeners):
            if relayed and listener.local_only:
                continue
            if listener.wants(event):
                try:
                    listener.queue.put_nowait(event)
                except asyncio.QueueFull:
                    self._listeners.discard(listener)

    def lifecycle(
        self,
        action: str,
        source: str,
        *,
        project: str = "default",
        context: dict[str, Any] | None = None,
        name: str = "",
    ) -> None:
        self.send(
            "lifecycle",
            {
                "action": action,
                "source": source,
                "context": context or {},
                **({"requestor": who} if (who := requestor.get()) else {}),
                "name": name or source.rsplit("/", 1)[-1],
                "project": project,
            },
            project,
        )


class EventLogHandler(logging.Handler):
    """Forwards the daemon's log records, debug ones included (as Incus sends them whatever
    its own log level), to listeners of the ``logging`` event type; a record's ``context``
    (``extra={"context": {...}}``) becomes the event's."""

    def __init__(self, bus: EventBus) -> None:
        super().__init__(logging.DEBUG)
        self.bus = bus

    def emit(self, record: logging.LogRecord) -> None:
        if not self.bus.listens_for("logging"):
            return
        level = {"WARNING": "warn", "CRITICAL": "crit"}.get(
            record.levelname, record.levelname.lower()
        )
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        context = getattr(record, "context", None)
        if not isinstance(context, dict):
            context = {"logger": record.name}
        self.bus.send("logging", {"message": message, "level": level, "context": context}, "")
