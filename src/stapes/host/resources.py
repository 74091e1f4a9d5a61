"""GET /1.0/resources: the host's hardware as Incus describes it (CPU sockets, cores and threads,
memory, disks with partitions, network cards, PCI and USB devices, DMI system data, load), read
from /proc and /sys. Vendor and product names come from the pci.ids/usb.ids databases when the
host has them (hwdata), as Incus reads them. GPUs are listed empty: this daemon does not
inventory them yet."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

SYS = Path("/sys")
PROC = Path("/proc")


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def _int(path: Path, default: int = 0) -> int:
    try:
        return int(_read(path))
    except ValueError:
        return default


def cpu() -> dict[str, Any]:
    info: dict[str, str] = {}
    flags: list[str] = []
    for line in _read(PROC / "cpuinfo").splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "vendor_id", "cpu MHz") and key not in info:
            info[key] = value
        if key == "flags" and not flags:
            flags = value.split()
    sockets: dict[int, dict[int, list[dict[str, Any]]]] = {}
    base = SYS / "devices/system/cpu"
    threads = sorted(
        (int(p.name[3:]) for p in base.glob("cpu[0-9]*") if p.name[3:].isdigit()),
    )
    for thread in threads:
        topology = base / f"cpu{thread}" / "topology"
        socket = _int(topology / "physical_package_id")
        core = _int(topology / "core_id")
        online = thread == 0 or _read(base / f"cpu{thread}" / "online", "1") == "1"
        numa = next((int(n.name[4:]) for n in (base / f"cpu{thread}").glob("node[0-9]*")), 0)
        entry = {"id": thread, "numa_node": numa, "online": online, "isolated": False}
        sockets.setdefault(socket, {}).setdefault(core, []).append(entry)
    mhz = int(float(info.get("cpu MHz", "0") or 0))
    rendered = []
    for socket, cores in sorted(sockets.items()):
        rendered.append(
            {
                "name": info.get("model name", ""),
                "vendor": info.get("vendor_id", ""),
                "socket": socket,
                "cache": [],
                "cores": [
                    {
                        "core": core,
                        "die": 0,
                        "cluster": 0,
                        "flags": flags,
                        "frequency": mhz,
                        "threads": [{**t, "thread": i} for i, t in enumerate(ts)],
                    }
                    for core, ts in sorted(cores.items())
                ],
                "frequency": mhz,
                "frequency_minimum": 0,
                "frequency_turbo": 0,
            }
        )
    return {"architecture": platform.machine(), "sockets": rendered, "total": len(threads)}


def memory() -> dict[str, Any]:
    values: dict[str, int] = {}
    for line in _read(PROC / "meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    total = values.get("MemTotal", 0)
    used = total - values.get("MemAvailable", values.get("MemFree", 0))
    hugepage = values.get("Hugepagesize", 0)
    huge_total = values.get("HugePages_Total", 0) * hugepage
    huge_used = (values.get("HugePages_Total", 0) - values.get("HugePages_Free", 0)) * hugepage
    return {
        "nodes": [
            {
                "numa_node": 0,
                "hugepages_total": huge_total,
                "hugepages_used": huge_used,
                "total": total,
                "used": used,
            }
        ],
        "hugepages_total": huge_total,
        "hugepages_used": huge_used,
        "hugepages_size": hugepage,
        "total": total,
        "used": used,
    }


def storage() -> dict[str, Any]:
    disks = []
    for block in sorted((SYS / "block").iterdir()) if (SYS / "block").is_dir() else []:
        name = block.name
        if name.startswith(("loop", "ram", "dm-", "zram", "sr", "md")):
            continue
        partitions = [
            {
                "id": p.name,
                "device": _read(p / "dev"),
                "partition": _int(p / "partition"),
                "read_only": _read(p / "ro") == "1",
                "size": _int(p / "size") * 512,
            }
            for p in sorted(block.glob(f"{name}*"))
            if (p / "partition").exists()
        ]
        kind = "nvme" if name.startswith("nvme") else "virtio" if name.startswith("vd") else "scsi"
        disks.append(
            {
                "id": name,
                "device": _read(block / "dev"),
                "model": _read(block / "device" / "model"),
                "type": kind,
                "read_only": _read(block / "ro") == "1",
                "size": _int(block / "size") * 512,
                "removable": _read(block / "removable") == "1",
                "rpm": 0 if _read(block / "queue" / "rotational") == "0" else 1,
                "block_size": _int(block / "queue" / "logical_block_size"),
                "firmware_version": "",
                "serial": _read(block / "device" / "serial"),
                "wwn": _read(block / "wwid"),
                "numa_node": 0,
                "device_path": "",
                "device_id": "",
                "partitions": partitions,
            }
        )
    return {"disks": disks, "total": len(disks)}


def network() -> dict[str, Any]:
    cards = []
    base = SYS / "class/net"
    for iface in sorted(base.iterdir()) if base.is_dir() else []:
        device = iface / "device"
        if not device.exists():
            continue  # virtual interfaces (bridges, veths, lo) are not cards
        driver = os.path.basename(os.path.realpath(device / "driver"))
        cards.append(
            {
                "driver": driver,
                "driver_version": _read(device / "driver" / "module" / "version"),
                "vendor_id": _read(device / "vendor").removeprefix("0x"),
                "product_id": _read(device / "device").removeprefix("0x"),
                "numa_node": max(_int(device / "numa_node"), 0),
                "ports": [
                    {
                        "id": iface.name,
                        "address": _read(iface / "address"),
                        "port": 0,
                        "protocol": "ethernet",
                        "auto_negotiation": False,
                        "link_detected": _read(iface / "carrier") == "1",
                    }
                ],
            }
        )
    return {"cards": cards, "total": len(cards)}


def system() -> dict[str, Any]:
    dmi = SYS / "class/dmi/id"
    return {
        "uuid": _read(dmi / "product_uuid"),
        "vendor": _read(dmi / "sys_vendor"),
        "product": _read(dmi / "product_name"),
        "family": _read(dmi / "product_family"),
        "version": _read(dmi / "product_version"),
        "sku": _read(dmi / "product_sku"),
        "serial": _read(dmi / "product_serial"),
        "type": "physical" if not _read(dmi / "sys_vendor").startswith("QEMU") else "kvm",
        "firmware": {
            "vendor": _read(dmi / "bios_vendor"),
            "date": _read(dmi / "bios_date"),
            "version": _read(dmi / "bios_version"),
        },
        "chassis": {
            "vendor": _read(dmi / "chassis_vendor"),
            "type": _read(dmi / "chassis_type"),
            "serial": _read(dmi / "chassis_serial"),
            "version": _read(dmi / "chassis_version"),
        },
        "motherboard": {
            "vendor": _read(dmi / "board_vendor"),
            "product": _read(dmi / "board_name"),
            "serial": _read(dmi / "board_serial"),
            "version": _read(dmi / "board_version"),
        },
    }


def load() -> dict[str, Any]:
    fields = (_read(PROC / "loadavg") or "0 0 0 0/0").split()
    return {
        "Average1Min": float(fields[0]),
        "Average5Min": float(fields[1]),
        "Average10Min": float(fields[2]),
        "Processes": int(fields[3].split("/")[-1]) if "/" in fields[3] else 0,
    }


IDS_DIRS = (Path("/usr/share/hwdata"), Path("/usr/share/misc"))


def _ids(name: str) -> dict[str, tuple[str, dict[str, str]]]:
    """vendor id -> (vendor name, {product id: product name}) from pci.ids or usb.ids."""
    for directory in IDS_DIRS:
        try:
            text = (directory / name).read_text(errors="replace")
        except OSError:
            continue
        found: dict[str, tuple[str, dict[str, str]]] = {}
        vendor: dict[str, str] | None = None
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            if line.startswith("C "):  # device classes follow the vendors: done
                break
            if not line.startswith("\t"):
                key, _, label = line.partition("  ")
                vendor = {}
                found[key.lower()] = (label.strip(), vendor)
            elif vendor is not None and not line.startswith("\t\t"):
                key, _, label = line.strip().partition("  ")
                vendor[key.lower()] = label.strip()
        return found
    return {}


def _driver(device: Path) -> tuple[str, str]:
    """A device's driver and its version (a built-in driver's is the kernel's)."""
    try:
        driver = os.path.basename(os.readlink(device / "driver"))
    except OSError:
        return "", ""
    version = _read(device / "driver" / "module" / "version")  # a loadable module's
    return driver, version or platform.release()


