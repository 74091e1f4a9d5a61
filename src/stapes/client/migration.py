"""Copying and moving between two servers, as the incus client drives it: the source starts a
migration operation, the target creates with ``source.type=migration``, and the two daemons
move the data between them, one dialing the other (pull: the target dials the source; push:
the source dials the target), or through this client (relay: it joins their websockets).

Everything here is the public API of both daemons; nothing is special to Stapes."""

from __future__ import annotations

import contextlib
import select
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import websocket

from stapes.api.errors import RemoteError
from stapes.client.connection import HttpsTarget
from stapes.client.instance_server import InstanceServer
from stapes.client.operation import RemoteOperation

MODES = ("pull", "push", "relay")
SOURCE_ERROR_WAIT = 5.0
"""Seconds to wait for the source's own error once the target failed."""
CHANNELS = ("control", "fs", "criu")
"""The websockets a migration may have (criu: a running instance's state)."""

CLIENT_WRITABLE_VOLATILE = ("volatile.base_image",)
"""The daemon-owned keys a copy takes with it (the rest describe the source itself)."""


@dataclass
class Endpoint:
    """One server of a migration: its client, and how the other one reaches it."""

    server: InstanceServer
    addresses: list[str] = field(default_factory=list)
    certificate: str = ""

    @classmethod
    def of(cls, server: InstanceServer) -> Endpoint:
        env = server.server().get("environment") or {}
        target = server.conn.target
        addresses = [target.address] if isinstance(target, HttpsTarget) else []
        addresses += [a for a in env.get("addresses") or [] if a not in addresses]
        return cls(server, addresses, str(env.get("certificate") or ""))

    def operation_url(self, op: RemoteOperation, role: str) -> str:
        if not self.addresses:
            raise RemoteError(
                f"The {role} server does not listen on the network (core.https_address is "
                "unset), so the other server can't reach it: set it, or use another --mode",
                400,
            )
        return f"https://{self.addresses[0]}/1.0/operations/{quote(op.id)}"


def _secrets(op: RemoteOperation) -> dict[str, str]:
    return {k: str(v) for k, v in (op.metadata.get("metadata") or {}).items() if k in CHANNELS}


def migrate(
    source: Endpoint,
    target: Endpoint,
    start_source: Callable[[dict[str, Any] | None], RemoteOperation],
    start_target: Callable[[dict[str, Any]], RemoteOperation],
    mode: str,
    label: str,
) -> None:
    """Run one migration: ``start_source(push_target)`` makes the source's operation (a push
    target: where to dial); ``start_target(source_fields)`` makes the target's."""
    if mode not in MODES:
        raise RemoteError(f"Unknown --mode {mode!r}: use pull, push or relay", 400)
    if mode == "pull":
        src_op = start_source(None)
        try:
            dst_op = start_target(
                {
                    "mode": "pull",
                    "operation": source.operation_url(src_op, "source"),
                    "certificate": source.certificate,
                    "secrets": _secrets(src_op),
                }
            )
        except BaseException:
            _cancel(src_op)
            raise
        _wait_both(dst_op, src_op, label)
        return
    dst_op = start_target({"mode": "push"})
    if mode == "push":
        src_op = start_source(
            {
                "operation": target.operation_url(dst_op, "target"),
                "certificate": target.certificate,
                "secrets": _secrets(dst_op),
            }
        )
        _wait_both(dst_op, src_op, label)
        return
    src_op = start_source(None)
    names = [name for name in CHANNELS if name in _secrets(src_op)]
    relays = [_Relay(_dial(src_op, name), _dial(dst_op, name)) for name in names]
    try:
        _wait_both(dst_op, src_op, label)
    finally:
        for relay in relays:
            relay.close()


def _dial(op: RemoteOperation, name: str) -> websocket.WebSocket:
    secret = _secrets(op).get(name, "")
    return op.conn.websocket(f"/1.0/operations/{quote(op.id)}/websocket?secret={quote(secret)}")


def _cancel(op: RemoteOperation) -> None:
    try:
        op.conn.request("DELETE", f"/1.0/operations/{op.id}")
    except RemoteError:
        pass  # not cancellable: it ends by itself when nobody dials it


