"""disk devices of a VM other than its root: a custom block volume or a host file / block
device becomes a virtio disk (serial = the device name); a custom filesystem volume or a
host directory is shared over 9p and mounted at ``path`` by the guest agent."""

from __future__ import annotations

import os
import stat
from typing import ClassVar

from stapes.api.errors import StapesError
from stapes.config import validate as v
from stapes.instance.devices.device import Device, RunConfig, VmDisk, is_abs_path


class VmDiskDevice(Device):
    KEYS: ClassVar = {
        "source": v.any_value,
        "path": is_abs_path,
        "readonly": v.is_bool,
        "optional": v.is_bool,
        "required": v.is_bool,
        "pool": v.any_value,
        "shift": v.is_bool,
        "boot.priority": v.is_uint,
    }
    REQUIRED = ("source",)
    TYPES = frozenset({"virtual-machine"})

    def validate(self) -> None:
        super().validate()
        if not self.config.get("pool"):
            try:
                is_abs_path(self.config["source"])
            except ValueError as exc:
                raise self.fail(f"source: {exc}") from None
        elif self.ctx.volume is not None:
            self._resolve()

    def _resolve(self) -> tuple[str, bool]:
        """(what QEMU opens, whether it is a directory share)."""
        if self.config.get("pool"):
            lookup = self.ctx.volume
            if lookup is None:
                raise self.fail("custom volumes cannot be looked up here")
            try:
                found = lookup(self.config["pool"], self.config["source"])
            except StapesError as exc:
                raise self.fail(exc.message) from None
            if found.block is not None:
                return str(found.block), False
            return str(found.path), True
        source = self.config["source"]
        try:
            mode = os.stat(source).st_mode
        except OSError:
            return source, False
        return source, stat.S_ISDIR(mode)

    def _optional(self) -> bool:
        if "optional" in self.config:
            return v.parse_bool(self.config["optional"])
        return not v.parse_bool(self.config.get("required", "true"))

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
        return RunConfig(vm_disks=[VmDisk(self.name, source, path, readonly, share)])

    def attached(self) -> RunConfig:
        return self.start()
