"""core.syslog_socket: a unixgram socket (syslog.socket in the daemon's directory) that takes
syslog messages from other processes and hands them on as the daemon's logging events, at the
level their priority says, as Incus's listener does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from pathlib import Path

log = logging.getLogger("stapes.syslog")
_PRI = re.compile(rb"^<(\d{1,3})>")
# syslog severities (0 emergency ... 7 debug) as logging levels
_LEVELS = [logging.CRITICAL] * 3 + [logging.ERROR, logging.WARNING, logging.INFO, logging.INFO]
_LEVELS.append(logging.DEBUG)
MAX_MESSAGE = 8192


def record(datagram: bytes) -> tuple[int, str]:
    """The logging level and text of one syslog datagram."""
    level = logging.INFO
    found = _PRI.match(datagram)
    if found:
        level = _LEVELS[int(found[1]) % 8]
        datagram = datagram[found.end() :]
    text = datagram[:MAX_MESSAGE].decode("utf-8", "replace").strip()
    return level, "".join(c if c.isprintable() else " " for c in text)


class _Protocol(asyncio.DatagramProtocol):
    def datagram_received(self, data: bytes, addr: object) -> None:
        level, text = record(data)
        if text:
            log.log(level, text, extra={"context": {"source": "syslog"}})


class SyslogSocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._transport: asyncio.BaseTransport | None = None

    async def apply(self, enabled: bool) -> None:
        if enabled == (self._transport is not None):
            return
        if not enabled:
            self.close()
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(str(self.path))
            self.path.chmod(0o600)
        except OSError:
            sock.close()
            raise
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(_Protocol, sock=sock)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
