"""Splitting a downloaded multipart/form-data body (an Incus export of a split image) into its
parts, by position in the file (mapped, not read into memory)."""

from __future__ import annotations

import mmap
import re
from pathlib import Path

_NAME = re.compile(rb'name="([^"]*)"')


def split(body: Path, boundary: str, targets: dict[str, Path]) -> list[str]:
    """Write each part named in ``targets`` to its file; the names of the parts written."""
    delimiter = b"--" + boundary.encode()
    written = []
    with body.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        position = data.find(delimiter)
        while position >= 0:
            head_start = position + len(delimiter)
            if data[head_start : head_start + 2] == b"--":
                break  # the closing delimiter
            head_end = data.find(b"\r\n\r\n", head_start)
            following = data.find(b"\r\n" + delimiter, head_end)
            if head_end < 0 or following < 0:
                raise ValueError("truncated multipart body")
            found = _NAME.search(data[head_start:head_end])
            name = found.group(1).decode() if found else ""
            if name in targets:
                with targets[name].open("wb") as out:
                    start, end = head_end + 4, following
                    for offset in range(start, end, 1 << 20):
                        out.write(data[offset : min(offset + (1 << 20), end)])
                written.append(name)
            position = following + 2
    return written
