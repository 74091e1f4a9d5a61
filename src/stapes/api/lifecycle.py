"""Lifecycle event actions: the wire names Incus uses, one enum per entity."""

from __future__ import annotations

from enum import StrEnum


class InstanceAction(StrEnum):
    CREATED = "instance-created"
    DELETED = "instance-deleted"
    STARTED = "instance-started"
    STOPPED = "instance-stopped"
    SHUTDOWN = "instance-shutdown"
    RESTARTED = "instance-restarted"
    READY = "instance-ready"
    PAUSED = "instance-paused"
    RESUMED = "instance-resumed"
    RENAMED = "instance-renamed"
    MIGRATED = "instance-migrated"
    UPDATED = "instance-updated"
    EXEC = "instance-exec"
    RESTORED = "instance-restored"
    SNAPSHOT_CREATED = "instance-snapshot-created"
    SNAPSHOT_DELETED = "instance-snapshot-deleted"
    SNAPSHOT_RENAMED = "instance-snapshot-renamed"
    SNAPSHOT_UPDATED = "instance-snapshot-updated"
    BACKUP_CREATED = "instance-backup-created"
    BACKUP_DELETED = "instance-backup-deleted"
    BACKUP_RENAMED = "instance-backup-renamed"
    BACKUP_RETRIEVED = "instance-backup-retrieved"


class ImageAction(StrEnum):
    CREATED = "image-created"
    DELETED = "image-deleted"
    UPDATED = "image-updated"


class ImageAliasAction(StrEnum):
    CREATED = "image-alias-created"
    DELETED = "image-alias-deleted"
    UPDATED = "image-alias-updated"
    RENAMED = "image-alias-renamed"


class ProjectAction(StrEnum):
    CREATED = "project-created"
    DELETED = "project-deleted"
    UPDATED = "project-updated"
    RENAMED = "project-renamed"


class ProfileAction(StrEnum):
    CREATED = "profile-created"
    DELETED = "profile-deleted"
    UPDATED = "profile-updated"
    RENAMED = "profile-renamed"


class NetworkAction(StrEnum):
    CREATED = "network-created"
    DELETED = "network-deleted"
    UPDATED = "network-updated"
    RENAMED = "network-renamed"


class NetworkForwardAction(StrEnum):
    CREATED = "network-forward-created"
    DELETED = "network-forward-deleted"
    UPDATED = "network-forward-updated"


class NetworkAclAction(StrEnum):
    CREATED = "network-acl-created"
    DELETED = "network-acl-deleted"
    UPDATED = "network-acl-updated"
    RENAMED = "network-acl-renamed"


class NetworkZoneAction(StrEnum):
    CREATED = "network-zone-created"
    DELETED = "network-zone-deleted"
    UPDATED = "network-zone-updated"
    RECORD_CREATED = "network-zone-record-created"
    RECORD_DELETED = "network-zone-record-deleted"
    RECORD_UPDATED = "network-zone-record-updated"


class CertificateAction(StrEnum):
    CREATED = "certificate-created"
    DELETED = "certificate-deleted"
    UPDATED = "certificate-updated"


class WarningAction(StrEnum):
    ACKNOWLEDGED = "warning-acknowledged"
    DELETED = "warning-deleted"
    RESET = "warning-reset"


class StoragePoolAction(StrEnum):
    CREATED = "storage-pool-created"
    DELETED = "storage-pool-deleted"
    UPDATED = "storage-pool-updated"


class StorageVolumeAction(StrEnum):
    CREATED = "storage-volume-created"
    DELETED = "storage-volume-deleted"
    UPDATED = "storage-volume-updated"
    RENAMED = "storage-volume-renamed"
    RESTORED = "storage-volume-restored"
    SNAPSHOT_CREATED = "storage-volume-snapshot-created"
    SNAPSHOT_DELETED = "storage-volume-snapshot-deleted"
    SNAPSHOT_RENAMED = "storage-volume-snapshot-renamed"
    SNAPSHOT_UPDATED = "storage-volume-snapshot-updated"
    BACKUP_CREATED = "storage-volume-backup-created"
    BACKUP_DELETED = "storage-volume-backup-deleted"
    BACKUP_RENAMED = "storage-volume-backup-renamed"
    BACKUP_RETRIEVED = "storage-volume-backup-retrieved"


class ClusterAction(StrEnum):
    ENABLED = "cluster-enabled"
    MEMBER_ADDED = "cluster-member-added"
    MEMBER_UPDATED = "cluster-member-updated"
    TOKEN_CREATED = "cluster-token-created"
    MEMBER_RENAMED = "cluster-member-renamed"
    MEMBER_REMOVED = "cluster-member-removed"
    GROUP_CREATED = "cluster-group-created"
    GROUP_UPDATED = "cluster-group-updated"
    GROUP_RENAMED = "cluster-group-renamed"
    GROUP_DELETED = "cluster-group-deleted"
