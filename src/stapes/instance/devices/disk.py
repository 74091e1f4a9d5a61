"""disk: the root disk (the instance's volume on its pool) and host paths bind-mounted in."""

from __future__ import annotations

import os
from typing import ClassVar

from stapes.api.errors import StapesError
from stapes.config import validate as v
from stapes.instance.devices.device import Device, Mount, RunConfig
from stapes.storage.volumes import AttachedVolume

PROPAGATION = ("private", "shared", "slave", "unbindable", "rprivate", "rshared", "rslave")


class RootDisk(Device):
    """``path: /`` with a ``pool``: the instance's own volume, which the driver mounts."""

    KEYS: ClassVar = {"path": v.is_abs_path, "pool": v.any_value, "size": v.is_size}
    REQUIRED = ("pool",)
    TYPES = frozenset({"container", "virtual-machine"})
    HOTPLUG = False

    def start(self) -> RunConfig:
        return RunConfig()


class DiskMount(Device):
    """A host path (file or directory) mounted at ``path`` in the instance."""

    KEYS: ClassVar = {
        "source": v.any_value,
        "path": v.is_abs_path,
        "readonly": v.is_bool,
        "optional": v.is_bool,
        "required": v.is_bool,
        "recursive": v.is_bool,
        "shift": v.is_bool,
        "propagation": v.one_of(*PROPAGATION),
        "pool": v.any_value,
    }
    REQUIRED: ClassVar[tuple[str, ...]] = ("source", "path")

    def validate(self) -> None:
        if self.config.get("pool") and self.config.get("source") and self.ctx.volume is not None:
            self._check_volume()  # first, as Incus: an ISO volume is named before a missing path
        super().validate()
        if self.config.get("path") == "/":
            raise self.fail("a host path cannot be mounted as the root")
        if v.parse_bool(self.config.get("readonly", "false")) and v.parse_bool(
            self.config.get("recursive", "false")
        ):
            # liblxc's rbind,ro makes the top mount read-only and leaves the mounts below it
            # writable: refused, as Incus refuses it where it cannot make them all read-only
            raise self.fail(
                "Recursive read-only bind-mounts aren't currently supported: the mounts "
                "below the source would stay writable (drop recursive, or readonly)"
            )
        if not self.config.get("pool"):
            try:
                v.is_abs_path(self.config["source"])
            except ValueError as exc:
                raise self.fail(f"source: {exc}") from None
        elif self.ctx.volume is not None:
            self._check_volume()

    def _check_volume(self) -> None:
        """The custom volume ``source`` exists and suits this instance (validation)."""
        self._volume_source()

    def _lookup_volume(self) -> AttachedVolume:
        """The custom volume ``source`` on ``pool`` (a device error when there is none)."""
        lookup = self.ctx.volume
        if lookup is None:
            raise self.fail("custom volumes cannot be looked up here")
        try:
            return lookup(self.config["pool"], self.config["source"])
        except StapesError as exc:
            raise self.fail(exc.message) from None

    def _volume_source(self) -> str:
        """The mount path of the custom volume ``source`` on ``pool``."""
        found = self._lookup_volume()
        if found.content_type == "iso":
            raise self.fail("Custom ISO volumes cannot be used on containers")
        if found.content_type != "filesystem":
            raise self.fail("Custom block volumes cannot be used on containers")
        return str(found.path)

    def _source(self) -> str:
        return self._volume_source() if self.config.get("pool") else self.config["source"]

    def _optional(self) -> bool:
        if "optional" in self.config:
            return v.parse_bool(self.config["optional"])
        return not v.parse_bool(self.config.get("required", "true"))

    def check_host(self) -> None:
        source = self._source()
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
        return RunConfig(mounts=[Mount(self._source(), self.config["path"])])

    def start(self) -> RunConfig:
        source = self._source()
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
        # A custom volume is always mapped into the container (files keep host ids on the
        # volume, so it can move between instances with different maps).
        shift = v.parse_bool(self.config.get("shift", "false")) or bool(self.config.get("pool"))
        if shift and self.ctx.idmap is not None:
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
