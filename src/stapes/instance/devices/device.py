"""The device interface: each device kind validates its config and, to start, returns a RunConfig
(data the instance driver applies: mounts, device nodes, NICs, helper processes). Devices never
know which driver applies them; hot plug goes through the same data."""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

from stapes.api.errors import BadRequest
from stapes.config import validate as v
from stapes.host.idmap import IdMap
from stapes.network.dnsmasq import StaticLease
from stapes.storage.volumes import AttachedVolume


@dataclass(frozen=True)
class Mount:
    """A bind or filesystem mount; ``target`` is the absolute path inside the instance."""

    source: str
    target: str
    fstype: str = "none"
    options: tuple[str, ...] = ("bind",)


@dataclass(frozen=True)
class Node:
    """A device node the instance may use (cgroup device rule), bind-mounted from the host."""

    kind: str  # "c" or "b"
    major: int
    minor: int
    source: str
    target: str
    mode: int = 0o660
    uid: int = 0
    gid: int = 0

    @property
    def rule(self) -> str:
        return f"{self.kind} {self.major}:{self.minor} rwm"


@dataclass(frozen=True)
class Nic:
    """A network interface: ``name`` inside the instance. ``kind`` veth: a pair whose host side
    is ``host_name`` (joined to the bridge ``link``, if any); macvlan: a macvlan of the host
    interface ``link``; phys: the host interface ``link`` itself, moved in."""

    name: str
    host_name: str
    hwaddr: str
    mtu: int = 0
    link: str = ""
    """The bridge the host side joins (bridged NICs); empty for a plain veth pair."""
    ingress: int = 0
    egress: int = 0
    """Bandwidth limits in bit/s into and out of the instance (0: none)."""
    kind: str = "veth"
    macvlan_mode: str = "bridge"
    addresses: tuple[str, ...] = ()
    """Addresses (with prefix) set inside the instance (routed NICs)."""
    gateways: tuple[str, ...] = ()
    """Default gateways set inside the instance (routed NICs)."""
    host_addresses: tuple[str, ...] = ()
    """Addresses (with prefix) of the host side (routed NICs: the instance's gateway)."""
    host_routes: tuple[str, ...] = ()
    """Routes to the instance through the host side (routed NICs)."""
    proxy_parent: str = ""
    """Where the host answers ARP/NDP for ``host_routes`` (routed NICs with a parent)."""
    link_routes: tuple[tuple[str, str], ...] = ()
    """(subnet, next hop or "") routed to the instance through its bridge ``link`` (a bridged
    NIC's ipv4.routes / ipv6.routes, through its ipv4/ipv6.address when it has one)."""
    filters: NicFilters | None = None


@dataclass(frozen=True)
class NicFilters:
    """What a bridged NIC may send (security.*_filtering): its own MAC, its own addresses."""

    hwaddr: str
    ipv4: tuple[str, ...] = ()
    """Empty: no IPv4 filtering."""


@dataclass(frozen=True)
class Helper:
    """A host process that lives as long as the device is attached (proxy forwarders)."""

    device: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class VmDisk:
    """A VM's extra disk: a block device or image file (``share`` False), or a host directory
    shared over virtio-fs or 9p (``share`` True) that the guest agent mounts at ``path``."""

    name: str
    source: str
    path: str
    readonly: bool
    share: bool
    cdrom: bool = False
    """An ISO image, the VM's CD-ROM (read-only)."""


@dataclass
class RunConfig:
    mounts: list[Mount] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    nics: list[Nic] = field(default_factory=list)
    helpers: list[Helper] = field(default_factory=list)
    vm_disks: list[VmDisk] = field(default_factory=list)
    vm_devices: list[str] = field(default_factory=list)
    """QEMU -device values of host hardware handed to a VM (vfio-pci, usb-host)."""
    volatile: dict[str, str] = field(default_factory=dict)
    """Daemon-owned keys to record (volatile.<device>.hwaddr...)."""
    incoming_state: Path | None = None
    """A live migration's arrival: the VM's state comes on this unix socket (QEMU listens on
    it) and the VM stays paused until the migration resumes it."""

    def extend(self, other: RunConfig) -> None:
        self.mounts += other.mounts
        self.nodes += other.nodes
        self.nics += other.nics
        self.helpers += other.helpers
        self.vm_disks += other.vm_disks
        self.vm_devices += other.vm_devices
        self.volatile.update(other.volatile)


