"""The dqlite wire protocol that cowsql nodes speak (doc: canonical/dqlite-docs
reference/wire-protocol.md): a version word, then messages of one header word (body size in
words, type, schema) and a body of little-endian words, NUL-terminated texts padded to a word,
and tuples of typed values. A blocking client of one node; ``leader()`` says which node to ask
for writes (every statement goes to the leader)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

PROTOCOL_VERSION = 1
WORD = 8
# requests
LEADER, CLIENT, OPEN, EXEC_SQL, QUERY_SQL, ADD, ASSIGN, REMOVE, CLUSTER, TRANSFER = (
    0, 1, 3, 8, 9, 12, 13, 14, 16, 17
)  # fmt: skip
# responses
FAILURE, NODE, WELCOME, NODES, DB, RESULT, ROWS, EMPTY = 0, 1, 2, 3, 4, 6, 7, 8
# value types
INTEGER, FLOAT, TEXT, BLOB, NULL, UNIXTIME, ISO8601, BOOLEAN = 1, 2, 3, 4, 5, 9, 10, 11
ROWS_DONE = 0xFFFFFFFFFFFFFFFF
ROWS_PART = 0xEEEEEEEEEEEEEEEE
# roles
VOTER, STANDBY, SPARE = 0, 1, 2
ROLES = {VOTER: "voter", STANDBY: "stand-by", SPARE: "spare"}

NOT_LEADER_CODES = {10250, 10506}
"""SQLITE_IOERR_NOT_LEADER and SQLITE_IOERR_LEADERSHIP_LOST: ask the leader instead."""


class WireError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message

    @property
    def not_leader(self) -> bool:
        return self.code in NOT_LEADER_CODES


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % WORD)


def text(value: str) -> bytes:
    raw = value.encode()
    if b"\0" in raw:
        raise ValueError("a text sent to cowsql cannot hold a NUL byte")
    return _pad(raw + b"\0")


def params(values: Sequence[Any]) -> tuple[bytes, int]:
    """A params tuple (schema 0, up to 255 values) or a params32 one (schema 1); and which."""
    types = bytearray()
    body = bytearray()
    for value in values:
        if value is None:
            types.append(NULL)
            body += bytes(WORD)
        elif isinstance(value, bool):
            types.append(BOOLEAN)
            body += struct.pack("<Q", int(value))
        elif isinstance(value, int):
            types.append(INTEGER)
            body += struct.pack("<q", value)
        elif isinstance(value, float):
            types.append(FLOAT)
            body += struct.pack("<d", value)
        elif isinstance(value, str):
            types.append(TEXT)
            body += text(value)
        elif isinstance(value, bytes | bytearray | memoryview):
            types.append(BLOB)
            body += struct.pack("<Q", len(value)) + _pad(bytes(value))
        else:
            raise TypeError(f"cowsql cannot bind a {type(value).__name__}")
    if len(values) <= 255:
        return _pad(bytes([len(values)]) + bytes(types)) + bytes(body), 0
    return _pad(struct.pack("<I", len(values)) + bytes(types)) + bytes(body), 1


class _Body:
    """Reads the fields of a message body in order."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u64(self) -> int:
        (value,) = struct.unpack_from("<Q", self.data, self.pos)
        self.pos += WORD
        return int(value)

    def i64(self) -> int:
        (value,) = struct.unpack_from("<q", self.data, self.pos)
        self.pos += WORD
        return int(value)

    def u32(self) -> int:
        (value,) = struct.unpack_from("<I", self.data, self.pos)
        self.pos += 4
        return int(value)

    def f64(self) -> float:
        (value,) = struct.unpack_from("<d", self.data, self.pos)
        self.pos += WORD
        return float(value)

    def text(self) -> str:
        end = self.data.index(b"\0", self.pos)
        value = self.data[self.pos : end].decode()
        self.pos = end + 1 + (-(end + 1) % WORD)
        return value

    def blob(self) -> bytes:
        size = self.u64()
        value = self.data[self.pos : self.pos + size]
        self.pos += size + (-size % WORD)
        return value

    def peek_u64(self) -> int:
        (value,) = struct.unpack_from("<Q", self.data, self.pos)
        return int(value)

    def value(self, kind: int) -> Any:
        if kind in (INTEGER, UNIXTIME):
            return self.i64()
        if kind == FLOAT:
            return self.f64()
        if kind in (TEXT, ISO8601):
            return self.text()
        if kind == BLOB:
            return self.blob()
        if kind == NULL:
            self.pos += WORD
            return None
        if kind == BOOLEAN:
            return bool(self.u64())
        raise WireError(0, f"unknown value type {kind} from cowsql")


Dial = Callable[[str, float], socket.socket]
"""How a client reaches a node's address: the plain one below (TCP or an abstract unix
socket), or a cluster member's (through its HTTPS listener)."""


