"""Copy a directory tree as ``cp -a`` does, split over several ``cp -a`` processes at once.

Creating files is what a copy of an image rootfs spends its time on (the kernel allocating
inodes, more than moving bytes), and one ``cp`` does it on one core. ``plan`` walks the source
once and cuts it into parts of similar entry counts: whole subtrees, or the non-directory
entries of one directory. Each worker runs ``cp -a`` on its parts; the directories that were cut
are made first and get their owner, mode, extended attributes (ACLs included) and times from
the source last, deepest first, as ``cp -a`` would have left them.

``cp`` keeps hard links only among the files one invocation copies, so a directory holding all
the links to one inode (their lowest common directory) is never cut: the links travel in the
same subtree. A tree too small to gain from it is copied by one ``cp -a``."""

from __future__ import annotations

import asyncio
import errno
import heapq
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from stapes.host.in_root import open_in_root
from stapes.host.run import DIES_WITH_DAEMON, run

SMALL_TREE = 2000
"""Below this many entries one cp is as fast: walking and starting more costs what they save."""
PARTS_PER_WORKER = 4
MAX_CUT_DIRS = 64
ARGS_PER_CP = 512
MAX_DEPTH = 64
"""Deeper trees are copied by one cp (the walk recurses; cp does not need to)."""
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
XATTRS_NOT_KEPT = (errno.ENOTSUP, errno.ENODATA, errno.EINVAL, errno.EPERM)


def workers() -> int:
    """How many cp processes a copy runs: one per core, 2 to 4."""
    return max(2, min(4, os.cpu_count() or 1))


@dataclass
class _Dir:
    entries: int = 0  # everything below it, recursively
    subdirs: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)  # files, links, devices: names


@dataclass
class Plan:
    """What to make and who copies what: ``cut`` directories (relative, "" is the root, parents
    first) are made by hand; ``parts[i]`` lists worker i's (destination directory, source names
    in the matching source directory) jobs, each one ``cp -a -t``."""

    cut: list[str]
    parts: list[list[tuple[str, list[str]]]]
    entries: int


