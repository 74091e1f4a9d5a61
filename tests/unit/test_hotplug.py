"""unix-hotplug: uevents and USB ids from sysfs."""

from __future__ import annotations

from pathlib import Path

from stapes.instance.devices.hotplug import host_nodes, parse_uevent, usb_ids


def _fake_sysfs(root: Path) -> Path:
    usb = root / "devices" / "pci0000:00" / "usb1" / "1-1"
    usb.mkdir(parents=True)
    (usb / "idVendor").write_text("0403\n")
    (usb / "idProduct").write_text("6001\n")
    tty = usb / "1-1:1.0" / "ttyUSB0" / "tty" / "ttyUSB0"
    tty.mkdir(parents=True)
    (tty / "uevent").write_text("MAJOR=188\nMINOR=0\nDEVNAME=ttyUSB0\n")
    other = root / "devices" / "virtual" / "mem" / "null"
    other.mkdir(parents=True)
    (other / "uevent").write_text("MAJOR=1\nMINOR=3\nDEVNAME=null\n")
    chars = root / "dev" / "char"
    chars.mkdir(parents=True)
    (chars / "188:0").symlink_to(tty)
    (chars / "1:3").symlink_to(other)
    return root


def test_parse_uevent() -> None:
    fields = [
        "ACTION=add",
        "DEVPATH=/devices/x/ttyUSB0",
        "SUBSYSTEM=tty",
        "MAJOR=188",
        "MINOR=0",
        "DEVNAME=ttyUSB0",
    ]
    raw = b"add@/devices/x/ttyUSB0\0" + "\0".join(fields).encode() + b"\0"
    event = parse_uevent(raw)
    assert event is not None
    assert (event.action, event.devname, event.major, event.minor) == ("add", "ttyUSB0", 188, 0)
    assert parse_uevent(b"add@/devices/x\0ACTION=add\0") is None  # no node
    assert parse_uevent(b"libudev\0junk") is None


def test_usb_ids_and_host_nodes(tmp_path: Path) -> None:
    sysfs = _fake_sysfs(tmp_path)
    devpath = "/devices/pci0000:00/usb1/1-1/1-1:1.0/ttyUSB0/tty/ttyUSB0"
    assert usb_ids(devpath, sysfs) == ("0403", "6001")
    assert usb_ids("/devices/virtual/mem/null", sysfs) == ("", "")
    nodes = host_nodes(sysfs)
    assert [(n.devname, n.kind, n.major, n.minor, n.vendor) for n in nodes] == [
        ("ttyUSB0", "c", 188, 0, "0403")
    ]