class NetworkAccess(Protocol):
    """What a NIC may ask of the managed networks (a 400 for a network that does not exist)."""

    def host_interface(self, name: str) -> str:
        """The bridge a NIC on network ``name`` joins (the parent, for macvlan/physical)."""

    def network_type(self, name: str) -> str:
        """bridge, macvlan or physical."""

    def check_address(self, name: str, address: str) -> None:
        """A static ipv4/ipv6.address must be a free host address of the network's subnet."""

    def refresh_reservations(self, name: str, starting: StaticLease) -> None:
        """Make the network's DHCP server hand out the static addresses configured, and the
        ``starting`` NIC's before its MAC is recorded."""

    def check_mac(self, name: str, hwaddr: str, instance: str, device: str) -> None:
        """400 when another NIC on network ``name`` has the MAC ``hwaddr``."""


@dataclass(frozen=True)
class DeviceContext:
    """What a device may know about its instance."""

    instance: str
    instance_type: str
    config: dict[str, str]
    """The instance's expanded config (volatile keys included)."""
    idmap: IdMap | None
    devices_dir: Path
    """Where a device may keep files on the host (device nodes, TPM state)."""
    volume: Callable[[str, str], AttachedVolume] | None = None
    """Finds a custom volume of the instance's project by pool and name."""
    network: NetworkAccess | None = None
    """Managed networks, as NICs need them."""
    nic_host_names: str = "random"
    """instances.nic.host_name: host-side NIC names random (vethXXXXXXXX) or from the MAC."""


class Device(abc.ABC):
    """One device of an instance. Subclasses declare their keys (validators) and the instance
    types they serve; ``start`` turns the config into a RunConfig."""

    KEYS: ClassVar[dict[str, Callable[[str], None]]] = {}
    REQUIRED: ClassVar[tuple[str, ...]] = ()
    TYPES: ClassVar[frozenset[str]] = frozenset({"container"})
    HOTPLUG: ClassVar[bool] = True
    """Whether it can be added to or removed from a running instance."""

    def __init__(self, name: str, config: dict[str, str], ctx: DeviceContext) -> None:
        self.name = name
        self.config = config
        self.ctx = ctx

    @property
    def file_name(self) -> str:
        """The device's name as one file name component (device names may hold ``/``):
        Incus's encoding, ``-`` doubled and ``/`` as ``-``."""
        return file_name(self.name)

    @property
    def interface_name(self) -> str:
        """The name of a NIC inside the instance: its ``name`` key, else the name it was given
        when it was added (``volatile.DEV.name``, as Incus), else (an instance from before
        those) the device's name when the kernel can take it, else one derived from it."""
        if self.config.get("name"):
            return self.config["name"]
        if self.ctx.config.get(f"volatile.{self.name}.name"):
            return self.ctx.config[f"volatile.{self.name}.name"]
        try:
            v.is_ifname(self.name)
        except ValueError:
            return "nic" + hashlib.sha256(self.name.encode()).hexdigest()[:8]
        return self.name

    def fail(self, message: str) -> BadRequest:
        return BadRequest(f"Device {self.name!r} ({self.config.get('type', '')}): {message}")

    def validate(self) -> None:
        """Refuse unknown keys, bad values and missing required keys, naming them."""
        if not v.is_device_name_ok(self.name):
            raise BadRequest(
                f"Invalid device name {self.name!r}: 1-63 letters, digits and / . - : _, not "
                "starting with a full stop"
            )
        if self.ctx.instance_type not in self.TYPES:
            raise self.fail(f"not supported on a {self.ctx.instance_type}")
        for key, value in self.config.items():
            if key == "type":
                continue
            check = self.KEYS.get(key)
            if check is None:
                raise self.fail(f"unknown key {key!r}")
            try:
                v.is_one_line(value)  # no device value reaches the host on several lines
                check(value)
            except ValueError as exc:
                raise self.fail(f"invalid value for {key!r}: {exc}") from None
        for key in self.REQUIRED:
            if not self.config.get(key):
                raise self.fail(f"{key!r} is required")

    def check_host(self) -> None:
        """Raise (naming what is missing) when the host cannot provide the device now."""
        return None

    @abc.abstractmethod
    def start(self) -> RunConfig:
        """What the instance needs for this device when it starts (or when hot plugged)."""

    def attached(self) -> RunConfig:
        """What ``start`` attached, described again without side effects, for unplugging."""
        return RunConfig()

    def stop(self) -> None:
        """Clean up what ``start`` made on the host, once the instance stopped (or the device
        was unplugged). Must tolerate running more than once."""
        return None


def file_name(device: str) -> str:
    """A device name as one file name component: ``-`` doubled, ``/`` written as ``-``."""
    return device.replace("-", "--").replace("/", "-")
