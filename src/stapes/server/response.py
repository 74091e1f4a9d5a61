"""Handlers return values; this module alone turns them (and errors) into Incus envelopes."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import pydantic
from aiohttp import web

from stapes.api.envelope import async_envelope, error_envelope, go_json_bytes, sync_envelope
from stapes.api.errors import StapesError
from stapes.runtime.operations import Operation

log = logging.getLogger(__name__)


@dataclass
class Sync:
    metadata: Any = None
    etag: Any = None
    """When set, the value the ETag header is computed from."""
    status: int = 200
    location: str = ""


def created(location: str) -> Sync:
    """What Incus answers a create or rename that names its result: 201 and a Location."""
    return Sync(status=201, location=location)


@dataclass
class Async:
    operation: Operation


Result = Sync | Async | web.StreamResponse


def etag_of(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=go_json_bytes(body),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def render(result: Result) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if isinstance(result, Async):
        op = result.operation
        return _json(async_envelope(op.render()), 202, {"Location": f"/1.0/operations/{op.id}"})
    headers: dict[str, str] = {}
    if result.etag is not None:
        headers["ETag"] = f'"{etag_of(result.etag)}"'
    if result.location:
        headers["Location"] = result.location
    return _json(sync_envelope(result.metadata), result.status, headers)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return _json(error_envelope(status, message), status, headers)


def describe_validation_error(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "Invalid request: " + "; ".join(parts)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except StapesError as exc:
        return error_response(exc.status, exc.message, getattr(exc, "headers", None))
    except pydantic.ValidationError as exc:
        return error_response(400, describe_validation_error(exc))
    except web.HTTPNotFound:
        return error_response(404, "not found")
    except web.HTTPMethodNotAllowed:
        return error_response(405, "method not allowed")
    except web.HTTPException as exc:
        return error_response(exc.status, exc.reason or "error")
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(500, "Internal error, see the stapesd log")
