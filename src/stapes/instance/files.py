"""Files of an instance (running or stopped): read, write and delete through the chrooted helper
in host/rootfs_io.py, with ids translated between the container and the host."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stapes.api.errors import BadRequest, InternalError, NotFound
from stapes.db.instances import InstanceRow
from stapes.host import rootfs_io
from stapes.host.idmap import IdMap
from stapes.host.run import spawn
from stapes.host.socket_splice import PipeBody, SocketBody
from stapes.instance.attach_client import HelperChild, HelperProcess, piped, shared_helper
from stapes.instance.service import InstanceService
from stapes.instance.vm import files as vm_files
from stapes.instance.vm.agent_hub import AgentHub
from stapes.instance.vm.qemu import QemuDriver

log = logging.getLogger(__name__)

HELPER = rootfs_io.ARGV
OVERFLOW_ID = 65534


async def _rootfs_io(argv: list[str]) -> HelperProcess | asyncio.subprocess.Process:
    """host/rootfs_io.py's ARGV (ROOT OP PATH ...), forked by the attach helper (a new
    Python costs ~17 ms a file operation); a process of its own when the helper fails."""
    try:
        return await shared_helper().run("rootfs_io", argv)
    except InternalError as exc:
        log.warning("file operation without the attach helper: %s", exc.message)
        return await spawn([*HELPER, *argv])


async def _rootfs_io_piped(
    argv: list[str],
) -> tuple[HelperChild | asyncio.subprocess.Process, PipeBody, PipeBody]:
    """As ``_rootfs_io``, with its stdout and stderr left as pipes to splice from."""
    try:
        return await shared_helper().run_piped("rootfs_io", argv)
    except InternalError as exc:
        log.warning("file operation without the attach helper: %s", exc.message)
    return await piped(
        lambda out, err: asyncio.create_subprocess_exec(
            *HELPER, *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err
        )
    )


class FileBytes:
    """A file's bytes as the helper writes them to its stdout: iterated, or spliced into the
    client's socket. Either way the helper's exit is checked at the end (a helper that failed
    part-way raises then), and it is killed when the reader stops early."""

    def __init__(
        self,
        path: str,
        proc: HelperChild | asyncio.subprocess.Process,
        stdout: PipeBody,
        stderr: PipeBody,
    ) -> None:
        self.path = path
        self.proc = proc
        self.stdout = stdout
        self.stderr = stderr

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.stdout.chunks():
                yield chunk
            await self.finish()
        finally:
            await self.close()

    async def send_chunked(self, sock: int) -> None:
        """Into ``sock`` as HTTP/1.1 chunks (host/socket_splice.py), without the last one."""
        try:
            await self.stdout.send_chunked(sock)
            await self.finish()
        finally:
            await self.close()

    async def finish(self) -> None:
        """After the last byte: the helper's verdict."""
        stderr = await self.stderr.rest()
        if await self.proc.wait() != 0:
            raise _error(self.path, stderr)

    async def close(self) -> None:
        if self.proc.returncode is None:  # the reader stopped early
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()
        self.stdout.close()
        self.stderr.close()


@dataclass
class FileInfo:
    type: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime: float
    target: str
    entries: list[str]


def _error(path: str, stderr: bytes) -> Exception:
    text = stderr.decode(errors="replace").strip() or "file operation failed"
    code, _, message = text.partition(": ")
    if code == "ENOENT":
        return NotFound(f"Path {path!r} not found in the instance")
    if code in (
        "EISDIR",
        "ENOTDIR",
        "EEXIST",
        "ENOTEMPTY",
        "EINVAL",
        "ELOOP",
        "EACCES",
        "EPERM",
        "ENAMETOOLONG",
        "EROFS",
        "ENOSPC",
    ):
        return BadRequest(f"Path {path!r}: {message or code}")
    return InternalError(f"Path {path!r}: {text}")


def check_path(path: str) -> str:
    if not path or not path.startswith("/"):
        raise BadRequest(f"The path must be absolute (got {path!r})")
    if "\0" in path:
        raise BadRequest("The path contains a NUL byte")
    return path