def dial(address: str, timeout: float) -> socket.socket:
    if address.startswith("@"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: Any = "\0" + address[1:]
    else:
        host, _, port = address.rpartition(":")
        family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        target = (host.strip("[]"), int(port or 8080))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(timeout)
    try:
        sock.connect(target)
    except OSError:
        sock.close()
        raise
    return sock


class Client:
    """One connection to one node. Not thread-safe: one caller at a time."""

    def __init__(self, address: str, timeout: float = 10.0, dial: Dial = dial) -> None:
        self.address = address
        self.sock = dial(address, timeout)
        try:
            self.sock.sendall(struct.pack("<Q", PROTOCOL_VERSION))
        except OSError:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- messages -----------------------------------------------------------------------------

    def _send(self, kind: int, body: bytes, schema: int = 0) -> None:
        body = _pad(body)
        self.sock.sendall(struct.pack("<IBBH", len(body) // WORD, kind, schema, 0) + body)

    def _recv_exact(self, size: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            part = self.sock.recv(size - len(chunks))
            if not part:
                raise ConnectionError(f"cowsql node {self.address} closed the connection")
            chunks += part
        return bytes(chunks)

    def _recv(self, expected: int) -> _Body:
        words, kind, _schema, _ = struct.unpack("<IBBH", self._recv_exact(WORD))
        body = _Body(self._recv_exact(words * WORD))
        if kind == FAILURE:
            code = body.u64()
            raise WireError(code, body.text())
        if kind != expected:
            raise WireError(0, f"cowsql answered message type {kind}, not {expected}")
        return body

    # -- requests -----------------------------------------------------------------------------

    def leader(self) -> tuple[int, str]:
        """The leader's id and address (0 and "" while there is none)."""
        self._send(LEADER, struct.pack("<Q", 0))
        body = self._recv(NODE)
        return body.u64(), body.text()

    def open(self, name: str) -> int:
        self._send(OPEN, text(name) + struct.pack("<Q", 0) + text("volatile"))
        return self._recv(DB).u32()

    def exec(self, db: int, sql: str, values: Sequence[Any] = ()) -> tuple[int, int]:
        """The last inserted row id and the rows changed."""
        tuple_, schema = params(values)
        self._send(EXEC_SQL, struct.pack("<Q", db) + text(sql) + tuple_, schema)
        body = self._recv(RESULT)
        return body.u64(), body.u64()

    def query(
        self, db: int, sql: str, values: Sequence[Any] = ()
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The column names and every row (batches read until the last)."""
        tuple_, schema = params(values)
        self._send(QUERY_SQL, struct.pack("<Q", db) + text(sql) + tuple_, schema)
        columns: list[str] = []
        rows: list[tuple[Any, ...]] = []
        while True:
            body = self._recv(ROWS)
            count = body.u64()
            columns = [body.text() for _ in range(count)]
            header_words = (count + 15) // 16  # a 4-bit type per column
            while True:
                marker = body.peek_u64()
                if marker in (ROWS_DONE, ROWS_PART):
                    body.pos += WORD
                    break
                header = body.data[body.pos : body.pos + header_words * WORD]
                body.pos += header_words * WORD
                kinds = [(header[i // 2] >> (4 * (i % 2))) & 0xF for i in range(count)]
                rows.append(tuple(body.value(kind) for kind in kinds))
            if marker == ROWS_DONE:
                return columns, rows

    def add(self, node_id: int, address: str) -> None:
        """Add a node as a spare (then ``assign`` it a role)."""
        self._send(ADD, struct.pack("<Q", node_id) + text(address))
        self._recv(EMPTY)

    def assign(self, node_id: int, role: int) -> None:
        self._send(ASSIGN, struct.pack("<QQ", node_id, role))
        self._recv(EMPTY)

    def remove(self, node_id: int) -> None:
        self._send(REMOVE, struct.pack("<Q", node_id))
        self._recv(EMPTY)

    def transfer(self, node_id: int) -> None:
        """Hand the leadership to ``node_id``."""
        self._send(TRANSFER, struct.pack("<Q", node_id))
        self._recv(EMPTY)

    def cluster(self) -> list[tuple[int, str, int]]:
        """Every node: id, address, role."""
        self._send(CLUSTER, struct.pack("<Q", 1))
        body = self._recv(NODES)
        return [(body.u64(), body.text(), body.u64()) for _ in range(body.u64())]


def connect_leader(addresses: Iterable[str], timeout: float = 10.0, dial: Dial = dial) -> Client:
    """A client of the current leader, found by asking the nodes at ``addresses`` in turn."""
    problems: list[str] = []
    for address in addresses:
        try:
            with Client(address, timeout, dial) as probe:
                _, leader = probe.leader()
        except (OSError, WireError) as exc:
            problems.append(f"{address}: {exc}")
            continue
        if not leader:
            problems.append(f"{address}: no leader yet")
            continue
        try:
            return Client(leader, timeout, dial)
        except OSError as exc:  # a leader that just went, still named by its followers
            problems.append(f"{leader} (the leader {address} names): {exc}")
    raise ConnectionError("No cowsql leader reachable: " + "; ".join(problems))