def _walk(root: Path) -> tuple[dict[str, _Dir], set[str]] | None:
    """Every directory below ``root`` (relative names) and the directories that must not be cut
    because hard links to one inode lie in more than one of their children; None when the walk
    could not see all of it (too deep, or changed while walked: one cp copies it then).

    Directories are opened one component at a time below the previous one's fd, never through
    a symbolic link: the source may be a running instance's tree, which its users change."""
    dirs: dict[str, _Dir] = {}
    links: dict[tuple[int, int], list[str]] = {}

    def visit(fd: int, rel: str, depth: int) -> int:
        node = dirs[rel] = _Dir()
        with os.scandir(fd) as it:
            for entry in it:
                name = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    if depth >= MAX_DEPTH:
                        raise _TooDeep
                    node.subdirs.append(entry.name)
                    child = os.open(entry.name, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
                    try:
                        node.entries += 1 + visit(child, name, depth + 1)
                    finally:
                        os.close(child)
                    continue
                node.others.append(entry.name)
                node.entries += 1
                st = entry.stat(follow_symlinks=False)
                if st.st_nlink > 1:
                    links.setdefault((st.st_dev, st.st_ino), []).append(name)
        return node.entries

    root_fd = os.open(root, DIR_FLAGS)
    try:
        visit(root_fd, "", 0)
    except (OSError, _TooDeep):
        return None
    finally:
        os.close(root_fd)
    pinned = {_common_dir(paths) for paths in links.values() if len(paths) > 1}
    return dirs, pinned


class _TooDeep(Exception):
    pass


def _common_dir(paths: list[str]) -> str:
    parents = [p.split("/")[:-1] for p in paths]
    common: list[str] = []
    for parts in zip(*parents, strict=False):
        if any(part != parts[0] for part in parts):
            break
        common.append(parts[0])
    return "/".join(common)


def plan(source: Path, n_workers: int) -> Plan:
    """Cut the tree at ``source`` into about ``n_workers * PARTS_PER_WORKER`` parts of similar
    size and share them out, largest first, each to the least loaded worker."""
    walked = _walk(source) if n_workers > 1 else None
    if walked is None:
        return Plan(cut=[], parts=[], entries=0)
    dirs, pinned = walked
    total = dirs[""].entries
    if total < SMALL_TREE or "" in pinned:
        return Plan(cut=[], parts=[], entries=total)
    target = total / (n_workers * PARTS_PER_WORKER)
    # a part: (entries, parent dir, [names]); the heap holds whole subtrees not yet cut
    heap: list[tuple[int, str]] = [(-total, "")]
    done: list[tuple[int, str, list[str]]] = []
    cut: list[str] = []
    while heap:
        size, rel = heapq.heappop(heap)
        if -size <= target or rel in pinned or len(cut) >= MAX_CUT_DIRS:
            done.append((-size, os.path.dirname(rel), [os.path.basename(rel)]))
            continue
        cut.append(rel)
        node = dirs[rel]
        if node.others:
            done.append((len(node.others), rel, node.others))
        for name in node.subdirs:
            child = f"{rel}/{name}" if rel else name
            heapq.heappush(heap, (-(dirs[child].entries + 1), child))
    loads = [(0, i) for i in range(n_workers)]
    jobs: list[dict[str, list[str]]] = [{} for _ in range(n_workers)]
    for size, parent, names in sorted(done, key=lambda part: -part[0]):
        load, i = heapq.heappop(loads)
        jobs[i].setdefault(parent, []).extend(names)
        heapq.heappush(loads, (load + size, i))
    parts = [
        [
            (parent, names[start : start + ARGS_PER_CP])
            for parent, names in worker.items()
            for start in range(0, len(names), ARGS_PER_CP)
        ]
        for worker in jobs
    ]
    return Plan(cut=sorted(cut, key=lambda rel: rel.count("/") if rel else -1), parts=parts,
                entries=total)  # fmt: skip


async def copy_tree(source: Path, target: Path, reflink: bool = False) -> None:
    """``cp -a source target`` (``target`` must not exist), split over ``workers()`` processes
    when the tree is big enough. On failure ``target`` may hold part of the copy: the caller
    removes it, as after a failed cp."""
    layout = await asyncio.to_thread(plan, source, workers())
    await copy_as_planned(layout, source, target, reflink)


async def copy_as_planned(layout: Plan, source: Path, target: Path, reflink: bool) -> None:
    """Run ``layout``. Each cp runs in the source directory it copies from, opened inside
    ``source`` (``open_in_root``: no link leads out of it), and is given bare names after
    ``--``: no path below ``source`` is resolved by name, so a tree that changed since it was
    walked cannot make a cp read outside it."""
    options = ["--reflink=auto"] if reflink else []
    if not layout.cut:
        await run([*DIES_WITH_DAEMON, "cp", "-a", *options, str(source), str(target)])
        return
    for rel in layout.cut:
        (target / rel if rel else target).mkdir(mode=0o700)
    root_fd = os.open(source, DIR_FLAGS)
    try:

        async def worker(jobs: list[tuple[str, list[str]]]) -> None:
            for parent, names in jobs:
                into = target / parent if parent else target
                argv = [*DIES_WITH_DAEMON, "cp", "-a", *options, "-t", str(into), "--", *names]
                fd = open_in_root(root_fd, parent or "/", DIR_FLAGS)
                try:
                    await run(argv, cwd=f"/proc/self/fd/{fd}")
                finally:
                    os.close(fd)

        async with asyncio.TaskGroup() as group:
            for jobs in layout.parts:
                group.create_task(worker(jobs))
        await asyncio.to_thread(_copy_dir_attributes, root_fd, target, layout.cut)
    finally:
        os.close(root_fd)


def _copy_dir_attributes(root_fd: int, target: Path, cut: list[str]) -> None:
    """What cp -a gives a directory it copies, for the ones made by hand: owner, extended
    attributes (ACLs are some), mode and times, deepest first so that nothing made inside one
    later moves its times (owner before mode: chown clears the setgid bit)."""
    for rel in reversed(cut):
        into = target / rel if rel else target
        fd = open_in_root(root_fd, rel or "/", DIR_FLAGS)
        try:
            st = os.fstat(fd)
            os.chown(into, st.st_uid, st.st_gid, follow_symlinks=False)
            for name in os.listxattr(fd):
                try:
                    os.setxattr(into, name, os.getxattr(fd, name), follow_symlinks=False)
                except OSError as exc:  # cp -a keeps what the target's filesystem takes too
                    if exc.errno not in XATTRS_NOT_KEPT:
                        raise
            os.chmod(into, stat.S_IMODE(st.st_mode))
            os.utime(into, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        finally:
            os.close(fd)
