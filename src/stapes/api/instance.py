"""Instance wire types named after Incus's: InstancePut, InstancesPost, InstancePost..."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from stapes.api.architecture import architecture_name
from stapes.api.base import WireModel, without_empty_keys

Devices = dict[str, dict[str, str]]


class InstanceSource(WireModel):
    type: str = "none"
    alias: str = ""
    fingerprint: str = ""
    properties: dict[str, str] = Field(default_factory=dict)
    server: str = ""
    protocol: str = ""
    certificate: str = ""
    """The image server's certificate (PEM), pinned when given."""
    secret: str = ""
    """An image secret from the server (a private image of an Incus-protocol server)."""
    allow_inconsistent: bool = False
    source: str = ""
    """For type copy: the instance (``c1``) or snapshot (``c1/snap0``) to copy."""
    project: str = ""
    instance_only: bool = False
    refresh: bool = False
    refresh_exclude_older: bool = False
    mode: str = "pull"
    """For type migration: pull (this server dials the source) or push (the source dials)."""
    operation: str = ""
    """For type migration, pull mode: the source's operation (https://HOST:PORT/1.0/operations/ID)."""
    secrets: dict[str, str] = Field(default_factory=dict)
    """For type migration, pull mode: the source operation's websocket secrets by name."""
    live: bool = False
    base_image: str = Field(default="", alias="base-image")


class InstancePut(WireModel):
    """The writable part of an instance (PUT replaces it, PATCH merges into it)."""

    architecture: str = ""
    config: dict[str, str] = Field(default_factory=dict)
    devices: Devices = Field(default_factory=dict)
    ephemeral: bool = False
    profiles: list[str] | None = None
    stateful: bool = False
    description: str = ""
    restore: str = ""
    """PUT only: the name of a snapshot to restore instead of an update."""

    @field_validator("architecture", mode="before")
    @classmethod
    def _architecture(cls, value: object) -> str:
        """A name, an alias or Incus's numeric id (pylxd sends "2"), stored as the name."""
        if not isinstance(value, str | int):
            raise ValueError("the architecture must be a name such as x86_64 or Incus's number")
        return architecture_name(value)

    @field_validator("devices", mode="before")
    @classmethod
    def _unset_empty(cls, value: object) -> object:
        return without_empty_keys(value)


class InstanceRebuildPost(WireModel):
    """Body of POST /1.0/instances/NAME/rebuild."""

    source: InstanceSource = Field(default_factory=InstanceSource)


class InstancesPost(InstancePut):
    """Body of POST /1.0/instances."""

    name: str = ""
    type: Literal["container", "virtual-machine", ""] = ""
    source: InstanceSource = Field(default_factory=InstanceSource)
    start: bool = False
    instance_type: str = ""


class InstancePostTarget(WireModel):
    """Push mode: where the migration source dials (the target's operation and secrets)."""

    certificate: str = ""
    operation: str = ""
    secrets: dict[str, str] = Field(default_factory=dict)


class InstancePost(WireModel):
    """Body of POST /1.0/instances/{name}: rename, move to another pool or project, or start a
    migration to another server (``migration``, pushed to ``target`` if given)."""

    name: str = ""
    migration: bool = False
    live: bool = False
    target: InstancePostTarget | None = None
    allow_inconsistent: bool = False
    pool: str = ""
    """Move to this storage pool (instance_pool_move)."""
    project: str = ""
    """Move to this project (instance_project_move)."""
    instance_only: bool = False


class InstanceSnapshotsPost(WireModel):
    name: str = ""
    stateful: bool = False
    expires_at: str | None = None
    """None: snapshots.expiry applies; Go's zero time: never expires."""


class InstanceSnapshotPost(WireModel):
    """Body of POST /1.0/instances/{name}/snapshots/{snap}: rename."""

    name: str = ""
    migration: bool = False
    live: bool = False


class InstanceSnapshotPut(WireModel):
    expires_at: str | None = None
    """None (left out) keeps the snapshot's expiry, as Incus; Go's zero time clears it."""


class InstanceConsolePost(WireModel):
    width: int = 0
    height: int = 0
    type: str = "console"
    force: bool = False


class InstanceStatePut(WireModel):
    action: str
    timeout: int = -1
    force: bool = False
    stateful: bool = False


class InstancesPut(WireModel):
    """PUT /1.0/instances: a state change for every instance of the project."""

    state: InstanceStatePut | None = None


class InstanceExecPost(WireModel):
    command: list[str]
    environment: dict[str, str] = Field(default_factory=dict)
    wait_for_websocket: bool = Field(default=False, alias="wait-for-websocket")
    record_output: bool = Field(default=False, alias="record-output")
    interactive: bool = False
    width: int = 0
    height: int = 0
    user: int = 0
    group: int = 0
    cwd: str = ""
