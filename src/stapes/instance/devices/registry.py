"""Device kinds by type (and, for disks, by role): the one place that maps config to classes."""

from __future__ import annotations

from stapes.api.errors import BadRequest
from stapes.instance.devices.device import Device, DeviceContext, RunConfig
from stapes.instance.devices.disk import DiskMount, RootDisk
from stapes.instance.devices.disk_vm import VmDiskDevice
from stapes.instance.devices.hotplug import UnixHotplug
from stapes.instance.devices.nic import NicVeth, NoneDevice, nic_class
from stapes.instance.devices.passthrough_vm import GpuPassthrough, PciPassthrough, UsbPassthrough
from stapes.instance.devices.proxy import Proxy
from stapes.instance.devices.unix import Gpu, Tpm, UnixNode, Usb

KINDS: dict[str, type[Device]] = {
    "none": NoneDevice,
    "nic": NicVeth,
    "unix-char": UnixNode,
    "unix-block": UnixNode,
    "proxy": Proxy,
    "gpu": Gpu,
    "usb": Usb,
    "tpm": Tpm,
    "unix-hotplug": UnixHotplug,
}

LATER = {
    "infiniband": "it is not supported by this stapesd",
}
VM_KINDS: dict[str, type[Device]] = {
    "pci": PciPassthrough,
    "gpu": GpuPassthrough,
    "usb": UsbPassthrough,
}
"""Kinds that a VM takes differently: host hardware through VFIO or usb-host."""


def load(name: str, config: dict[str, str], ctx: DeviceContext) -> Device:
    kind = config.get("type", "")
    if kind == "disk":
        cls: type[Device] = RootDisk if config.get("path") == "/" else DiskMount
        if cls is DiskMount and ctx.instance_type == "virtual-machine":
            cls = VmDiskDevice
    elif kind == "nic":
        cls = nic_class(config, ctx)
    elif kind in VM_KINDS and ctx.instance_type == "virtual-machine":
        cls = VM_KINDS[kind]
    elif kind == "pci":
        raise BadRequest(f"Device {name!r}: type pci is for virtual machines only")
    elif kind in KINDS:
        cls = KINDS[kind]
    elif kind in LATER:
        raise BadRequest(f"Device {name!r}: type {kind!r} is not available: {LATER[kind]}")
    else:
        known = ", ".join(sorted([*KINDS, "disk"]))
        raise BadRequest(f"Device {name!r}: unknown type {kind!r} (one of {known})")
    return cls(name, config, ctx)


def load_all(devices: dict[str, dict[str, str]], ctx: DeviceContext) -> list[Device]:
    """Every device validated; ``none`` devices drop out. Ordered by name, as Incus starts them."""
    loaded = []
    for name in sorted(devices):
        device = load(name, devices[name], ctx)
        device.validate()
        loaded.append(device)
    return loaded


def start_all(devices: list[Device]) -> RunConfig:
    run = RunConfig()
    for device in devices:
        device.check_host()
    for device in devices:
        run.extend(device.start())
    return run
