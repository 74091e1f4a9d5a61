"""The QEMU command line of one VM, built from its expanded config (limits.cpu, limits.memory,
security.secureboot, boot.*, raw.qemu) and what its devices need. Pure: no host changes."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from stapes.api.errors import BadRequest
from stapes.config import validate as v
from stapes.config.text import control_char, line_break
from stapes.config.validate import parse_bool
from stapes.instance.devices.device import VmDisk
from stapes.instance.vm.host_checks import Sev

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
    raw_conf: Path | None = None
    """raw.qemu.conf's sections, written by qemu_conf.render (-readconfig)."""
    paused: bool = False
    """Start with the CPUs stopped (-S): raw.qemu.qmp.* commands run before the guest does."""
    hugepage_size: int = 0
    """The host's huge page size (limits.memory.hugepages), checked at start."""
    sev: Sev | None = None
    """AMD SEV memory encryption (security.sev), as the host's CPU does it."""
    sev_files: dict[str, Path] = field(default_factory=dict)
    """security.sev.session.dh / .data written to files (dh-cert-file, session-file)."""


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


def iommu(config: dict[str, str]) -> bool:
    return parse_bool(config.get("security.iommu", "false"))


def hugepages(config: dict[str, str]) -> bool:
    return parse_bool(config.get("limits.memory.hugepages", "false"))