def pci() -> dict[str, Any]:
    names = _ids("pci.ids")
    devices = []
    base = Path("/sys/bus/pci/devices")
    for device in sorted(base.iterdir()) if base.is_dir() else []:
        vendor_id = _read(device / "vendor").removeprefix("0x")
        product_id = _read(device / "device").removeprefix("0x")
        vendor, products = names.get(vendor_id, ("", {}))
        driver, version = _driver(device)
        try:
            group = int(os.path.basename(os.readlink(device / "iommu_group")))
        except (OSError, ValueError):
            group = 0
        devices.append(
            {
                "driver": driver,
                "driver_version": version,
                "iommu_group": group,
                "numa_node": max(0, _int(device / "numa_node")),
                "pci_address": device.name,
                "product": products.get(product_id, ""),
                "product_id": product_id,
                "vendor": vendor,
                "vendor_id": vendor_id,
                "vpd": {},
            }
        )
    return {"devices": devices, "total": len(devices)}


def usb() -> dict[str, Any]:
    names = _ids("usb.ids")
    devices = []
    base = Path("/sys/bus/usb/devices")
    for device in sorted(base.iterdir()) if base.is_dir() else []:
        if ":" in device.name or not (device / "idVendor").exists():
            continue  # interfaces, and root hubs' ports
        vendor_id, product_id = _read(device / "idVendor"), _read(device / "idProduct")
        vendor, products = names.get(vendor_id, ("", {}))
        interfaces = []
        for interface in sorted(device.glob(f"{device.name}:*")):
            driver, version = _driver(interface)
            interfaces.append(
                {
                    "class": "",
                    "class_id": int(_read(interface / "bInterfaceClass", "0"), 16),
                    "driver": driver,
                    "driver_version": version,
                    "number": int(_read(interface / "bInterfaceNumber", "0"), 16),
                    "subclass": "",
                    "subclass_id": int(_read(interface / "bInterfaceSubClass", "0"), 16),
                }
            )
        devices.append(
            {
                "bus_address": _int(device / "busnum"),
                "device_address": _int(device / "devnum"),
                "interfaces": interfaces,
                "product": products.get(product_id, _read(device / "product")),
                "product_id": product_id,
                "speed": float(_read(device / "speed", "0") or 0),
                "vendor": vendor or _read(device / "manufacturer"),
                "vendor_id": vendor_id,
            }
        )
    return {"devices": devices, "total": len(devices)}


def resources() -> dict[str, Any]:
    return {
        "cpu": cpu(),
        "memory": memory(),
        "gpu": {"cards": [], "total": 0},
        "network": network(),
        "storage": storage(),
        "usb": usb(),
        "pci": pci(),
        "system": system(),
        "load": load(),
    }
