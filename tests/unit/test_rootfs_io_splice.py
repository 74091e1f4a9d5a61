"""rootfs_io moves file contents between a pipe and a file with splice, and says so when it
cannot (no pipe, or a file opened to append), before moving anything."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from stapes.host.rootfs_io import splice_all


def _feed(write_end: int, data: bytes) -> threading.Thread:
    def run() -> None:
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(data)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_pipe_is_moved_whole_into_a_file(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 1)
    read_end, write_end = os.pipe()
    feeder = _feed(write_end, data)
    target = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert splice_all(read_end, target) is True
    finally:
        os.close(target)
        os.close(read_end)
        feeder.join()
    assert (tmp_path / "f").read_bytes() == data


def test_a_file_is_moved_whole_into_a_pipe(tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 3)
    (tmp_path / "f").write_bytes(data)
    read_end, write_end = os.pipe()
    got = bytearray()

    def drain() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            got.extend(pipe.read())

    reader = threading.Thread(target=drain)
    reader.start()
    source = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert splice_all(source, write_end) is True
    finally:
        os.close(source)
        os.close(write_end)
        reader.join()
    assert bytes(got) == data


def test_an_appending_file_is_left_to_the_caller(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"kept\n")
    read_end, write_end = os.pipe()
    os.write(write_end, b"more\n")
    target = os.open(tmp_path / "f", os.O_WRONLY | os.O_APPEND)
    try:
        assert splice_all(read_end, target) is False
        assert os.read(read_end, 100) == b"more\n"  # nothing was taken from the pipe
    finally:
        os.close(target)
        os.close(read_end)
        os.close(write_end)
    assert (tmp_path / "f").read_bytes() == b"kept\n"


def test_two_files_are_left_to_the_caller(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    source = os.open(tmp_path / "a", os.O_RDONLY)
    target = os.open(tmp_path / "b", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert splice_all(source, target) is False
    finally:
        os.close(source)
        os.close(target)
