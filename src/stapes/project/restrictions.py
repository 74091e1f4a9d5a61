"""``restricted=true`` projects: what their instances may not do, with Incus's defaults
(nesting, privileged containers, low-level keys, host devices and host paths, snapshots and
backups blocked unless the matching ``restricted.*`` key allows them)."""

from __future__ import annotations

from pathlib import PurePosixPath

from stapes.api.errors import Forbidden
from stapes.config import validate as v
from stapes.db.connection import Database
from stapes.db.projects import get_project
from stapes.host.idmap import parse_raw

Devices = dict[str, dict[str, str]]

_LOWLEVEL_PREFIXES = ("raw.", "linux.kernel_modules", "security.syscalls.intercept.")
_DEVICE_DEFAULTS = {
    "disk": "managed",
    "nic": "managed",
    "unix-char": "block",
    "unix-block": "block",
    "unix-hotplug": "block",
    "usb": "block",
    "gpu": "block",
    "pci": "block",
    "infiniband": "block",
    "proxy": "block",
    "tpm": "block",
}


def _setting(config: dict[str, str], key: str, default: str) -> str:
    return config.get(key) or default


def _refuse(project: str, what: str, key: str) -> Forbidden:
    return Forbidden(f"Project {project!r} is restricted: {what} (see {key})")


def check_instance(
    db: Database, project: str, instance_type: str | None, config: dict[str, str],
    devices: Devices,
) -> None:  # fmt: skip
    check_against(project, get_project(db, project).config, instance_type, config, devices)


def check_against(
    project: str, limits: dict[str, str], instance_type: str | None, config: dict[str, str],
    devices: Devices,
) -> None:  # fmt: skip
    """Whether an instance's expanded config and devices (or a profile's, ``instance_type``
    None) obey the project config ``limits``."""
    if not v.parse_bool(limits.get("restricted", "false")):
        return
    nesting = _setting(limits, "restricted.containers.nesting", "block")
    if v.parse_bool(config.get("security.nesting", "false")) and nesting != "allow":
        raise _refuse(project, "nesting is not allowed", "restricted.containers.nesting")
    privilege = _setting(limits, "restricted.containers.privilege", "unprivileged")
    if v.parse_bool(config.get("security.privileged", "false")) and privilege != "allow":
        raise _refuse(
            project, "privileged containers are not allowed", "restricted.containers.privilege"
        )
    if privilege == "isolated" and not v.parse_bool(config.get("security.idmap.isolated", "false")):
        raise _refuse(
            project, "containers must set security.idmap.isolated=true",
            "restricted.containers.privilege",
        )  # fmt: skip
    for key in config:
        if not key.startswith(_LOWLEVEL_PREFIXES) or key == "raw.idmap":
            continue
        lowlevel = _lowlevel_setting(key, instance_type)
        if _setting(limits, lowlevel, "block") != "allow":
            raise _refuse(project, f"the low-level key {key!r} is not allowed", lowlevel)
    _check_raw_idmap(project, limits, config.get("raw.idmap", ""))
    for name, device in devices.items():
        _check_device(project, limits, name, device)


def _lowlevel_setting(key: str, instance_type: str | None) -> str:
    """Which restricted.*.lowlevel key rules a low-level key: the instance type's; for a
    profile (no type: it may serve both kinds), the kind the key is for (raw.qemu: VMs)."""
    for_vm = instance_type == "virtual-machine"
    vm = key.startswith("raw.qemu") if instance_type is None else for_vm
    return "restricted.virtual-machines.lowlevel" if vm else "restricted.containers.lowlevel"


def _check_raw_idmap(project: str, limits: dict[str, str], raw_text: str) -> None:
    """A restricted project's raw.idmap may only map the host ids restricted.idmap.* allow."""
    if not raw_text:
        return
    try:
        entries = parse_raw(raw_text)
    except ValueError:
        return  # the key's own validator reports it
    for kind in ("uid", "gid"):
        key = f"restricted.idmap.{kind}"
        allowed = v.parse_id_ranges(limits.get(key, ""))
        for entry in entries:
            if not entry.applies(kind == "uid"):
                continue
            last = entry.host + entry.count - 1
            if not any(lo <= entry.host and last <= hi for lo, hi in allowed):
                raise _refuse(
                    project, f"raw.idmap maps host {kind}s {entry.host}-{last}, not allowed", key
                )


def _check_device(project: str, limits: dict[str, str], name: str, device: dict[str, str]) -> None:
    kind = device.get("type", "")
    if kind == "none":
        return
    access = [n.strip() for n in limits.get("restricted.networks.access", "").split(",") if n]
    if kind == "nic" and access and device.get("network") not in access:
        raise _refuse(
            project,
            f"NIC {name!r} may only use the networks {', '.join(access)}",
            "restricted.networks.access",
        )
    key = f"restricted.devices.{kind}"
    setting = _setting(limits, key, _DEVICE_DEFAULTS.get(kind, "block"))
    if setting == "allow":
        return
    if setting == "block":
        raise _refuse(project, f"{kind} devices are not allowed ({name!r})", key)
    if kind == "nic" and not device.get("network"):
        raise _refuse(project, f"NIC {name!r} must use a managed network (network=)", key)
    if kind == "disk" and device.get("path") != "/" and not device.get("pool"):
        source = device.get("source", "")
        allowed = [p for p in limits.get("restricted.devices.disk.paths", "").split(",") if p]
        inside = any(
            PurePosixPath(source).is_relative_to(PurePosixPath(p)) and ".." not in source
            for p in allowed
        )
        if not inside:
            raise _refuse(
                project,
                f"disk {name!r} must be a storage volume (pool=), not a host path",
                "restricted.devices.disk.paths",
            )


def _check_action(db: Database, project: str, key: str, what: str) -> None:
    limits = get_project(db, project).config
    restricted = v.parse_bool(limits.get("restricted", "false"))
    if restricted and _setting(limits, key, "block") != "allow":
        raise _refuse(project, f"{what} are not allowed", key)


def check_cluster_target(db: Database, project: str) -> None:
    """Naming the cluster member an instance goes to (create, move)."""
    _check_action(db, project, "restricted.cluster.target", "cluster member targets")


def check_snapshot(db: Database, project: str) -> None:
    _check_action(db, project, "restricted.snapshots", "snapshots")


def check_backup(db: Database, project: str) -> None:
    _check_action(db, project, "restricted.backups", "backups")


def check_zone(db: Database, project: str, zone: str) -> None:
    """A restricted project may use the zones ``restricted.networks.zones`` lists and the
    zones under them (none when it is unset)."""
    limits = get_project(db, project).config
    if not v.parse_bool(limits.get("restricted", "false")):
        return
    key = "restricted.networks.zones"
    allowed = [z.strip() for z in limits.get(key, "").split(",") if z.strip()]
    if not any(zone == z or zone.endswith("." + z) for z in allowed):
        raise _refuse(project, f"it isn't allowed to use the DNS zone {zone!r}", key)