def check_hugepages(memory: int, meminfo: str = "/proc/meminfo") -> int:
    """The host's huge page size, when enough of them are free for ``memory`` bytes."""
    values: dict[str, int] = {}
    with open(meminfo) as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("HugePages_Free", "Hugepagesize"):
                values[name] = int(rest.split()[0])
    size = values.get("Hugepagesize", 0) * 1024
    free = values.get("HugePages_Free", 0)
    needed = -(-memory // size) if size else 0
    if not size or free < needed:
        raise BadRequest(
            f"limits.memory.hugepages: the VM needs {needed or memory // 2**21} huge pages of "
            f"{(size or 2**21) // 1024**2} MiB and the host has {free} free (reserve them with "
            "sysctl vm.nr_hugepages, or unset limits.memory.hugepages)"
        )
    return size


SEV_POLICY_NO_DEBUG_NO_KEY_SHARING = 0x03
SEV_POLICY_ES = 0x04


def sev_object(config: dict[str, str], sev: Sev, files: dict[str, Path]) -> str:
    """QEMU's sev-guest object: the guest's memory encrypted with a key of its own (and its
    register state too with security.sev.policy.es)."""
    policy = SEV_POLICY_NO_DEBUG_NO_KEY_SHARING
    if parse_bool(config.get("security.sev.policy.es", "false")):
        policy |= SEV_POLICY_ES
    values: dict[str, str | Path] = {
        "id": "sev0",
        "cbitpos": str(sev.cbitpos),
        "reduced-phys-bits": str(sev.reduced_phys_bits),
        "policy": hex(policy),
        **files,
    }
    return options("sev-guest", **values)


def legacy_bios(config: dict[str, str]) -> bool:
    """security.csm: no UEFI pflash, so QEMU boots its SeaBIOS."""
    return parse_bool(config.get("security.csm", "false"))


def build(inputs: VmInputs) -> list[str]:
    """QEMU's argv. Every value that comes from the instance (paths, device names, MACs) goes
    into an option string through ``opt`` (commas doubled, control characters refused) or
    ``qemu_id``; raw.qemu is appended as its own arguments."""
    config = inputs.config
    memory_mib = memory_bytes(config) // 1024**2
    cpus = cpu_count(config)
    run = inputs.run_dir
    machine = "q35" + (",smm=on" if _secure(inputs) else "")
    if iommu(config) and inputs.accelerator == "kvm":  # interrupt remapping with KVM
        machine += ",kernel-irqchip=split"
    if inputs.sev is not None:
        machine += ",confidential-guest-support=sev0"
    argv = [
        "-name", opt(inputs.name),
        "-uuid", opt(inputs.uuid),
        "-machine", machine,
        "-accel", inputs.accelerator,
        "-cpu", "host" if inputs.accelerator == "kvm" else "max",
        "-smp", str(cpus),
        "-m", str(memory_mib) + "M",
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        # a virtual IOMMU comes before the PCI devices it translates for
        *(["-device", "intel-iommu,intremap=on,caching-mode=on"] if iommu(config) else []),
        "-device", "virtio-vga",
        "-vnc", "unix:" + opt(run / "vnc.sock"),
        "-pidfile", str(run / "qemu.pid"),
        "-qmp", options("unix:" + opt(run / "qmp.sock"), server="on", wait="off"),
        "-chardev",
        options(
            "socket", id="console", path=run / "console.sock", server="on", wait="off",
            logfile=inputs.log_dir / "console.log", logappend="on",
        ),
        "-serial", "chardev:console",
        "-device", "virtio-serial-pci,id=virtio-serial0",
        "-chardev", options("socket", id="agent", path=run / "agent.sock", server="on", wait="off"),
        "-device", options("virtserialport", chardev="agent", name=AGENT_PORT),
        "-device", "virtio-rng-pci",
        "-drive",
        options(
            "if=none", id="root", file=inputs.root_disk, format="raw", cache="writeback",
            discard="unmap",
        ),
        "-device",
        "virtio-blk-pci,drive=root" + ("" if inputs.kernel is not None else ",bootindex=0"),
    ]  # fmt: skip
    huge = {}
    if hugepages(config):
        page = str(inputs.hugepage_size or 2 * 1024**2)
        huge = {"hugetlb": "on", "hugetlbsize": page, "prealloc": "on"}
    if inputs.virtiofs or huge:  # vhost-user devices need the memory shared with virtiofsd
        backend = {"id": "mem", "size": str(memory_mib) + "M", "share": "on", **huge}
        argv += [
            "-object", options("memory-backend-memfd", **backend),
            "-numa", "node,memdev=mem",
        ]  # fmt: skip
    if inputs.sev is not None:
        argv += ["-object", sev_object(config, inputs.sev, inputs.sev_files)]
    if inputs.raw_conf is not None:
        argv += ["-readconfig", str(inputs.raw_conf)]
    if inputs.paused:
        argv += ["-S"]
    if inputs.kernel is not None:
        argv += ["-kernel", str(inputs.kernel.kernel), "-append", arg(inputs.kernel.cmdline)]
        if inputs.kernel.initrd is not None:
            argv += ["-initrd", str(inputs.kernel.initrd)]
    elif inputs.firmware is not None and inputs.nvram is not None:
        argv += [
            "-drive",
            options("if=pflash", format="raw", unit="0", file=inputs.firmware.code, readonly="on"),
            "-drive", options("if=pflash", format="raw", unit="1", file=inputs.nvram),
        ]  # fmt: skip
        if inputs.firmware.secure:
            argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    if inputs.config_drive is not None:
        argv += [
            "-drive",
            options("if=none", id="config", file=inputs.config_drive, format="raw", readonly="on"),
            "-device", "virtio-blk-pci,drive=config",
        ]  # fmt: skip
    for disk in inputs.disks:
        argv += _disk_args(disk, inputs.virtiofs)
    for tap in inputs.taps:
        netdev = qemu_id("net", tap.device)
        argv += [
            "-netdev",
            options("tap", id=netdev, ifname=tap.name, script="no", downscript="no"),
            "-device", options("virtio-net-pci", netdev=netdev, mac=tap.hwaddr, romfile=""),
        ]  # fmt: skip
    generation = config.get("volatile.uuid.generation", "")
    if generation:  # instance_generation_id: changes when the VM's place in time does
        argv += ["-device", options("vmgenid", guid=generation)]
    for key, value in sorted(config.items()):
        if key.startswith("smbios11."):  # instance_smbios11: SMBIOS type 11 strings
            argv += [
                "-smbios",
                options("type=11", value=f"{key.removeprefix('smbios11.')}={value}"),
            ]
    if inputs.vsock_cid:
        argv += ["-device", options("vhost-vsock-pci", **{"guest-cid": str(inputs.vsock_cid)})]
    if any(d.startswith("usb-host") for d in inputs.devices):
        argv += ["-device", "qemu-xhci,id=usb"]
    for device in inputs.devices:
        argv += ["-device", arg(device)]
    raw = config.get("raw.qemu", "")
    if raw:
        try:
            argv += [arg(word) for word in shlex.split(raw)]
        except ValueError as exc:
            raise BadRequest(f"raw.qemu cannot be split into arguments: {exc}") from None
    return argv


def _disk_args(disk: VmDisk, virtiofs: dict[str, Path]) -> list[str]:
    """An extra disk: a virtiofs or 9p share, or a virtio block device."""
    readonly = {"readonly": "on"} if disk.readonly else {}
    if disk.share and disk.name in virtiofs:
        chardev = qemu_id("vfs", disk.name)
        return [
            "-chardev", options("socket", id=chardev, path=virtiofs[disk.name]),
            "-device", options("vhost-user-fs-pci", chardev=chardev, tag=share_tag(disk)),
        ]  # fmt: skip
    if disk.share:
        fsdev = qemu_id("fs", disk.name)
        return [
            "-fsdev",
            options("local", id=fsdev, path=disk.source, security_model="passthrough", **readonly),
            "-device", options("virtio-9p-pci", fsdev=fsdev, mount_tag=share_tag(disk)),
        ]  # fmt: skip
    drive = qemu_id("disk", disk.name)
    if disk.cdrom:  # an ISO volume: a SCSI CD-ROM on a controller of its own, as Incus has it
        scsi = qemu_id("scsi", disk.name)
        return [
            "-drive", options("if=none", id=drive, file=disk.source, format="raw",
                              media="cdrom", readonly="on"),
            "-device", options("virtio-scsi-pci", id=scsi),
            "-device", options("scsi-cd", drive=drive, bus=scsi + ".0", serial=disk.name[:20]),
        ]  # fmt: skip
    return [
        "-drive", options("if=none", id=drive, file=disk.source, format="raw", **readonly),
        "-device", options("virtio-blk-pci", drive=drive, serial=disk.name[:20]),
    ]  # fmt: skip


def arg(value: str) -> str:
    """A whole QEMU argument: anything but NUL and line breaks (argv cannot carry NUL; QEMU's
    own parsers and its logged command line would be split by the others)."""
    problem = line_break(value)
    if problem is not None:
        raise BadRequest(f"Refusing to pass a QEMU argument that contains {problem}: {value!r}")
    return value


def opt(value: str | Path) -> str:
    """A value inside a QEMU option string (``key=value,key=value``): commas doubled, as QEMU
    reads them; control characters refused."""
    text = str(value)
    problem = control_char(text)
    if problem is not None:
        raise BadRequest(f"Refusing to pass a QEMU option value that contains {problem}: {text!r}")
    return text.replace(",", ",,")


def options(head: str, **values: str | Path) -> str:
    """``head,key=value,...`` with every value through ``opt``."""
    return ",".join([head, *(key + "=" + opt(value) for key, value in values.items())])


_ID_SAFE = re.compile(r"[A-Za-z0-9.-]")


def qemu_id(prefix: str, name: str) -> str:
    """A QEMU object id from a device name: ids take letters, digits, ``-``, ``.`` and ``_``
    and start with a letter; any other character of the name (``_`` too, so two names never
    share an id) is written as ``_XX``, its code in hex."""
    encoded = "".join(c if _ID_SAFE.fullmatch(c) else f"_{ord(c):02x}" for c in name)
    return prefix + "-" + encoded


def share_tag(disk: VmDisk) -> str:
    """The tag the guest mounts a shared directory by (9p allows 31 bytes)."""
    return disk.name[:31]


def _secure(inputs: VmInputs) -> bool:
    return inputs.kernel is None and inputs.firmware is not None and inputs.firmware.secure


def kernel_cmdline(image_cmdline: str) -> str:
    """The kernel's command line: the console on the first serial port, then the image's."""
    return f"console=ttyS0 {image_cmdline}".strip()
