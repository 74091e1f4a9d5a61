"""The HTTPS listener (``core.https_address``). TLS runs in pyOpenSSL, not in Python's ssl
module: Incus clients present self-signed certificates that no CA vouches for, and the daemon
must accept the handshake and then decide by fingerprint (Python's ssl can only verify against
a CA store, with no callback). Each connection's plaintext goes to the same aiohttp server as
the unix socket through a socket pair; the peer's certificate is looked up by the pair's socket
when a request starts (see auth.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web
from cryptography import x509
from OpenSSL import SSL

from stapes.api.errors import BadRequest
from stapes.certs import described, fingerprint, load_or_create
from stapes.config.validate import split_address
from stapes.runtime.side_loop import SideLoop

log = logging.getLogger(__name__)

ProtocolFactory = Callable[[], asyncio.Protocol]
_CHUNK = 256 * 1024
_HIGH_WATER = 4 * 1024 * 1024
_MAX_HEAD = 16 * 1024
"""The most an internal route's request may send before its blank line."""


@dataclass(frozen=True)
class Peer:
    """Who is at the other end of one HTTPS connection."""

    address: str
    certificate: x509.Certificate | None
    fingerprint: str
    metrics_only: bool = False
    """Came through core.metrics_address, which serves /1.0/metrics and nothing else."""


def _accept_any(conn: SSL.Connection, cert: object, errno: int, depth: int, ok: int) -> bool:
    """Ask for a client certificate and take whatever comes: trust is decided afterwards, by
    the certificate's fingerprint, as Incus does."""
    return True


def _context(cert: Path, key: Path) -> SSL.Context:
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.use_certificate_file(str(cert))
    context.use_privatekey_file(str(key))
    context.set_verify(SSL.VERIFY_PEER, _accept_any)
    # Resumed sessions (browsers resume on every new connection) need a session id context
    # when peers are verified, or OpenSSL fails the handshake ("session id context
    # uninitialized"); a resumed session keeps the client certificate it was made with.
    context.set_session_id(b"stapes-https")
    return context


class InternalRoute(Protocol):
    """Requests the TLS side answers itself, off the main loop: the cluster's database traffic
    (cluster/transport.py), which must flow while the main loop waits on that database."""

    prefix: bytes
    """How such a request starts (its request line, up to the path and a blank)."""

    def answer(self, head: bytes, peer: Peer) -> tuple[bytes, str]:
        """The HTTP answer to ``head`` (the request up to its blank line) from ``peer``, and
        the abstract unix socket the connection then relays to ("" to close it)."""
        ...


class HttpsListener:
    """Runs on the side loop (runtime/side_loop.py): the TLS of every connection is done there
    and the plaintext reaches the app server on ``main_loop``."""

    def __init__(
        self,
        app_server: ProtocolFactory,
        main_loop: asyncio.AbstractEventLoop,
        cert: Path,
        key: Path,
        metrics_only: bool = False,
        internal: InternalRoute | None = None,
    ) -> None:
        self.app_server = app_server
        self.main_loop = main_loop
        self.metrics_only = metrics_only
        self.internal = internal
        self.context = _context(cert, key)
        self.peers: dict[int, Peer] = {}
        """Socket-pair end (its fd, as aiohttp sees it) -> the HTTPS peer behind it."""
        self._server: asyncio.Server | None = None
        self._connections: set[_TlsConnection] = set()
        self.address = ""

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _TlsConnection(self), host or None, port, reuse_address=True
        )
        self.address = f"{host}:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None

    def peer(self, request: web.Request) -> Peer | None:
        """The HTTPS peer of a request (None: it did not come through this listener)."""
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        return self.peers.get(sock.fileno()) if sock is not None else None


