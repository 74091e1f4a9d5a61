"""A project's config keys (features, restrictions, limits), checked one by one."""

from __future__ import annotations

from stapes.api.errors import BadRequest
from stapes.config import validate as v
from stapes.config.keys import check_keys

FEATURE_KEYS = (
    "features.images",
    "features.profiles",
    "features.storage.volumes",
    "features.storage.buckets",
    "features.networks",
    "features.networks.zones",
)
CHANGEABLE_WHEN_USED = ("features.networks", "features.networks.zones")
"""Features a project in use may gain (as in Incus; none may be lost)."""
NEW_PROJECT_FEATURES = {
    "features.images": "true",
    "features.profiles": "true",
    "features.storage.volumes": "true",
    "features.storage.buckets": "true",
}
"""What a project created without feature keys gets (as Incus: everything but networks)."""

_BLOCK_ALLOW = v.one_of("block", "allow")
_DEVICE = v.one_of("block", "allow", "managed")

# Only keys this stapesd enforces: restricted.networks.uplinks/subnets (they restrict OVN
# networks, which cannot run here) are refused as unknown keys.
# restricted.containers.interception holds whatever it is set to: syscall interception cannot
# be switched on in this stapesd at all.
KEYS: dict[str, v.Validator] = {
    **dict.fromkeys(FEATURE_KEYS, v.is_bool),
    "restricted": v.is_bool,
    "restricted.backups": _BLOCK_ALLOW,
    "restricted.cluster.target": _BLOCK_ALLOW,
    "restricted.snapshots": _BLOCK_ALLOW,
    "restricted.containers.nesting": _BLOCK_ALLOW,
    "restricted.containers.lowlevel": _BLOCK_ALLOW,
    "restricted.containers.privilege": v.one_of("unprivileged", "isolated", "allow"),
    "restricted.containers.interception": v.one_of("block", "allow", "full"),
    "restricted.networks.access": v.any_value,
    "restricted.networks.zones": v.any_value,
    "restricted.idmap.uid": v.is_id_ranges,
    "restricted.idmap.gid": v.is_id_ranges,
    "restricted.virtual-machines.lowlevel": _BLOCK_ALLOW,
    "restricted.devices.disk": _DEVICE,
    "restricted.devices.disk.paths": v.any_value,
    "restricted.devices.nic": _DEVICE,
    "restricted.devices.unix-char": _BLOCK_ALLOW,
    "restricted.devices.unix-block": _BLOCK_ALLOW,
    "restricted.devices.unix-hotplug": _BLOCK_ALLOW,
    "restricted.devices.usb": _BLOCK_ALLOW,
    "restricted.devices.gpu": _BLOCK_ALLOW,
    "restricted.devices.pci": _BLOCK_ALLOW,
    "restricted.devices.infiniband": _BLOCK_ALLOW,
    "restricted.devices.proxy": _BLOCK_ALLOW,
    "limits.instances": v.is_uint,
    "limits.containers": v.is_uint,
    "limits.virtual-machines": v.is_uint,
    "limits.cpu": v.is_uint,
    "limits.memory": v.is_size,
    "limits.processes": v.is_uint,
    "limits.disk": v.is_size,
    "limits.disk.pool.*": v.is_size,
    "limits.networks": v.is_uint,
}


def check_names(config: dict[str, str]) -> None:
    """Only the key names (values unchecked: empty ones unset)."""
    check_keys(dict.fromkeys(config, ""), dict.fromkeys(KEYS, v.any_value), "project")


def validate(config: dict[str, str]) -> None:
    check_keys(config, KEYS, "project")
    # A restricted project using the default project's profiles could take settings from
    # them that its own restrictions were never checked against (as Incus refuses it).
    if v.parse_bool(config.get("restricted", "false")) and not v.parse_bool(
        config.get("features.profiles", "false")
    ):
        raise BadRequest("Projects without their own profiles cannot be restricted")
