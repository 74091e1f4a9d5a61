"""Cheap looks at containers without liblxc, for lists of many: the freezer state of a running
init's cgroup (v1), and which liblxc monitors listen (their abstract command sockets)."""

from __future__ import annotations

import os
from pathlib import Path

FREEZER_ROOT = Path("/sys/fs/cgroup/freezer")
SUN_PATH_MAX = 108
"""sockaddr_un's sun_path: liblxc hashes monitor socket names that would not fit."""


def freezer_state(pid: int) -> str | None:
    """THAWED, FREEZING or FROZEN of the freezer cgroup ``pid`` is in (None: unknown)."""
    try:
        cgroups = _read(f"/proc/{pid}/cgroup")
    except OSError:
        return None
    for line in cgroups.splitlines():
        _, controllers, path = line.split(":", 2)
        if "freezer" in controllers.split(","):
            try:
                return _read(os.path.join(FREEZER_ROOT, path.lstrip("/"), "freezer.state")).strip()
            except OSError:
                return None
    return None


def _read(path: str) -> str:
    """A small file's text (lists read two per running container: no pathlib on this path)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536).decode(errors="replace")
    finally:
        os.close(fd)


def command_socket(lxcpath: Path | str, name: str) -> str:
    """The abstract socket a running container's liblxc monitor listens on (as
    /proc/net/unix shows it), or "" when liblxc would hash a name that long."""
    socket = f"@{lxcpath}/{name}/command"
    return socket if len(socket) < SUN_PATH_MAX else ""


def listening_sockets() -> set[str]:
    """The abstract unix sockets listening on this host (one read for a whole list)."""
    try:
        with open("/proc/net/unix", "rb") as table:
            lines = table.read().decode(errors="replace").splitlines()[1:]
    except OSError:
        return set()
    return {fields[7] for line in lines if len(fields := line.split()) > 7}


def without_monitor(lxcpath: Path | str, names: list[str]) -> list[bool]:
    """For each container name: True when its liblxc monitor is known not to listen (it is
    stopped), from one read of the host's sockets."""
    monitors = listening_sockets()
    found = []
    for name in names:
        socket = command_socket(lxcpath, name)
        found.append(bool(socket) and socket not in monitors)
    return found
