"""The virtual-machine driver: one QEMU process per running VM, started as a child of stapesd
in its own session (it outlives a daemon restart and is found again by its pid file),
controlled over QMP. Its root disk is ``root.img`` on the instance's volume; images that carry
a kernel boot it directly, the others boot through UEFI (OVMF)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest, InternalError, MissingHostFeature
from stapes.config.validate import parse_bool
from stapes.host import accel
from stapes.host.paths import Paths
from stapes.host.run import run
from stapes.instance import nic_plumbing
from stapes.instance.devices.device import Nic, RunConfig
from stapes.instance.driver import (
    Console,
    DriverInfo,
    ExecRequest,
    InstanceDriver,
    InstanceSpec,
    RuntimeState,
)
from stapes.instance.vm import (
    config_drive,
    host_checks,
    qemu_args,
    qemu_conf,
    qmp,
    qmp_hooks,
    virtiofs,
)
from stapes.instance.vm.agent_hub import AgentHub
from stapes.instance.vm.qemu_args import Firmware, KernelBoot, Tap, VmInputs

log = logging.getLogger(__name__)

RUN_ROOT = Path("/run/stapes-vm")
ROOT_DISK = "root.img"
NVRAM = "qemu.nvram"
NVRAM_NO_SECUREBOOT = "qemu.nosecureboot.nvram"
"""The UEFI variable stores (one per firmware build: turning security.secureboot off or on
switches to the other, as Incus resets the store then)."""
BOOT_DIR = "boot"
"""Images that carry a kernel: boot/vmlinuz, boot/initrd.img and boot/cmdline (optional)."""
START_TIMEOUT = 30.0
STATE_TIMEOUT = 600.0
STATE_FILE = "state"
"""Saved QEMU state in the volume, and so in stateful snapshots (instance/snapshots.py)."""

Settings = Callable[[], dict[str, str]]


def run_dir(paths: Paths, project: str, name: str) -> Path:
    """Short (unix socket paths are limited to 107 bytes) and stable across daemon restarts."""
    digest = hashlib.sha256(f"{paths.root}\0{project}\0{name}".encode()).hexdigest()[:16]
    return RUN_ROOT / digest


def firmware(secure: bool) -> Firmware:
    kind = ".ms" if secure else ""
    code = accel.OVMF_DIR / f"OVMF_CODE_4M{kind}.fd"
    template = accel.OVMF_DIR / f"OVMF_VARS_4M{kind}.fd"
    if not code.exists() or not template.exists():
        raise MissingHostFeature(
            f"UEFI firmware {code} is missing: install Debian's ovmf package, or use an image "
            "that carries its kernel (direct kernel boot needs no firmware)"
        )
    return Firmware(code, template, secure)


def kernel_boot(volume: Path) -> KernelBoot | None:
    boot = volume / BOOT_DIR
    kernel = boot / "vmlinuz"
    if not kernel.is_file():
        return None
    initrd = boot / "initrd.img"
    cmdline = (boot / "cmdline").read_text().strip() if (boot / "cmdline").exists() else ""
    return KernelBoot(
        kernel,
        initrd if initrd.is_file() else None,
        qemu_args.kernel_cmdline(cmdline or "root=/dev/vda rw"),
    )


class QemuDriver(InstanceDriver):
    def __init__(self, paths: Paths, settings: Settings) -> None:
        self.paths = paths
        self.settings = settings
        self._children: dict[Path, asyncio.subprocess.Process] = {}
        """QEMUs started by this daemon (their exit status is known): run dir -> process."""
        self._virtiofsd: dict[Path, list[asyncio.subprocess.Process]] = {}
        """The virtiofsd processes serving each VM's shares (reaped at its stop)."""
        self._hubs: dict[Path, AgentHub] = {}

    def info(self) -> DriverInfo:
        return DriverInfo(name="qemu", version=_qemu_version(), instance_type="virtual-machine")

    # -- where things are -------------------------------------------------------------------------

    def _run(self, spec: InstanceSpec) -> Path:
        return run_dir(self.paths, spec.project, spec.name)

    def _qmp(self, spec: InstanceSpec) -> Path:
        return self._run(spec) / "qmp.sock"

    def agent_socket(self, spec: InstanceSpec) -> Path:
        return self._run(spec) / "agent.sock"

    def _vsock_cid(self, spec: InstanceSpec) -> int:
        """A stable guest CID per instance (3 and up; QEMU refuses one in use, saying so)."""
        return 3 + int(self._run(spec).name[:7], 16)

    def accelerator(self) -> accel.Accelerator:
        """kvm or tcg as the host and ``instances.vm.accelerator`` (auto|kvm|tcg) allow."""
        wanted = self.settings().get("instances.vm.accelerator", "auto") or "auto"
        found = accel.probe()
        if wanted == "tcg":
            return accel.Accelerator("tcg", "instances.vm.accelerator=tcg")
        if wanted == "kvm" and found.name != "kvm":
            raise MissingHostFeature(
                f"KVM is not usable here ({found.why}) and instances.vm.accelerator=kvm "
                "forbids emulation: set it to auto to run VMs under TCG (slowly)"
            )
        return found

    # -- state ------------------------------------------------------------------------------------

    def _pid(self, spec: InstanceSpec) -> int:
        """The QEMU of this instance, if it is alive (checked by its command line, so a reused
        pid is not taken for it)."""
        run = self._run(spec)
        try:
            pid = int((run / "qemu.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):
            return -1
        if str(run / "qmp.sock").encode() not in cmdline:
            return -1
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return -1
        return pid

    async def status(self, spec: InstanceSpec) -> RuntimeState:
        pid = self._pid(spec)
        if pid <= 0:
            return RuntimeState(StatusCode.STOPPED)
        try:
            result = await qmp.execute(self._qmp(spec), "query-status")
        except InternalError:
            return RuntimeState(StatusCode.RUNNING, pid)  # starting, or busy with another client
        paused = (
            result.get("status") in ("paused", "suspended") if isinstance(result, dict) else False
        )
        return RuntimeState(StatusCode.FROZEN if paused else StatusCode.RUNNING, pid)

    async def state(self, spec: InstanceSpec) -> RuntimeState:
        current = await self.status(spec)
        if current.pid <= 0:
            return current
        current.memory = {
            "usage": _rss(current.pid),
            "total": qemu_args.memory_bytes(spec.config),
        }
        current.cpu = {"usage": _cpu_ns(current.pid)}
        current.started_at = _started_at(current.pid)
        agent_metrics = parse_bool(spec.config.get("security.agent.metrics", "true"))
        if current.status == StatusCode.RUNNING and agent_metrics:
            with contextlib.suppress(BadRequest, TimeoutError):
                guest = await (await self.agent(spec)).call({"type": "state"}, timeout=3)
                current.network = guest.get("network")
                current.processes = int(guest.get("processes", -1))
                memory = guest.get("memory") or {}
                if memory.get("total"):
                    current.memory = {"usage": int(memory["usage"]), "total": int(memory["total"])}
        return current

    # -- lifecycle --------------------------------------------------------------------------------

    def inputs(self, spec: InstanceSpec, accelerator: str) -> VmInputs:
        volume = spec.volume
        kernel = kernel_boot(volume)
        secure = qemu_args.secureboot(spec.config)
        if qemu_args.legacy_bios(spec.config) and secure:
            raise BadRequest(
                "security.csm (a legacy BIOS) cannot boot with secure boot: set "
                "security.secureboot=false too"
            )
        fw = None  # direct kernel boot, or QEMU's own SeaBIOS (security.csm)
        if kernel is None and not qemu_args.legacy_bios(spec.config):
            fw = firmware(secure)
        return VmInputs(
            name=spec.name,
            uuid=spec.config.get("volatile.uuid", "") or "00000000-0000-0000-0000-000000000000",
            config=spec.config,
            accelerator=accelerator,
            root_disk=volume / ROOT_DISK,
            run_dir=self._run(spec),
            log_dir=spec.log_dir,
            nvram=None if fw is None else volume / (NVRAM if fw.secure else NVRAM_NO_SECUREBOOT),
            firmware=fw,
            kernel=kernel,
            taps=[_tap(nic) for nic in spec.run.nics],
            disks=list(spec.run.vm_disks),
            virtiofs=virtiofs.sockets(self._run(spec), spec.run.vm_disks),
            devices=list(spec.run.vm_devices),
            vsock_cid=self._vsock_cid(spec) if accel.vsock() else 0,
        )

    async def start(self, spec: InstanceSpec) -> int:
        binary = accel.qemu_binary()
        if binary is None:
            raise MissingHostFeature(
                f"{accel.QEMU_BINARY} is missing: install Debian's qemu-system-x86 package"
            )
        if self._pid(spec) > 0:
            raise BadRequest("The instance is already running")
        chosen = self.accelerator()
        inputs = self.inputs(spec, chosen.name)
        if not inputs.root_disk.exists():
            raise InternalError(f"The VM's root disk {inputs.root_disk} is missing")
        inputs.sev = host_checks.check_sev(spec.config, chosen.name)
        if qemu_args.hugepages(spec.config):
            inputs.hugepage_size = qemu_args.check_hugepages(qemu_args.memory_bytes(spec.config))
        inputs.paused = qmp_hooks.any_hooks(spec.config)
        run = self._run(spec)
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True, mode=0o700)
        try:
            shares = [d for d in spec.run.vm_disks if d.share]
            drive = run / "config.iso"
            nics = agent_nics(spec)
            inputs.config_drive = await config_drive.build(
                drive, spec.name, spec.config, shares, inputs.virtiofs, nics
            )
            for key, option in (("dh", "dh-cert-file"), ("data", "session-file")):
                value = spec.config.get(f"security.sev.session.{key}", "")
                if inputs.sev is not None and value:
                    path = run / f"sev-session-{key}.b64"
                    path.write_text(value)  # base64, checked when it was set
                    inputs.sev_files[option] = path
            if spec.config.get("raw.qemu.conf"):
                inputs.raw_conf = run / "raw.qemu.conf"
                sections = qemu_conf.parse(spec.config["raw.qemu.conf"])
                inputs.raw_conf.write_text(qemu_conf.render(sections))
        except BaseException:
            shutil.rmtree(run, ignore_errors=True)
            raise
        incoming = spec.run.incoming_state
        if incoming is not None:
            inputs.paused = True  # until the migration has the disk's last changes too
        argv = [binary, *qemu_args.build(inputs)]
        state = spec.volume / STATE_FILE
        if incoming is not None:  # a live migration arriving
            argv += ["-incoming", qemu_args.arg(f"unix:{incoming}")]
        elif state.exists():  # a stateful restore: resume where the snapshot was taken
            argv += ["-incoming", f"exec:cat {shlex.quote(str(state))}"]
        spec.log_dir.mkdir(parents=True, exist_ok=True)
        if inputs.firmware is not None and inputs.nvram is not None and not inputs.nvram.exists():
            shutil.copyfile(inputs.firmware.vars_template, inputs.nvram)
        (spec.log_dir / "qemu.conf").write_text(" \\\n  ".join(argv) + "\n")
        qemu_log = spec.log_dir / "qemu.log"
        created = []
        try:
            for nic in spec.run.nics:
                await _make_tap(nic)
                created.append(nic)
            # after_stop removes them by these names (its spec has no start-time devices)
            (run / "taps").write_text("".join(f"{nic.host_name}\n" for nic in created))
            self._virtiofsd[run] = await virtiofs.start(
                run, list(spec.run.vm_disks), inputs.virtiofs, spec.log_dir / "virtiofsd.log"
            )
            with open(qemu_log, "w") as out:
                out.write(f"accelerator: {chosen.name}{f' ({chosen.why})' if chosen.why else ''}\n")
                out.flush()
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                )
            self._children[run] = proc
            pid = await self._wait_started(spec, proc, qemu_log)
            sock = self._qmp(spec)
            await _qmp_hooks(sock, spec.config, "early")
            await _qmp_hooks(sock, spec.config, "pre-start")
            if incoming is not None:
                pass  # the migration waits for the state, then resumes the VM
            elif state.exists():
                await self._resume_state(spec, state)
            elif inputs.paused:
                await qmp.execute(sock, "cont")
            await _qmp_hooks(sock, spec.config, "post-start")
        except BaseException:
            proc_started = self._children.pop(run, None)
            if proc_started is not None and proc_started.returncode is None:
                proc_started.kill()
                await proc_started.wait()
            for nic in created:
                await _remove_tap(nic)
            await virtiofs.stop(run, self._virtiofsd.pop(run, []))
            shutil.rmtree(run, ignore_errors=True)
            raise
        return pid

    async def _wait_started(
        self, spec: InstanceSpec, proc: asyncio.subprocess.Process, qemu_log: Path
    ) -> int:
        """Until QMP answers; a QEMU that exits first is a failed start, with its words."""
        deadline = time.monotonic() + START_TIMEOUT
        sock = self._qmp(spec)
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise InternalError(f"QEMU failed to start the VM: {_tail(qemu_log)}")
            if sock.exists() and (run_pid := self._pid(spec)) > 0:
                with contextlib.suppress(InternalError):
                    await qmp.execute(sock, "query-status")
                    return run_pid
            await asyncio.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise InternalError(f"QEMU did not come up within {START_TIMEOUT:.0f}s: {_tail(qemu_log)}")

    async def stop(self, spec: InstanceSpec, *, force: bool, timeout: int) -> None:
        pid = self._pid(spec)
        if pid <= 0:
            raise BadRequest("The instance is already stopped")
        sock = self._qmp(spec)
        if force:
            with contextlib.suppress(InternalError):
                await qmp.execute(sock, "quit")
            if not await _gone(pid, 10):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                await _gone(pid, 10)
        else:
            status = await self.status(spec)
            if status.status == StatusCode.FROZEN:
                await qmp.execute(sock, "cont")
            await qmp.execute(sock, "system_powerdown")
            wait = timeout if timeout >= 0 else 24 * 3600
            if not await _gone(pid, wait):
                raise InternalError(
                    f"The VM did not shut down within {timeout}s (its guest may ignore the ACPI "
                    "power button); use force to stop it"
                )
        if self._pid(spec) > 0:
            raise InternalError("Failed to stop the VM")
        await self.after_stop(spec)

    async def save_state(self, spec: InstanceSpec, target: Path) -> None:
        """QEMU's migration stream of the (paused) VM into ``target``; it stays paused, and
        resumes (cont) when unfrozen."""
        sock = self._qmp(spec)
        uri = f"exec:cat > {shlex.quote(str(target))}"
        await qmp.execute(sock, "migrate", {"uri": uri})
        await self._migration_done(sock, "save")

    async def migrate_out(self, spec: InstanceSpec, destination: Path) -> None:
        """Live migration of the running VM's state to the unix socket ``destination`` (the
        daemon listens there): QEMU copies memory while the guest runs, pauses it for the last
        pass, and returns when done (the guest left paused here)."""
        sock = self._qmp(spec)
        await qmp.execute(sock, "migrate", {"uri": qemu_args.arg(f"unix:{destination}")})
        await self._migration_done(sock, "send")

    async def migration_arrived(self, spec: InstanceSpec) -> None:
        """Until the state a live migration sends has been loaded (the VM is then paused)."""
        sock = self._qmp(spec)
        deadline = time.monotonic() + STATE_TIMEOUT
        while time.monotonic() < deadline:
            status = (await qmp.execute(sock, "query-status")).get("status", "")
            if status not in ("inmigrate", "prelaunch"):
                if status not in ("paused", "postmigrate", "running"):
                    raise InternalError(f"The VM's migrated state did not load (QEMU is {status})")
                return
            await asyncio.sleep(0.05)
        raise InternalError(f"Receiving the VM's state took over {STATE_TIMEOUT:.0f}s")

    async def _migration_done(self, sock: Path, what: str) -> None:
        deadline = time.monotonic() + STATE_TIMEOUT
        while time.monotonic() < deadline:
            status = (await qmp.execute(sock, "query-migrate")).get("status", "")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise InternalError(f"QEMU could not {what} the VM's state (migration {status})")
            await asyncio.sleep(0.05)
        with contextlib.suppress(InternalError):
            await qmp.execute(sock, "migrate_cancel")
        raise InternalError(f"QEMU took over {STATE_TIMEOUT:.0f}s to {what} the VM's state")

    async def _resume_state(self, spec: InstanceSpec, state: Path) -> None:
        """After a start with -incoming: wait for the state to load, run, drop the file."""
        sock = self._qmp(spec)
        deadline = time.monotonic() + STATE_TIMEOUT
        while time.monotonic() < deadline:
            status = (await qmp.execute(sock, "query-status")).get("status", "")
            if status not in ("inmigrate", "prelaunch"):
                break
            await asyncio.sleep(0.1)
        else:
            raise InternalError(f"Loading the VM's state took over {STATE_TIMEOUT:.0f}s")
        if status in ("paused", "postmigrate"):
            await qmp.execute(sock, "cont")
        elif status != "running":
            raise InternalError(f"The VM's saved state did not load (QEMU is {status})")
        state.unlink(missing_ok=True)

    async def after_stop(self, spec: InstanceSpec) -> None:
        rundir = self._run(spec)
        hub = self._hubs.pop(rundir, None)
        if hub is not None:
            await hub.close()
        proc = self._children.pop(rundir, None)
        how = "its exit status is unknown (started before stapesd last restarted)"
        if proc is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
            if proc.returncode is not None:
                how = _exit_text(proc.returncode)
        if rundir.exists():  # once per run, however many times this is called
            with contextlib.suppress(OSError), open(spec.log_dir / "qemu.log", "a") as f:
                f.write(f"QEMU exited: {how}\n")
        with contextlib.suppress(OSError):
            for tap in (rundir / "taps").read_text().split():
                await run(["ip", "link", "del", tap], check=False)
        await virtiofs.stop(rundir, self._virtiofsd.pop(rundir, []))
        shutil.rmtree(rundir, ignore_errors=True)

    def exit_reason(self, spec: InstanceSpec) -> str:
        """What QEMU said last, then how it exited (from qemu.log)."""
        try:
            lines = (spec.log_dir / "qemu.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        said = [line for line in lines[1:] if line.strip() and not line.startswith("QEMU exited")]
        exited = [line for line in lines if line.startswith("QEMU exited")]
        return "; ".join(([said[-1]] if said else []) + exited[-1:])

    async def freeze(self, spec: InstanceSpec) -> None:
        """Pause the VM; its agent, if it answers, first writes the guest's caches to disk
        (so a snapshot or copy taken while paused has what the guest wrote)."""
        with contextlib.suppress(BadRequest, TimeoutError):
            await (await self.agent(spec)).call({"type": "sync"}, timeout=30)
        await qmp.execute(self._qmp(spec), "stop")

    async def unfreeze(self, spec: InstanceSpec) -> None:
        await qmp.execute(self._qmp(spec), "cont")

    # -- inside the guest -------------------------------------------------------------------------

    async def agent(self, spec: InstanceSpec) -> AgentHub:
        """The running VM's agent hub (a 400 when the VM is stopped)."""
        if self._pid(spec) <= 0:
            raise BadRequest("The instance isn't running")
        run = self._run(spec)
        hub = self._hubs.get(run)
        if hub is None:
            cid = self._vsock_cid(spec) if accel.vsock() else 0
            hub = self._hubs[run] = AgentHub(run / "agent.sock", run / "agent-mux.sock", cid)
        await hub.start()
        return hub

    async def _relay(
        self, spec: InstanceSpec, req: ExecRequest, fds: tuple[int, int, int], interactive: bool
    ) -> int:
        hub = await self.agent(spec)
        await hub.ensure_agent()  # a 400 now, rather than a command that fails at once
        request = {
            "type": "exec",
            "command": req.command,
            "environment": req.environment,
            "cwd": req.cwd or "/",
            "uid": req.uid,
            "gid": req.gid,
            "interactive": interactive,
        }
        argv = [sys.executable, "-m", "stapes.instance.vm.exec_relay"]
        argv += [str(hub.mux_socket), json.dumps(request)]
        # posix_spawn, not subprocess: no Popen object that could reap the pid the exec
        # code waits for
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)]
        return os.posix_spawn(  # noqa: ASYNC221 (returns at once: nothing is waited on)
            sys.executable, argv, dict(os.environ), file_actions=actions, setsid=True
        )

    async def spawn(
        self, spec: InstanceSpec, req: ExecRequest, stdin: int, stdout: int, stderr: int
    ) -> int:
        return await self._relay(spec, req, (stdin, stdout, stderr), False)

    async def spawn_pty(self, spec: InstanceSpec, req: ExecRequest) -> tuple[int, int]:
        master, slave = os.openpty()
        try:
            pid = await self._relay(spec, req, (slave, slave, slave), True)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return pid, master

    async def hotplug(self, spec: InstanceSpec, run: RunConfig) -> None:
        if run.mounts or run.nodes or run.nics or run.helpers or run.vm_disks or run.vm_devices:
            raise BadRequest(
                "Devices cannot be added to a running VM here yet: stop it, change it, start it"
            )

    async def unplug(self, spec: InstanceSpec, run: RunConfig) -> None:
        if run.mounts or run.nodes or run.nics or run.helpers or run.vm_disks or run.vm_devices:
            raise BadRequest("Devices cannot be removed from a running VM here yet: stop it first")

    async def console(self, spec: InstanceSpec) -> Console:
        """The serial console: QEMU's console socket (one client at a time)."""
        return self._attach(self._run(spec) / "console.sock", "console")

    async def vga(self, spec: InstanceSpec) -> Console:
        """The graphical console: QEMU's VNC server on a unix socket (RFB, raw bytes)."""
        return self._attach(self._run(spec) / "vnc.sock", "VGA console")

    def _attach(self, path: Path, what: str) -> Console:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
        except OSError as exc:
            sock.close()
            raise BadRequest(f"Cannot attach to the VM's {what}: {exc.strerror}") from None
        fd = sock.detach()

        async def release() -> None:
            return None

        return Console(fd, release)

    def console_log(self, spec: InstanceSpec) -> Path:
        return spec.log_dir / "console.log"

    def log_files(self, spec: InstanceSpec) -> dict[str, Path]:
        return {
            "qemu.log": spec.log_dir / "qemu.log",
            "qemu.conf": spec.log_dir / "qemu.conf",
            "console.log": spec.log_dir / "console.log",
        }

    def check_config(self, spec: InstanceSpec) -> None:
        unsupported = [n for n in spec.run.nics if n.kind != "veth"]
        if unsupported:
            raise BadRequest(f"NIC {unsupported[0].name!r}: VMs here take bridged NICs only")
        qemu_args.build(
            VmInputs(
                name=spec.name,
                uuid="0",
                config=spec.config,
                accelerator="tcg",
                root_disk=Path("/"),
                run_dir=Path("/"),
                log_dir=Path("/"),
            )
        )

    async def update_live(self, spec: InstanceSpec, keys: set[str]) -> None:
        return None  # CPU and memory of a running VM change at its next start

    async def adopt(self, spec: InstanceSpec) -> None:
        spec.log_dir.mkdir(parents=True, exist_ok=True)

    async def forget(self, spec: InstanceSpec) -> None:
        shutil.rmtree(self._run(spec), ignore_errors=True)