class _TlsConnection(asyncio.Protocol):
    """One HTTPS connection: TLS in memory with pyOpenSSL over the TCP transport; plaintext to
    and from the app through a socket pair (or, for an internal route, to its socket)."""

    def __init__(self, listener: HttpsListener) -> None:
        self.listener = listener
        self.tls = SSL.Connection(listener.context, None)
        self.tls.set_accept_state()
        self.transport: asyncio.Transport | None = None
        self.handshaken = False
        self.head = b""
        """Plaintext held until it says where the connection goes."""
        self.routed = False
        self.pending: list[bytes] = []
        self.plain: asyncio.StreamWriter | None = None
        self.pair_fd = -1
        self.peer: Peer | None = None
        self.task: asyncio.Task[None] | None = None
        self.can_send = asyncio.Event()
        self.can_send.set()
        self.closed = False

    # -- the TCP side --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.listener._connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.tls.bio_write(data)
            self._advance()
        except SSL.Error as exc:
            log.debug("TLS error from %s: %s", self._remote(), exc)
            self.abort()

    def pause_writing(self) -> None:
        self.can_send.clear()

    def resume_writing(self) -> None:
        self.can_send.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.abort()

    def _remote(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if peer else ""

    def _flush(self) -> None:
        """Send what TLS wrote for the peer."""
        while self.transport is not None and not self.transport.is_closing():
            try:
                out = self.tls.bio_read(_CHUNK)
            except SSL.WantReadError:
                return
            if not out:
                return
            self.transport.write(out)

    def _advance(self) -> None:
        if not self.handshaken:
            try:
                self.tls.do_handshake()
            except SSL.WantReadError:
                self._flush()
                return
            self.handshaken = True
            self._flush()
            self.peer = self._peer()
        while True:
            try:
                chunk = self.tls.recv(_CHUNK)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._plain_eof()
                break
            if self.routed:
                self._to_plain(chunk)
            else:
                self._route(chunk)
        self._flush()

    def _peer(self) -> Peer:
        cert = self.tls.get_peer_certificate()
        crypto = cert.to_cryptography() if cert is not None else None
        return Peer(
            self._remote(),
            crypto,
            fingerprint(crypto) if crypto is not None else "",
            self.listener.metrics_only,
        )

    # -- where the plaintext goes --------------------------------------------------------------

    def _route(self, chunk: bytes) -> None:
        """To the app, unless the request is an internal route's (then answered here)."""
        self.head += chunk
        internal = self.listener.internal
        prefix = internal.prefix if internal is not None else b""
        if internal is None or self.head[: len(prefix)] != prefix[: len(self.head)]:
            self.routed = True
            self._open_app()
            self._to_plain(self.head)
            return
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > _MAX_HEAD:
                self.abort()
            return
        assert self.peer is not None
        answer, target = internal.answer(self.head[: end + 4], self.peer)
        rest = self.head[end + 4 :]
        self.routed = True
        self.tls.sendall(answer)
        self._flush()
        if not target:
            with contextlib.suppress(SSL.Error):
                self.tls.shutdown()
            self._flush()
            self.abort()
            return
        self.pending.append(rest)
        self.task = asyncio.get_running_loop().create_task(self._relay_to(target))

    def _open_app(self) -> None:
        assert self.peer is not None
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.setblocking(False)
        self.pair_fd = theirs.fileno()
        self.listener.peers[self.pair_fd] = self.peer
        self.task = asyncio.get_running_loop().create_task(self._pump_app(ours, theirs))

    async def _pump_app(self, ours: socket.socket, theirs: socket.socket) -> None:
        main = self.listener.main_loop
        try:
            accepted = main.connect_accepted_socket(self.listener.app_server, sock=theirs)
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(accepted, main))
            reader, writer = await asyncio.open_connection(sock=ours)
        except OSError:
            self.abort()
            return
        await self._pump(reader, writer)

    async def _relay_to(self, target: str) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection("\0" + target.removeprefix("@"))
        except OSError as exc:
            log.warning("internal route to %s unavailable: %s", target, exc)
            self.abort()
            return
        await self._pump(reader, writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.plain = writer
        for chunk in self.pending:
            writer.write(chunk)
        self.pending.clear()
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await self.can_send.wait()
                if self.transport is None or self.transport.is_closing():
                    break
                self.tls.sendall(data)
                self._flush()
            with contextlib.suppress(SSL.Error):
                self.tls.shutdown()
            self._flush()
        except (OSError, SSL.Error):
            pass
        finally:
            self.abort()

    def _to_plain(self, chunk: bytes) -> None:
        if self.plain is None:
            self.pending.append(chunk)
            return
        self.plain.write(chunk)
        if self.plain.transport.get_write_buffer_size() > _HIGH_WATER and self.transport:
            self.transport.pause_reading()
            asyncio.get_running_loop().create_task(self._resume_when_drained())

    async def _resume_when_drained(self) -> None:
        if self.plain is not None:
            with contextlib.suppress(OSError):
                await self.plain.drain()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _plain_eof(self) -> None:
        if self.plain is not None and self.plain.can_write_eof():
            with contextlib.suppress(OSError):
                self.plain.write_eof()

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.listener._connections.discard(self)
        if self.plain is not None:
            self.plain.close()
        if self.transport is not None:
            self.transport.close()
        # the mapping goes last (a request that started on the pair has its identity already),
        # and only if it is still ours (the fd may serve a newer connection by now)
        if self.pair_fd >= 0 and self.listener.peers.get(self.pair_fd) is self.peer:
            del self.listener.peers[self.pair_fd]
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()


class Https:
    """``core.https_address`` (or ``core.metrics_address`` with ``metrics_only``): its listener
    started, moved and stopped as the key changes. The server certificate is made at the first
    start of the daemon."""

    def __init__(
        self, cert: Path, key: Path, side: SideLoop, *, metrics_only: bool = False
    ) -> None:
        self.cert = cert
        self.key = key
        self.side = side
        self.metrics_only = metrics_only
        self.app_server: ProtocolFactory | None = None
        self.internal: InternalRoute | None = None
        """Requests answered on the side loop (set once the cluster's transport exists)."""
        self.listener: HttpsListener | None = None
        self.address = ""

    def certificate(self) -> bytes:
        return load_or_create(self.cert, self.key, f"root@{socket.gethostname()}")

    def described(self) -> tuple[str, str]:
        """The certificate's PEM and fingerprint."""
        return described(self.certificate())

    def peer(self, request: web.Request) -> Peer | None:
        return self.listener.peer(request) if self.listener is not None else None

    async def apply(self, address: str) -> None:
        """Listen on ``address`` ("" stops listening); on failure the old listener is back and
        the error says why."""
        if address == self.address:
            return
        old = self.address
        await self.stop()
        if not address:
            return
        try:
            await self._listen(address)
        except (OSError, ValueError) as exc:
            if old:
                with contextlib.suppress(OSError, ValueError):
                    await self._listen(old)
            raise BadRequest(f"Cannot listen on {address!r}: {exc}") from None

    async def _listen(self, address: str) -> None:
        assert self.app_server is not None, "the app server is set before listening"
        self.certificate()
        listener = HttpsListener(
            self.app_server,
            asyncio.get_running_loop(),
            self.cert,
            self.key,
            self.metrics_only,
            self.internal,
        )
        host, port = split_address(address)
        await self.side.call(listener.start(host, port))
        self.listener, self.address = listener, address
        what = "metrics" if self.metrics_only else "the API"
        log.info("stapesd serving %s on https://%s", what, address)

    async def reload(self) -> None:
        """The certificate now on disk (it was replaced) for the connections to come; those
        open go on with the one they began with (nothing is cut, nothing refused)."""
        if self.listener is not None:
            self.listener.context = _context(self.cert, self.key)

    async def stop(self) -> None:
        if self.listener is not None:
            await self.side.call(self.listener.stop())
        self.listener, self.address = None, ""
