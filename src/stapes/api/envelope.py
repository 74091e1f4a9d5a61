"""Incus response envelopes, operations and events as plain JSON builders."""

from __future__ import annotations

from typing import Any

import orjson

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
    kind: str, metadata: Any, timestamp: str, project: str = "default", location: str = "none"
) -> dict[str, Any]:
    return {
        "type": kind,
        "timestamp": timestamp,
        "metadata": metadata,
        "location": location,
        "project": project,
    }


_GO_ESCAPES = (
    (b"&", b"\\u0026"),
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)
"""What Go's encoder escapes, replaced in the encoded bytes."""


def go_json_bytes(value: Any) -> bytes:
    """JSON as Go's encoding/json writes it (what Incus answers and its clients may compare):
    no blanks after separators, UTF-8 kept, HTML characters and line separators escaped, and
    a newline at the end (json.Encoder.Encode). Encoded by orjson: the standard library's
    encoder took ~10x longer on large lists (62 ms against 6 ms for 7.7 MB of snapshots)."""
    data = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)
    separators = b"\xe2" in data  # U+2028 and U+2029 start so; a 1-byte search is ~80x faster
    for char, escaped in _GO_ESCAPES:
        if (separators or len(char) == 1) and char in data:
            data = data.replace(char, escaped)
    return data


def go_json(value: Any) -> str:
    """go_json_bytes() as text."""
    return go_json_bytes(value).decode()
