"""The idmap of unprivileged containers and the rootfs ownership shift that goes with it."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from stapes.host.capabilities import subid_range

DEFAULT_SIZE = 1_000_000_000
_KINDS = ("uid", "gid", "both")


@dataclass(frozen=True)
class RawEntry:
    """One line of ``raw.idmap``: host ids ``host..host+count-1`` appear in the container as
    ``ns..ns+count-1``, for uids, gids or both."""

    kind: str
    host: int
    ns: int
    count: int

    def applies(self, uid: bool) -> bool:
        return self.kind == "both" or self.kind == ("uid" if uid else "gid")

    def text(self) -> str:
        def span(start: int) -> str:
            return str(start) if self.count == 1 else f"{start}-{start + self.count - 1}"

        return f"{self.kind} {span(self.host)} {span(self.ns)}"


def _id_range(text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    ascii_digits = (first + last).isascii() and first.isdigit() and (not last or last.isdigit())
    if not ascii_digits:
        raise ValueError(f"{text!r} is not an id or an id range (1000 or 1000-1999)")
    start, end = int(first), int(last or first)
    if end < start or end >= 2**32:
        raise ValueError(f"{text!r} is not a range of 32-bit ids going up")
    return start, end - start + 1


def parse_raw(text: str) -> tuple[RawEntry, ...]:
    """Parse ``raw.idmap`` (lines of ``uid|gid|both HOST[-END] CONTAINER[-END]``)."""
    entries: list[RawEntry] = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) != 3 or words[0] not in _KINDS:
            raise ValueError(
                f"raw.idmap line {number} is not 'uid|gid|both HOST-ID CONTAINER-ID': {line!r}"
            )
        (host, count), (ns, ns_count) = _id_range(words[1]), _id_range(words[2])
        if count != ns_count:
            raise ValueError(f"raw.idmap line {number}: the two ranges differ in size: {line!r}")
        entry = RawEntry(words[0], host, ns, count)
        for other in entries:
            for uid in (True, False):
                if entry.applies(uid) and other.applies(uid) and _meet(entry, other):
                    raise ValueError(f"raw.idmap line {number} overlaps an earlier line")
        entries.append(entry)
    return tuple(entries)


def _meet(a: RawEntry, b: RawEntry) -> bool:
    def cross(s1: int, s2: int) -> bool:
        return s1 < s2 + b.count and s2 < s1 + a.count

    return cross(a.host, b.host) or cross(a.ns, b.ns)


def is_raw_idmap(value: str) -> None:
    """Validator of the ``raw.idmap`` instance key."""
    parse_raw(value)


Span = tuple[int, int, int]
"""(host id, container id, count)"""


@dataclass(frozen=True)
class IdMap:
    """The host's range mapped at container id 0 (container id N is host id ``base + N``),
    with the ``raw.idmap`` entries cut out of it and mapped instead."""

    base: int
    size: int
    raw: tuple[RawEntry, ...] = field(default=())

    @classmethod
    def from_host(cls) -> IdMap | None:
        uid = subid_range(Path("/etc/subuid"))
        gid = subid_range(Path("/etc/subgid"))
        if not uid or not gid:
            return None
        base = uid[0] if uid[0] == gid[0] else max(uid[0], gid[0])
        size = min(uid[1], gid[1], DEFAULT_SIZE)
        return cls(base, size)

    def with_raw(self, raw: tuple[RawEntry, ...]) -> IdMap:
        return IdMap(self.base, self.size, raw)

    @property
    def key(self) -> str:
        return f"{self.base}-{self.size}"

    def spans(self, uid: bool) -> list[Span]:
        """Every mapped range of uids (or gids): the raw entries, then what is left of the main
        range around them."""
        raw = sorted((e for e in self.raw if e.applies(uid)), key=lambda e: e.ns)
        spans: list[Span] = [(e.host, e.ns, e.count) for e in raw]
        start = 0
        for entry in raw:
            if entry.ns > start:
                spans.append((self.base + start, start, min(entry.ns, self.size) - start))
            start = max(start, entry.ns + entry.count)
            if start >= self.size:
                break
        if start < self.size:
            spans.append((self.base + start, start, self.size - start))
        return [s for s in spans if s[2] > 0]

    def to_host(self, ns_id: int, uid: bool) -> int | None:
        for host, ns, count in self.spans(uid):
            if ns <= ns_id < ns + count:
                return host + ns_id - ns
        return None

    def to_ns(self, host_id: int, uid: bool) -> int | None:
        for host, ns, count in self.spans(uid):
            if host <= host_id < host + count:
                return ns + host_id - host
        return None

    @property
    def root_uid(self) -> int:
        """The host uid of the container's root."""
        found = self.to_host(0, True)
        return self.base if found is None else found

    def lxc_items(self) -> list[tuple[str, str]]:
        items: list[tuple[str, str]] = []
        for letter, uid in (("u", True), ("g", False)):
            for host, ns, count in sorted(self.spans(uid), key=lambda s: s[1]):
                items.append(("lxc.idmap", f"{letter} {ns} {host} {count}"))
        return items

    @classmethod
    def from_volatile(cls, text: str) -> IdMap | None:
        """Read back what ``volatile()`` wrote (None for ``[]``: an unshifted instance)."""
        try:
            entries = json.loads(text or "[]")
        except json.JSONDecodeError:
            return None
        spans: dict[bool, list[Span]] = {True: [], False: []}
        for entry in entries if isinstance(entries, list) else []:
            try:
                span = (int(entry["Hostid"]), int(entry["Nsid"]), int(entry["Maprange"]))
            except (KeyError, TypeError, ValueError):
                continue
            for uid, flag in ((True, "Isuid"), (False, "Isgid")):
                if entry.get(flag):
                    spans[uid].append(span)
        if not spans[True]:
            return None
        weight: dict[int, int] = {}
        for host, ns, count in spans[True]:
            weight[host - ns] = weight.get(host - ns, 0) + count
        base = max(weight, key=lambda offset: weight[offset])
        size = max(ns + count for host, ns, count in spans[True] if host - ns == base)
        extra = {uid: {s for s in spans[uid] if s[0] - s[1] != base} for uid in (True, False)}
        raw = [RawEntry("both", *s) for s in sorted(extra[True] & extra[False])]
        raw += [RawEntry("uid", *s) for s in sorted(extra[True] - extra[False])]
        raw += [RawEntry("gid", *s) for s in sorted(extra[False] - extra[True])]
        return cls(base, size, tuple(raw))

    @staticmethod
    def check_volatile(text: str) -> None:
        """A validator of volatile.idmap.* values: Incus's JSON list of map entries."""
        try:
            entries = json.loads(text or "[]")
            if not isinstance(entries, list):
                raise ValueError
            for entry in entries:
                for field in ("Hostid", "Nsid", "Maprange"):
                    if not isinstance(entry[field], int) or entry[field] < 0:
                        raise ValueError
        except (ValueError, KeyError, TypeError):
            raise ValueError("not an idmap (a JSON list of Hostid/Nsid/Maprange entries)") from None

    def overlaps(self, other: IdMap) -> bool:
        return self.base < other.base + other.size and other.base < self.base + self.size

    def volatile(self) -> str:
        """The JSON Incus stores in volatile.idmap.current / .next (compact, as Go writes it)."""
        return json.dumps(
            [
                {"Isuid": uid, "Isgid": not uid, "Hostid": host, "Nsid": ns, "Maprange": count}
                for uid in (True, False)
                for host, ns, count in sorted(self.spans(uid), key=lambda s: s[1])
            ],
            separators=(",", ":"),
        )


