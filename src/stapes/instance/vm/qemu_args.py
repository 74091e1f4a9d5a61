"""The QEMU command line of one VM, built from its expanded config (limits.cpu, limits.memory,
security.secureboot, boot.*, raw.qemu) and what its devices need. Pure: no host changes."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from stapes.api.errors import BadRequest
from stapes.config import validate as v
from stapes.config.validate import parse_bool
from stapes.instance.devices.device import VmDisk

DEFAULT_MEMORY = 1024**3
DEFAULT_CPUS = 1
AGENT_PORT = "org.stapes.agent.0"
"""The virtio-serial port the guest agent opens (/dev/virtio-ports/org.stapes.agent.0)."""


@dataclass(frozen=True)
class Firmware:
    """UEFI code and the template of its variable store (copied per VM)."""

    code: Path
    vars_template: Path
    secure: bool = False
    """A secure boot build: it needs SMM and its variable store flash locked to SMM."""


@dataclass(frozen=True)
class KernelBoot:
    """Direct kernel boot, for images that carry their kernel."""

    kernel: Path
    initrd: Path | None
    cmdline: str


@dataclass(frozen=True)
class Tap:
    name: str
    hwaddr: str
    device: str
    """The NIC device's name in the instance (its QEMU id)."""


@dataclass
class VmInputs:
    name: str
    uuid: str
    config: dict[str, str]
    accelerator: str
    root_disk: Path
    run_dir: Path
    """Short path: QMP, console and agent sockets, the pid file."""
    log_dir: Path
    nvram: Path | None = None
    firmware: Firmware | None = None
    kernel: KernelBoot | None = None
    config_drive: Path | None = None
    taps: list[Tap] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    """Host hardware: -device values (vfio-pci, usb-host)."""
    vsock_cid: int = 0
    """A vhost-vsock device with this guest CID (0: none, the host has no vhost-vsock)."""
    disks: list[VmDisk] = field(default_factory=list)
    """Extra disks: block devices / image files, and shared directories."""
    virtiofs: dict[str, Path] = field(default_factory=dict)
    """The shared directories served by a virtiofsd: disk name -> its vhost-user socket (the
    other shares go over 9p)."""


def host_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def memory_bytes(config: dict[str, str]) -> int:
    value = config.get("limits.memory", "")
    total = host_memory()
    if not value:
        return DEFAULT_MEMORY
    if value.endswith("%"):
        return total * int(value[:-1]) // 100
    wanted = v.parse_size(value)
    if total and wanted > total:
        raise BadRequest(
            f"limits.memory={value} is more than the host has ({total // 1024**2} MiB)"
        )
    if wanted < 32 * 1024**2:
        raise BadRequest(f"limits.memory={value} is too little for a VM (32MiB at least)")
    return wanted


def cpu_count(config: dict[str, str]) -> int:
    value = config.get("limits.cpu", "")
    if not value:
        return DEFAULT_CPUS
    count = int(value) if value.isdigit() else len(v.parse_cpuset(value))
    host = os.cpu_count() or 1
    if count > host:
        raise BadRequest(f"limits.cpu={value} asks for {count} CPUs; the host has {host}")
    if count < 1:
        raise BadRequest("limits.cpu must give a VM at least one CPU")
    return count


def secureboot(config: dict[str, str]) -> bool:
    return parse_bool(config.get("security.secureboot", "true"))


def legacy_bios(config: dict[str, str]) -> bool:
    """security.csm: no UEFI pflash, so QEMU boots its SeaBIOS."""
    return parse_bool(config.get("security.csm", "false"))


