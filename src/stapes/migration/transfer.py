"""Moving a volume's bytes over a migration channel: rsync (the peer runs the other end, so the
options are the ones Incus's peers expect) and raw block files (a VM's disk, then a barrier)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from stapes.api.errors import StapesError
from stapes.migration import wire
from stapes.migration.channel import CHUNK, Channel
from stapes.runtime.operations import Operation

log = logging.getLogger(__name__)

RELAY = Path(__file__).with_name("rsync_relay.py")
VANISHED = 24
"""rsync's exit code when source files vanished while it ran (a running instance)."""

Progress = Callable[[int, bool], None]
"""Told the bytes moved so far on one stream, and whether the stream is over."""


class TransferFailed(StapesError):
    status = 500


def our_features(pool_config: dict[str, str]) -> list[str]:
    """The rsync features this end may use with a pool (compression unless the pool says no)."""
    compress = pool_config.get("rsync.compression", "true").lower() not in ("false", "0", "no")
    return [f for f in wire.RSYNC_FEATURES if f != "compress" or compress]


def feature_args(features: list[str]) -> list[str]:
    """The rsync options a negotiated feature list turns on, on both ends alike."""
    args: list[str] = []
    if "xattrs" in features:
        args += ["--xattrs", "--filter=-x security.selinux"]
    if "delete" in features:
        args.append("--delete")
    if "compress" in features:
        args += ["--compress", "--compress-level=2"]
    return args


def _relay_command() -> str:
    """rsync's -e value: rsync splits it on blanks, so no part may hold one."""
    parts = [sys.executable, "-S", "-I", str(RELAY)]
    if any(c.isspace() or c in "'\"\\" for part in parts for c in part):
        raise TransferFailed(
            f"The rsync relay can't be run from {parts[0]!r} or {parts[-1]!r}: "
            "the paths hold blanks or quotes"
        )
    return " ".join(parts)


async def _to_channel(
    source: asyncio.StreamReader, channel: Channel, progress: Progress | None
) -> None:
    """A process's output (or socket) into the channel, then the barrier."""
    moved = 0
    while data := await source.read(CHUNK):
        await channel.write(data)
        moved += len(data)
        if progress:
            progress(moved, False)
    if progress:
        progress(moved, True)
    await channel.end()


async def _from_channel(
    channel: Channel, sink: asyncio.StreamWriter, progress: Progress | None, *, close: bool
) -> None:
    """The peer's stream (up to its barrier) into a process's input (or socket); then the
    input is closed (``close``) or only its writing half (a socket the other way still reads)."""
    moved = 0
    while data := await channel.read():
        moved += len(data)
        if progress:
            progress(moved, False)
        sink.write(data)
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await sink.drain()
    if progress:
        progress(moved, True)
    if close:
        sink.close()
    else:
        with contextlib.suppress(OSError):
            sink.write_eof()


async def send_tree(
    channel: Channel,
    path: Path,
    features: list[str],
    *,
    bwlimit: str = "",
    excludes: tuple[str, ...] = (),
    allow_vanished: bool = False,
    progress: Progress | None = None,
) -> None:
    """rsync ``path``'s contents to the peer's ``rsync --server`` through ``channel``."""
    ours, theirs = socket.socketpair()
    args = ["rsync", "-ar", "--devices", "--numeric-ids", "--partial", "--sparse"]
    if bwlimit:
        args += ["--bwlimit", bwlimit]
    args += feature_args(features)
    for pattern in excludes:
        args += ["--exclude", pattern]
    args += [
        "-e",
        _relay_command() + " " + str(theirs.fileno()),
        str(path).rstrip("/") + "/",
        "localhost:/tmp/stapes-migration",
    ]
    log.debug("migration: rsync send %s", args)
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=(theirs.fileno(),),
            start_new_session=True,  # rsync forks: the whole group is ended on failure
        )
    finally:
        theirs.close()
    reader, writer = await asyncio.open_connection(sock=ours)
    await _finish(
        proc,
        _to_channel(reader, channel, progress),
        _from_channel(channel, writer, None, close=False),
        writer,
        allow_vanished,
        "send",
        path,
    )


