"""file push|pull|delete|edit: files of instances, as INSTANCE/PATH."""

from __future__ import annotations

import json
import os
import posixpath
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from stapes.api.errors import RemoteError
from stapes.cli.main import run
from stapes.client.instance_server import InstanceServer


def split_target(target: str) -> tuple[str, str]:
    name, sep, path = target.partition("/")
    if not sep or not name:
        raise click.BadParameter(f"{target!r} is not INSTANCE/PATH")
    return name, "/" + path


def _mkdirs(server: InstanceServer, name: str, path: str) -> None:
    """Create ``path`` and its missing parents inside the instance (like mkdir -p)."""
    parts = [p for p in path.split("/") if p]
    for i in range(1, len(parts) + 1):
        server.put_file(name, "/" + "/".join(parts[:i]), kind="directory")


def _push_one(
    server: InstanceServer, name: str, source: Path, dest: str, uid: int, gid: int, mode: int
) -> None:
    st = source.lstat()
    if stat.S_ISLNK(st.st_mode):
        server.put_file(name, dest, os.readlink(source).encode(), kind="symlink")
        return
    own_mode = mode if mode >= 0 else stat.S_IMODE(st.st_mode)
    if source.is_dir():
        server.put_file(name, dest, kind="directory", uid=uid, gid=gid, mode=own_mode)
        for child in sorted(source.iterdir()):
            _push_one(server, name, child, posixpath.join(dest, child.name), uid, gid, mode)
        return
    server.put_file(name, dest, source, uid=uid, gid=gid, mode=own_mode)


@click.group()
def file() -> None:
    """Manage files in instances."""


@file.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.argument("target")
@click.option("-r", "--recursive", is_flag=True, help="Push directories recursively")
@click.option("-p", "--create-dirs", is_flag=True, help="Create missing parent directories")
@click.option("--uid", default=-1, help="Owner inside the instance (default: 0 for new files)")
@click.option("--gid", default=-1, help="Group inside the instance (default: 0 for new files)")
@click.option("--mode", default="", help="Octal mode (default: the local file's)")
def push(
    sources: tuple[Path, ...],
    target: str,
    recursive: bool,
    create_dirs: bool,
    uid: int,
    gid: int,
    mode: str,
) -> None:
    """Push local files into an instance: SOURCE... INSTANCE/PATH."""
    name, path = split_target(target)
    octal = int(mode, 8) if mode else -1

    def go(server: InstanceServer) -> None:
        into_dir = path.endswith("/") or len(sources) > 1 or recursive
        if create_dirs:
            _mkdirs(server, name, path if into_dir else posixpath.dirname(path))
        for source in sources:
            if source.is_dir() and not recursive:
                raise RemoteError(f"{source} is a directory: use -r", 400)
            dest = posixpath.join(path, source.name) if into_dir else path
            _push_one(server, name, source, dest, uid, gid, octal)

    run(go)


def _pull_one(server: InstanceServer, name: str, path: str, dest: Path, recursive: bool) -> None:
    """Streamed into a file beside ``dest`` that becomes ``dest`` once whole (a directory's
    listing and a link's target are read from it instead)."""
    fd, partial_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    partial = Path(partial_name)
    try:
        info = server.pull_file(name, path, partial)
        kind = info.get("type", "file")
        if kind == "file":
            with_mode = info.get("mode")
            partial.chmod(int(with_mode, 8) if with_mode else 0o644)
            partial.replace(dest)
            return
        body = partial.read_bytes()
    finally:
        partial.unlink(missing_ok=True)
    if kind == "directory":
        if not recursive:
            raise RemoteError(f"{path} is a directory: use -r", 400)
        dest.mkdir(exist_ok=True)
        for entry in json.loads(body)["metadata"]:
            _pull_one(server, name, posixpath.join(path, entry), dest / entry, recursive)
        return
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    dest.symlink_to(body.decode())


@file.command()
@click.argument("sources", nargs=-1, required=True)
@click.argument("target")
@click.option("-r", "--recursive", is_flag=True, help="Pull directories recursively")
@click.option("-p", "--create-dirs", is_flag=True, help="Create missing local directories")
def pull(sources: tuple[str, ...], target: str, recursive: bool, create_dirs: bool) -> None:
    """Pull files out of an instance: INSTANCE/PATH... TARGET (- for standard output)."""

    def go(server: InstanceServer) -> None:
        for source in sources:
            name, path = split_target(source)
            if target == "-":  # streamed: a big file is never all in memory
                server.pull_file(name, path, sys.stdout.buffer)
                sys.stdout.buffer.flush()
                continue
            local = Path(target)
            if create_dirs:
                local.mkdir(parents=True, exist_ok=True)
            dest = local / posixpath.basename(path.rstrip("/")) if local.is_dir() else local
            _pull_one(server, name, path, dest, recursive)

    run(go)


@file.command()
@click.argument("targets", nargs=-1, required=True)
def delete(targets: tuple[str, ...]) -> None:
    """Delete files (or empty directories) in instances: INSTANCE/PATH..."""

    def go(server: InstanceServer) -> None:
        for target in targets:
            server.delete_file(*split_target(target))

    run(go)


@file.command()
@click.argument("target")
def edit(target: str) -> None:
    """Edit a file of an instance in $EDITOR (or replace it with standard input)."""
    name, path = split_target(target)

    def go(server: InstanceServer) -> None:
        if not sys.stdin.isatty():
            server.put_file(name, path, sys.stdin.buffer.read())
            return
        body, _ = server.get_file(name, path)
        with tempfile.NamedTemporaryFile(suffix=posixpath.basename(path)) as f:
            f.write(body)
            f.flush()
            editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
            subprocess.run([editor, f.name], check=True)
            server.put_file(name, path, Path(f.name).read_bytes())

    run(go)


COMMANDS = [file]