def build(inputs: VmInputs) -> list[str]:
    config = inputs.config
    memory_mib = memory_bytes(config) // 1024**2
    cpus = cpu_count(config)
    run = inputs.run_dir
    argv = [
        "-name", inputs.name,
        "-uuid", inputs.uuid,
        "-machine", "q35" + (",smm=on" if _secure(inputs) else ""),
        "-accel", inputs.accelerator,
        "-cpu", "host" if inputs.accelerator == "kvm" else "max",
        "-smp", str(cpus),
        "-m", f"{memory_mib}M",
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-device", "virtio-vga",
        "-vnc", f"unix:{run / 'vnc.sock'}",
        "-pidfile", str(run / "qemu.pid"),
        "-qmp", f"unix:{run / 'qmp.sock'},server=on,wait=off",
        "-chardev",
        f"socket,id=console,path={run / 'console.sock'},server=on,wait=off,"
        f"logfile={inputs.log_dir / 'console.log'},logappend=on",
        "-serial", "chardev:console",
        "-device", "virtio-serial-pci,id=virtio-serial0",
        "-chardev", f"socket,id=agent,path={run / 'agent.sock'},server=on,wait=off",
        "-device", f"virtserialport,chardev=agent,name={AGENT_PORT}",
        "-device", "virtio-rng-pci",
        "-drive",
        f"if=none,id=root,file={inputs.root_disk},format=raw,cache=writeback,discard=unmap",
        "-device",
        "virtio-blk-pci,drive=root" + ("" if inputs.kernel is not None else ",bootindex=0"),
    ]  # fmt: skip
    if inputs.virtiofs:  # vhost-user devices need the guest's memory shared with virtiofsd
        argv += [
            "-object", f"memory-backend-memfd,id=mem,size={memory_mib}M,share=on",
            "-numa", "node,memdev=mem",
        ]  # fmt: skip
    if inputs.kernel is not None:
        argv += ["-kernel", str(inputs.kernel.kernel), "-append", inputs.kernel.cmdline]
        if inputs.kernel.initrd is not None:
            argv += ["-initrd", str(inputs.kernel.initrd)]
    elif inputs.firmware is not None and inputs.nvram is not None:
        argv += [
            "-drive", f"if=pflash,format=raw,unit=0,file={inputs.firmware.code},readonly=on",
            "-drive", f"if=pflash,format=raw,unit=1,file={inputs.nvram}",
        ]  # fmt: skip
        if inputs.firmware.secure:
            argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    if inputs.config_drive is not None:
        argv += [
            "-drive", f"if=none,id=config,file={inputs.config_drive},format=raw,readonly=on",
            "-device", "virtio-blk-pci,drive=config",
        ]  # fmt: skip
    for disk in inputs.disks:
        ro = ",readonly=on" if disk.readonly else ""
        if disk.share and disk.name in inputs.virtiofs:
            argv += [
                "-chardev", f"socket,id=vfs-{disk.name},path={inputs.virtiofs[disk.name]}",
                "-device", f"vhost-user-fs-pci,chardev=vfs-{disk.name},tag={share_tag(disk)}",
            ]  # fmt: skip
        elif disk.share:
            argv += [
                "-fsdev",
                f"local,id=fs-{disk.name},path={_escape(disk.source)},"
                f"security_model=passthrough{ro}",
                "-device", f"virtio-9p-pci,fsdev=fs-{disk.name},mount_tag={share_tag(disk)}",
            ]  # fmt: skip
        else:
            argv += [
                "-drive",
                f"if=none,id=disk-{disk.name},file={_escape(disk.source)},format=raw{ro}",
                "-device", f"virtio-blk-pci,drive=disk-{disk.name},serial={disk.name[:20]}",
            ]  # fmt: skip
    for tap in inputs.taps:
        argv += [
            "-netdev", f"tap,id=net-{tap.device},ifname={tap.name},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=net-{tap.device},mac={tap.hwaddr},romfile=",
        ]  # fmt: skip
    if inputs.vsock_cid:
        argv += ["-device", f"vhost-vsock-pci,guest-cid={inputs.vsock_cid}"]
    if any(d.startswith("usb-host") for d in inputs.devices):
        argv += ["-device", "qemu-xhci,id=usb"]
    for device in inputs.devices:
        argv += ["-device", device]
    raw = config.get("raw.qemu", "")
    if raw:
        try:
            argv += shlex.split(raw)
        except ValueError as exc:
            raise BadRequest(f"raw.qemu cannot be split into arguments: {exc}") from None
    return argv


def share_tag(disk: VmDisk) -> str:
    """The tag the guest mounts a shared directory by (9p allows 31 bytes)."""
    return disk.name[:31]


def _secure(inputs: VmInputs) -> bool:
    return inputs.kernel is None and inputs.firmware is not None and inputs.firmware.secure


def _escape(value: str) -> str:
    """A path inside a QEMU option list (commas are doubled)."""
    return value.replace(",", ",,")


def kernel_cmdline(image_cmdline: str) -> str:
    """The kernel's command line: the console on the first serial port, then the image's."""
    return f"console=ttyS0 {image_cmdline}".strip()
