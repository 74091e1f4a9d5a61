"""The liblxc container driver. Every blocking liblxc call goes through ``_call``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest, Conflict, InternalError, MissingHostFeature
from stapes.config.validate import parse_cpuset
from stapes.host import netns_interfaces
from stapes.host.capabilities import HostCaps
from stapes.host.idmap import IdMap
from stapes.host.paths import Paths, instance_entry
from stapes.host.run import RunError, run
from stapes.instance import lxc_config, lxc_probes, nic_plumbing, seccomp
from stapes.instance.attach_child import Command
from stapes.instance.attach_client import shared_helper
from stapes.instance.devices import helpers
from stapes.instance.devices.device import RunConfig
from stapes.instance.driver import (
    Console,
    DriverInfo,
    ExecRequest,
    InstanceDriver,
    InstanceSpec,
    RuntimeState,
)
from stapes.instance.exec import ExecFailed, exit_code, wait_pid

try:
    import _lxc as _raw_lxc_module  # the C binding: set_config_item says yes or no
    import lxc as _lxc
except ImportError:  # reported by MissingHostFeature when used
    _lxc = None
    _raw_lxc_module = None

T = TypeVar("T")
log = logging.getLogger(__name__)

_STATUS = {
    "RUNNING": StatusCode.RUNNING,
    "STOPPED": StatusCode.STOPPED,
    "FROZEN": StatusCode.FROZEN,
    "FREEZING": StatusCode.FREEZING,
    "THAWED": StatusCode.RUNNING,
    "STARTING": StatusCode.STARTING,
    "STOPPING": StatusCode.STOPPING,
    "ABORTING": StatusCode.ABORTING,
}


def lxc_name(project: str, name: str) -> str:
    return instance_entry(project, name)


def _host_facts(caps: HostCaps) -> lxc_config.HostFacts:
    memory = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
    return lxc_config.HostFacts(
        cgroup=caps.cgroup,
        cpus=os.cpu_count() or 1,
        memory_bytes=memory,
        io_weight=_io_weight_file(caps.cgroup),
        numa_nodes=_numa_nodes(),
        hugetlb=_has_hugetlb(caps.cgroup),
        lxcfs=Path("/var/lib/lxcfs/proc").is_dir(),
    )


def _numa_nodes() -> tuple[int, ...]:
    try:
        return tuple(parse_cpuset(Path("/sys/devices/system/node/online").read_text().strip()))
    except (OSError, ValueError):
        return (0,)


def _has_hugetlb(cgroup: str) -> bool:
    if cgroup == "v2":
        try:
            return "hugetlb" in Path("/sys/fs/cgroup/cgroup.controllers").read_text().split()
        except OSError:
            return False
    return Path("/sys/fs/cgroup/hugetlb").is_dir()


def _io_weight_file(cgroup: str) -> str:
    """Which block I/O weight file the kernel offers (none when it lacks group scheduling)."""
    try:
        if cgroup == "v2":
            base, names = Path("/sys/fs/cgroup"), ("io.weight", "io.bfq.weight")
            if "io" not in (base / "cgroup.subtree_control").read_text().split():
                return ""
            probe = next((p for p in base.iterdir() if p.is_dir()), base)
        else:
            probe, names = Path("/sys/fs/cgroup/blkio"), ("blkio.weight", "blkio.bfq.weight")
        return next((name for name in names if (probe / name).exists()), "")
    except OSError:
        return ""


def remove_stale_cgroups(name: str, payload: bool = False) -> None:
    """Remove the empty monitor cgroups liblxc leaves after a container stopped
    (``lxc.monitor.NAME``, and ``NAME-N`` where an older one was in the way); with
    ``payload``, when it is not running, the payload cgroups liblxc could not remove too (a
    process outside the container, such as an exec parent, was leaving them as it stopped),
    with the cgroups made inside them, deepest first. Only ``lxc.payload.NAME`` itself:
    ``NAME-N`` may be another container's."""
    root = Path("/sys/fs/cgroup")
    for pattern in (f"lxc.monitor.{name}", f"lxc.monitor.{name}-[0-9]*"):
        for directory in [*root.glob(pattern), *root.glob(f"*/{pattern}")]:
            with contextlib.suppress(OSError):  # busy: a monitor still runs in it
                directory.rmdir()
    if not payload:
        return
    controllers = [root, *(path for path in root.iterdir() if path.is_dir())]
    for directory in (controller / f"lxc.payload.{name}" for controller in controllers):
        for below, _, _ in os.walk(directory, topdown=False):
            with contextlib.suppress(OSError):  # busy: a process still runs in it
                os.rmdir(below)