async def _qmp_hooks(sock: Path, config: dict[str, str], stage: str) -> None:
    """The raw.qemu.qmp.<stage> commands, in order; the first QEMU refuses fails the start."""
    key = qmp_hooks.key(stage)
    for command in qmp_hooks.commands(config.get(key) or "[]"):
        try:
            await qmp.execute(sock, command["execute"], command.get("arguments") or None)
        except InternalError as exc:
            raise BadRequest(f"{key}: {exc.message}") from None


def agent_nics(spec: InstanceSpec) -> list[dict[str, str | int]]:
    """What the agent names and sizes the guest's NICs by (agent.nic_config): none unless set."""
    if not parse_bool(spec.config.get("agent.nic_config", "false")):
        return []
    return [{"hwaddr": n.hwaddr, "name": n.name, "mtu": n.mtu} for n in spec.run.nics]


def _tap(nic: Nic) -> Tap:
    return Tap(nic.host_name, nic.hwaddr, nic.name)


async def _make_tap(nic: Nic) -> None:
    if nic.kind != "veth":
        raise BadRequest(f"NIC {nic.name!r}: VMs here take bridged NICs only")
    await run(["ip", "tuntap", "add", "dev", nic.host_name, "mode", "tap"])
    try:
        if nic.mtu:
            await run(["ip", "link", "set", nic.host_name, "mtu", str(nic.mtu)])
        if nic.link:
            await run(["ip", "link", "set", nic.host_name, "master", nic.link])
        await run(["ip", "link", "set", nic.host_name, "up"])
        await nic_plumbing.set_up(nic)  # limits, MAC/IP filtering, as for a container's veth
    except BaseException:
        await _remove_tap(nic)
        raise


async def _remove_tap(nic: Nic) -> None:
    await run(["ip", "link", "del", nic.host_name], check=False)


async def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return True
        await asyncio.sleep(0.1)
    return False


def _tail(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no QEMU log"
    return lines[-1] if lines else "no QEMU log"


def _exit_text(code: int) -> str:
    if code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    return "powered off" if code == 0 else f"exited with code {code}"


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu_ns(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    ticks = int(fields[11]) + int(fields[12])
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _started_at(pid: int) -> datetime | None:
    try:
        return datetime.fromtimestamp(Path(f"/proc/{pid}").stat().st_mtime, UTC)
    except OSError:
        return None


@functools.cache
def _qemu_version() -> str:
    binary = accel.qemu_binary()
    if binary is None:
        return ""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    words = out.stdout.split()
    return words[3] if len(words) > 3 else ""
