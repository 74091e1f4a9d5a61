"""Connections to a Stapes (or Incus) daemon: HTTP over the unix socket, envelopes, errors.

Synchronous and built on the standard library's http.client plus websocket-client, so that a
CLI command starts in a few tens of milliseconds."""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import websocket

from stapes.api.errors import RemoteError
from stapes.host.paths import stapes_dir

Body = bytes | Iterable[bytes] | None


def default_socket() -> Path:
    explicit = os.environ.get("STAPES_SOCKET")
    return Path(explicit) if explicit else stapes_dir() / "unix.socket"


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


class Connection:
    """One keep-alive HTTP connection to a daemon; ``request`` unwraps the Incus envelope."""

    def __init__(self, socket_path: Path | str | None = None) -> None:
        self.socket_path = str(socket_path or default_socket())
        self._http: _UnixHTTPConnection | None = None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unreachable(self, exc: Exception) -> RemoteError:
        if not os.path.exists(self.socket_path):
            return RemoteError(f"stapesd is not running: no socket at {self.socket_path}", 503)
        return RemoteError(f"Cannot reach stapesd at {self.socket_path}: {exc}", 503)

    def _exchange(
        self, method: str, path: str, body: Body, headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        """One HTTP exchange: (status, body, headers). A kept-alive connection the daemon
        closed is retried once on a fresh one, unless the body was a stream now consumed."""
        for attempt in (1, 2):
            if self._http is None:
                self._http = _UnixHTTPConnection(self.socket_path)
            try:
                self._http.request(method, path, body=body, headers=headers)
                resp = self._http.getresponse()
                return resp.status, resp.read(), dict(resp.getheaders())
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
        status, data, answer_headers = self._exchange(method, path, body, headers)
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
        status, data, headers = self._exchange("GET", path, None, {})
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
        http_conn = _UnixHTTPConnection(self.socket_path)
        try:
            http_conn.request("GET", path)
            resp = http_conn.getresponse()
            if resp.status != 200:
                data = resp.read()
                try:
                    unwrap(json.loads(data))
                except (json.JSONDecodeError, AttributeError):
                    pass
                raise RemoteError(f"GET {path} answered {resp.status}", resp.status)
            size = 0
            with target.open("wb") as out:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    size += len(chunk)
            return size
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            target.unlink(missing_ok=True)
            raise self._unreachable(exc) from None
        finally:
            http_conn.close()

    def websocket(self, path: str) -> websocket.WebSocket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
            ws = websocket.WebSocket(skip_utf8_validation=True)
            ws.connect("ws://stapes" + path, socket=sock, suppress_origin=True)  # type: ignore[no-untyped-call]
        except (OSError, websocket.WebSocketException) as exc:
            sock.close()
            raise RemoteError(f"Websocket {path} failed: {exc}", 400) from None
        return ws


def segment(name: str) -> str:
    """A name as one URL path segment."""
    return quote(name, safe="")


def unwrap(envelope: dict[str, Any]) -> Any:
    if envelope.get("type") == "error":
        raise RemoteError(
            str(envelope.get("error", "unknown error")), int(envelope.get("error_code", 500))
        )
    return envelope.get("metadata")
