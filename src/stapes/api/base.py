"""Model base for wire types: Incus JSON field names, one unknown-field policy."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class WireModel(BaseModel):
    """Requests ignore unknown fields (newer clients send more than we know), and a JSON null
    means the field's default, as Go clients send nil maps and slices as null."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


class StatusCode(IntEnum):
    """Incus status codes for operations, instances and envelopes."""

    OPERATION_CREATED = 100
    STARTED = 101
    STOPPED = 102
    RUNNING = 103
    CANCELLING = 104
    PENDING = 105
    STARTING = 106
    STOPPING = 107
    ABORTING = 108
    FREEZING = 109
    FROZEN = 110
    THAWED = 111
    ERROR = 112
    READY = 113
    SUCCESS = 200
    FAILURE = 400
    CANCELLED = 401

    @property
    def text(self) -> str:
        return _STATUS_TEXT[self]


_STATUS_TEXT = {
    StatusCode.OPERATION_CREATED: "Operation created",
    StatusCode.STARTED: "Started",
    StatusCode.STOPPED: "Stopped",
    StatusCode.RUNNING: "Running",
    StatusCode.CANCELLING: "Cancelling",
    StatusCode.PENDING: "Pending",
    StatusCode.STARTING: "Starting",
    StatusCode.STOPPING: "Stopping",
    StatusCode.ABORTING: "Aborting",
    StatusCode.FREEZING: "Freezing",
    StatusCode.FROZEN: "Frozen",
    StatusCode.THAWED: "Thawed",
    StatusCode.ERROR: "Error",
    StatusCode.READY: "Ready",
    StatusCode.SUCCESS: "Success",
    StatusCode.FAILURE: "Failure",
    StatusCode.CANCELLED: "Cancelled",
}


def without_empty_keys(devices: Any) -> Any:
    """A device key set to "" is unset (``config device unset`` sends it so), as Incus keeps
    devices; anything that is not a map of maps is left for validation to refuse."""
    if not isinstance(devices, dict):
        return devices
    return {
        name: {k: v for k, v in device.items() if v != ""} if isinstance(device, dict) else device
        for name, device in devices.items()
    }
