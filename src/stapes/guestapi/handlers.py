"""The routes of one instance's /dev/incus/sock, answered as Incus answers them: JSON bodies
for lists and objects, raw bytes for values, and Go's plain-text errors (``http.Error``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from stapes.api.base import StatusCode
from stapes.api.envelope import error_envelope, go_json
from stapes.api.errors import StapesError
from stapes.api.lifecycle import InstanceAction
from stapes.api.urls import instance_url
from stapes.config.keys import value_of
from stapes.config.validate import parse_bool
from stapes.db import instances as q
from stapes.guestapi.feed import GUEST_EVENT_TYPES
from stapes.host.idmap import IdMap
from stapes.instance import cloudinit
from stapes.instance.power import READY_KEY
from stapes.runtime.events import pump, requestor
from stapes.server.image_download import export_response

if TYPE_CHECKING:
    from stapes.guestapi.service import GuestApi

log = logging.getLogger(__name__)

GuestHandler = Callable[["GuestRequest"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Guest:
    """What an instance's socket app knows: the service, and which instance it serves."""

    api: GuestApi
    project: str
    name: str


GUEST = web.AppKey("guest", Guest)


@dataclass
class GuestRequest:
    request: web.Request
    guest: Guest
    row: q.InstanceRow
    config: dict[str, str]
    devices: dict[str, dict[str, str]]


class GuestError(Exception):
    """A plain-text error, as Go's http.Error writes it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def text_error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status,
        text=message + "\n",
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def _json(value: Any) -> web.Response:
    return web.Response(body=go_json(value).encode(), content_type="application/json")


def _raw(value: str) -> web.Response:
    return web.Response(body=value.encode(), content_type="application/octet-stream")


def peer_uid(request: web.Request) -> int | None:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", raw)[1])


def root_uid(row: q.InstanceRow) -> int:
    """The host uid of the container's root (0 for a privileged container)."""
    current = IdMap.from_volatile(row.config.get("volatile.idmap.current", "[]"))
    return current.root_uid if current is not None else 0


def _enabled(req: GuestRequest) -> None:
    if not parse_bool(value_of(req.config, "security.guestapi")):
        raise GuestError(403, "not authorized")


def _guest_key(key: str) -> bool:
    return key.startswith(("user.", "cloud-init."))


async def get_root(req: GuestRequest) -> web.StreamResponse:
    return _json(["/1.0"])


async def api_1_0(req: GuestRequest) -> web.StreamResponse:
    method = req.request.method
    if method == "GET":
        ready = parse_bool(req.row.config.get(READY_KEY, "false"))
        return _json(
            {
                "state": (StatusCode.READY if ready else StatusCode.STARTED).text,
                "api_version": "1.0",
                "instance_type": req.row.type,
                "location": socket.gethostname(),
            }
        )
    if method != "PATCH":
        raise GuestError(405, f'method "{method}" not allowed')
    _enabled(req)
    try:
        body = json.loads(await req.request.read() or b"{}")
    except ValueError as exc:
        raise GuestError(400, f"Invalid JSON: {exc}") from None
    wanted = body.get("state", "") if isinstance(body, dict) else ""
    if not isinstance(wanted, str) or wanted not in ("Started", "Ready"):
        raise GuestError(400, f"Invalid state {json.dumps(wanted)}")
    await req.guest.api.set_ready(req.row, wanted == "Ready")
    if wanted == "Ready":
        requestor.set({})  # the guest, not an API client (this request's context only)
        req.guest.api.events.lifecycle(
            InstanceAction.READY,
            instance_url(req.row.name, req.row.project),
            project=req.row.project,
            name=req.row.name,
        )
    return _raw("")


async def config_list(req: GuestRequest) -> web.StreamResponse:
    _enabled(req)
    return _json(["/1.0/config/" + key for key in req.config if _guest_key(key)])


async def config_key(req: GuestRequest) -> web.StreamResponse:
    _enabled(req)
    key = req.request.match_info["key"]
    if not _guest_key(key):
        raise GuestError(403, "not authorized")
    if key not in req.config:
        raise GuestError(404, "not found")
    return _raw(req.config[key])


