"""A small client of the local daemon's unix socket for the fast commands (cli/fast.py):
HTTP/1.1 requests on one kept connection (pipelined in batches for many GETs), and RFC 6455
websockets (a client's frames masked, the server's read whole, pings answered). Written by
hand because the standard library's HTTP client (through the email package) and
websocket-client take longer to import than ``stapes list`` or ``stapes exec c -- true`` take
to run; everything else uses those (client/connection.py). For the same reason it stays below
the modules that import ``re`` or ``enum`` (json, socket, base64: ~5 ms together): C's
``_socket``, ``binascii`` and the JSON scanner and string encoder of ``_json`` (json's own C
parts), json itself where CPython's C parts are missing."""

from __future__ import annotations

import os
from _socket import AF_UNIX, SOCK_STREAM
from _socket import socket as Socket
from binascii import b2a_base64

from stapes.api.errors import RemoteError

TYPE_CHECKING = False  # not typing's: it imports re, a few ms of every fast command
if TYPE_CHECKING:
    from typing import Any

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _BINARY, _CLOSE, _PING, _PONG = 1, 2, 8, 9, 10


def socket_path() -> str:
    """The local daemon's socket: STAPES_SOCKET, else unix.socket in STAPES_DIR (default
    host/paths.py's DEFAULT_DIR, spelled out here: pathlib costs ~4 ms to import). The full
    client finds it here too (client/connection.py)."""
    return os.environ.get("STAPES_SOCKET") or os.path.join(
        os.environ.get("STAPES_DIR", "/var/lib/stapes"), "unix.socket"
    )


