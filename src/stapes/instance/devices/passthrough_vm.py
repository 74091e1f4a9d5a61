"""Host hardware handed to a VM: ``pci`` (any PCI device), ``gpu`` (a physical GPU, by PCI
address or vendorid/productid) through VFIO, and ``usb`` (by vendorid/productid) through
QEMU's usb-host on an xHCI controller. Each checks the host first and fails with what is
missing: the device, an IOMMU, the vfio-pci driver, /dev/vfio."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from stapes.config import validate as v
from stapes.instance.devices.device import Device, RunConfig

PCI = Path("/sys/bus/pci/devices")
USB = Path("/sys/bus/usb/devices")
IOMMU = Path("/sys/kernel/iommu_groups")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _hex_id(value: str) -> str:
    return value.lower().removeprefix("0x")


def _full_address(address: str) -> str:
    """A PCI address with its domain (01:00.0 -> 0000:01:00.0)."""
    return address if address.count(":") == 2 else f"0000:{address}"


class _Vfio(Device):
    """A host PCI device handed to a VM through VFIO; the ``address`` key names it."""

    TYPES = frozenset({"virtual-machine"})

    def _address(self) -> str:
        return _full_address(self.config["address"])

    def check_host(self) -> None:
        self._check(self._address())

    def _check(self, address: str) -> None:
        device = PCI / address
        if not device.exists():
            raise self.fail(f"no PCI device {address} on the host")
        if not IOMMU.is_dir() or not any(IOMMU.iterdir()):
            raise self.fail(
                "the host has no IOMMU (enable VT-d or AMD-Vi, intel_iommu=on): PCI "
                "passthrough needs VFIO"
            )
        if not Path("/dev/vfio/vfio").exists():
            raise self.fail("/dev/vfio/vfio is missing: load the vfio-pci module")

    def start(self) -> RunConfig:
        address = self._address()
        self._check(address)
        _bind_vfio(address)
        return RunConfig(vm_devices=[f"vfio-pci,host={address}"])


def _bind_vfio(address: str) -> None:
    """Hand the device to vfio-pci (as Incus does): override its driver, unbind, probe."""
    device = PCI / address
    driver = device / "driver"
    if driver.exists() and os.path.basename(os.path.realpath(driver)) == "vfio-pci":
        return
    (device / "driver_override").write_text("vfio-pci")
    if driver.exists():
        (driver / "unbind").write_text(address)
    Path("/sys/bus/pci/drivers_probe").write_text(address)


class PciPassthrough(_Vfio):
    KEYS: ClassVar = {"address": v.is_pci_address}
    REQUIRED = ("address",)


class GpuPassthrough(_Vfio):
    """gputype physical on a VM: the whole GPU through VFIO."""

    KEYS: ClassVar = {
        "gputype": v.one_of("physical"),
        "pci": v.is_pci_address,
        "vendorid": v.is_hex_id,
        "productid": v.is_hex_id,
        "id": v.is_uint,
    }

    def _address(self) -> str:
        if self.config.get("pci"):
            return _full_address(self.config["pci"])
        for device in sorted(PCI.glob("*")):
            if not _read(device / "class").startswith("0x03"):
                continue  # display controllers only
            vendor, product = _hex_id(_read(device / "vendor")), _hex_id(_read(device / "device"))
            if self.config.get("vendorid") and vendor != _hex_id(self.config["vendorid"]):
                continue
            if self.config.get("productid") and product != _hex_id(self.config["productid"]):
                continue
            return device.name
        raise self.fail("no GPU on the host matches (pci, vendorid, productid)")


class UsbPassthrough(Device):
    KEYS: ClassVar = {
        "vendorid": v.is_hex_id,
        "productid": v.is_hex_id,
        "busnum": v.is_uint,
        "devnum": v.is_uint,
        "required": v.is_bool,
    }
    REQUIRED = ("vendorid",)
    TYPES = frozenset({"virtual-machine"})

    def _matches(self) -> list[tuple[int, int]]:
        found = []
        for device in sorted(USB.glob("*")):
            vendor = _read(device / "idVendor")
            if not vendor or vendor != _hex_id(self.config["vendorid"]):
                continue
            product = _read(device / "idProduct")
            if self.config.get("productid") and product != _hex_id(self.config["productid"]):
                continue
            bus, dev = int(_read(device / "busnum") or 0), int(_read(device / "devnum") or 0)
            if self.config.get("busnum") and bus != int(self.config["busnum"]):
                continue
            if self.config.get("devnum") and dev != int(self.config["devnum"]):
                continue
            found.append((bus, dev))
        return found

    def check_host(self) -> None:
        if not self._matches() and v.parse_bool(self.config.get("required", "true")):
            wanted = self.config["vendorid"] + (
                f":{self.config['productid']}" if self.config.get("productid") else ""
            )
            raise self.fail(f"no USB device {wanted} on the host")

    def start(self) -> RunConfig:
        self.check_host()
        return RunConfig(
            vm_devices=[f"usb-host,hostbus={bus},hostaddr={dev}" for bus, dev in self._matches()]
        )
