"""disk: the root disk (the instance's volume on its pool) and host paths bind-mounted in."""

from __future__ import annotations

import os
from typing import ClassVar

from stapes.config import validate as v
from stapes.instance.devices.device import Device, Mount, RunConfig, is_abs_path

PROPAGATION = ("private", "shared", "slave", "unbindable", "rprivate", "rshared", "rslave")


class RootDisk(Device):
    """``path: /`` with a ``pool``: the instance's own volume, which the driver mounts."""

    KEYS: ClassVar = {"path": is_abs_path, "pool": v.any_value, "size": v.is_size}
    REQUIRED = ("pool",)
    TYPES = frozenset({"container", "virtual-machine"})
    HOTPLUG = False

    def validate(self) -> None:
        super().validate()
        if self.config.get("size"):
            raise self.fail(
                "size needs a storage driver with quotas: the dir pool has none "
                "(btrfs pools come with storage pools)"
            )

    def start(self) -> RunConfig:
        return RunConfig()


class DiskMount(Device):
    """A host path (file or directory) mounted at ``path`` in the instance."""

    KEYS: ClassVar = {
        "source": is_abs_path,
        "path": is_abs_path,
        "readonly": v.is_bool,
        "optional": v.is_bool,
        "required": v.is_bool,
        "recursive": v.is_bool,
        "shift": v.is_bool,
        "propagation": v.one_of(*PROPAGATION),
        "pool": v.any_value,
    }
    REQUIRED = ("source", "path")

    def validate(self) -> None:
        super().validate()
        if self.config.get("pool"):
            raise self.fail(
                "custom volumes of a storage pool are not supported by this stapesd yet: "
                "use a host path as source"
            )
        if self.config["path"] == "/":
            raise self.fail("a host path cannot be mounted as the root")

    def _optional(self) -> bool:
        if "optional" in self.config:
            return v.parse_bool(self.config["optional"])
        return not v.parse_bool(self.config.get("required", "true"))

    def check_host(self) -> None:
        source = self.config["source"]
        if not os.path.exists(source):
            if self._optional():
                return
            raise self.fail(f"missing source path {source!r} on the host")
        if self.ctx.idmap is not None:
            blocked = _untraversable_parent(source, self.ctx.idmap.base, self.ctx.idmap.size)
            if blocked is not None:
                raise self.fail(
                    f"the container's root cannot reach {source!r}: {blocked!r} is closed to "
                    f"other users (chmod o+x {blocked}, or use security.privileged)"
                )

    def attached(self) -> RunConfig:
        return RunConfig(mounts=[Mount(self.config["source"], self.config["path"])])

    def start(self) -> RunConfig:
        source = self.config["source"]
        if not os.path.exists(source):
            if self._optional():
                return RunConfig()
            self.check_host()
        recursive = v.parse_bool(self.config.get("recursive", "false"))
        options = ["rbind" if recursive else "bind"]
        options.append("create=dir" if os.path.isdir(source) else "create=file")
        if v.parse_bool(self.config.get("readonly", "false")):
            options.append("ro")
        if self.config.get("propagation"):
            options.append(self.config["propagation"])
        if v.parse_bool(self.config.get("shift", "false")) and self.ctx.idmap is not None:
            options.append("idmap=container")
        if self._optional():
            options.append("optional")
        return RunConfig(mounts=[Mount(source, self.config["path"], "none", tuple(options))])


def _untraversable_parent(path: str, base: int, size: int) -> str | None:
    """The first directory above ``path`` that an unprivileged container's root (host ids
    base..base+size) may not enter, if any."""
    current = os.path.dirname(os.path.abspath(path))
    parents = []
    while True:
        parents.append(current)
        if current == "/":
            break
        current = os.path.dirname(current)
    for directory in reversed(parents):
        st = os.stat(directory)
        if st.st_mode & 0o001:
            continue
        if base <= st.st_uid < base + size and st.st_mode & 0o100:
            continue
        if base <= st.st_gid < base + size and st.st_mode & 0o010:
            continue
        return directory
    return None
