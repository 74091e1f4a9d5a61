"""GET /1.0/metrics: the running instances' counters in the Prometheus text format, under
Incus's metric names (so dashboards and scrape configs made for Incus read them unchanged):
CPU time, memory, network and process counts per instance, plus the daemon's own figures. Open
to trusted clients and to certificates of type ``metrics``."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from typing import Any

from stapes.api.base import StatusCode
from stapes.db.instances import InstanceRow
from stapes.instance.service import InstanceService

START = time.monotonic()
_HELP = {
    "incus_cpu_seconds_total": ("counter", "The total number of CPU time used in seconds."),
    "incus_memory_MemTotal_bytes": ("gauge", "The amount of memory the instance may use."),
    "incus_memory_MemAvailable_bytes": ("gauge", "The amount of memory the instance has left."),
    "incus_memory_RSS_bytes": ("gauge", "The amount of memory the instance uses."),
    "incus_memory_Swap_bytes": ("gauge", "The amount of swap the instance uses."),
    "incus_network_receive_bytes_total": ("counter", "The amount of received bytes."),
    "incus_network_transmit_bytes_total": ("counter", "The amount of transmitted bytes."),
    "incus_network_receive_packets_total": ("counter", "The amount of received packets."),
    "incus_network_transmit_packets_total": ("counter", "The amount of transmitted packets."),
    "incus_network_receive_errs_total": ("counter", "The amount of received errors."),
    "incus_network_transmit_errs_total": ("counter", "The amount of transmitted errors."),
    "incus_network_receive_drop_total": ("counter", "The amount of received dropped bytes."),
    "incus_network_transmit_drop_total": ("counter", "The amount of transmitted dropped bytes."),
    "incus_procs_total": ("gauge", "The number of running processes."),
    "incus_cpu_effective_total": ("gauge", "The total number of effective CPUs."),
    "incus_memory_OOM_kills_total": ("counter", "The number of out of memory kills."),
    "incus_filesystem_size_bytes": ("gauge", "The size of the root filesystem."),
    "incus_filesystem_avail_bytes": ("gauge", "What the root filesystem has left."),
    "incus_instances": ("gauge", "The number of instances, by type and state."),
    "incus_uptime_seconds": ("gauge", "The daemon's uptime in seconds."),
    "incus_go_goroutines": ("gauge", "Not Go: the daemon's asyncio tasks."),
    "incus_process_resident_memory_bytes": ("gauge", "The daemon's resident memory."),
}
_NET = {
    "bytes_received": "incus_network_receive_bytes_total",
    "bytes_sent": "incus_network_transmit_bytes_total",
    "packets_received": "incus_network_receive_packets_total",
    "packets_sent": "incus_network_transmit_packets_total",
    "errors_received": "incus_network_receive_errs_total",
    "errors_sent": "incus_network_transmit_errs_total",
    "packets_dropped_inbound": "incus_network_receive_drop_total",
    "packets_dropped_outbound": "incus_network_transmit_drop_total",
}

_MEMORY_STAT = {
    "active_anon": "Active_anon",
    "active_file": "Active_file",
    "inactive_anon": "Inactive_anon",
    "inactive_file": "Inactive_file",
    "cache": "Cached",
    "dirty": "Dirty",
    "mapped_file": "Mapped",
    "shmem": "Shmem",
    "unevictable": "Unevictable",
    "writeback": "Writeback",
}
"""cgroup memory.stat keys and the names of Incus's incus_memory_<name>_bytes metrics."""

Sample = tuple[str, dict[str, str], float]


