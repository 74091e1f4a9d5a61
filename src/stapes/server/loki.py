"""loki.*: events pushed to a Grafana Loki server, as Incus pushes them. Lifecycle and logging
events (loki.types) at or above loki.loglevel go, in batches, to loki.api.url's push API,
labelled app=incus, type, location, instance (loki.instance, the host name by default) and the
event fields loki.labels names; over HTTPS verified by loki.api.ca_cert when given, with basic
authentication when loki.auth.* are set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from stapes.api.times import parse_timestamp
from stapes.runtime.events import EventBus

log = logging.getLogger(__name__)
LEVELS = ("debug", "info", "warn", "error", "crit")
BATCH = 100
FLUSH_SECONDS = 1.0


@dataclass(frozen=True)
class LokiSettings:
    url: str = ""
    ca_cert: str = ""
    username: str = ""
    password: str = ""
    instance: str = ""
    labels: tuple[str, ...] = ()
    loglevel: str = "info"
    types: tuple[str, ...] = ("lifecycle", "logging")

    @classmethod
    def from_config(cls, config: dict[str, str]) -> LokiSettings:
        def split(key: str, default: str) -> tuple[str, ...]:
            return tuple(p.strip() for p in (config.get(key) or default).split(",") if p.strip())

        return cls(
            config.get("loki.api.url", ""),
            config.get("loki.api.ca_cert", ""),
            config.get("loki.auth.username", ""),
            config.get("loki.auth.password", ""),
            config.get("loki.instance", "") or socket.gethostname(),
            split("loki.labels", ""),
            config.get("loki.loglevel", "") or "info",
            split("loki.types", "lifecycle,logging"),
        )


def _line(event: dict[str, Any]) -> str:
    """The log line of an event: a logging event's message and context, a lifecycle event's
    action, source and requestor, as key=value pairs."""
    meta = event.get("metadata") or {}
    if event["type"] == "logging":
        pairs = [f"{k}={v!r}" for k, v in sorted((meta.get("context") or {}).items())]
        return " ".join([str(meta.get("message", "")), *pairs])
    parts = [f"action={meta.get('action', '')!r}", f"source={meta.get('source', '')!r}"]
    requestor = meta.get("requestor") or {}
    if requestor:
        parts.append(f"requestor={requestor.get('protocol', '')}/{requestor.get('username', '')}")
    return " ".join(parts)


def entry(settings: LokiSettings, event: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The (labels, [timestamp in ns, line]) of one event."""
    labels = {
        "app": "incus",
        "type": str(event["type"]),
        "location": str(event.get("location") or "none"),
        "instance": settings.instance,
    }
    meta = event.get("metadata") or {}
    for name in settings.labels:
        value = meta.get(name, (meta.get("context") or {}).get(name, event.get(name)))
        if isinstance(value, str) and value:
            labels[name] = value
    when = parse_timestamp(str(event.get("timestamp", "")))
    ns = int(when.timestamp() * 1e9) if when else time.time_ns()
    return labels, [str(ns), _line(event)]


def wanted(settings: LokiSettings, event: dict[str, Any]) -> bool:
    if event["type"] != "logging":
        return True
    level = str((event.get("metadata") or {}).get("level", "info"))
    floor = settings.loglevel if settings.loglevel in LEVELS else "info"
    return LEVELS.index(level) >= LEVELS.index(floor) if level in LEVELS else True


class LokiPusher:
    """One task that follows the event bus and pushes to Loki while loki.api.url is set."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.settings = LokiSettings()
        self._task: asyncio.Task[None] | None = None
        self._last_failure = 0.0

    def configure(self, settings: LokiSettings) -> None:
        if settings == self.settings and (self._task is not None) == bool(settings.url):
            return
        self.stop()
        self.settings = settings
        if settings.url:
            self._task = asyncio.get_running_loop().create_task(self._run(settings))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self, settings: LokiSettings) -> None:
        listener = self.bus.subscribe(frozenset(settings.types), None)
        context = ssl.create_default_context(cadata=settings.ca_cert or None)
        auth = (
            aiohttp.BasicAuth(settings.username, settings.password) if settings.username else None
        )
        try:
            async with aiohttp.ClientSession(
                auth=auth, timeout=aiohttp.ClientTimeout(total=10)
            ) as session:
                while True:
                    batch = await self._collect(listener.queue, settings)
                    if batch is None:
                        return
                    if batch:
                        await self._push(session, context, settings, batch)
        finally:
            self.bus.unsubscribe(listener)

    @staticmethod
    async def _collect(
        queue: asyncio.Queue[dict[str, Any] | None], settings: LokiSettings
    ) -> list[dict[str, Any]] | None:
        """Events for one push: what comes within FLUSH_SECONDS of the first (BATCH at most);
        None when the bus closes."""
        first = await queue.get()
        if first is None:
            return None
        batch = [first] if wanted(settings, first) else []
        deadline = time.monotonic() + FLUSH_SECONDS
        while len(batch) < BATCH:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                event = await asyncio.wait_for(queue.get(), left)
            except TimeoutError:
                break
            if event is None:
                return batch
            if wanted(settings, event):
                batch.append(event)
        return batch

    async def _push(
        self,
        session: aiohttp.ClientSession,
        context: ssl.SSLContext,
        settings: LokiSettings,
        batch: list[dict[str, Any]],
    ) -> None:
        streams: dict[tuple[tuple[str, str], ...], list[list[str]]] = {}
        for event in batch:
            labels, value = entry(settings, event)
            streams.setdefault(tuple(sorted(labels.items())), []).append(value)
        body = {"streams": [{"stream": dict(k), "values": v} for k, v in streams.items()]}
        url = settings.url.rstrip("/") + "/loki/api/v1/push"
        try:
            ssl_arg: ssl.SSLContext | bool = context if url.startswith("https://") else True
            async with session.post(url, json=body, ssl=ssl_arg) as resp:
                if resp.status >= 300:
                    raise aiohttp.ClientResponseError(
                        resp.request_info, (), status=resp.status, message=await resp.text()
                    )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # one line a minute at most: a failure logged is itself an event to push
            if time.monotonic() - self._last_failure > 60:
                self._last_failure = time.monotonic()
                with contextlib.suppress(Exception):
                    log.warning("Loki push to %s failed: %s", settings.url, exc)
