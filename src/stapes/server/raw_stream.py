"""A connection's bytes once it is upgraded (``Upgrade: sftp``): aiohttp's payload parser is
replaced by this queue, which whoever serves the upgraded protocol reads."""

from __future__ import annotations

import asyncio


class RawStream:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        """Every byte the client sends, in order; b"" once it closed."""

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self.queue.put_nowait(b"")
