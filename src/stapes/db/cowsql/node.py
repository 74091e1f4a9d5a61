"""A cowsql node in this process: libcowsql (Debian's libcowsql0, from bookworm-backports)
through ctypes. The node runs its own thread; clients reach it on its bind address with the
wire protocol (wire.py), this process included."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stapes.api.errors import MissingHostFeature

log = logging.getLogger(__name__)

BOOTSTRAP_ID = 0x2DC171858C3155BE
"""The id that makes a node with an empty data directory start a new cluster of its own (the
raft digest of "1", as cowsql and dqlite define it); other nodes are added to a cluster by its
leader (wire.Client.add)."""

_lib: ctypes.CDLL | None = None

CONNECT_FUNC = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)
)
"""int (*)(void *arg, const char *address, int *fd): how the node reaches another node."""


def library() -> ctypes.CDLL:
    """libcowsql, its functions typed; MissingHostFeature when it is not installed."""
    global _lib
    if _lib is not None:
        return _lib
    name = ctypes.util.find_library("cowsql")
    if name is None:
        raise MissingHostFeature(
            "libcowsql is not installed: clustering needs libcowsql0 from bookworm-backports "
            "(apt install -t bookworm-backports libcowsql0)"
        )
    lib = ctypes.CDLL(name, use_errno=True)
    node = ctypes.c_void_p
    lib.cowsql_node_create.argtypes = [
        ctypes.c_ulonglong, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(node)
    ]  # fmt: skip
    lib.cowsql_node_create.restype = ctypes.c_int
    lib.cowsql_node_destroy.argtypes = [node]
    lib.cowsql_node_destroy.restype = None
    lib.cowsql_node_set_bind_address.argtypes = [node, ctypes.c_char_p]
    lib.cowsql_node_set_bind_address.restype = ctypes.c_int
    lib.cowsql_node_get_bind_address.argtypes = [node]
    lib.cowsql_node_get_bind_address.restype = ctypes.c_char_p
    lib.cowsql_node_set_network_latency_ms.argtypes = [node, ctypes.c_uint]
    lib.cowsql_node_set_network_latency_ms.restype = ctypes.c_int
    lib.cowsql_node_start.argtypes = [node]
    lib.cowsql_node_start.restype = ctypes.c_int
    lib.cowsql_node_handover.argtypes = [node]
    lib.cowsql_node_handover.restype = ctypes.c_int
    lib.cowsql_node_stop.argtypes = [node]
    lib.cowsql_node_stop.restype = ctypes.c_int
    lib.cowsql_node_errmsg.argtypes = [node]
    lib.cowsql_node_errmsg.restype = ctypes.c_char_p
    lib.cowsql_node_set_connect_func.argtypes = [node, CONNECT_FUNC, ctypes.c_void_p]
    lib.cowsql_node_set_connect_func.restype = ctypes.c_int
    lib.cowsql_generate_node_id.argtypes = [ctypes.c_char_p]
    lib.cowsql_generate_node_id.restype = ctypes.c_ulonglong
    _lib = lib
    return lib


class CowsqlError(Exception):
    pass


def generate_id(address: str) -> int:
    """A new node id for a member at ``address`` (a hash of it and the time)."""
    return int(library().cowsql_generate_node_id(address.encode()))


class Node:
    """One cowsql node: its raft log and database files in ``data_dir``; ``address`` is what
    the other nodes dial, ``bind`` what it listens on (the same unless a proxy sits between);
    ``latency_ms``, the round trip between members (cowsql derives its timeouts from it)."""

    def __init__(
        self,
        node_id: int,
        address: str,
        data_dir: Path,
        bind: str | None = None,
        latency_ms: int | None = None,
    ) -> None:
        lib = library()
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle = ctypes.c_void_p()
        rc = lib.cowsql_node_create(node_id, address.encode(), str(data_dir).encode(), handle)
        self._lib = lib
        self._handle = handle
        self._started = False
        self._connect: Any = None
        self.id = node_id
        if rc != 0:
            self._fail("create", rc)
        rc = lib.cowsql_node_set_bind_address(handle, (bind or address).encode())
        if rc != 0:
            self._fail("bind", rc)
        if latency_ms is not None:  # raft's heartbeat and election timeouts follow it
            rc = lib.cowsql_node_set_network_latency_ms(handle, latency_ms)
            if rc != 0:
                self._fail("latency", rc)

    def set_connect(self, connect: Callable[[str], int]) -> None:
        """Reach the other nodes through ``connect`` (an address -> a connected socket's fd,
        the node's to keep) instead of plain TCP; before ``start``. An exception fails that
        one attempt (raft tries again)."""

        def call(_arg: object, address: bytes, fd: Any) -> int:
            try:
                fd[0] = connect(address.decode())
            except Exception as exc:  # raised into C otherwise: logged, and the dial fails
                log.debug("cowsql node %s cannot reach %s: %s", self.id, address, exc)
                return 1
            return 0

        self._connect = CONNECT_FUNC(call)  # kept: the node calls it until it is destroyed
        rc = self._lib.cowsql_node_set_connect_func(self._handle, self._connect, None)
        if rc != 0:
            self._fail("connect function", rc)

    def _fail(self, what: str, rc: int) -> None:
        message = self._lib.cowsql_node_errmsg(self._handle) or b""
        self.close()
        raise CowsqlError(f"cowsql node {what} failed ({rc}): {message.decode(errors='replace')}")

    @property
    def bind_address(self) -> str:
        return (self._lib.cowsql_node_get_bind_address(self._handle) or b"").decode()

    def start(self) -> None:
        rc = self._lib.cowsql_node_start(self._handle)
        if rc != 0:
            self._fail("start", rc)
        self._started = True

    def close(self, handover: bool = False) -> None:
        """Stop the node (after handing its roles over to the others, if asked) and free it."""
        if self._handle.value is None:
            return
        if self._started:
            if handover:
                self._lib.cowsql_node_handover(self._handle)
            self._lib.cowsql_node_stop(self._handle)
            self._started = False
        self._lib.cowsql_node_destroy(self._handle)
        self._handle = ctypes.c_void_p()
