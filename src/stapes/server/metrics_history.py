"""The last hour of each local instance's metrics, sampled by the daemon from what /1.0/metrics
computes (CPU time, memory, network and filesystem counters), for graphs: the web UI draws
``GET /1.0/instances/NAME/metrics``. Kept in memory only: a restarted daemon starts a new hour."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from stapes.api.base import StatusCode
from stapes.instance.service import InstanceService
from stapes.server.metrics import Sample, running_samples

log = logging.getLogger(__name__)

INTERVAL = 10.0
"""Seconds between two samples."""
KEEP = 3600.0
"""Seconds of history kept per instance."""


@dataclass(frozen=True)
class Point:
    """One sample of one instance: counters as totals (the reader takes rates), gauges as
    they were."""

    time: float
    cpu_seconds: float
    memory_bytes: float
    network_receive_bytes: float
    network_transmit_bytes: float
    disk_used_bytes: float
    processes: float


def point_of(samples: list[Sample], at: float) -> Point:
    totals: dict[str, float] = {}
    for name, labels, value in samples:
        if labels.get("device") == "lo":
            continue
        totals[name] = totals.get(name, 0.0) + value
    disk_used = totals.get("incus_filesystem_size_bytes", 0.0) - totals.get(
        "incus_filesystem_avail_bytes", 0.0
    )
    return Point(
        time=at,
        cpu_seconds=totals.get("incus_cpu_seconds_total", 0.0),
        memory_bytes=totals.get("incus_memory_RSS_bytes", 0.0),
        network_receive_bytes=totals.get("incus_network_receive_bytes_total", 0.0),
        network_transmit_bytes=totals.get("incus_network_transmit_bytes_total", 0.0),
        disk_used_bytes=max(disk_used, 0.0),
        processes=totals.get("incus_procs_total", 0.0),
    )


class MetricsHistory:
    def __init__(self, instances: InstanceService) -> None:
        self._instances = instances
        self._series: dict[tuple[str, str], deque[Point]] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL)
            try:
                await self.sample()
            except Exception:  # a bad sample must not end the sampling
                log.exception("sampling the instances' metrics failed")

    async def sample(self) -> None:
        now = time.time()
        rows = self._instances.local_instances()
        statuses = await self._instances.statuses(rows)
        present = set()
        for row, status in zip(rows, statuses, strict=True):
            key = (row.project, row.name)
            present.add(key)
            if status.status == StatusCode.STOPPED:
                continue
            try:
                samples = await running_samples(self._instances, row)
            except Exception as exc:  # it stopped or went away while being read
                log.debug("no metrics for %s/%s: %s", row.project, row.name, exc)
                continue
            series = self._series.setdefault(key, deque())
            series.append(point_of(samples, now))
            while series and series[0].time < now - KEEP:
                series.popleft()
        for gone in set(self._series) - present:
            del self._series[gone]

    def render(self, project: str, name: str) -> dict[str, Any]:
        points = self._series.get((project, name), ())
        return {"interval": INTERVAL, "samples": [asdict(point) for point in points]}
