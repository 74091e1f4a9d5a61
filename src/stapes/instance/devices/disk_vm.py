"""disk devices of a VM other than its root: a custom block volume or a host file / block
device becomes a virtio disk (serial = the device name); a custom filesystem volume or a
host directory is shared over 9p and mounted at ``path`` by the guest agent."""

from __future__ import annotations

import os
import stat
from typing import ClassVar

from stapes.config import validate as v
from stapes.instance.devices.device import RunConfig, VmDisk
from stapes.instance.devices.disk import DiskMount

MOUNT_ONLY = ("recursive", "propagation")
"""DiskMount's keys that only mean something for a bind mount."""


class VmDiskDevice(DiskMount):
    """DiskMount's keys and checks, made into QEMU disks and 9p shares instead of mounts."""

    KEYS: ClassVar = {
        **{k: check for k, check in DiskMount.KEYS.items() if k not in MOUNT_ONLY},
        "boot.priority": v.is_uint,
    }
    REQUIRED = ("source",)
    TYPES = frozenset({"virtual-machine"})

    def _check_volume(self) -> None:
        self._resolve()

    def _resolve(self) -> tuple[str, bool]:
        """(what QEMU opens, whether it is a directory share)."""
        if self.config.get("pool"):
            found = self._lookup_volume()
            if found.block is not None:
                return str(found.block), False
            return str(found.path), True
        return self._host_source()

    def _is_iso(self) -> bool:
        return bool(self.config.get("pool")) and self._lookup_volume().content_type == "iso"

    def _host_source(self) -> tuple[str, bool]:
        source = self.config["source"]
        try:
            mode = os.stat(source).st_mode
        except OSError:
            return source, False
        return source, stat.S_ISDIR(mode)

    def check_host(self) -> None:
        source, _ = self._resolve()
        if not os.path.exists(source) and not self._optional():
            raise self.fail(f"missing source path {source!r} on the host")

    def start(self) -> RunConfig:
        source, share = self._resolve()
        if not os.path.exists(source):
            if self._optional():
                return RunConfig()
            self.check_host()
        path = self.config.get("path", "")
        if share and not path:
            raise self.fail("a shared directory needs path (where the guest mounts it)")
        readonly = v.parse_bool(self.config.get("readonly", "false"))
        if self._is_iso():  # a CD-ROM, read-only whatever readonly says
            return RunConfig(vm_disks=[VmDisk(self.name, source, "", True, False, cdrom=True)])
        return RunConfig(vm_disks=[VmDisk(self.name, source, path, readonly, share)])

    def attached(self) -> RunConfig:
        return self.start()