async def receive_tree(
    channel: Channel,
    path: Path,
    features: list[str],
    *,
    progress: Progress | None = None,
) -> None:
    """Run ``rsync --server`` into ``path``, fed from ``channel`` by the peer's rsync."""
    path.mkdir(parents=True, exist_ok=True)
    args = [
        "rsync",
        "--server",
        "-vlogDtpre.iLsfx",
        "--numeric-ids",
        "--devices",
        "--partial",
        "--sparse",
        "--modify-window=-1",
        *feature_args(features),
        ".",
        str(path).rstrip("/") + "/",
    ]
    log.debug("migration: rsync receive %s", args)
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # the receiver forks its generator: ended as a group
    )
    assert proc.stdin is not None and proc.stdout is not None
    await _finish(
        proc,
        _to_channel(proc.stdout, channel, None),
        _from_channel(channel, proc.stdin, progress, close=True),
        None,
        False,
        "receive",
        path,
    )


async def _nothing() -> None:
    return None


async def _finish(
    proc: asyncio.subprocess.Process,
    outgoing: Coroutine[Any, Any, None],
    incoming: Coroutine[Any, Any, None],
    writer: asyncio.StreamWriter | None,
    allow_vanished: bool,
    what: str,
    path: Path,
) -> None:
    assert proc.stderr is not None
    pumps = [asyncio.ensure_future(outgoing), asyncio.ensure_future(incoming)]
    errors = asyncio.ensure_future(proc.stderr.read())
    try:
        done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
        for pump in done:
            pump.result()  # the peer gone, a broken pipe: raised here
        rc = await proc.wait()
        stderr = await errors
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for task in (*pumps, errors):
            task.cancel()
        await asyncio.gather(*pumps, errors, return_exceptions=True)
        await proc.wait()
        raise
    finally:
        if writer is not None:
            writer.close()
    if rc == 0 or (rc == VANISHED and allow_vanished):
        return
    tail = " ".join(stderr.decode(errors="replace").strip().splitlines()[-3:])
    raise TransferFailed(f"rsync {what} of {path} failed (exit code {rc}): {tail}")


async def send_subvolume(
    channel: Channel, path: Path, parent: Path | None, progress: Progress | None = None
) -> None:
    """``btrfs send`` of a read-only subvolume (incremental from ``parent``, a subvolume the
    peer has received before), then the barrier."""
    argv = ["btrfs", "send", "-q", *(["-p", str(parent)] if parent else []), str(path)]
    log.debug("migration: %s", argv)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    await _finish(
        proc, _to_channel(proc.stdout, channel, progress), _nothing(), None, False,
        "btrfs send", path,
    )  # fmt: skip


async def receive_subvolume(
    channel: Channel, scratch: Path, progress: Progress | None = None
) -> Path:
    """``btrfs receive`` one stream into ``scratch``; the subvolume it made."""
    before = set(scratch.iterdir())
    argv = ["btrfs", "receive", "-q", str(scratch)]
    log.debug("migration: %s", argv)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdin is not None
    await _finish(
        proc, _nothing(), _from_channel(channel, proc.stdin, progress, close=True), None, False,
        "btrfs receive", scratch,
    )  # fmt: skip
    made = set(scratch.iterdir()) - before
    if len(made) != 1:
        raise TransferFailed("The peer's btrfs stream did not hold exactly one subvolume")
    return made.pop()


async def send_block(channel: Channel, path: Path, progress: Progress | None = None) -> None:
    """A block file's bytes, then the barrier."""
    moved = 0
    with path.open("rb") as source:
        while data := await asyncio.to_thread(source.read, 4 * 1024 * 1024):
            for start in range(0, len(data), CHUNK):
                await channel.write(data[start : start + CHUNK])
            moved += len(data)
            if progress:
                progress(moved, False)
    if progress:
        progress(moved, True)
    await channel.end()


async def receive_block(channel: Channel, path: Path, progress: Progress | None = None) -> None:
    """Write the peer's block stream over ``path`` (kept sparse where the stream is zeros)."""
    moved = 0
    zero = bytes(CHUNK)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as target:
        target.truncate(0)
        while data := await channel.read():
            if data == zero[: len(data)]:
                target.seek(len(data), 1)
            else:
                await asyncio.to_thread(target.write, data)
            moved += len(data)
            if progress:
                progress(moved, False)
        target.truncate(moved)
    if progress:
        progress(moved, True)


