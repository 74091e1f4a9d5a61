"""Per-instance locks so that two state changes of one instance never interleave."""

from __future__ import annotations

import asyncio
from collections import defaultdict


class InstanceLocks:
    def __init__(self) -> None:
        self._locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    def __call__(self, project: str, name: str) -> asyncio.Lock:
        return self._locks[(project, name)]