def shift_tree(root: Path, delta: int) -> None:
    """Add ``delta`` to the owner and group of every file under ``root`` (negative to unshift).

    chown clears setuid/setgid bits on files, so they are put back afterwards."""
    for path in _walk(root):
        st = os.lstat(path)
        _chown(path, st, st.st_uid + delta, st.st_gid + delta)


def reshift_tree(root: Path, old: IdMap | None, new: IdMap | None) -> None:
    """Move a tree's owners from one map to another (None: unshifted host ids)."""
    if not (old and old.raw) and not (new and new.raw):
        delta = (new.base if new else 0) - (old.base if old else 0)
        if delta:
            shift_tree(root, delta)
        return
    if old == new:
        return

    def move(host_id: int, uid: bool) -> int:
        ns = old.to_ns(host_id, uid) if old else host_id
        if ns is None:
            return host_id
        moved = new.to_host(ns, uid) if new else ns
        return host_id if moved is None else moved

    for path in _walk(root):
        st = os.lstat(path)
        _chown(path, st, move(st.st_uid, True), move(st.st_gid, False))


IDMAP_PREFIX = "volatile.idmap."
"""The daemon's keys that record an instance's maps (current, next, base)."""


def current_map(config: dict[str, str]) -> IdMap | None:
    """The map an instance's (or snapshot's) files are shifted to, from its volatile keys."""
    return IdMap.from_volatile(config.get("volatile.idmap.current", "[]"))


def _walk(root: Path) -> Iterator[str]:
    yield str(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            yield os.path.join(dirpath, name)


def _chown(path: str, st: os.stat_result, uid: int, gid: int) -> None:
    if uid < 0 or gid < 0 or (uid, gid) == (st.st_uid, st.st_gid):
        return
    os.lchown(path, uid, gid)
    if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        os.chmod(path, stat.S_IMODE(st.st_mode))