EXTENT = 1024 * 1024
"""The unit a disk is compared and sent in between the passes of a live move."""
_FRAME = struct.Struct(">QQ")
"""An extent frame's head: its offset and length (length 0 with offset 2**64-1: the size)."""
SIZE_MARK = 2**64 - 1


def _data_chunks(fd: int, size: int) -> list[int]:
    """The offsets of the EXTENT-sized chunks holding data (holes skipped, SEEK_DATA)."""
    chunks: list[int] = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after pos
            break
        end = os.lseek(fd, start, os.SEEK_HOLE)
        first = start - start % EXTENT
        chunks.extend(range(first, end, EXTENT))
        pos = end
    return sorted(set(chunks))


async def send_extents(
    channel: Channel,
    path: Path,
    before: dict[int, bytes] | None,
    progress: Progress | None = None,
) -> dict[int, bytes]:
    """A disk's data, one frame per EXTENT chunk that holds data and (given ``before``, the
    digests of an earlier pass) changed since; a chunk that became a hole goes as a hole.
    Returns the digests of this pass."""
    digests: dict[int, bytes] = {}
    moved = 0
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        await channel.write(_FRAME.pack(SIZE_MARK, size))
        chunks = await asyncio.to_thread(_data_chunks, fd, size)
        for offset in chunks:
            data = await asyncio.to_thread(os.pread, fd, EXTENT, offset)
            digest = hashlib.blake2b(data, digest_size=16).digest()
            digests[offset] = digest
            if before is not None and before.get(offset) == digest:
                continue
            await channel.write(_FRAME.pack(offset, len(data)) + data)
            moved += len(data)
            if progress:
                progress(moved, False)
        for offset in set(before or {}) - set(digests):
            await channel.write(_FRAME.pack(offset, min(EXTENT, max(0, size - offset))))
    finally:
        os.close(fd)
    if progress:
        progress(moved, True)
    await channel.end()
    return digests


async def receive_extents(channel: Channel, path: Path, progress: Progress | None = None) -> None:
    """Apply a ``send_extents`` stream to ``path`` (made owner-only if new)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    moved = 0
    try:
        while message := await channel.read():
            offset, length = _FRAME.unpack_from(message)
            data = message[_FRAME.size :]
            if offset == SIZE_MARK:
                os.ftruncate(fd, length)
            elif data:
                if len(data) != length:
                    raise TransferFailed("A disk extent arrived cut short")
                await asyncio.to_thread(os.pwrite, fd, data, offset)
                moved += len(data)
            else:  # became a hole at the source
                _zero_range(fd, offset, length)
            if progress:
                progress(moved, False)
    finally:
        os.close(fd)
    if progress:
        progress(moved, True)


def _zero_range(fd: int, offset: int, length: int) -> None:
    """Write zeros over a range (a chunk that became a hole at the source)."""
    zero = bytes(min(length, EXTENT))
    done = 0
    while done < length:
        done += os.pwrite(fd, zero[: length - done], offset + done)


class Meter:
    """Turns byte counts into the progress Incus shows in a migration operation's metadata,
    beside its secrets: ``fs_progress: "name: 12.00MB (6.00MB/s)"``."""

    def __init__(self, op: Operation, label: str) -> None:
        self.op = op
        self.label = label
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, moved: int, final: bool = False) -> None:
        now = time.monotonic()
        if now - self.last < 0.5 and not final:
            return
        self.last = now
        rate = moved / max(now - self.started, 1e-3)
        note(self.op, "fs_progress", f"{self.label}: {_size(moved)} ({_size(int(rate))}/s)")


def note(op: Operation, key: str, text: str) -> None:
    """A word in a migration operation's metadata, beside its secrets."""
    metadata = dict(op.metadata or {})
    metadata[key] = text
    op.update_metadata(metadata)


def _size(value: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.2f}{unit}" if unit != "B" else f"{value}B"
        value /= 1000  # type: ignore[assignment]
    return f"{value}B"
