"""unix-char and unix-block: a host device node, recreated with the instance's ids and bound in;
and gpu, usb and tpm, which find their host nodes and become the same thing."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import signal
import stat
import struct
import subprocess
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote, unquote

from stapes.config import validate as v
from stapes.instance.devices.device import (
    Device,
    Mount,
    Node,
    RunConfig,
)


class NodeDevice(Device):
    """Shared by the kinds that give the instance device nodes."""

    def node_dir(self) -> Path:
        return self.ctx.devices_dir

    def make_node(self, kind: str, major: int, minor: int, target: str) -> Node:
        """Create the node on the host (owned by the instance's uid/gid, with its mode) and
        describe it; the driver binds it in. Unprivileged containers cannot mknod themselves."""
        uid = int(self.config.get("uid", "0"))
        gid = int(self.config.get("gid", "0"))
        mode = int(self.config.get("mode", "0660"), 8)
        base = self.ctx.idmap.base if self.ctx.idmap else 0
        directory = self.node_dir()
        directory.mkdir(parents=True, exist_ok=True)
        source = directory / f"{self.file_name}.{quote(target, safe='')}"
        with contextlib.suppress(FileNotFoundError):
            source.unlink()
        os.mknod(
            source,
            mode | (stat.S_IFCHR if kind == "c" else stat.S_IFBLK),
            os.makedev(major, minor),
        )
        os.chown(source, uid + base, gid + base)
        os.chmod(source, mode)
        return Node(kind, major, minor, str(source), target, mode, uid, gid)

    def _made(self) -> list[Path]:
        prefix = f"{self.file_name}."
        return [
            p
            for p in self.node_dir().glob(prefix + "*")
            if (p.is_char_device() or p.is_block_device())
            and unquote(p.name.removeprefix(prefix)).startswith("/")  # not device "<name>.x"'s
        ]

    def attached(self) -> RunConfig:
        nodes = []
        for made in self._made():
            st = made.stat()
            kind = "c" if made.is_char_device() else "b"
            target = unquote(made.name.removeprefix(f"{self.file_name}."))
            nodes.append(Node(kind, os.major(st.st_rdev), os.minor(st.st_rdev), str(made), target))
        return self.run_config(nodes)

    def stop(self) -> None:
        for made in self._made():
            made.unlink(missing_ok=True)

    @staticmethod
    def mount_for(node: Node) -> Mount:
        return Mount(node.source, node.target, "none", ("bind", "create=file"))

    def run_config(self, nodes: list[Node]) -> RunConfig:
        return RunConfig(mounts=[self.mount_for(n) for n in nodes], nodes=nodes)


class UnixNode(NodeDevice):
    KEYS: ClassVar = {
        "source": v.is_abs_path,
        "path": v.is_abs_path,
        "major": v.is_uint,
        "minor": v.is_uint,
        "uid": v.is_uint,
        "gid": v.is_uint,
        "mode": v.is_octal_mode,
        "required": v.is_bool,
    }

    @property
    def kind(self) -> str:
        return "c" if self.config["type"] == "unix-char" else "b"

    def validate(self) -> None:
        super().validate()
        if not self.config.get("source") and not self.config.get("path"):
            raise self.fail("'source' or 'path' is required")
        has_numbers = "major" in self.config and "minor" in self.config
        if not self.config.get("source") and not has_numbers:
            raise self.fail("without a 'source', both 'major' and 'minor' are required")

    def _numbers(self) -> tuple[int, int] | None:
        if "major" in self.config and "minor" in self.config:
            return int(self.config["major"]), int(self.config["minor"])
        source = self.config["source"]
        try:
            st = os.stat(source)
        except FileNotFoundError:
            return None
        wanted = stat.S_ISCHR if self.kind == "c" else stat.S_ISBLK
        if not wanted(st.st_mode):
            raise self.fail(
                f"{source!r} is not a {self.config['type'].removeprefix('unix-')} device"
            )
        return os.major(st.st_rdev), os.minor(st.st_rdev)

    def check_host(self) -> None:
        if self._numbers() is None and v.parse_bool(self.config.get("required", "true")):
            raise self.fail(f"missing source device {self.config['source']!r} on the host")

    def start(self) -> RunConfig:
        numbers = self._numbers()
        if numbers is None:
            self.check_host()
            return RunConfig()
        target = self.config.get("path") or self.config["source"]
        return self.run_config([self.make_node(self.kind, *numbers, target)])


def _char_node(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISCHR(st.st_mode):
        return None
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


class Gpu(NodeDevice):
    """gputype physical: the host's DRM nodes (and NVIDIA's), optionally narrowed down."""

    KEYS: ClassVar = {
        "gputype": v.one_of("physical"),
        "id": v.is_uint,
        "pci": v.is_pci_address,
        "vendorid": v.is_hex_id,
        "productid": v.is_hex_id,
        "uid": v.is_uint,
        "gid": v.is_uint,
        "mode": v.is_octal_mode,
    }

    def _cards(self) -> list[str]:
        found = []
        for card in sorted(glob.glob("/sys/class/drm/card[0-9]*")):
            if "-" in os.path.basename(card):
                continue  # connectors (card0-HDMI-A-1)
            device = Path(card) / "device"
            if self.config.get("id") and os.path.basename(card)[4:] != self.config["id"]:
                continue
            if (
                self.config.get("pci")
                and os.path.basename(os.path.realpath(device)) != self.config["pci"]
            ):
                continue
            vendor = _read(device / "vendor").removeprefix("0x")
            product = _read(device / "device").removeprefix("0x")
            if self.config.get("vendorid") and vendor != self.config["vendorid"]:
                continue
            if self.config.get("productid") and product != self.config["productid"]:
                continue
            found.append(card)
        return found

    def check_host(self) -> None:
        if not self._cards():
            raise self.fail(
                "no matching GPU on the host (no DRM device in /sys/class/drm"
                + (" matches the given id/pci/vendorid/productid)" if len(self.config) > 1 else ")")
            )

    def start(self) -> RunConfig:
        self.check_host()
        nodes = []
        for card in self._cards():
            drm = Path(card) / "device" / "drm"
            for entry in sorted(drm.iterdir()) if drm.is_dir() else []:
                numbers = _char_node(f"/dev/dri/{entry.name}")
                if numbers is not None:
                    nodes.append(self.make_node("c", *numbers, f"/dev/dri/{entry.name}"))
        for extra in ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"):
            numbers = _char_node(extra)
            if numbers is not None:
                nodes.append(self.make_node("c", *numbers, extra))
        return self.run_config(nodes)


class Usb(NodeDevice):
    """A USB device by vendorid (and productid): its /dev/bus/usb node."""

    KEYS: ClassVar = {
        "vendorid": v.is_hex_id,
        "productid": v.is_hex_id,
        "busnum": v.is_uint,
        "devnum": v.is_uint,
        "uid": v.is_uint,
        "gid": v.is_uint,
        "mode": v.is_octal_mode,
        "required": v.is_bool,
    }
    REQUIRED = ("vendorid",)

    def _matches(self) -> list[tuple[int, int]]:
        found = []
        for device in sorted(Path("/sys/bus/usb/devices").glob("*")):
            if _read(device / "idVendor") != self.config["vendorid"]:
                continue
            if (
                self.config.get("productid")
                and _read(device / "idProduct") != self.config["productid"]
            ):
                continue
            bus, dev = _read(device / "busnum"), _read(device / "devnum")
            if bus.isdigit() and dev.isdigit():
                found.append((int(bus), int(dev)))
        return found

    def check_host(self) -> None:
        if not self._matches() and v.parse_bool(self.config.get("required", "true")):
            wanted = self.config["vendorid"] + (
                f":{self.config['productid']}" if self.config.get("productid") else ""
            )
            raise self.fail(f"no USB device {wanted} on the host (see lsusb)")

    def start(self) -> RunConfig:
        self.check_host()
        nodes = []
        for bus, dev in self._matches():
            path = f"/dev/bus/usb/{bus:03d}/{dev:03d}"
            numbers = _char_node(path)
            if numbers is not None:
                nodes.append(self.make_node("c", *numbers, path))
        return self.run_config(nodes)


VTPM_PROXY_IOC_NEW_DEV = 0xC014A100  # _IOWR(0xa1, 0x00, struct vtpm_proxy_new_dev)
VTPM_PROXY_FLAG_TPM2 = 1


class Tpm(NodeDevice):
    """A software TPM: swtpm serves a vTPM proxy device the kernel creates (/dev/tpmN), whose
    node the container gets at ``path``. swtpm runs as long as the container."""

    KEYS: ClassVar = {"path": v.is_abs_path, "pathrm": v.is_abs_path}
    REQUIRED = ("path", "pathrm")  # as Incus: a container gets both nodes

    def check_host(self) -> None:
        if not os.path.exists("/dev/vtpmx"):
            raise self.fail(
                "a container TPM needs the kernel's vTPM proxy (/dev/vtpmx, module "
                "tpm_vtpm_proxy), which this host does not have"
            )
        if shutil.which("swtpm") is None:
            raise self.fail("a TPM needs swtpm on the host (apt install swtpm)")

    def start(self) -> RunConfig:
        self.check_host()
        state = self.node_dir() / f"{self.file_name}.tpm-state"
        state.mkdir(parents=True, exist_ok=True)
        control = os.open("/dev/vtpmx", os.O_RDWR | os.O_CLOEXEC)
        try:
            request = bytearray(struct.pack("5I", VTPM_PROXY_FLAG_TPM2, 0, 0, 0, 0))
            fcntl.ioctl(control, VTPM_PROXY_IOC_NEW_DEV, request)
        finally:
            os.close(control)
        _, number, server_fd, major, minor = struct.unpack("5I", request)
        try:
            proc = subprocess.Popen(
                [
                    "swtpm",
                    "chardev",
                    "--tpm2",
                    "--fd",
                    str(server_fd),
                    "--tpmstate",
                    f"dir={state}",
                ],
                pass_fds=(server_fd,),
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        finally:
            os.close(server_fd)
        (self.node_dir() / f"{self.file_name}.swtpm.pid").write_text(str(proc.pid))
        nodes = [self.make_node("c", major, minor, self.config["path"])]
        numbers = _char_node(f"/dev/tpmrm{number}")
        if numbers is not None:
            nodes.append(self.make_node("c", *numbers, self.config["pathrm"]))
        return self.run_config(nodes)

    def stop(self) -> None:
        super().stop()
        pidfile = self.node_dir() / f"{self.file_name}.swtpm.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        pidfile.unlink(missing_ok=True)
