"""Probes of what this host can do. Used by the daemon for its errors and by the tests for skips."""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HostCaps:
    liblxc: str | None
    """Version of liblxc, or None when the Python bindings cannot be imported."""
    unprivileged: bool
    """/etc/subuid and /etc/subgid give root a range large enough for the default idmap."""
    cgroup: str
    """"v1", "v2" or "hybrid"."""
    kernel_version: str
    architecture: str

    def missing_liblxc(self) -> str:
        return (
            "liblxc's Python bindings cannot be imported: install Debian's lxc and lxc-dev "
            "and `pip install lxc` in stapesd's environment"
        )


def _liblxc_version() -> str | None:
    try:
        import lxc
    except ImportError:
        return None
    return str(getattr(lxc, "version", "") or "unknown")


def subid_range(path: Path, user: str = "root") -> tuple[int, int] | None:
    """The first (start, count) range for ``user`` in a subuid/subgid file."""
    ranges = subid_ranges(path, user)
    return ranges[0] if ranges else None


def subid_ranges(path: Path, user: str = "root") -> list[tuple[int, int]]:
    """Every (start, count) range for ``user`` in a subuid/subgid file."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.strip().split(":")
        if (
            len(parts) == 3
            and parts[0] in (user, "0")
            and parts[1].isdigit()
            and parts[2].isdigit()
        ):
            found.append((int(parts[1]), int(parts[2])))
    return found


def _cgroup_layout() -> str:
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return "v2"
    if Path("/sys/fs/cgroup/unified").exists():
        return "hybrid"
    return "v1"


@functools.cache
def probe() -> HostCaps:
    uid = subid_range(Path("/etc/subuid"))
    gid = subid_range(Path("/etc/subgid"))
    unpriv = bool(uid and gid and uid[1] >= 65536 and gid[1] >= 65536) and os.geteuid() == 0
    return HostCaps(
        liblxc=_liblxc_version(),
        unprivileged=unpriv,
        cgroup=_cgroup_layout(),
        kernel_version=platform.release(),
        architecture=platform.machine(),
    )
