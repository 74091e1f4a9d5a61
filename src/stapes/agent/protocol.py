"""Frames between stapesd and the guest agent, over one virtio-serial port.

A frame is a 9-byte header (channel: u32, kind: u8, length: u32, big-endian) and ``length``
bytes of payload. Every request opens a channel of its own, so several execs and file
transfers share the port. Standard library only: this file is shipped into guests.
"""

from __future__ import annotations

import json
import struct

HEADER = struct.Struct(">IBI")
VSOCK_PORT = 8443
"""The agent's vsock port, where the host has vhost-vsock (the serial port otherwise)."""
MAX_PAYLOAD = 1 << 20

OPEN = 1
"""host -> guest: a request (JSON): exec, file-get, file-put, state, shutdown, ping."""
STDIN = 2
"""host -> guest: bytes for the command's stdin (an empty payload closes it)."""
STDOUT = 3
STDERR = 4
"""guest -> host: the command's output (or a file's bytes, on STDOUT)."""
EXIT = 5
"""guest -> host: the end of a channel (JSON: {"code": N} or {"error": "..."})."""
SIGNAL = 6
"""host -> guest: {"signal": N} for the command."""
RESIZE = 7
"""host -> guest: {"width": W, "height": H} of the command's terminal."""
REPLY = 8
"""guest -> host: a request's answer (JSON), before any bytes that follow it."""


def pack(channel: int, kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(channel, kind, len(payload)) + payload


def pack_json(channel: int, kind: int, value: object) -> bytes:
    return pack(channel, kind, json.dumps(value).encode())


class Reader:
    """Frames out of a byte stream, however it is cut."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        self.buffer += data
        frames = []
        while len(self.buffer) >= HEADER.size:
            channel, kind, length = HEADER.unpack_from(self.buffer)
            if length > MAX_PAYLOAD:
                raise ValueError(f"agent frame of {length} bytes: the stream is out of step")
            if len(self.buffer) < HEADER.size + length:
                break
            payload = bytes(self.buffer[HEADER.size : HEADER.size + length])
            del self.buffer[: HEADER.size + length]
            frames.append((channel, kind, payload))
        return frames