def _wait_both(target_op: RemoteOperation, source_op: RemoteOperation, label: str) -> None:
    """Wait for the target (reporting its progress), then the source."""
    show = sys.stderr.isatty()
    last = ""
    try:
        while True:
            current = target_op.wait(0.5)
            if current.get("status_code", 0) >= 200:
                break
            progress = (current.get("metadata") or {}).get("fs_progress") or ""
            if show and progress and progress != last:
                sys.stderr.write(f"\r{label}: {progress}\033[K")
                last = progress
    except RemoteError as exc:
        raise _with_source_error(exc, source_op) from None
    finally:
        if show and last:
            sys.stderr.write("\r\033[K")
    try:
        source_op.wait()
    except RemoteError as exc:
        if "not found" not in exc.message:  # finished a while ago and forgotten
            raise


def _with_source_error(failed: RemoteError, source_op: RemoteOperation) -> RemoteError:
    """The target's error, and the source's beside it when the source failed too: a target
    that saw its stream cut short says only that, the source says why."""
    try:
        source_op.wait(SOURCE_ERROR_WAIT)
    except RemoteError as exc:
        if exc.message and exc.message != failed.message and "not found" not in exc.message:
            return RemoteError(f"{failed.message} (the source: {exc.message})", failed.status)
    return failed


class _Relay:
    """Both directions between a source's and a target's websocket, frame by frame (binary
    data and the empty text frames that end each stream). Each socket is read by one pump
    only: a close handshake run from the other thread would read, and drop, frames its pump
    was still to pass on (a stream's last bytes or its barrier). And each is used by one
    thread at a time (its lock): a TLS connection must not be read in one thread while it is
    written in another (OpenSSL forbids concurrent use of one SSL object), so a pump waits
    for a socket to be readable without its lock and reads a message with it."""

    def __init__(self, a: websocket.WebSocket, b: websocket.WebSocket) -> None:
        self.sockets = (a, b)
        self.locks = {id(a): threading.Lock(), id(b): threading.Lock()}
        self.threads = [
            threading.Thread(target=self._pump, args=(a, b), daemon=True),
            threading.Thread(target=self._pump, args=(b, a), daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _pump(self, src: websocket.WebSocket, dst: websocket.WebSocket) -> None:
        reading, writing = self.locks[id(src)], self.locks[id(dst)]
        sock = src.sock
        try:
            while sock is not None:
                with reading:
                    buffered = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
                if not buffered:
                    select.select([sock], [], [])
                with reading:
                    opcode, data = src.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
                with writing:
                    dst.send(data, opcode)
        except (websocket.WebSocketException, OSError, ValueError):
            pass  # ValueError: select on a socket closed meanwhile
        with contextlib.suppress(websocket.WebSocketException, OSError), writing:
            dst.send_close()  # the end passed on; dst's answer ends the other pump

    def close(self) -> None:
        for ws in self.sockets:
            lock = self.locks[id(ws)]
            if not lock.acquire(timeout=5):  # a pump reads a message that never ends
                continue  # the shutdown below ends that read
            try:
                with contextlib.suppress(websocket.WebSocketException, OSError):
                    ws.send_close()
            finally:
                lock.release()
        deadline = time.monotonic() + 5
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for ws in self.sockets:
            with contextlib.suppress(websocket.WebSocketException, OSError):
                ws.shutdown()  # type: ignore[no-untyped-call]


def instance_body(
    source: InstanceServer,
    name: str,
    new_name: str,
    *,
    instance_only: bool,
    refresh: bool,
    keep_volatile: bool,
) -> dict[str, Any]:
    """The target's create request: the source instance's config, devices and profiles."""
    inst = source.instance(name)
    config = {
        k: v
        for k, v in (inst.get("config") or {}).items()
        if not k.startswith("volatile.") or keep_volatile or k in CLIENT_WRITABLE_VOLATILE
    }
    return {
        "name": new_name,
        "type": inst.get("type") or "container",
        "architecture": inst.get("architecture") or "",
        "config": config,
        "devices": inst.get("devices") or {},
        "profiles": inst.get("profiles") or [],
        "ephemeral": bool(inst.get("ephemeral")),
        "description": inst.get("description") or "",
        "source": {
            "type": "migration",
            "instance_only": instance_only,
            "refresh": refresh,
            "base-image": (inst.get("config") or {}).get("volatile.base_image", ""),
        },
    }