def _close_volume(spec: InstanceSpec) -> None:
    """A container's volume directory as Incus keeps it: 0100, owned by root for a
    privileged container, by the container's root for an unprivileged one, so that no other
    host user can walk into its rootfs (and reach a setuid file inside, CVE-2016-1582)."""
    if not spec.volume.is_dir():
        return
    owner = spec.idmap.root_uid if spec.idmap is not None else 0
    os.chown(spec.volume, owner, owner)
    os.chmod(spec.volume, 0o100)


def _is_systemd(rootfs: Path) -> bool:
    init = rootfs / "sbin" / "init"
    try:
        target = os.readlink(init)
    except OSError:
        return False
    return "systemd" in target


EXEC_REPORT_TIMEOUT = 30.0
"""Seconds the exec of an attached command may take to happen (or fail) before stapesd stops
waiting to hear which."""


async def exec_failure(report: int) -> None:
    """Read what ``_exec`` reports on the other end of ``report``: nothing (EOF) when the
    command runs; ExecFailed when it could not be executed. Waited for on the event loop."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(report, ready)
    try:
        await asyncio.wait_for(readable, EXEC_REPORT_TIMEOUT)
    except TimeoutError:
        return
    finally:
        loop.remove_reader(report)
    data = os.read(report, 64)
    if data:
        raise ExecFailed(int(data) if data.isdigit() else 0)


def _check_raw_lxc(text: str) -> None:
    """raw.lxc lines liblxc itself takes, as Incus checks them when they are set: each is set
    on a throwaway container object, which refuses keys it does not know and some values."""
    items = lxc_config.parse_raw_lxc(text)
    if not items or _lxc is None or _raw_lxc_module is None:
        return
    with tempfile.TemporaryDirectory(prefix="stapes-raw-lxc-") as scratch:
        probe = _lxc.Container("probe", scratch)
        for key, value in items:
            if not _raw_lxc_module.Container.set_config_item(probe, key, value):
                raise BadRequest(
                    f"Invalid value for config key 'raw.lxc': liblxc does not take {key} = {value}"
                )


class LxcDriver(InstanceDriver):
    def __init__(self, paths: Paths, caps: HostCaps, idmap: IdMap | None) -> None:
        self.paths = paths
        self.caps = caps
        self.idmap = idmap
        self.host = _host_facts(caps)
        self._attacher = shared_helper()

    def info(self) -> DriverInfo:
        return DriverInfo(name="lxc", version=self.caps.liblxc or "", instance_type="container")

    def idmap_for(self, config: dict[str, str]) -> IdMap | None:
        """None for privileged containers; the host's range for unprivileged ones."""
        if lxc_config.privileged(config):
            return None
        if self.idmap is None:
            raise MissingHostFeature(
                "Unprivileged containers need a range for root in /etc/subuid and /etc/subgid "
                "(for example root:1000000:1000000000); or set security.privileged=true"
            )
        return self.idmap

    @staticmethod
    async def _call(fn: Callable[..., T], *args: Any) -> T:
        """The one place blocking liblxc calls leave the event loop."""
        return await asyncio.to_thread(fn, *args)

    def _container(self, spec: InstanceSpec) -> Any:
        if _lxc is None:
            raise MissingHostFeature(self.caps.missing_liblxc())
        return _lxc.Container(lxc_name(spec.project, spec.name), str(self.paths.containers))

    def _link(self, spec: InstanceSpec) -> Path:
        return self.paths.containers / lxc_name(spec.project, spec.name)

    async def adopt(self, spec: InstanceSpec) -> None:
        link = self._link(spec)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(spec.volume)
        spec.log_dir.mkdir(parents=True, exist_ok=True)
        _close_volume(spec)

    async def forget(self, spec: InstanceSpec) -> None:
        link = self._link(spec)
        if link.is_symlink() or link.exists():
            link.unlink()
        await asyncio.to_thread(remove_stale_cgroups, lxc_name(spec.project, spec.name))

    def config_items(self, spec: InstanceSpec) -> lxc_config.Items:
        rootfs = spec.volume / "rootfs"
        return lxc_config.build(
            lxc_config.LxcInputs(
                name=spec.name,
                architecture=spec.architecture,
                config=spec.config,
                rootfs=rootfs,
                log_dir=spec.log_dir,
                idmap=spec.idmap,
                systemd=_is_systemd(rootfs),
                host=self.host,
                run=spec.run,
            )
        )

    async def status(self, spec: InstanceSpec) -> RuntimeState:
        return (await self.statuses([spec]))[0]

    def running_status(self, pid: int) -> RuntimeState | None:
        """From the init's own freezer cgroup: two small file reads, no liblxc."""
        state = lxc_probes.freezer_state(pid)
        return None if state is None else RuntimeState(_STATUS.get(state, StatusCode.RUNNING), pid)

    def at_a_glance(self, instances: list[tuple[str, str]]) -> list[RuntimeState | None]:
        """Stopped: a container whose liblxc monitor does not listen (one read of the host's
        sockets for the whole list)."""
        if len(instances) < 2:
            return [None] * len(instances)
        names = [lxc_name(project, name) for project, name in instances]
        stopped = lxc_probes.without_monitor(self.paths.containers, names)
        return [RuntimeState(StatusCode.STOPPED) if s else None for s in stopped]

    async def statuses(self, specs: list[InstanceSpec]) -> list[RuntimeState]:
        """Every container asked in one trip off the event loop (a list of many running
        containers paid a thread hand-off each; at_a_glance() already told the stopped)."""

        def probe(spec: InstanceSpec) -> RuntimeState:
            if not (self._link(spec) / "config").exists():
                return RuntimeState(StatusCode.STOPPED)
            try:
                c = self._container(spec)
                state, pid = c.state, c.init_pid
            except RuntimeError as exc:  # liblxc cannot load what is there: say so, list on
                log.warning("state of %s unreadable: %s", spec.name, exc)
                return RuntimeState(StatusCode.ERROR)
            return RuntimeState(_STATUS.get(state, StatusCode.ERROR), pid if pid > 0 else -1)

        return await self._call(lambda: [probe(spec) for spec in specs])

    async def state(self, spec: InstanceSpec) -> RuntimeState:
        current = await self.status(spec)
        if current.pid <= 0:
            return current

        def cgroup_counters() -> tuple[int, int, int, int]:
            c = self._container(spec)

            def item(*keys: str) -> int:
                for key in keys:
                    with contextlib.suppress(Exception):
                        value = c.get_cgroup_item(key)
                        if value:
                            return int(str(value).split()[0])
                return 0

            return (
                item("memory.usage_in_bytes", "memory.current"),
                item("memory.max_usage_in_bytes", "memory.peak"),
                item("cpuacct.usage"),
                item("pids.current"),
            )

        usage, peak, cpu_ns, processes = await self._call(cgroup_counters)
        if self._attacher.has_parent(*self._where(spec)):
            processes = max(0, processes - 1)  # not the container's own
        if not cpu_ns:
            cpu_ns = _cpu_from_stat(current.pid)
        current.memory = {
            "usage": usage,
            "usage_peak": peak,
            "total": self.host.memory_bytes,
            "swap_usage": 0,
            "swap_usage_peak": 0,
        }
        current.cpu = {"usage": cpu_ns, "allocated_time": self.host.cpus * 1_000_000_000}
        current.processes = processes
        current.network = await netns_interfaces.interfaces(current.pid)
        for device, nic in spec.devices.items():  # the host's end of each veth, as Incus says
            host_name = spec.config.get(f"volatile.{device}.host_name", "")
            named = nic.get("name") or spec.config.get(f"volatile.{device}.name") or device
            inside = current.network.get(named)
            if nic.get("type") == "nic" and host_name and inside is not None:
                inside["host_name"] = host_name
        current.started_at = _started_at(current.pid)
        return current

    async def counters(self, spec: InstanceSpec) -> dict[str, float]:
        """From the container's cgroups (v1 here): memory.stat, memory.oom_control's
        oom_kill, cpuset.effective_cpus and cpuacct.usage_all (cpuN_user, cpuN_system in
        seconds)."""

        def read() -> dict[str, float]:
            c = self._container(spec)

            def text(key: str) -> str:
                with contextlib.suppress(Exception):
                    return str(c.get_cgroup_item(key) or "")
                return ""

            found: dict[str, float] = {}
            for key in ("memory.stat", "memory.oom_control"):
                for line in text(key).splitlines():
                    name, _, value = line.partition(" ")
                    if value.strip().isdigit():
                        found[name] = int(value)
            cpus = text("cpuset.effective_cpus").strip()
            if cpus:
                found["effective_cpus"] = len(parse_cpuset(cpus))
            for line in text("cpuacct.usage_all").splitlines()[1:]:  # cpu user system (ns)
                fields = line.split()
                if len(fields) == 3 and all(f.isdigit() for f in fields):
                    found[f"cpu{fields[0]}_user"] = int(fields[1]) / 1e9
                    found[f"cpu{fields[0]}_system"] = int(fields[2]) / 1e9
            return found

        if (await self.status(spec)).pid <= 0:
            return {}
        return await self._call(read)

    async def _load_modules(self, spec: InstanceSpec) -> None:
        """linux.kernel_modules: built in or loaded already is fine; else modprobe, or fail."""
        for module in filter(
            None, (m.strip() for m in spec.config.get("linux.kernel_modules", "").split(","))
        ):
            if Path("/sys/module", module.replace("-", "_")).exists():
                continue
            try:
                await run(["modprobe", module], timeout=60)
            except (RunError, OSError) as exc:
                raise MissingHostFeature(
                    f"Kernel module {module!r} (linux.kernel_modules) is not loaded and could "
                    f"not be loaded on this host: {exc}"
                ) from None

    async def start(self, spec: InstanceSpec) -> int:
        await self._load_modules(spec)
        _close_volume(spec)  # its map may have changed since it was adopted
        items = self.config_items(spec)
        config_path = self._link(spec) / "config"
        spec.log_dir.mkdir(parents=True, exist_ok=True)
        if seccomp.wanted(spec.config):
            lxc_config.seccomp_path(spec.log_dir).write_text(seccomp.policy(spec.config))
        config_path.write_text(lxc_config.render(items))
        log_file = spec.log_dir / "lxc.log"

        def prepare() -> None:
            if self._container(spec).running:
                raise BadRequest("The instance is already running")
            remove_stale_cgroups(lxc_name(spec.project, spec.name), payload=True)
            with contextlib.suppress(FileNotFoundError):
                log_file.unlink()

        def started() -> int:
            c = self._container(spec)
            if not c.wait("RUNNING", 5) or c.init_pid <= 0:
                return -1
            pid: int = c.init_pid
            return pid

        try:
            await self._call(prepare)
        except RuntimeError as exc:  # liblxc refused the config just written
            config_path.unlink(missing_ok=True)
            raise BadRequest(f"liblxc refused the container's config: {exc}") from None
        # The lxc-start tool, not the bindings: liblxc moves the process that starts a
        # container into the container's monitor cgroup (stapesd itself, through python-lxc),
        # and the bindings keep the GIL while liblxc waits for the start.
        rc, _, err = await run([*self._tool("lxc-start", spec)], timeout=60, check=False)
        pid = await self._call(started) if rc == 0 else -1
        if pid <= 0:
            await run([*self._tool("lxc-stop", spec), "-k"], timeout=60, check=False)
            await asyncio.to_thread(
                _wait_monitor_gone, self.paths.containers, lxc_name(spec.project, spec.name)
            )
            config_path.unlink(missing_ok=True)  # the next look at the instance sees it stopped
            detail = _log_tail(log_file)
            if detail == "no liblxc log" and err.strip():
                detail = err.strip().splitlines()[-1]
            raise InternalError(f"Failed to start the container: {detail}")

        try:
            for nic in spec.run.nics:
                await nic_plumbing.set_up(nic)
            if spec.run.helpers:
                await asyncio.to_thread(helpers.start, spec.run.helpers, pid, spec.log_dir)
        except BaseException:
            await run([*self._tool("lxc-stop", spec), "-k"], timeout=120, check=False)
            raise
        return pid

    def _tool(self, tool: str, spec: InstanceSpec) -> list[str]:
        """argv of an lxc-* tool for this container."""
        lxcpath, name = self._where(spec)
        return [tool, "-P", lxcpath, "-n", name]

    def _where(self, spec: InstanceSpec) -> tuple[str, str]:
        """liblxc's lxcpath and name of the container."""
        return str(self.paths.containers), lxc_name(spec.project, spec.name)

    async def stop(self, spec: InstanceSpec, *, force: bool, timeout: int) -> None:
        """Stop through the lxc-stop tool, not the bindings: python-lxc keeps the GIL while
        liblxc waits for a container to stop, which froze the whole daemon (and so kept it
        from reaping exec'd processes, without which the container never finishes dying)."""

        def prepare() -> None:
            c = self._container(spec)
            if not c.running:
                raise BadRequest("The instance is already stopped")
            if c.state == "FROZEN":
                c.unfreeze()

        await self._call(prepare)
        await self._attacher.release(*self._where(spec))
        base = self._tool("lxc-stop", spec)
        oci = spec.config.get("volatile.container.oci") == "true"
        if oci and timeout < 0:
            timeout = OCI_STOP_GRACE
        if force:
            await run([*base, "-k"], timeout=120)
        elif not await _shutdown(base, timeout):
            if not oci:
                raise InternalError(
                    f"The instance did not shut down within {timeout}s; use force to stop it"
                )
            # an application as PID 1 without a SIGTERM handler never sees the signal: as
            # docker stop does, it is killed after the grace period
            await run([*base, "-k"], timeout=120)
        if (await self.status(spec)).status != StatusCode.STOPPED:
            raise InternalError("Failed to stop the container")
        await self.after_stop(spec)

    async def after_stop(self, spec: InstanceSpec) -> None:
        """Device helpers go, and so do the monitor's cgroups: liblxc 5.0 leaves an empty
        lxc.monitor.NAME in every controller after each run, and a name taken makes the next
        run use NAME-1, NAME-2... The monitor may still be exiting now: what is busy goes at
        the next start or at delete. Payload cgroups liblxc could not remove go too (an exec
        parent still leaving them when init exited by itself)."""
        await asyncio.to_thread(helpers.stop_all, spec.log_dir)
        await asyncio.to_thread(remove_stale_cgroups, lxc_name(spec.project, spec.name), True)

    def check_config(self, spec: InstanceSpec) -> None:
        self.config_items(spec)
        _check_raw_lxc(spec.config.get("raw.lxc", ""))

    async def update_live(self, spec: InstanceSpec, keys: set[str]) -> None:
        """limits.* go to the running container's cgroups; other live keys are data only."""
        if not keys & lxc_config.LIMIT_KEYS:
            return
        items = lxc_config.limits(spec.config, self.host)
        items += lxc_config.limit_resets(spec.config, keys, self.host)

        def apply() -> None:
            c = self._container(spec)
            if not c.running:
                return
            for key, value in items:
                cgroup_key = key.removeprefix("lxc.cgroup2.").removeprefix("lxc.cgroup.")
                if not c.set_cgroup_item(cgroup_key, value):
                    raise InternalError(
                        f"Failed to set {cgroup_key} to {value} on the running container"
                    )

        await self._call(apply)

    async def hotplug(self, spec: InstanceSpec, attach: RunConfig) -> None:
        pid = (await self.status(spec)).pid
        if pid <= 0:
            return
        for node in attach.nodes:
            await self._cgroup_device(spec, "devices.allow", node.rule)
        for mount in attach.mounts:
            argv = [sys.executable, "-m", "stapes.host.mount_inject", str(pid)]
            argv += [mount.source, mount.target]
            argv += ["--readonly"] if "ro" in mount.options else []
            argv += ["--recursive"] if "rbind" in mount.options else []
            argv += ["--idmap"] if "idmap=container" in mount.options else []
            argv += ["--root-id", str(spec.idmap.base if spec.idmap else 0)]
            rc, _, err = await run(argv, check=False)
            if rc != 0 and "optional" not in mount.options:
                raise BadRequest(err.strip() or "mount failed")
        for nic in attach.nics:
            await nic_plumbing.plug(nic, pid, self._mover(spec))
        if attach.helpers:
            await asyncio.to_thread(helpers.start, attach.helpers, pid, spec.log_dir)

    async def unplug(self, spec: InstanceSpec, detach: RunConfig) -> None:
        for helper in detach.helpers:
            await asyncio.to_thread(helpers.stop, spec.log_dir, helper.device)
        pid = (await self.status(spec)).pid
        if pid <= 0:
            return
        for mount in detach.mounts:
            argv = [sys.executable, "-m", "stapes.host.mount_remove", str(pid), mount.target]
            rc, _, err = await run(argv, check=False)
            if rc != 0:
                log.warning("%s", err.strip())
        for node in detach.nodes:
            await self._cgroup_device(spec, "devices.deny", node.rule)
        for nic in detach.nics:
            await nic_plumbing.unplug(nic, pid)

    async def _cgroup_device(self, spec: InstanceSpec, key: str, rule: str) -> None:
        def apply() -> None:
            if not self._container(spec).set_cgroup_item(key, rule):
                raise InternalError(f"Failed to set {key} {rule!r} on the container's cgroup")

        await self._call(apply)

    def _mover(self, spec: InstanceSpec) -> nic_plumbing.MoveIn:
        """Moves a host interface into the container, renamed."""

        async def move(source: str, target: str) -> None:
            def go() -> None:
                if not self._container(spec).attach_interface(source, target):
                    raise InternalError(f"Failed to move {source} into the container as {target}")

            await self._call(go)

        return move

    async def console(self, spec: InstanceSpec) -> Console:
        """The console's terminal master, held by a helper process (host/console_holder.py)
        until the Console is closed."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "stapes.host.console_holder",
                str(self.paths.containers),
                lxc_name(spec.project, spec.name),
                stdin=theirs.fileno(),
                stderr=asyncio.subprocess.PIPE,
            )
        finally:
            theirs.close()

        async def release() -> None:
            ours.close()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()

        try:
            ours.settimeout(10)
            _, fds, _, _ = await self._call(socket.recv_fds, ours, 16, 1)
            if not fds:
                problem = (await proc.stderr.read()).decode().strip() if proc.stderr else ""
                if "already in use" in problem:
                    raise Conflict(problem)
                raise BadRequest(problem or "Could not attach to the console")
        except BaseException:
            await release()
            raise
        return Console(fds[0], release)

    def console_log(self, spec: InstanceSpec) -> Path:
        return spec.log_dir / "console.log"

    def log_files(self, spec: InstanceSpec) -> dict[str, Path]:
        return {"lxc.log": spec.log_dir / "lxc.log", "lxc.conf": self._link(spec) / "config"}

    async def freeze(self, spec: InstanceSpec) -> None:
        def freeze() -> None:
            c = self._container(spec)
            if c.state != "RUNNING":
                raise BadRequest("The instance isn't running")
            if not c.freeze():
                raise InternalError("Failed to freeze the container")

        await self._call(freeze)

    async def unfreeze(self, spec: InstanceSpec) -> None:
        def unfreeze() -> None:
            c = self._container(spec)
            if c.state != "FROZEN":
                raise BadRequest("The instance isn't frozen")
            if not c.unfreeze():
                raise InternalError("Failed to unfreeze the container")

        await self._call(unfreeze)

    async def _attach(self, spec: InstanceSpec, req: ExecRequest, pty: bool, fds: list[int]) -> int:
        """The command attached in the container by the attach helper (a small process: an
        attach forks its caller, which costs with the caller's memory)."""
        command = Command(req.command, req.environment, req.cwd, req.uid, req.gid)
        return await self._attacher.attach(*self._where(spec), command, pty, fds)

    async def wait_exec(self, pid: int) -> int:
        if self._attacher.owns(pid):
            return exit_code(await self._attacher.wait(pid))
        return await wait_pid(pid)

    async def spawn(
        self, spec: InstanceSpec, req: ExecRequest, stdin: int, stdout: int, stderr: int
    ) -> int:
        if _lxc is None:
            raise MissingHostFeature(self.caps.missing_liblxc())
        report, report_w = os.pipe()  # both close-on-exec
        try:
            try:
                pid = await self._attach(spec, req, False, [stdin, stdout, stderr, report_w])
            finally:
                os.close(report_w)
            if pid <= 0:
                raise InternalError("Failed to attach to the container")
            try:
                await exec_failure(report)
            except ExecFailed:
                await self.wait_exec(pid)  # reap it: nothing else will
                raise
        finally:
            os.close(report)
        return pid

    async def spawn_pty(self, spec: InstanceSpec, req: ExecRequest) -> tuple[int, int]:
        if _lxc is None:
            raise MissingHostFeature(self.caps.missing_liblxc())
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = await self._attach(spec, req, True, [theirs.fileno()])
        finally:
            theirs.close()
        try:
            if pid <= 0:
                raise InternalError("Failed to attach to the container")
            ours.settimeout(10)
            _, fds, _, _ = await self._call(socket.recv_fds, ours, 16, 1)
            if not fds:
                raise InternalError("The container did not hand back a terminal")
            try:
                await exec_failure(ours.fileno())
            except ExecFailed:
                os.close(fds[0])
                await self.wait_exec(pid)
                raise
        finally:
            ours.close()
        return pid, fds[0]


SHUTDOWN_RESEND = 5


OCI_STOP_GRACE = 10
"""Seconds an application container gets to stop on SIGTERM before it is killed."""


async def _shutdown(lxc_stop: list[str], timeout: int) -> bool:
    """Ask init to halt, again every few seconds: an init that has not yet set up its signal
    handlers (a container started a moment ago) ignores the first signal."""
    deadline = None if timeout < 0 else time.monotonic() + timeout
    while True:
        left = SHUTDOWN_RESEND if deadline is None else deadline - time.monotonic()
        if left <= 0:
            return False
        wait = max(1, min(SHUTDOWN_RESEND, round(left)))
        rc, _, _ = await run(
            [*lxc_stop, "--nokill", "-t", str(wait)], check=False, timeout=wait + 30
        )
        if rc == 0:
            return True


def _wait_monitor_gone(lxcpath: Path, name: str, timeout: float = 10) -> None:
    """Wait until liblxc's monitor process of a container (that stopped, or failed to start)
    has exited."""
    title = f"[lxc monitor] {lxcpath} {name}".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if f.read().rstrip(b"\0") == title:
                        alive = True
                        break
            except OSError:
                continue
        if not alive:
            return
        time.sleep(0.05)


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no liblxc log"
    errors = [line for line in lines if " ERROR " in line] or lines
    return " | ".join(errors[-3:]) or "no details in the liblxc log"


def _cpu_from_stat(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _started_at(pid: int) -> datetime | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration):
        return None
    return datetime.fromtimestamp(boot + int(fields[19]) / os.sysconf("SC_CLK_TCK"), UTC)
