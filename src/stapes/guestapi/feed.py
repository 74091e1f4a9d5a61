"""The events a guest hears on /dev/incus's /1.0/events: changes to its user.* keys
(``config``) and to its devices (``device``), from its expanded config, as Incus sends them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from stapes.api.times import now, timestamp

GUEST_EVENT_TYPES = ("config", "device")
QUEUE_SIZE = 1024


def config_events(old: dict[str, str], new: dict[str, str]) -> Iterator[dict[str, Any]]:
    """One ``config`` event per user.* key whose value changed (unset: the empty string)."""
    for key in sorted(set(old) | set(new)):
        if key.startswith("user.") and old.get(key, "") != new.get(key, ""):
            yield _event(
                "config", {"key": key, "old_value": old.get(key, ""), "value": new.get(key, "")}
            )


def device_events(
    old: dict[str, dict[str, str]], new: dict[str, dict[str, str]]
) -> Iterator[dict[str, Any]]:
    """Removed and changed devices go (with their old config), then added and changed ones
    come (with the new), as they are unplugged and plugged."""
    for name in sorted(old):
        if new.get(name) != old[name]:
            yield _event("device", {"action": "removed", "config": old[name], "name": name})
    for name in sorted(new):
        if old.get(name) != new[name]:
            yield _event("device", {"action": "added", "config": new[name], "name": name})


def _event(kind: str, metadata: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "timestamp": timestamp(now()), "metadata": metadata}


@dataclass(eq=False)
class GuestListener:
    instance: tuple[str, str]
    types: frozenset[str]
    queue: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )


class GuestFeed:
    """The listeners of each instance's guest event stream."""

    def __init__(self) -> None:
        self._listeners: set[GuestListener] = set()

    def subscribe(self, instance: tuple[str, str], types: frozenset[str]) -> GuestListener:
        listener = GuestListener(instance, types)
        self._listeners.add(listener)
        return listener

    def unsubscribe(self, listener: GuestListener) -> None:
        self._listeners.discard(listener)

    def listening(self, instance: tuple[str, str]) -> bool:
        return any(listener.instance == instance for listener in self._listeners)

    def send(self, instance: tuple[str, str], events: list[dict[str, Any]]) -> None:
        for listener in list(self._listeners):
            if listener.instance != instance:
                continue
            for event in events:
                if event["type"] not in listener.types:
                    continue
                try:
                    listener.queue.put_nowait(event)
                except asyncio.QueueFull:  # a guest that does not read loses its stream
                    self.hang_up(listener)
                    break

    def hang_up(self, listener: GuestListener) -> None:
        self._listeners.discard(listener)
        with contextlib.suppress(asyncio.QueueFull):
            listener.queue.put_nowait(None)

    def close(self, instance: tuple[str, str] | None = None) -> None:
        """End the streams of one instance (None: of all)."""
        for listener in list(self._listeners):
            if instance is None or listener.instance == instance:
                self.hang_up(listener)
