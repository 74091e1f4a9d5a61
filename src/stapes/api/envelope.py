"""Incus response envelopes, operations and events as plain JSON builders."""

from __future__ import annotations

from typing import Any

from stapes.api.base import StatusCode


def sync_envelope(metadata: Any, status: StatusCode = StatusCode.SUCCESS) -> dict[str, Any]:
    return {
        "type": "sync",
        "status": status.text,
        "status_code": int(status),
        "operation": "",
        "error_code": 0,
        "error": "",
        "metadata": metadata,
    }


def async_envelope(operation: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "async",
        "status": StatusCode.OPERATION_CREATED.text,
        "status_code": int(StatusCode.OPERATION_CREATED),
        "operation": f"/1.0/operations/{operation['id']}",
        "error_code": 0,
        "error": "",
        "metadata": operation,
    }


def error_envelope(code: int, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "status": "",
        "status_code": 0,
        "operation": "",
        "error_code": code,
        "error": message,
        "metadata": None,
    }


def event_envelope(
    kind: str, metadata: Any, timestamp: str, project: str = "default"
) -> dict[str, Any]:
    return {
        "type": kind,
        "timestamp": timestamp,
        "metadata": metadata,
        "location": "none",
        "project": project,
    }
