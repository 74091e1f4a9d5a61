"""The compression algorithms a backup can be written with, as external programs GNU tar runs
(it recognises each of them by its magic bytes when reading, so reading needs no choice)."""

from __future__ import annotations

import shutil

from stapes.api.errors import BadRequest

PROGRAMS: dict[str, list[str]] = {
    "gzip": ["gzip", "-n"],
    "bzip2": ["bzip2"],
    "xz": ["xz", "-T0"],
    "lzma": ["lzma"],
    "zstd": ["zstd", "-q", "-T0"],
    "lz4": ["lz4", "-q"],
}
DEFAULT = "gzip"


def check(algorithm: str) -> str:
    """The algorithm to use (``""`` is the default); a 400 for an unknown one or one whose
    program is not installed."""
    algorithm = algorithm or DEFAULT
    if algorithm == "none":
        return algorithm
    argv = PROGRAMS.get(algorithm)
    if argv is None:
        raise BadRequest(
            f"Unknown compression algorithm {algorithm!r}: use none or one of "
            + ", ".join(sorted(PROGRAMS))
        )
    if shutil.which(argv[0]) is None:
        raise BadRequest(f"Compression algorithm {algorithm!r} needs {argv[0]}, not installed")
    return algorithm


def tar_option(algorithm: str) -> list[str]:
    """The tar arguments that compress the archive it writes."""
    if algorithm == "none":
        return []
    return ["--use-compress-program", " ".join(PROGRAMS[algorithm])]
