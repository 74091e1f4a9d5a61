"""Connections to a Stapes (or Incus) daemon: HTTP over the unix socket or HTTPS with a client
certificate (the server's pinned by fingerprint), envelopes, errors.

Synchronous and built on the standard library's http.client plus websocket-client, so that a
CLI command starts in a few tens of milliseconds."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol
from urllib.parse import quote, urlencode

from stapes.api.errors import RemoteError
from stapes.client.lite import socket_path

Body = bytes | Iterable[bytes] | None

if TYPE_CHECKING:  # imported where a websocket is opened: most commands open none
    import websocket


def default_socket() -> Path:
    return Path(socket_path())


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("stapes")
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Target(Protocol):
    """Where a daemon is: how to open an HTTP connection and a websocket to it."""

    def http(self) -> http.client.HTTPConnection: ...

    def websocket(self, path: str) -> websocket.WebSocket: ...

    def unreachable(self, exc: Exception) -> RemoteError: ...


@dataclass(frozen=True)
class UnixTarget:
    path: str

    def http(self) -> http.client.HTTPConnection:
        return _UnixHTTPConnection(self.path)

    def websocket(self, path: str) -> websocket.WebSocket:
        import websocket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
            ws = websocket.WebSocket(skip_utf8_validation=True)
            ws.connect("ws://stapes" + path, socket=sock, suppress_origin=True)  # type: ignore[no-untyped-call]
        except (OSError, websocket.WebSocketException) as exc:
            sock.close()
            raise RemoteError(f"Websocket {path} failed: {exc}", 400) from None
        return ws

    def unreachable(self, exc: Exception) -> RemoteError:
        if not os.path.exists(self.path):
            return RemoteError(f"stapesd is not running: no socket at {self.path}", 503)
        return RemoteError(f"Cannot reach stapesd at {self.path}: {exc}", 503)


class CertificateMismatch(RemoteError):
    def __init__(self, address: str, got: str, wanted: str) -> None:
        super().__init__(
            f"The certificate of {address} has changed (fingerprint {got[:12]}, expected "
            f"{wanted[:12]}): it may not be the server you added",
            403,
        )


def peer_fingerprint(sock: ssl.SSLSocket) -> str:
    import hashlib  # HTTPS only

    return hashlib.sha256(sock.getpeercert(binary_form=True) or b"").hexdigest()


@dataclass(frozen=True)
class HttpsTarget:
    """A daemon over HTTPS. Its certificate is pinned by fingerprint (it is self-signed, no CA
    vouches for it); ``fingerprint`` empty: any certificate (only to fetch it, when adding a
    remote). The client shows its own certificate, when it has one."""

    host: str
    port: int
    fingerprint: str = ""
    client_cert: str = ""
    client_key: str = ""
    timeout: float = 60

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # pinned by fingerprint instead, after the handshake
        if self.client_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    def check(self, sock: ssl.SSLSocket) -> None:
        got = peer_fingerprint(sock)
        if self.fingerprint and got != self.fingerprint:
            raise CertificateMismatch(self.address, got, self.fingerprint)

    def http(self) -> http.client.HTTPConnection:
        target = self

        class Pinned(http.client.HTTPSConnection):
            def connect(self) -> None:
                super().connect()
                assert isinstance(self.sock, ssl.SSLSocket)
                try:
                    target.check(self.sock)
                except CertificateMismatch:
                    self.close()
                    raise

        return Pinned(self.host, self.port, timeout=self.timeout, context=self.context())

    def websocket(self, path: str) -> websocket.WebSocket:
        import websocket

        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            sock = self.context().wrap_socket(raw)
            self.check(sock)
            ws = websocket.WebSocket(skip_utf8_validation=True)
            ws.connect(f"wss://{self.address}{path}", socket=sock, suppress_origin=True)  # type: ignore[no-untyped-call]
        except CertificateMismatch:
            raw.close()
            raise
        except (OSError, websocket.WebSocketException) as exc:
            raw.close()
            raise RemoteError(f"Websocket {path} failed: {exc}", 400) from None
        return ws

    def unreachable(self, exc: Exception) -> RemoteError:
        return RemoteError(f"Cannot reach {self.address}: {exc}", 503)


class Connection:
    """One keep-alive HTTP connection to a daemon; ``request`` unwraps the Incus envelope."""

    def __init__(self, target: Target | Path | str | None = None, project: str = "") -> None:
        if target is None or isinstance(target, (Path, str)):
            target = UnixTarget(str(target or default_socket()))
        self.target: Target = target
        self.project = project
        """Added as ``project=`` to every request that does not name one."""
        self._http: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unreachable(self, exc: Exception) -> RemoteError:
        return exc if isinstance(exc, RemoteError) else self.target.unreachable(exc)

    def _exchange(
        self, method: str, path: str, body: Body, headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        """One HTTP exchange: (status, body, headers). A kept-alive connection the daemon
        closed is retried once on a fresh one, unless the body was a stream now consumed."""
        for attempt in (1, 2):
            if self._http is None:
                self._http = self.target.http()
            try:
                self._http.request(method, path, body=body, headers=headers)
                resp = self._http.getresponse()
                return resp.status, resp.read(), dict(resp.getheaders())
            except CertificateMismatch:
                self.close()
                raise
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self.close()
                if attempt == 2 or not (body is None or isinstance(body, bytes)):
                    raise self._unreachable(exc) from None
        raise AssertionError("unreachable")

    def raw(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        body: Body = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], str]:
        """Return (HTTP status, envelope, ETag)."""
        headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        if params:
            path = f"{path}?{urlencode(params)}"
        status, data, answer_headers = self._exchange(method, self.in_project(path), body, headers)
        text = data.decode(errors="replace")
        try:
            envelope = json.loads(text)
        except json.JSONDecodeError:
            raise RemoteError(
                f"Unexpected answer from the daemon ({status}): {text[:200]}", status
            ) from None
        return status, envelope, answer_headers.get("ETag", "").strip('"')

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        _, envelope, _ = self.raw(method, path, **kwargs)
        return unwrap(envelope)

    def get_bytes(self, path: str) -> tuple[bytes, dict[str, str]]:
        """A raw (non-envelope) GET: the body and the headers. An error envelope raises."""
        status, data, headers = self._exchange("GET", self.in_project(path), None, {})
        if status != 200:
            try:
                unwrap(json.loads(data))
            except (json.JSONDecodeError, AttributeError):
                pass
            raise RemoteError(f"GET {path} answered {status}", status)
        return data, headers

    def download(self, path: str, target: Path) -> int:
        """Stream a raw GET (a backup tarball) into ``target``; returns its size. An error
        envelope raises and leaves no file."""
        return self.download_with_headers(path, target)[0]

    def download_with_headers(
        self, path: str, target: Path | BinaryIO
    ) -> tuple[int, dict[str, str]]:
        """``download``, and the response's headers. ``target`` may also be a binary stream
        open for writing (standard output): written as the bytes come, left open."""
        http_conn = self.target.http()
        try:
            http_conn.request("GET", self.in_project(path))
            resp = http_conn.getresponse()
            if resp.status != 200:
                data = resp.read()
                try:
                    unwrap(json.loads(data))
                except (json.JSONDecodeError, AttributeError):
                    pass
                raise RemoteError(f"GET {path} answered {resp.status}", resp.status)
            size = 0
            opened = target.open("wb") if isinstance(target, Path) else nullcontext(target)
            with opened as out:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    size += len(chunk)
            return size, dict(resp.getheaders())
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            if isinstance(target, Path):
                target.unlink(missing_ok=True)
            raise self._unreachable(exc) from None
        finally:
            http_conn.close()

    def websocket(self, path: str) -> websocket.WebSocket:
        return self.target.websocket(self.in_project(path))

    def in_project(self, path: str) -> str:
        """``path`` with this connection's project, unless it names one (or none is set)."""
        if not self.project or "project=" in path or "all-projects=" in path:
            return path
        return f"{path}{'&' if '?' in path else '?'}project={quote(self.project, safe='')}"


def segment(name: str) -> str:
    """A name as one URL path segment."""
    return quote(name, safe="")


def unwrap(envelope: dict[str, Any]) -> Any:
    if envelope.get("type") == "error":
        raise RemoteError(
            str(envelope.get("error", "unknown error")), int(envelope.get("error_code", 500))
        )
    return envelope.get("metadata")
