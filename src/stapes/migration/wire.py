"""The migration control messages, as Incus's ``migrate.proto`` defines them (proto2, package
``migration``): built at import from a descriptor table with the protobuf runtime, so no
generated code is kept. Field numbers and names are the wire contract; do not renumber."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
REQUIRED, OPTIONAL, REPEATED = _F.LABEL_REQUIRED, _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
BOOL, INT32, INT64, UINT32, STRING = (
    _F.TYPE_BOOL,
    _F.TYPE_INT32,
    _F.TYPE_INT64,
    _F.TYPE_UINT32,
    _F.TYPE_STRING,
)
MESSAGE, ENUM = _F.TYPE_MESSAGE, _F.TYPE_ENUM

# MigrationFSType
RSYNC, BTRFS, ZFS, RBD, BLOCK_AND_RSYNC, LINSTOR = range(6)
FS_NAMES = ("RSYNC", "BTRFS", "ZFS", "RBD", "BLOCK_AND_RSYNC", "LINSTOR")
# CRIUType
CRIU_RSYNC, PHAUL, NONE, VM_QEMU = range(4)
CRIU_NAMES = ("CRIU_RSYNC", "PHAUL", "NONE", "VM_QEMU")

Field = tuple[str, int, int, int, str]
"""(name, number, label, type, type name for messages and enums)."""

_ENUMS: dict[str, tuple[str, ...]] = {"MigrationFSType": FS_NAMES, "CRIUType": CRIU_NAMES}
_MESSAGES: dict[str, list[Field]] = {
    "IDMapType": [
        ("isuid", 1, REQUIRED, BOOL, ""),
        ("isgid", 2, REQUIRED, BOOL, ""),
        ("hostid", 3, REQUIRED, INT32, ""),
        ("nsid", 4, REQUIRED, INT32, ""),
        ("maprange", 5, REQUIRED, INT32, ""),
    ],
    "Config": [("key", 1, REQUIRED, STRING, ""), ("value", 2, REQUIRED, STRING, "")],
    "Device": [("name", 1, REQUIRED, STRING, ""), ("config", 2, REPEATED, MESSAGE, "Config")],
    "Snapshot": [
        ("name", 1, REQUIRED, STRING, ""),
        ("localConfig", 2, REPEATED, MESSAGE, "Config"),
        ("profiles", 3, REPEATED, STRING, ""),
        ("ephemeral", 4, REQUIRED, BOOL, ""),
        ("localDevices", 5, REPEATED, MESSAGE, "Device"),
        ("architecture", 6, REQUIRED, INT32, ""),
        ("stateful", 7, REQUIRED, BOOL, ""),
        ("creation_date", 8, OPTIONAL, INT64, ""),
        ("last_used_date", 9, OPTIONAL, INT64, ""),
        ("expiry_date", 10, OPTIONAL, INT64, ""),
        ("description", 11, OPTIONAL, STRING, ""),
    ],
    "rsyncFeatures": [
        ("xattrs", 1, OPTIONAL, BOOL, ""),
        ("delete", 2, OPTIONAL, BOOL, ""),
        ("compress", 3, OPTIONAL, BOOL, ""),
        ("bidirectional", 4, OPTIONAL, BOOL, ""),
    ],
    "zfsFeatures": [
        ("compress", 1, OPTIONAL, BOOL, ""),
        ("migration_header", 2, OPTIONAL, BOOL, ""),
        ("header_zvols", 3, OPTIONAL, BOOL, ""),
    ],
    "btrfsFeatures": [
        ("migration_header", 1, OPTIONAL, BOOL, ""),
        ("header_subvolumes", 2, OPTIONAL, BOOL, ""),
        ("header_subvolume_uuids", 3, OPTIONAL, BOOL, ""),
    ],
    "MigrationHeader": [
        ("fs", 1, REQUIRED, ENUM, "MigrationFSType"),
        ("criu", 2, OPTIONAL, ENUM, "CRIUType"),
        ("idmap", 3, REPEATED, MESSAGE, "IDMapType"),
        ("snapshotNames", 4, REPEATED, STRING, ""),
        ("snapshots", 5, REPEATED, MESSAGE, "Snapshot"),
        ("predump", 7, OPTIONAL, BOOL, ""),
        ("rsyncFeatures", 8, OPTIONAL, MESSAGE, "rsyncFeatures"),
        ("refresh", 9, OPTIONAL, BOOL, ""),
        ("zfsFeatures", 10, OPTIONAL, MESSAGE, "zfsFeatures"),
        ("volumeSize", 11, OPTIONAL, INT64, ""),
        ("btrfsFeatures", 12, OPTIONAL, MESSAGE, "btrfsFeatures"),
        ("indexHeaderVersion", 13, OPTIONAL, UINT32, ""),
    ],
    "MigrationControl": [
        ("success", 1, REQUIRED, BOOL, ""),
        ("message", 2, OPTIONAL, STRING, ""),
    ],
    "MigrationSync": [("finalPreDump", 1, REQUIRED, BOOL, "")],
}


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="stapes/migration/migrate.proto", package="migration", syntax="proto2"
    )
    for name, values in _ENUMS.items():
        enum = proto.enum_type.add(name=name)
        for number, value in enumerate(values):
            enum.value.add(name=value, number=number)
    for name, fields in _MESSAGES.items():
        msg = proto.message_type.add(name=name)
        for field_name, number, label, kind, type_name in fields:
            field = msg.field.add(name=field_name, number=number, label=label, type=kind)
            if type_name:
                field.type_name = ".migration." + type_name
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _class(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName("migration." + name))


MigrationHeader = _class("MigrationHeader")
MigrationControl = _class("MigrationControl")
Snapshot = _class("Snapshot")
IDMapType = _class("IDMapType")

RSYNC_FEATURES = ("xattrs", "delete", "compress", "bidirectional")
"""The rsync options this server can use on either end (all that Incus knows)."""


def rsync_features(header: Any) -> list[str]:
    """The rsync features a header offers (or accepts)."""
    if not header.HasField("rsyncFeatures"):
        return []
    features = header.rsyncFeatures
    return [name for name in RSYNC_FEATURES if getattr(features, name)]


def set_rsync_features(header: Any, features: list[str]) -> None:
    for name in RSYNC_FEATURES:
        setattr(header.rsyncFeatures, name, name in features)


BTRFS_FEATURES = ("migration_header", "header_subvolumes", "header_subvolume_uuids")


def set_btrfs_features(header: Any, features: list[str]) -> None:
    for name in BTRFS_FEATURES:
        setattr(header.btrfsFeatures, name, name in features)


def btrfs_features(header: Any) -> list[str]:
    if not header.HasField("btrfsFeatures"):
        return []
    return [name for name in BTRFS_FEATURES if getattr(header.btrfsFeatures, name)]
