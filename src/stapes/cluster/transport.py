"""How the members' cowsql nodes and database clients reach each other: over the HTTPS
listener of each member, as Incus does it. A connection presents the cluster certificate
(every member's server certificate), checks that the far end presents it too, and upgrades
``POST /internal/database`` to the dqlite protocol; the far end's listener relays it to its
node's abstract socket. Both ends run on the side loop (runtime/side_loop.py), which never
waits on the database, so the raft traffic flows while the main loop does.

The connection given to cowsql, or to a database client, is one end of a socket pair; the
other end is relayed to the TLS stream on the side loop."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from stapes import certs
from stapes.api.envelope import error_envelope, go_json_bytes
from stapes.config.validate import split_address
from stapes.runtime.side_loop import SideLoop

log = logging.getLogger(__name__)

PATH = "/internal/database"
UPGRADE = "dqlite"
_CHUNK = 256 * 1024


class Peer(Protocol):
    """What the listener knows of a connection's far end (server/listeners.Peer's shape)."""

    @property
    def fingerprint(self) -> str: ...


def _answer(status: int, reason: str, error: str = "") -> bytes:
    if not error:
        return (
            f"HTTP/1.1 {status} {reason}\r\nConnection: Upgrade\r\nUpgrade: {UPGRADE}\r\n\r\n"
        ).encode()
    body = go_json_bytes(error_envelope(status, error))
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class ClusterTransport:
    """The listener's internal route for ``/internal/database`` and the dialer of the other
    members. ``cert``/``key``: this member's server certificate, the cluster's once it is
    clustered; ``target``: the abstract socket of this member's node ("" when there is
    none)."""

    prefix = f"POST {PATH} ".encode()

    def __init__(self, side: SideLoop, cert: Path, key: Path, target: Callable[[], str]) -> None:
        self.side = side
        self.cert = cert
        self.key = key
        self.target = target
        self._fingerprint = ""
        self._relays: set[asyncio.Task[None]] = set()

    def fingerprint(self) -> str:
        """The cluster certificate's fingerprint (this member's server certificate)."""
        if not self._fingerprint:
            self._fingerprint = certs.fingerprint(certs.parse(self.cert.read_bytes()))
        return self._fingerprint

    def certificate_changed(self) -> None:
        self._fingerprint = ""

    # -- the listener's side ------------------------------------------------------------------

    def answer(self, head: bytes, peer: Peer) -> tuple[bytes, str]:
        target = self.target()
        if not target:
            return _answer(404, "Not Found", "This server is not clustered"), ""
        if peer.fingerprint != self.fingerprint():
            return _answer(403, "Forbidden", "Only cluster members may reach the database"), ""
        headers = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("upgrade", "").lower() != UPGRADE:
            return _answer(400, "Bad Request", f"Missing or invalid upgrade header: {UPGRADE}"), ""
        return _answer(101, "Switching Protocols"), target

    # -- the dialer's side --------------------------------------------------------------------

    def dial(self, address: str, timeout: float) -> socket.socket:
        """A connection to the cowsql node of the member at ``address`` (blocking; from any
        thread but the side loop's)."""
        future = self.side.submit(self._open(address, timeout))
        try:
            return future.result(timeout + 1)
        except TimeoutError:
            future.cancel()
            raise ConnectionError(
                f"cluster member {address} did not answer in {timeout}s"
            ) from None

    def _context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # pinned below, to the cluster certificate
        context.load_cert_chain(self.cert, self.key)
        return context

    async def _open(self, address: str, timeout: float) -> socket.socket:
        host, port = split_address(address)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=self._context()), timeout
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise ConnectionError(f"cluster member {address} unreachable: {exc}") from None
        try:
            tls = writer.get_extra_info("ssl_object")
            der = tls.getpeercert(binary_form=True) if tls is not None else None
            if der is None or certs.fingerprint(der) != self.fingerprint():
                raise ConnectionError(
                    f"cluster member {address} does not present the cluster certificate"
                )
            request = (
                f"POST {PATH} HTTP/1.1\r\nHost: {address}\r\nUpgrade: {UPGRADE}\r\n"
                "Connection: Upgrade\r\nContent-Length: 0\r\n\r\n"
            )
            writer.write(request.encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            status = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
            if status != b"101":
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                raise ConnectionError(f"cluster member {address} refused the database: {line}")
        except BaseException:
            writer.close()
            raise
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        relay = asyncio.get_running_loop().create_task(self._relay(reader, writer, ours))
        self._relays.add(relay)
        relay.add_done_callback(self._relays.discard)
        return theirs

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ours: socket.socket
    ) -> None:
        loop = asyncio.get_running_loop()

        async def outwards() -> None:
            while data := await loop.sock_recv(ours, _CHUNK):
                writer.write(data)
                await writer.drain()

        async def inwards() -> None:
            while data := await reader.read(_CHUNK):
                await loop.sock_sendall(ours, data)

        pumps = [asyncio.ensure_future(outwards()), asyncio.ensure_future(inwards())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            for pump in pumps:
                pump.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*pumps, return_exceptions=True)
            ours.close()
            writer.close()

    async def _close_relays(self) -> None:
        for relay in list(self._relays):
            relay.cancel()

    def close(self) -> None:
        """Cut every connection this member opened to the others."""
        with contextlib.suppress(Exception):
            self.side.submit(self._close_relays()).result(5)


class MemberError(Exception):
    """A member answered a request with an error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def member_request(
    address: str,
    path: str,
    body: object,
    cert: Path,
    key: Path,
    fingerprint: str,
    timeout: float = 60.0,
) -> Any:
    """POST ``body`` to the member at ``address`` as this server (``cert``/``key``), which must
    present the certificate of ``fingerprint``; the answer's metadata (blocking)."""
    host, port = split_address(address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # pinned below
    context.load_cert_chain(cert, key)
    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    try:
        conn.connect()
        der = conn.sock.getpeercert(binary_form=True) if conn.sock is not None else None
        if der is None or certs.fingerprint(der) != fingerprint:
            raise MemberError(0, f"{address} does not present the cluster's certificate")
        data = json.dumps(body).encode()
        conn.request("POST", path, data, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        answer = json.loads(resp.read() or b"{}")
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise MemberError(0, f"cluster member {address} unreachable: {exc}") from None
    finally:
        conn.close()
    if answer.get("type") == "error" or resp.status >= 400:
        raise MemberError(resp.status, str(answer.get("error") or f"HTTP {resp.status}"))
    return answer.get("metadata")
