"""unix-hotplug: the device nodes of USB devices (by vendor and product id), given to the
instance when it starts and as they come and go while it runs. Arrivals and departures are read
from the kernel's uevents (NETLINK_KOBJECT_UEVENT); ids are found in sysfs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from stapes.config import validate as v
from stapes.instance.devices.device import Node, RunConfig
from stapes.instance.devices.unix import NodeDevice

log = logging.getLogger(__name__)

NETLINK_KOBJECT_UEVENT = 15
SYSFS = Path("/sys")


@dataclass(frozen=True)
class HostNode:
    """A device node on the host and the USB ids of the device it belongs to."""

    devname: str  # below /dev
    kind: str
    major: int
    minor: int
    vendor: str
    product: str


@dataclass(frozen=True)
class Uevent:
    action: str
    devpath: str
    devname: str
    major: int
    minor: int
    subsystem: str


def parse_uevent(data: bytes) -> Uevent | None:
    """A kernel uevent (``action@devpath`` then KEY=VALUE fields, NUL-separated)."""
    parts = data.split(b"\0")
    if not parts or b"@" not in parts[0]:
        return None
    fields = {}
    for part in parts[1:]:
        key, sep, value = part.partition(b"=")
        if sep:
            fields[key.decode(errors="replace")] = value.decode(errors="replace")
    if "MAJOR" not in fields or "MINOR" not in fields or not fields.get("DEVNAME"):
        return None
    return Uevent(
        action=fields.get("ACTION", ""),
        devpath=fields.get("DEVPATH", ""),
        devname=fields["DEVNAME"],
        major=int(fields["MAJOR"]),
        minor=int(fields["MINOR"]),
        subsystem=fields.get("SUBSYSTEM", ""),
    )


def usb_ids(devpath: str, sysfs: Path = SYSFS) -> tuple[str, str]:
    """(idVendor, idProduct) of the nearest USB device above a sysfs device path."""
    current = sysfs / devpath.lstrip("/")
    root = sysfs.resolve()
    while current != root and current != current.parent:
        vendor, product = current / "idVendor", current / "idProduct"
        if vendor.is_file() and product.is_file():
            return vendor.read_text().strip(), product.read_text().strip()
        current = current.parent
    return "", ""


def host_nodes(sysfs: Path = SYSFS) -> list[HostNode]:
    """Every device node whose device sits below a USB device."""
    found = []
    for kind, cls in (("c", "char"), ("b", "block")):
        directory = sysfs / "dev" / cls
        for link in sorted(directory.iterdir()) if directory.is_dir() else []:
            with contextlib.suppress(OSError, ValueError):
                uevent = dict(
                    line.split("=", 1)
                    for line in (link / "uevent").read_text().splitlines()
                    if "=" in line
                )
                if "DEVNAME" not in uevent:
                    continue
                device = os.path.realpath(link).removeprefix(str(sysfs.resolve()))
                vendor, product = usb_ids(device, sysfs)
                if vendor:
                    major, minor = link.name.split(":")
                    found.append(
                        HostNode(uevent["DEVNAME"], kind, int(major), int(minor), vendor, product)
                    )
    return found


class UnixHotplug(NodeDevice):
    KEYS: ClassVar = {
        "vendorid": v.is_hex_id,
        "productid": v.is_hex_id,
        "uid": v.is_uint,
        "gid": v.is_uint,
        "mode": v.is_octal_mode,
        "required": v.is_bool,
    }
    REQUIRED = ("vendorid",)

    def matches(self, vendor: str, product: str) -> bool:
        if vendor != self.config["vendorid"]:
            return False
        return not self.config.get("productid") or product == self.config["productid"]

    def node_for(self, kind: str, major: int, minor: int, devname: str) -> Node:
        return self.make_node(kind, major, minor, "/dev/" + devname.lstrip("/"))

    def check_host(self) -> None:
        if v.parse_bool(self.config.get("required", "false")) and not self._present():
            raise self.fail(f"no USB device {self._wanted()} is plugged in")

    def _wanted(self) -> str:
        product = self.config.get("productid")
        return self.config["vendorid"] + (f":{product}" if product else "")

    def _present(self) -> list[HostNode]:
        return [n for n in host_nodes() if self.matches(n.vendor, n.product)]

    def start(self) -> RunConfig:
        self.check_host()
        return self.run_config(
            [self.node_for(n.kind, n.major, n.minor, n.devname) for n in self._present()]
        )

    def gone(self, devname: str) -> RunConfig:
        """What to unplug when the host node /dev/DEVNAME went away."""
        target = "/dev/" + devname.lstrip("/")
        return RunConfig(nodes=[n for n in self.attached().nodes if n.target == target])


Handler = Callable[[Uevent], Coroutine[Any, Any, None]]


class UeventWatcher:
    """Reads the kernel's uevents and hands device arrivals and departures to ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sock: socket.socket | None = None

    def start(self) -> None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
            sock.bind((0, 1))
        except OSError as exc:
            log.warning("no kernel uevents (%s): unix-hotplug devices only attach at start", exc)
            return
        sock.setblocking(False)
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                return
            event = parse_uevent(data)
            if event is not None and event.action in ("add", "remove"):
                task = asyncio.get_running_loop().create_task(self.handler(event))
                task.add_done_callback(_log_failure)

    def close(self) -> None:
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("unix-hotplug event failed: %s", task.exception())
