"""Writing and reading backup tarballs with GNU tar: volume trees renamed into the archive with
``--transform``, owners mapped back to the instance's own ids with ``--owner-map``."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stapes.api.errors import BadRequest
from stapes.host.device_nodes import remove_device_nodes
from stapes.host.idmap import IdMap
from stapes.host.run import RunError, run
from stapes.storage.backups import compression

TAR_FIDELITY = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "--sparse"]
INDEX = "backup/index.yaml"


class _TextTimes(yaml.SafeLoader):
    """Times stay the text they were written as (created_at is stored as sent)."""


_TextTimes.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Tree:
    """A host directory stored in the archive as ``member`` (e.g. ``backup/container``), its
    owners moved back from ``idmap`` (None: stored as they are)."""

    source: Path
    member: str
    idmap: IdMap | None = None
    exclude: tuple[str, ...] = ()
    """Files below ``source`` left out (this daemon's own, such as liblxc's config)."""


def _ere(text: str) -> str:
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", text)


def _transform(tree: Tree) -> str:
    prefix = _ere(str(tree.source).lstrip("/"))
    return f"s|^{prefix}(/.*)?$|{tree.member}\\1|xS"


def _owner_maps(trees: list[Tree], directory: Path) -> list[str]:
    """``--owner-map``/``--group-map`` files for every shifted id found in the trees."""
    uids: dict[int, int] = {}
    gids: dict[int, int] = {}
    for tree in trees:
        idmap = tree.idmap
        if idmap is None:
            continue

        def note(path: str, m: IdMap = idmap) -> None:
            st = os.lstat(path)
            if m.base <= st.st_uid < m.base + m.size:
                uids.setdefault(st.st_uid, st.st_uid - m.base)
            if m.base <= st.st_gid < m.base + m.size:
                gids.setdefault(st.st_gid, st.st_gid - m.base)

        note(str(tree.source))
        for dirpath, dirnames, filenames in os.walk(tree.source):
            for name in (*dirnames, *filenames):
                note(os.path.join(dirpath, name))
    options = []
    for option, ids in (("--owner-map", uids), ("--group-map", gids)):
        if ids:
            path = directory / option.strip("-")
            path.write_text("".join(f"+{host} +{inner}\n" for host, inner in ids.items()))
            options += [option, str(path)]
    return options


async def write(
    target: Path,
    extras: Path,
    first: list[str],
    trees: list[Tree],
    late: list[str],
    algorithm: str,
) -> None:
    """Write the archive: the ``first`` members found below ``extras`` (``backup/index.yaml``
    first of all), the trees, then the ``late`` members (which win over a tree's file of the same
    name when unpacked). The archive appears at ``target`` only when complete."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".maps-") as scratch:
        maps = await asyncio.to_thread(_owner_maps, trees, Path(scratch))
        argv = ["tar", "-c", "-f", str(partial), *TAR_FIDELITY, *maps]
        argv += ["--anchored", "--no-wildcards"]  # for --exclude: exact names
        argv += compression.tar_option(algorithm)
        for tree in trees:
            argv += ["--transform", _transform(tree)]
            argv += [f"--exclude={str(tree.source / name).lstrip('/')}" for name in tree.exclude]
        argv += ["-C", str(extras), *first]
        if trees:
            argv += ["-C", "/", *(str(t.source).lstrip("/") for t in trees)]
        if late:
            argv += ["-C", str(extras), *late]
        try:
            await run(argv, timeout=24 * 3600)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    partial.rename(target)


def put(extras: Path, member: str, content: bytes | str) -> str:
    """Write one member below ``extras``; returns its name."""
    path = extras / member
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return member


async def read_index(archive: Path) -> dict[str, Any]:
    """``backup/index.yaml`` of an archive (any compression tar recognises)."""
    try:
        _, out, _ = await run(["tar", "-xOf", str(archive), "--occurrence=1", INDEX], timeout=3600)
    except RunError as exc:
        first = (exc.stderr.strip().splitlines() or [""])[0]
        raise BadRequest(f"Not a backup tarball (no {INDEX}): {first}") from None
    try:
        index = yaml.load(out, Loader=_TextTimes)
    except yaml.YAMLError as exc:
        raise BadRequest(f"Invalid {INDEX}: {exc}") from None
    if not isinstance(index, dict):
        raise BadRequest(f"Invalid {INDEX}: not a mapping")
    return index


async def extract(archive: Path, target: Path) -> None:
    """Unpack the whole archive below ``target`` (which exists)."""
    try:
        await run(["tar", "-xf", str(archive), "-C", str(target), *TAR_FIDELITY], timeout=24 * 3600)
    except RunError as exc:
        raise BadRequest(f"Could not unpack the backup: {exc.stderr.strip()}") from None
    await asyncio.to_thread(remove_device_nodes, target)


def scratch_dir(parent: Path, prefix: str) -> Path:
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent, prefix=prefix))


async def remove(path: Path) -> None:
    await asyncio.to_thread(shutil.rmtree, path, True)
