"""The idmap of unprivileged containers and the rootfs ownership shift that goes with it."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from stapes.host.capabilities import subid_range

DEFAULT_SIZE = 1_000_000_000


@dataclass(frozen=True)
class IdMap:
    """One range, the same for uids and gids: container id N is host id ``base + N``."""

    base: int
    size: int

    @classmethod
    def from_host(cls) -> IdMap | None:
        uid = subid_range(Path("/etc/subuid"))
        gid = subid_range(Path("/etc/subgid"))
        if not uid or not gid:
            return None
        base = uid[0] if uid[0] == gid[0] else max(uid[0], gid[0])
        size = min(uid[1], gid[1], DEFAULT_SIZE)
        return cls(base, size)

    @property
    def key(self) -> str:
        return f"{self.base}-{self.size}"

    def lxc_items(self) -> list[tuple[str, str]]:
        return [
            ("lxc.idmap", f"u 0 {self.base} {self.size}"),
            ("lxc.idmap", f"g 0 {self.base} {self.size}"),
        ]

    @classmethod
    def from_volatile(cls, text: str) -> IdMap | None:
        """Read back what ``volatile()`` wrote (None for ``[]``: an unshifted instance)."""
        try:
            entries = json.loads(text or "[]")
        except json.JSONDecodeError:
            return None
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("Isuid"):
                return cls(int(entry["Hostid"]), int(entry["Maprange"]))
        return None

    def overlaps(self, other: IdMap) -> bool:
        return self.base < other.base + other.size and other.base < self.base + self.size

    def volatile(self) -> str:
        """The JSON Incus stores in volatile.idmap.current / .next."""
        return json.dumps(
            [
                {
                    "Isuid": True,
                    "Isgid": False,
                    "Hostid": self.base,
                    "Nsid": 0,
                    "Maprange": self.size,
                },
                {
                    "Isuid": False,
                    "Isgid": True,
                    "Hostid": self.base,
                    "Nsid": 0,
                    "Maprange": self.size,
                },
            ]
        )


def shift_tree(root: Path, delta: int) -> None:
    """Add ``delta`` to the owner and group of every file under ``root`` (negative to unshift).

    chown clears setuid/setgid bits on files, so they are put back afterwards."""
    _shift_one(str(root), delta)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            _shift_one(os.path.join(dirpath, name), delta)


def reshift_tree(root: Path, old: IdMap | None, new: IdMap | None) -> None:
    """Move a tree's owners from one map to another (None: unshifted host ids)."""
    delta = (new.base if new else 0) - (old.base if old else 0)
    if delta:
        shift_tree(root, delta)


def current_map(config: dict[str, str]) -> IdMap | None:
    """The map an instance's (or snapshot's) files are shifted to, from its volatile keys."""
    return IdMap.from_volatile(config.get("volatile.idmap.current", "[]"))


def _shift_one(path: str, delta: int) -> None:
    st = os.lstat(path)
    uid, gid = st.st_uid + delta, st.st_gid + delta
    if uid < 0 or gid < 0:
        return
    os.lchown(path, uid, gid)
    if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        os.chmod(path, stat.S_IMODE(st.st_mode))