class InstanceFiles:
    def __init__(self, instances: InstanceService) -> None:
        self.instances = instances

    def _root(self, row: InstanceRow) -> tuple[Path, IdMap | None]:
        spec = self.instances.spec(row)
        rootfs = spec.volume / "rootfs"
        if not rootfs.is_dir():
            raise NotFound(f"Instance {row.name!r} has no root filesystem")
        return rootfs, spec.idmap

    @staticmethod
    def _to_container(host_id: int, idmap: IdMap | None, uid: bool) -> int:
        if idmap is None:
            return host_id
        inside = idmap.to_ns(host_id, uid)
        return OVERFLOW_ID if inside is None else inside

    @staticmethod
    def _to_host(container_id: int, idmap: IdMap | None, uid: bool) -> int:
        if container_id < 0 or idmap is None:
            return container_id
        host = idmap.to_host(container_id, uid)
        if host is None:
            raise BadRequest(f"Id {container_id} is outside the instance's id map")
        return host

    async def _agent(self, row: InstanceRow) -> AgentHub:
        """A VM's files are inside its disk: reached through its agent while it runs."""
        driver = self.instances.drivers.get(row.type)
        assert isinstance(driver, QemuDriver)
        return await driver.agent(self.instances.spec(row))

    async def get(
        self, row: InstanceRow, path: str
    ) -> tuple[FileInfo, AsyncIterator[bytes] | FileBytes]:
        """Stat ``path``; a file's bytes follow (nothing for the other kinds): a container's
        as ``FileBytes``, a VM's as an iterator."""
        if row.type == "virtual-machine":
            raw_info, vm_body = await vm_files.get(await self._agent(row), check_path(path))
            fields = {"size": 0, "mtime": 0.0, "target": "", "entries": [], **raw_info}
            return FileInfo(**fields), vm_body
        rootfs, idmap = self._root(row)
        body = FileBytes(path, *await _rootfs_io_piped([str(rootfs), "get", check_path(path)]))
        try:
            line = await body.stdout.line()
            if not line:
                await body.finish()
                raise _error(path, b"")  # (finish raised the helper's own complaint, if any)
            raw: dict[str, Any] = json.loads(line)
        except BaseException:
            await body.close()
            raise
        info = FileInfo(**raw)
        info.uid = self._to_container(info.uid, idmap, True)
        info.gid = self._to_container(info.gid, idmap, False)
        return info, body

    async def put(
        self,
        row: InstanceRow,
        path: str,
        *,
        kind: str,
        uid: int,
        gid: int,
        mode: int,
        write: str,
        content: AsyncIterator[bytes] | SocketBody,
    ) -> None:
        """Make ``path``: a file of ``content``'s bytes, a symlink to the path it holds, or a
        directory. ``content`` comes from an iterator, or straight from the client's socket
        (containers only)."""
        if write not in ("overwrite", "append"):
            raise BadRequest(f"Unknown write mode {write!r} (use overwrite or append)")
        if kind not in ("file", "directory", "symlink"):
            raise BadRequest(f"Unknown file type {kind!r} (use file, directory or symlink)")
        if row.type == "virtual-machine":
            if isinstance(content, SocketBody):
                raise InternalError("A VM's file is written through its agent, not a socket")
            await vm_files.put(
                await self._agent(row), check_path(path), kind=kind, uid=uid, gid=gid,
                mode=mode, append=write == "append", content=content,
            )  # fmt: skip
            return
        rootfs, idmap = self._root(row)
        # new directories on the way belong to the instance's root
        root_uid, root_gid = str(self._to_host(0, idmap, True)), str(self._to_host(0, idmap, False))
        argv = [
            str(rootfs),
            "put",
            check_path(path),
            kind,
            str(self._to_host(uid, idmap, True)),
            str(self._to_host(gid, idmap, False)),
            str(mode),
            write,
            root_uid,
            root_gid,
        ]
        proc = await _rootfs_io(argv)
        assert proc.stdin is not None and proc.stderr is not None
        try:
            if isinstance(content, SocketBody):
                await content.send_to(proc.stdin.transport.get_extra_info("pipe").fileno())
            else:
                async for chunk in content:
                    proc.stdin.write(chunk)
                    await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the helper failed early: its stderr says why
        except BaseException:
            proc.kill()  # not a short file written as if whole
            await proc.wait()
            raise
        finally:
            proc.stdin.close()
        stderr = await proc.stderr.read()
        if await proc.wait() != 0:
            raise _error(path, stderr)

    async def delete(self, row: InstanceRow, path: str) -> None:
        if row.type == "virtual-machine":
            await vm_files.delete(await self._agent(row), check_path(path))
            return
        rootfs, _ = self._root(row)
        proc = await _rootfs_io([str(rootfs), "delete", check_path(path)])
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.close()
        stderr = await proc.stderr.read()
        if await proc.wait() != 0:
            raise _error(path, stderr)
