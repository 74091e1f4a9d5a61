"""Endpoint and Action: how a handler module declares its routes for server/routes.py."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pydantic
from aiohttp import web

from stapes.api.errors import BadRequest, NotFound, PayloadTooLarge, PreconditionFailed
from stapes.config.server_keys import server_value
from stapes.config.validate import parse_bool
from stapes.db.instances import InstanceRow
from stapes.db.server_config import get_config
from stapes.runtime import events
from stapes.server.auth import authenticate, check_public, require_trusted
from stapes.server.oidc_cookies import send_new_cookies
from stapes.server.response import Result, etag_of, render
from stapes.server.state import STATE, State

Handler = Callable[[web.Request], Awaitable[Result]]
M = TypeVar("M", bound=pydantic.BaseModel)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Action:
    handler: Handler
    allow_untrusted: bool = False
    allow_metrics: bool = False
    """Open to certificates of type metrics too."""


@dataclass(frozen=True)
class Endpoint:
    path: str
    """Below /1.0 (``""`` is /1.0 itself); ``{name}`` segments are aiohttp match_info keys."""
    get: Action | None = None
    put: Action | None = None
    post: Action | None = None
    patch: Action | None = None
    delete: Action | None = None
    head: Action | None = None

    def actions(self) -> dict[str, Action]:
        found = {
            "GET": self.get,
            "PUT": self.put,
            "POST": self.post,
            "PATCH": self.patch,
            "DELETE": self.delete,
            "HEAD": self.head,
        }
        return {method: action for method, action in found.items() if action is not None}


def wrap(action: Action) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        identity = await authenticate(request)
        if state(request).events.listens_for("logging"):
            log.debug(
                "Handling API request",
                extra={
                    "context": {
                        "ip": identity.peer.address if identity.peer else "@",
                        "method": request.method,
                        "protocol": "unix" if identity.method == "unix" else identity.method,
                        "url": request.path_qs,
                        "username": identity.name,
                    }
                },
            )
        if identity.peer is not None and identity.peer.metrics_only and not action.allow_metrics:
            raise NotFound("Only /1.0/metrics is served on core.metrics_address")
        if action.allow_metrics and not metrics_authenticated(state(request)):
            pass  # core.metrics_authentication=false: metrics are open to every client
        elif not action.allow_untrusted:
            require_trusted(request, metrics=action.allow_metrics)
        else:
            check_public(request, identity)
        if identity.method in ("tls", "oidc"):
            events.requestor.set(
                {
                    "username": identity.name,
                    "protocol": "tls",
                    "address": state(request).http_policy.client_address(
                        identity.peer.address, request.headers.get("X-Forwarded-For", "")
                    )
                    if identity.peer
                    else "",
                }
            )
        forwarder = state(request).forwarder
        if forwarder is not None:
            address = await forwarder.target(request)
            if address:
                return await forwarder.forward(request, address)
        response = render(await action.handler(request))
        send_new_cookies(request, response)
        return response

    return handle


def metrics_authenticated(st: State) -> bool:
    return parse_bool(server_value(get_config(st.db), "core.metrics_authentication"))


def state(request: web.Request) -> State:
    return request.app[STATE]


def project_of(request: web.Request) -> str:
    return request.query.get("project", "") or "default"


def instance_row(request: web.Request) -> InstanceRow:
    """The instance the URL names ({name}, in the request's project); 404 when missing."""
    return state(request).instances.get(project_of(request), request.match_info["name"])


def incus_header(request: web.Request, name: str) -> str:
    """An ``X-Incus-NAME`` request header (or the ``X-LXD-`` one older clients send)."""
    return request.headers.get(f"X-Incus-{name}", request.headers.get(f"X-LXD-{name}", ""))


async def save_body(request: web.Request, directory: Path) -> Path:
    """Store an uploaded body (a backup tarball) in a new file below ``directory``; 400 when it
    is empty."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"upload-{uuid.uuid4().hex}"
    size = 0
    try:
        with path.open("wb") as f:
            while chunk := await request.content.read(1 << 20):
                f.write(chunk)
                size += len(chunk)
        if size == 0:
            raise BadRequest("The upload is empty: send the backup tarball as the request body")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def recursion(request: web.Request) -> int:
    try:
        return int(request.query.get("recursion", "0"))
    except ValueError:
        raise BadRequest("recursion must be an integer") from None


def flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


MAX_JSON_BODY = 16 * 1024 * 1024
"""The largest JSON request body read into memory (uploads are streamed, never buffered)."""


_BODY = "stapes.body"


async def body_bytes(request: web.Request) -> bytes:
    """The request's body, read whole but never past MAX_JSON_BODY, once (kept for whoever
    reads it next: a forwarded request's placement reads it before the handler)."""
    kept = request.get(_BODY)
    if isinstance(kept, bytes):
        return kept
    too_large = PayloadTooLarge(
        f"Request body too large: JSON bodies are at most {MAX_JSON_BODY} bytes"
    )
    if (request.content_length or 0) > MAX_JSON_BODY:
        raise too_large
    chunks, size = [], 0
    while chunk := await request.content.read(1 << 20):
        size += len(chunk)
        if size > MAX_JSON_BODY:
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    request[_BODY] = body
    return body


async def json_body(request: web.Request) -> object:
    """The request's JSON body (None when empty), read whole but never past MAX_JSON_BODY."""
    raw = await body_bytes(request)
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"Invalid JSON in request body: {exc}") from None
    except UnicodeDecodeError:
        raise BadRequest("Invalid JSON in request body: it is not UTF-8") from None


async def body_as(request: web.Request, model: type[M]) -> M:
    data = await json_body(request)
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    return model.model_validate(data)


async def patched(
    request: web.Request, current: dict[str, Any], maps: tuple[str, ...], model: type[M]
) -> M:
    """PATCH semantics: the body's fields replace the current ones, except the ``maps``
    (config, devices, properties) whose keys are merged into the current map."""
    patch = await json_body(request)
    if not isinstance(patch, dict):
        raise BadRequest("Request body must be a JSON object")
    merged = {**current, **patch}
    for key in maps:
        if isinstance(patch.get(key), dict):
            merged[key] = {**current[key], **patch[key]}
    return model.model_validate(merged)


def check_etag(request: web.Request, current: object) -> None:
    """Honour If-Match: a mismatch is 412, as in Incus."""
    wanted = request.headers.get("If-Match", "").strip().strip('"')
    if wanted and wanted != etag_of(current):
        raise PreconditionFailed("ETag doesn't match")
