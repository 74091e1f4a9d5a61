"""Storage pool and volume wire types."""

from __future__ import annotations

from pydantic import Field

from stapes.api.base import WireModel


class StoragePoolPut(WireModel):
    config: dict[str, str] = Field(default_factory=dict)
    description: str = ""


class StoragePoolsPost(StoragePoolPut):
    name: str
    driver: str


class StorageVolumePut(WireModel):
    config: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    restore: str = ""


class StorageVolumeSource(WireModel):
    """Where a new volume's content comes from: nothing, another volume (``copy``), or a
    backup upload (``backup``)."""

    type: str = ""
    name: str = ""
    pool: str = ""
    project: str = ""
    volume_only: bool = False
    refresh: bool = False
    mode: str = "pull"
    """For type migration: pull (this server dials the source) or push (the source dials)."""
    operation: str = ""
    certificate: str = ""
    secrets: dict[str, str] = Field(default_factory=dict)


class StorageVolumesPost(StorageVolumePut):
    name: str
    type: str = "custom"
    content_type: str = "filesystem"
    source: StorageVolumeSource = Field(default_factory=StorageVolumeSource)


class StorageVolumePostTarget(WireModel):
    """Push mode: the target's operation and secrets the migration source dials."""

    certificate: str = ""
    operation: str = ""
    secrets: dict[str, str] = Field(default_factory=dict)


class StorageVolumePost(WireModel):
    """Rename, or move to another pool or project."""

    name: str = ""
    pool: str = ""
    project: str = ""
    volume_only: bool = False
    migration: bool = False
    target: StorageVolumePostTarget | None = None


class StorageVolumeSnapshotsPost(WireModel):
    name: str = ""
    expires_at: str | None = None


class StorageVolumeSnapshotPut(WireModel):
    description: str = ""
    expires_at: str | None = None


class StorageVolumeSnapshotPost(WireModel):
    name: str


class RecoverPost(WireModel):
    """POST /internal/recover/validate and /import: pools the database lost, to mount and
    scan as well as the known ones."""

    pools: list[StoragePoolsPost] = Field(default_factory=list)
