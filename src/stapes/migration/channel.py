"""The websockets of one migration as Incus uses them: ``control`` carries protobuf messages,
``fs`` and ``criu`` carry byte streams (binary messages) each ended by an empty text message
(a barrier), so one websocket carries several streams in turn.

``Links`` holds a migration's websockets by name, whichever side opened them: the peer dials
us with the secrets we made (our operation's websocket endpoint), or we dial the peer's
operation with the secrets it gave, pinning its certificate."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import WSMsgType, web

from stapes.api.errors import BadRequest, Forbidden
from stapes.migration import wire

log = logging.getLogger(__name__)

CONTROL, FILESYSTEM, STATE = "control", "fs", "criu"
CHUNK = 256 * 1024
CONNECT_TIMEOUT = 30.0
"""How long a side waits for the peer's websockets (Incus: 30 s for control, 10 s for fs)."""

CLOSE_TIMEOUT = 3.0
"""How long closing a websocket waits for the peer's close frame."""

WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


class PeerGone(Exception):
    """The websocket closed while a message or stream was expected."""


class Channel:
    """One websocket of a migration."""

    def __init__(self, name: str, ws: WebSocket) -> None:
        self.name = name
        self.ws = ws
        self.closed = asyncio.Event()
        self._write = asyncio.Lock()

    async def _receive(self) -> aiohttp.WSMessage:
        msg = await self.ws.receive()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            self.closed.set()
        return msg

    # -- control messages --------------------------------------------------------------------

    async def send_message(self, message: Any) -> None:
        async with self._write:
            await self.ws.send_bytes(message.SerializeToString())

    async def receive_header(self, timeout: float | None = 120) -> Any:
        """The peer's migration header; a failure it sends instead (a control message with
        success false) is raised as PeerGone with its message."""
        data = await self._receive_binary(timeout)
        control = wire.MigrationControl()
        with contextlib.suppress(Exception):
            control.ParseFromString(data)
            if control.HasField("message") and not control.success:
                raise PeerGone(control.message)
        header = wire.MigrationHeader()
        try:
            header.ParseFromString(data)
        except Exception as exc:
            raise PeerGone(f"The peer sent a migration header that can't be read: {exc}") from None
        return header

    async def receive_control(self) -> tuple[bool, str]:
        """The peer's final word: (success, message). A closed websocket is a failure."""
        data = await self._receive_binary(None)
        control = wire.MigrationControl()
        try:
            control.ParseFromString(data)
        except Exception:
            return False, "The peer sent a control message that can't be read"
        return control.success, control.message

    async def send_control(self, error: str | None) -> None:
        with contextlib.suppress(Exception):
            await self.send_message(
                wire.MigrationControl(success=error is None, message=error or "")
            )

    async def _receive_binary(self, timeout: float | None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    msg = await self._receive()
                    if msg.type == WSMsgType.BINARY:
                        return bytes(msg.data)
                    if self.closed.is_set():
                        raise PeerGone(f"The peer closed the migration {self.name} connection")
        except TimeoutError:
            raise PeerGone(f"No message from the peer on {self.name} in {timeout:.0f}s") from None

    # -- byte streams ------------------------------------------------------------------------

    async def read(self) -> bytes:
        """The next bytes of the current stream; b"" at its end (the barrier)."""
        while True:
            msg = await self._receive()
            if msg.type == WSMsgType.BINARY:
                if msg.data:
                    return bytes(msg.data)
                continue
            if msg.type == WSMsgType.TEXT:
                return b""
            if self.closed.is_set():
                raise PeerGone(f"The peer closed the migration {self.name} connection mid-stream")

    async def write(self, data: bytes) -> None:
        async with self._write:
            await self.ws.send_bytes(data)

    async def end(self) -> None:
        """End the stream this side was writing (the websocket stays open)."""
        async with self._write:
            await self.ws.send_str("")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.closed.set()


@dataclass
class Dial:
    """Where the peer's websockets are: its operation's URL, the secrets it gave, and the
    certificate it must present (PEM; empty: the system's CAs decide)."""

    operation: str
    secrets: dict[str, str]
    certificate: str = ""

    def check(self, names: tuple[str, ...]) -> None:
        url = urlsplit(self.operation)
        if url.scheme != "https" or not url.netloc or "/1.0/operations/" not in url.path:
            raise BadRequest(
                "The migration operation must be the https:// URL of the peer's operation "
                "(https://HOST:PORT/1.0/operations/ID)"
            )
        missing = [n for n in names if not self.secrets.get(n)]
        if missing:
            raise BadRequest(f"Migration secrets missing for: {', '.join(missing)}")
        if self.certificate:
            fingerprint(self.certificate)

    def url(self, name: str) -> str:
        url = urlsplit(self.operation)
        return f"wss://{url.netloc}{url.path.rstrip('/')}/websocket?secret={self.secrets[name]}"


def fingerprint(pem: str) -> bytes:
    """The SHA-256 of a PEM certificate's DER form (what aiohttp pins)."""
    try:
        der = ssl.PEM_cert_to_DER_cert(pem.strip() + "\n")
    except ValueError:
        raise BadRequest("The peer's certificate is not a PEM certificate") from None
    return hashlib.sha256(der).digest()


@dataclass
class Links:
    """The websockets of one migration, by name."""

    names: tuple[str, ...]
    dial: Dial | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    _ready: dict[str, asyncio.Future[Channel]] = field(default_factory=dict)
    _done: asyncio.Event = field(default_factory=asyncio.Event)
    _session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        loop = asyncio.get_running_loop()
        self._ready = {name: loop.create_future() for name in self.names}
        if self.dial is None:
            self.secrets = {name: secrets.token_hex(32) for name in self.names}
        else:
            self.dial.check(self.names)

    # -- the peer dials us -------------------------------------------------------------------

    async def accept(self, secret: str, request: web.Request) -> web.StreamResponse:
        """An operation's websocket connector: take the peer's websocket for the name whose
        secret it gave, and hold it open until the migration is over."""
        name = next((n for n, s in self.secrets.items() if secrets.compare_digest(s, secret)), "")
        future = self._ready.get(name)
        if future is None or future.done():
            raise Forbidden("Invalid migration secret")
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True, timeout=CLOSE_TIMEOUT)
        await ws.prepare(request)
        channel = Channel(name, ws)
        future.set_result(channel)
        done = asyncio.ensure_future(self._done.wait())
        gone = asyncio.ensure_future(channel.closed.wait())
        await asyncio.wait([done, gone], return_when=asyncio.FIRST_COMPLETED)
        done.cancel()
        gone.cancel()
        return ws

    # -- we dial the peer --------------------------------------------------------------------

    async def connect(self, name: str) -> Channel:
        assert self.dial is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        pin: Any = (
            aiohttp.Fingerprint(fingerprint(self.dial.certificate))
            if self.dial.certificate
            else True
        )
        try:
            ws = await self._session.ws_connect(
                self.dial.url(name),
                ssl=pin,
                max_msg_size=0,
                timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT),
            )
        except aiohttp.ServerFingerprintMismatch:
            raise Forbidden(
                "The peer's certificate is not the one given for the migration"
            ) from None
        except aiohttp.WSServerHandshakeError as exc:
            raise BadRequest(
                f"The peer refused the migration {name} connection ({exc.status}): "
                "its operation or secret is wrong or gone"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise BadRequest(
                f"Can't reach the migration peer at {self.dial.operation}: {exc}"
            ) from None
        channel = Channel(name, ws)
        self._ready[name].set_result(channel)
        return channel

    # -- either way --------------------------------------------------------------------------

    async def get(self, name: str, timeout: float = CONNECT_TIMEOUT) -> Channel:
        if self.dial is not None and not self._ready[name].done():
            return await self.connect(name)
        ready = asyncio.ensure_future(asyncio.shield(self._ready[name]))
        gone = [  # the peer dropping a connection it opened ends the wait too
            asyncio.ensure_future(f.result().closed.wait())
            for f in self._ready.values()
            if f.done() and not f.cancelled()
        ]
        waiting: list[asyncio.Future[Any]] = [ready, *gone]
        try:
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in gone:
                task.cancel()
        if ready.done():
            return ready.result()
        ready.cancel()
        if any(task.done() and not task.cancelled() for task in gone):
            raise PeerGone(f"The peer hung up before opening the migration {name} connection")
        raise PeerGone(f"The peer did not open the migration {name} connection in {timeout:.0f}s")

    async def close(self) -> None:
        """End the migration's websockets (the peer sees them close)."""
        self._done.set()
        for future in self._ready.values():
            if future.done() and not future.cancelled():
                await future.result().close()
            else:
                future.cancel()
        if self._session is not None:
            await self._session.close()


class Session:
    """One end of a migration as its operation shows it: the peer dials it (it hands out
    secrets: the source in pull mode, the sink in push mode), or it dials the peer."""

    links: Links

    @property
    def accepting(self) -> bool:
        return self.links.dial is None

    def prepare(self, op: Any) -> None:
        """Give the operation the secrets and the websocket endpoint the peer dials."""
        if self.accepting:
            op.secrets = dict(self.links.secrets)
            op.websocket_connector = self.links.accept

    @property
    def metadata(self) -> dict[str, Any] | None:
        """The operation's metadata: the secrets when the peer dials this end."""
        return dict(self.links.secrets) if self.accepting else None

    async def reach(self) -> None:
        """Dialing: open the control websocket now, so a wrong certificate, secret or address
        is the client's error before anything is made."""
        if not self.accepting:
            try:
                await self.links.get(CONTROL)
            except BaseException:
                await self.links.close()
                raise

    def closing(self, act: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        """``act`` (an operation's work) that closes the websockets however it ends, even
        cancelled before the transfer began."""

        async def run(op: Any) -> None:
            try:
                await act(op)
            finally:
                await self.links.close()

        return run

    async def tell_failure(self, role: str, exc: BaseException) -> None:
        """The peer's last word from this end, if the control websocket still stands."""
        reason = "cancelled" if isinstance(exc, asyncio.CancelledError) else str(exc)
        with contextlib.suppress(Exception):
            control = await self.links.get(CONTROL, 0.1)
            await control.send_control(f"Failed migration on {role}: {reason}")
