"""Which host ids an unprivileged container gets: the host's shared range, or with
security.idmap.isolated a range of its own that no other isolated instance uses."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from stapes.api.errors import BadRequest
from stapes.config.validate import parse_bool
from stapes.host.capabilities import subid_ranges
from stapes.host.idmap import IdMap, parse_raw

ISOLATED_START = 65536
"""Isolated ranges start past the first 65536 ids of the host range, which the shared map's
containers use in practice."""
DEFAULT_ISOLATED_SIZE = 65536


def choose(
    config: dict[str, str],
    shared: IdMap | None,
    host: IdMap | None,
    others: Iterable[IdMap],
) -> IdMap | None:
    """The map an instance should have. ``shared`` is what the driver gives every instance of
    this config (None: privileged), ``host`` the whole subordinate range, ``others`` the isolated
    maps other instances hold. ``raw.idmap`` entries are cut into the chosen range."""
    chosen = _choose_range(config, shared, host, (o.with_raw(()) for o in others))
    raw_text = config.get("raw.idmap", "")
    if chosen is None or not raw_text:
        return chosen
    try:
        raw = parse_raw(raw_text)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    for entry in raw:
        if entry.ns + entry.count > chosen.size:
            raise BadRequest(
                f"raw.idmap {entry.text()!r} maps past the container's {chosen.size} ids"
            )
    return chosen.with_raw(raw)


def _choose_range(
    config: dict[str, str],
    shared: IdMap | None,
    host: IdMap | None,
    others: Iterable[IdMap],
) -> IdMap | None:
    if shared is None or host is None:
        return shared
    if not parse_bool(config.get("security.idmap.isolated", "false")):
        return shared
    size = int(config.get("security.idmap.size") or DEFAULT_ISOLATED_SIZE)
    end = host.base + host.size
    if config.get("security.idmap.base"):
        wanted = IdMap(int(config["security.idmap.base"]), size)
        if wanted.base < host.base or wanted.base + size > end:
            raise BadRequest(
                f"security.idmap.base {wanted.base} with security.idmap.size {size} is outside "
                f"the host's subordinate ids for root ({host.base}-{end - 1})"
            )
        return wanted
    current = config.get("volatile.idmap.next", "")
    taken = sorted(others, key=lambda m: m.base)
    kept = IdMap.from_volatile(current)
    kept = kept.with_raw(()) if kept is not None else None
    reusable = kept is not None and kept.size == size and kept != shared
    if kept is not None and reusable and not any(kept.overlaps(o) for o in taken):
        return kept
    start = host.base + ISOLATED_START
    for other in taken:
        if IdMap(start, size).overlaps(other):
            start = other.base + other.size
    if start + size > end:
        raise BadRequest(
            f"No free range of {size} ids is left in the host's subordinate ids for "
            "security.idmap.isolated: lower security.idmap.size or widen root's /etc/subuid"
        )
    return IdMap(start, size)


def check_delegated(idmap: IdMap | None) -> None:
    """liblxc maps ids through newuidmap/newgidmap when they are installed, and those refuse
    host ids that /etc/subuid and /etc/subgid do not give root (except root's own id, which
    they always let it map, so ``both 0 0`` works as in Incus): say so before a start fails."""
    if idmap is None or not idmap.raw or not shutil.which("newuidmap"):
        return
    for uid, path in ((True, Path("/etc/subuid")), (False, Path("/etc/subgid"))):
        ranges = subid_ranges(path)
        own = os.getuid() if uid else os.getgid()  # the caller's own id needs no delegation
        for entry in idmap.raw:
            last = entry.host + entry.count - 1
            inside = (entry.host, entry.count) == (own, 1) or any(
                s <= entry.host and last < s + n for s, n in ranges
            )
            if entry.applies(uid) and not inside:
                span = str(entry.host) if entry.count == 1 else f"{entry.host}-{last}"
                raise BadRequest(
                    f"raw.idmap maps host {'uid' if uid else 'gid'}s {span}, which {path} does "
                    f"not delegate to root: add 'root:{entry.host}:{entry.count}' to {path}"
                )