class LiteServer:
    """Requests go on one kept connection (HTTP/1.1 keep-alive), opened again when the daemon
    closed it while idle; ``metadata_many`` sends its GETs a batch at a time before reading
    their answers (pipelined: `stapes list` of 1,000 instances asks 1,000 snapshot lists)."""

    BATCH = 32
    """Requests in flight at once: their bytes fit the socket's buffer whatever the answers."""

    def __init__(self, path: str, project: str = "") -> None:
        self.path = path
        self.project = project
        self._sock: Socket | None = None
        self._pending = bytearray()

    def _connect(self) -> Socket:
        sock = Socket(AF_UNIX, SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise RemoteError(f"Cannot reach stapesd at {self.path}: {exc}", 503) from None
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._pending.clear()

    def _in_project(self, path: str) -> str:
        if not self.project:
            return path
        return path + ("&" if "?" in path else "?") + "project=" + self.project

    def _encoded(self, method: str, path: str, body: Any = None) -> bytes:
        data = dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {self._in_project(path)} HTTP/1.1\r\nHost: stapes\r\n"
            f"Content-Length: {len(data)}\r\n"
        )
        if body is not None:
            head += "Content-Type: application/json\r\n"
        return head.encode() + b"\r\n" + data

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(HTTP status, the answer's JSON) of one request."""
        return self._exchange([self._encoded(method, path, body)], method == "GET")[0]

    def metadata_many(self, paths: list[str]) -> list[Any]:
        """The metadata of a GET of each path, in order (RemoteError as metadata() raises)."""
        found: list[Any] = []
        for start in range(0, len(paths), self.BATCH):
            batch = [self._encoded("GET", p) for p in paths[start : start + self.BATCH]]
            found += [_metadata(*answer) for answer in self._exchange(batch, True)]
        return found

    def _exchange(self, requests: list[bytes], retry: bool) -> list[tuple[int, Any]]:
        """Send ``requests`` on the kept connection, then read an answer to each. A kept
        connection the daemon closed while idle gives no byte back: ``retry`` (idempotent
        requests) sends them again on a new one."""
        fresh = self._sock is None
        if self._sock is None:
            self._sock = self._connect()
        answers: list[tuple[int, Any]] = []
        try:
            self._sock.sendall(b"".join(requests))
            answers.extend(self._answer() for _ in requests)  # kept as each comes
        except OSError as exc:
            self.close()
            if retry and not fresh and not answers:
                return self._exchange(requests, False)
            raise RemoteError(f"stapesd at {self.path} hung up: {exc}", 503) from None
        except BaseException:
            self.close()  # answers may be left unread on it: it cannot serve another request
            raise
        return answers

    def _fill(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(1 << 16)
        if not chunk:
            raise ConnectionResetError("the daemon closed the connection")
        self._pending += chunk

    def _take(self, count: int) -> bytes:
        while len(self._pending) < count:
            self._fill()
        data = bytes(self._pending[:count])
        del self._pending[:count]
        return data

    def _line(self) -> bytes:
        while (end := self._pending.find(b"\r\n")) < 0:
            self._fill()
        return self._take(end + 2)[:-2]

    def _answer(self) -> tuple[int, Any]:
        """The next answer on the connection: its status and JSON."""
        while (end := self._pending.find(b"\r\n\r\n")) < 0:
            self._fill()
        status, headers, _ = _response(self._take(end + 4))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int(self._line().split(b";")[0], 16):
                parts.append(self._take(size))
                self._line()
            while self._line():  # trailers, then the empty line
                pass
            payload = b"".join(parts)
        elif "content-length" in headers:
            payload = self._take(int(headers["content-length"]))
        else:  # to the end of the connection
            try:
                while True:
                    self._fill()
            except ConnectionResetError:
                pass
            payload = bytes(self._pending)
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        try:
            return status, loads(payload)
        except ValueError:
            raise RemoteError(f"stapesd answered {status} without JSON", 500) from None

    def metadata(self, method: str, path: str, body: Any = None) -> Any:
        """The answer's metadata; RemoteError with the daemon's message for an error."""
        return _metadata(*self.request(method, path, body))

    def exec(self, name: str, body: dict[str, Any]) -> LiteOperation:
        found = self.metadata("POST", f"/1.0/instances/{name}/exec", body)
        return LiteOperation(self, found)

    def websocket(self, path: str) -> LiteWebSocket:
        sock = self._connect()
        try:
            return LiteWebSocket.handshake(sock, self._in_project(path))
        except BaseException:
            sock.close()
            raise


class LiteOperation:
    def __init__(self, server: LiteServer, metadata: dict[str, Any]) -> None:
        self.server = server
        self.metadata = metadata

    def wait(self) -> dict[str, Any]:
        """Until it ends; RemoteError with its error when it failed."""
        while True:
            result = self.server.metadata("GET", f"/1.0/operations/{self.metadata['id']}/wait")
            self.metadata = result
            if result.get("status_code", 0) >= 200:
                break
        if result.get("status") == "Failure" or result.get("err"):
            raise RemoteError(str(result.get("err")), 400)
        return result  # type: ignore[no-any-return]

    def current(self) -> dict[str, Any]:
        found: dict[str, Any] = self.server.metadata(
            "GET", f"/1.0/operations/{self.metadata['id']}"
        )
        self.metadata = found
        return found

    def websocket(self, name: str) -> LiteWebSocket:
        secret = (self.metadata.get("metadata") or {}).get("fds", {})[name]
        return self.server.websocket(
            f"/1.0/operations/{self.metadata['id']}/websocket?secret={secret}"
        )


class LiteWebSocket:
    """A client websocket: ``send_binary``/``send`` frames, ``recv_data`` the next message
    (opcode, bytes), ``close``. Errors and a lost connection raise OSError."""

    def __init__(self, sock: Socket, pending: bytes) -> None:
        import threading  # only exec's websockets: not on every fast command's path

        self.sock = sock
        self.pending = pending
        self.lock = threading.Lock()  # the pumps and the signal handlers send from threads
        self.closed = False

    @classmethod
    def handshake(cls, sock: Socket, path: str) -> LiteWebSocket:
        key = b2a_base64(os.urandom(16), newline=False)
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: stapes\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                raise RemoteError(f"Websocket {path} failed: the daemon hung up", 400)
            received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        status, headers, _ = _response(head + b"\r\n\r\n")
        accept = b2a_base64(_sha1(key + _GUID), newline=False).decode()
        if status != 101 or headers.get("sec-websocket-accept") != accept:
            raise RemoteError(f"Websocket {path} failed: HTTP {status}", 400)
        return cls(sock, rest)

    def _read(self, count: int) -> bytes:
        while len(self.pending) < count:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionResetError("the websocket's connection closed")
            self.pending += chunk
        data, self.pending = self.pending[:count], self.pending[count:]
        return data

    def recv_data(self) -> tuple[int, bytes]:
        message, opcode = b"", 0
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(self._read(2), "big")
            elif length == 127:
                length = int.from_bytes(self._read(8), "big")
            mask = self._read(4) if second & 0x80 else b""
            payload = _masked(self._read(length), mask) if mask else self._read(length)
            kind = first & 0x0F
            if kind == _PING:
                self._send(_PONG, payload)
                continue
            if kind == _PONG:
                continue
            if kind == _CLOSE:  # answered, as RFC 6455 asks (the server waits for it)
                self._close(payload[:2])
                return _CLOSE, payload
            opcode = opcode or kind
            message += payload
            if first & 0x80:  # FIN: the message is whole
                return opcode, message

    def send_binary(self, data: bytes) -> None:
        self._send(_BINARY, data)

    def send(self, text: str) -> None:
        self._send(_TEXT, text.encode())

    def close(self) -> None:
        self._close((1000).to_bytes(2, "big"))

    def _close(self, status: bytes) -> None:
        """Our close frame (its status: ``status``), once; then the connection goes."""
        if self.closed:
            return
        self.closed = True
        try:
            self._send(_CLOSE, status)
        except OSError:
            pass  # the daemon hung up first: nothing to tell it
        finally:
            self.sock.close()

    def _send(self, opcode: int, payload: bytes) -> None:
        size = len(payload)
        if size < 126:
            header = bytes((0x80 | opcode, 0x80 | size))
        elif size < 1 << 16:
            header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
        mask = os.urandom(4)
        with self.lock:
            self.sock.sendall(header + mask + _masked(payload, mask))


def _sha1(data: bytes) -> bytes:
    """SHA-1 for the handshake's accept key: CPython's own _sha1 when it has it (hashlib loads
    OpenSSL, ~3 ms of every exec)."""
    try:
        from _sha1 import sha1  # type: ignore[import-not-found]
    except ImportError:
        from hashlib import sha1
    digest: bytes = sha1(data).digest()
    return digest


class _Decoding:
    """What the C scanner reads from json's JSONDecoder: the defaults of json.loads."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": -float("inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__  # fmt: skip


_SPACE = " \t\r\n"


def loads(data: bytes | str) -> Any:
    """A JSON document's value, as json.loads gives it (ValueError for one that is not JSON)."""
    text = data.decode() if isinstance(data, bytes) else data
    try:
        from _json import make_scanner
    except ImportError:  # not CPython
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_SPACE))
    try:
        value, end = make_scanner(_Decoding)(text, start)  # type: ignore[arg-type]
    except StopIteration:
        raise ValueError("not a JSON document") from None
    if text[end:].strip(_SPACE):
        raise ValueError("extra data after the JSON document")
    return value


def dumps(value: Any) -> str:
    """``value`` (str, int, float, bool, None, lists, tuples and dicts with str keys of those)
    as JSON text, as json.dumps writes it."""
    try:
        from _json import encode_basestring_ascii as quoted
    except ImportError:  # not CPython
        import json

        return json.dumps(value)
    if isinstance(value, str):
        return str(quoted(value))
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float) and value == value and value not in (float("inf"), -float("inf")):
        return float.__repr__(value)
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return "{" + ", ".join(f"{quoted(k)}: {dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(dumps(item) for item in value) + "]"
    raise TypeError(f"{type(value).__name__} is not sent as JSON here")


def _masked(data: bytes, mask: bytes) -> bytes:
    """RFC 6455 masking (an XOR with the key repeated), on whole integers: fast in Python."""
    if not data:
        return data
    size = len(data)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


def _metadata(status: int, answer: Any) -> Any:
    if status >= 400 or not isinstance(answer, dict) or answer.get("type") == "error":
        error = answer.get("error") if isinstance(answer, dict) else ""
        raise RemoteError(str(error or f"HTTP {status}"), status)
    return answer.get("metadata")


def _response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    words = lines[0].split()
    status = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return status, headers, body
