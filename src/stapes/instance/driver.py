"""The instance driver interface (lifecycle core) and the data a driver is handed."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from stapes.api.base import StatusCode
from stapes.api.times import timestamp
from stapes.host.idmap import IdMap
from stapes.instance.devices.device import RunConfig
from stapes.instance.exec import wait_pid


@dataclass(frozen=True)
class DriverInfo:
    name: str
    version: str
    instance_type: str


@dataclass
class InstanceSpec:
    """One instance as its driver needs it: identity, expanded config and devices, paths."""

    project: str
    name: str
    type: str
    architecture: str
    config: dict[str, str]
    devices: dict[str, dict[str, str]]
    volume: Path
    """The instance's volume on its pool (the rootfs is ``volume / "rootfs"``)."""
    log_dir: Path
    idmap: IdMap | None = None
    """The map the instance's files are shifted to (volatile.idmap.current); None: unshifted."""
    run: RunConfig = field(default_factory=RunConfig)
    """What the devices need at start (filled in by the service just before a start)."""


@dataclass
class RuntimeState:
    status: StatusCode
    pid: int = -1
    processes: int = -1
    memory: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, int] = field(default_factory=dict)
    network: dict[str, Any] | None = None
    started_at: datetime | None = None

    def render(self, disk: dict[str, dict[str, int]]) -> dict[str, Any]:
        """As Incus's InstanceState (``disk``: usage per disk device, when known)."""
        return {
            "status": self.status.text,
            "status_code": int(self.status),
            "disk": disk,
            "memory": self.memory
            or {"usage": 0, "usage_peak": 0, "total": 0, "swap_usage": 0, "swap_usage_peak": 0},
            "network": self.network,
            "pid": self.pid if self.pid > 0 else 0,
            "processes": self.processes,
            "cpu": self.cpu or {"usage": 0, "allocated_time": 0},
            "started_at": timestamp(self.started_at),
            "os_info": None,
        }


@dataclass
class ExecRequest:
    command: list[str]
    environment: dict[str, str]
    cwd: str
    uid: int
    gid: int


@dataclass
class Console:
    """An attachment to an instance's console: a terminal master, and how to let go of it."""

    master: int
    release: Callable[[], Awaitable[None]]
    """Detach (closes nothing of ``master``, which its user closes)."""


@runtime_checkable
class StateSaver(Protocol):
    """A driver that can save a running instance's state (VMs: QEMU's migration stream); the
    instance resumes from it when its volume holds it at the next start."""

    async def save_state(self, spec: InstanceSpec, target: Path) -> None: ...


class InstanceDriver(abc.ABC):
    @abc.abstractmethod
    def info(self) -> DriverInfo: ...

    @abc.abstractmethod
    async def status(self, spec: InstanceSpec) -> RuntimeState:
        """The power state and pid only (cheap: used by list)."""

    async def wait_exec(self, pid: int) -> int:
        """The shell-style exit code of a command spawn() or spawn_pty() started."""
        return await wait_pid(pid)

    def running_status(self, pid: int) -> RuntimeState | None:
        """The status of an instance whose init (``pid``) the daemon watches and knows alive,
        without asking the runtime (lists of many running instances); None: ask status()."""
        return None

    def at_a_glance(self, instances: list[tuple[str, str]]) -> list[RuntimeState | None]:
        """The status of each (project, name) that the driver can tell without a spec (lists
        of many stopped instances); None: ask statuses()."""
        return [None] * len(instances)

    async def statuses(self, specs: list[InstanceSpec]) -> list[RuntimeState]:
        """status() of many instances (lists); a driver may answer them in one go."""
        return list(await asyncio.gather(*(self.status(spec) for spec in specs)))

    @abc.abstractmethod
    async def state(self, spec: InstanceSpec) -> RuntimeState:
        """The full runtime state: status, pid, processes, memory, cpu, network."""

    async def counters(self, spec: InstanceSpec) -> dict[str, float]:
        """Kernel counters of a running instance beyond its state, for metrics (a cgroup's
        memory.stat keys, oom_kill, effective_cpus, cpuN_user/cpuN_system seconds); none by
        default."""
        return {}

    @abc.abstractmethod
    async def start(self, spec: InstanceSpec) -> int:
        """Start the instance; return the pid of its init."""

    @abc.abstractmethod
    async def stop(self, spec: InstanceSpec, *, force: bool, timeout: int) -> None: ...

    async def after_stop(self, spec: InstanceSpec) -> None:
        """Release what the runtime left behind once the instance stopped (however it
        stopped). Must tolerate running more than once."""
        return None

    def exit_reason(self, spec: InstanceSpec) -> str:
        """Why the instance stopped on its own, if the driver knows (a crash...)."""
        return ""

    @abc.abstractmethod
    async def freeze(self, spec: InstanceSpec) -> None: ...

    @abc.abstractmethod
    async def unfreeze(self, spec: InstanceSpec) -> None: ...

    @abc.abstractmethod
    async def spawn(
        self, spec: InstanceSpec, req: ExecRequest, stdin: int, stdout: int, stderr: int
    ) -> int:
        """Run a command inside; return its pid (a child of this process)."""

    @abc.abstractmethod
    async def spawn_pty(self, spec: InstanceSpec, req: ExecRequest) -> tuple[int, int]:
        """Run a command on a new terminal inside; return (pid, terminal master fd)."""

    @abc.abstractmethod
    async def hotplug(self, spec: InstanceSpec, run: RunConfig) -> None:
        """Attach devices' mounts, nodes, NICs and helpers to the running instance."""

    @abc.abstractmethod
    async def unplug(self, spec: InstanceSpec, run: RunConfig) -> None:
        """Detach what ``hotplug`` (or the start) attached; tolerant of what is already gone."""

    @abc.abstractmethod
    async def console(self, spec: InstanceSpec) -> Console:
        """Attach to the running instance's console."""

    @abc.abstractmethod
    def console_log(self, spec: InstanceSpec) -> Path:
        """The file the console's output is kept in."""

    @abc.abstractmethod
    def log_files(self, spec: InstanceSpec) -> dict[str, Path]:
        """The instance's log files under their API names (lxc.log, lxc.conf...)."""

    def idmap_for(self, config: dict[str, str]) -> IdMap | None:
        """The id map every instance of this config shares (None: unshifted); isolated maps
        are chosen by the service from it."""
        return None

    @abc.abstractmethod
    def check_config(self, spec: InstanceSpec) -> None:
        """Raise BadRequest when the expanded config cannot be applied by this driver."""

    @abc.abstractmethod
    async def update_live(self, spec: InstanceSpec, keys: set[str]) -> None:
        """Apply changed live-updatable keys to a running instance (a no-op when stopped)."""

    @abc.abstractmethod
    async def adopt(self, spec: InstanceSpec) -> None:
        """Make the driver's files point at the instance's volume (after create or rename)."""

    @abc.abstractmethod
    async def forget(self, spec: InstanceSpec) -> None:
        """Remove what the driver keeps outside the instance's volume."""
