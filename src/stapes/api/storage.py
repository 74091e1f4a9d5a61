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


class StorageVolumesPost(StorageVolumePut):
    name: str
    type: str = "custom"
    content_type: str = "filesystem"
    source: StorageVolumeSource = Field(default_factory=StorageVolumeSource)


class StorageVolumePost(WireModel):
    """Rename, or move to another pool or project."""

    name: str = ""
    pool: str = ""
    project: str = ""
    volume_only: bool = False


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