async def meta_data(req: GuestRequest) -> web.StreamResponse:
    _enabled(req)
    return _raw(cloudinit.guest_meta_data(req.row.name, req.config))


async def devices(req: GuestRequest) -> web.StreamResponse:
    """The expanded devices; a NIC without hwaddr shows the one it was given, so that
    cloud-init can find it whatever the guest named it."""
    _enabled(req)
    shown = {name: dict(device) for name, device in req.devices.items()}
    for name, device in shown.items():
        given = req.row.config.get(f"volatile.{name}.hwaddr", "")
        if device.get("type") == "nic" and not device.get("hwaddr") and given:
            device["hwaddr"] = given
    return _json({name: dict(sorted(shown[name].items())) for name in sorted(shown)})  # Go's order


async def image_export(req: GuestRequest) -> web.StreamResponse:
    """A public or cached image of the instance's project (security.guestapi.images)."""
    _enabled(req)
    if not parse_bool(value_of(req.config, "security.guestapi.images")):
        raise GuestError(403, "not authorized")
    fingerprint = req.request.match_info["fingerprint"]
    images = req.guest.api.images
    try:
        row = images.get(req.row.project, fingerprint)
        if not (row.public or row.cached):
            raise web.HTTPNotFound
    except (StapesError, web.HTTPNotFound):
        body = go_json(error_envelope(404, f'Image "{fingerprint}" not found'))
        return web.Response(
            status=404,
            body=body.encode(),
            content_type="application/json",
            headers={"X-Content-Type-Options": "nosniff"},
        )
    return export_response(images, row)


async def events(req: GuestRequest) -> web.StreamResponse:
    """A websocket of the instance's config and device events (``?type=`` picks), or without
    the upgrade a stream of JSON lines."""
    _enabled(req)
    request = req.request
    wanted = [t for t in request.query.get("type", "").split(",") if t]
    types = frozenset(t for t in (wanted or GUEST_EVENT_TYPES) if t in GUEST_EVENT_TYPES)
    feed = req.guest.api.feed
    listener = feed.subscribe((req.guest.project, req.guest.name), types)
    try:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse(heartbeat=30)
            await ws.prepare(request)

            async def send(text: str) -> None:
                await ws.send_str(text)

            response: web.StreamResponse = ws
            reader: asyncio.Future[Any] = asyncio.ensure_future(_drain(ws))
        else:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)

            async def send(text: str) -> None:
                await response.write(text.encode())

            reader = asyncio.get_running_loop().create_future()  # only the peer's hang-up ends it
        try:
            await pump(listener.queue, reader, send)
        finally:
            reader.cancel()
            if isinstance(response, web.WebSocketResponse):
                with contextlib.suppress(Exception):
                    await response.close()
        return response
    finally:
        feed.unsubscribe(listener)


async def _drain(ws: web.WebSocketResponse) -> None:
    async for _ in ws:
        pass


async def not_found(req: GuestRequest) -> web.StreamResponse:
    raise GuestError(404, "404 page not found")


ROUTES: list[tuple[str, GuestHandler]] = [
    ("/", get_root),
    ("/1.0", api_1_0),
    ("/1.0/config", config_list),
    ("/1.0/config/{key}", config_key),
    ("/1.0/meta-data", meta_data),
    ("/1.0/events", events),
    ("/1.0/images/{fingerprint}/export", image_export),
    ("/1.0/devices", devices),
    ("/{tail:.*}", not_found),
]


def bind(handler: GuestHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler that first checks who asks: the socket names the instance, and the
    peer must be its root."""

    async def handle(request: web.Request) -> web.StreamResponse:
        guest = request.app[GUEST]
        try:
            row = q.find_instance(guest.api.db, guest.project, guest.name)
            if row is None:
                raise GuestError(500, "pid not in container?")
            if peer_uid(request) != root_uid(row):
                raise GuestError(401, "Access denied for non-root user")
            config, devs = guest.api.expand(row)
            return await handler(GuestRequest(request, guest, row, config, devs))
        except GuestError as exc:
            return text_error(exc.status, exc.message)
        except Exception:
            log.exception("guest API: %s %s of %s failed", request.method, request.path, guest.name)
            return text_error(500, "internal server error")

    return handle