def _labels(labels: dict[str, str]) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    inner = ",".join(f'{k}="{escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    """Exact: integers as integers, other values as Python's shortest repr."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def render(samples: Iterable[Sample]) -> str:
    """The Prometheus text exposition: each metric's HELP and TYPE, then its samples."""
    by_name: dict[str, list[Sample]] = {}
    for sample in samples:
        by_name.setdefault(sample[0], []).append(sample)
    lines = []
    for name, found in by_name.items():
        kind, text = _HELP.get(name, ("gauge", name))
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{_labels(labels)} {_number(value)}" for _, labels, value in found]
    return "\n".join(lines) + "\n"


def instance_samples(
    row: InstanceRow,
    state: dict[str, Any],
    filesystems: dict[str, tuple[int, int]] | None = None,
    counters: dict[str, float] | None = None,
) -> list[Sample]:
    """``filesystems``: device -> (size, available) of the instance's filesystems;
    ``counters``: the kernel's (InstanceDriver.counters), when the driver has them."""
    base = {"name": row.name, "project": row.project, "type": row.type}
    counters = counters or {}
    per_cpu = sorted(
        (int(key[3:].partition("_")[0]), key.partition("_")[2], value)
        for key, value in counters.items()
        if key.startswith("cpu") and key[3:4].isdigit()
    )
    if per_cpu:  # each CPU's user and system time, as Incus gives them
        cpu = [
            ("incus_cpu_seconds_total", {**base, "cpu": str(n), "mode": mode}, value)
            for n, mode, value in per_cpu
        ]
    else:
        labels = {**base, "cpu": "0", "mode": "user"}
        cpu = [("incus_cpu_seconds_total", labels, state["cpu"].get("usage", 0) / 1e9)]
    samples: list[Sample] = [*cpu, ("incus_procs_total", base, state.get("processes", 0))]
    if "effective_cpus" in counters:
        samples.append(("incus_cpu_effective_total", base, counters["effective_cpus"]))
    memory = state.get("memory") or {}
    total, usage = memory.get("total", 0), memory.get("usage", 0)
    samples += [
        ("incus_memory_MemTotal_bytes", base, total),
        # what the page cache holds can be given back: available, though not free
        ("incus_memory_MemAvailable_bytes", base, max(total - usage, 0) + counters.get("cache", 0)),
        ("incus_memory_RSS_bytes", base, counters.get("rss", usage)),
        ("incus_memory_Swap_bytes", base, memory.get("swap_usage", 0)),
    ]
    if "cache" in counters:
        samples.append(("incus_memory_MemFree_bytes", base, max(total - usage, 0)))
        for key, name in _MEMORY_STAT.items():
            samples.append((f"incus_memory_{name}_bytes", base, counters.get(key, 0)))
        active = counters.get("active_anon", 0) + counters.get("active_file", 0)
        inactive = counters.get("inactive_anon", 0) + counters.get("inactive_file", 0)
        samples.append(("incus_memory_Active_bytes", base, active))
        samples.append(("incus_memory_Inactive_bytes", base, inactive))
    if "oom_kill" in counters:
        samples.append(("incus_memory_OOM_kills_total", base, counters["oom_kill"]))
    for device, interface in (state.get("network") or {}).items():
        counters = interface.get("counters", {})
        for key, metric in _NET.items():
            samples.append((metric, {**base, "device": device}, counters.get(key, 0)))
    for device, (size, available) in (filesystems or {}).items():
        labels = {**base, "device": device, "mountpoint": "/"}
        samples.append(("incus_filesystem_size_bytes", labels, size))
        samples.append(("incus_filesystem_avail_bytes", labels, available))
    return samples


def _rss() -> int:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def running_samples(instances: InstanceService, row: InstanceRow) -> list[Sample]:
    """The samples of an instance the caller knows running."""
    return instance_samples(
        row,
        await instances.state(row),
        await instances.filesystems(row),
        await instances.counters(row),
    )


async def collect(instances: InstanceService, projects: list[str] | None) -> str:
    """The metrics of the instances of ``projects`` (None: every project)."""
    rows = [r for r in instances.local_instances() if projects is None or r.project in projects]
    samples: list[Sample] = []
    counts: dict[tuple[str, str], int] = {}
    for row, status in zip(rows, await instances.statuses(rows), strict=True):
        running = status.status != StatusCode.STOPPED
        key = (row.type, "Running" if running else "Stopped")
        counts[key] = counts.get(key, 0) + 1
        if running:
            samples += await running_samples(instances, row)
    samples += [
        ("incus_instances", {"type": kind, "state": status}, count)
        for (kind, status), count in sorted(counts.items())
    ]
    samples += [
        ("incus_uptime_seconds", {}, time.monotonic() - START),
        ("incus_go_goroutines", {}, len(asyncio.all_tasks())),
        ("incus_process_resident_memory_bytes", {}, _rss()),
    ]
    return render(samples)
