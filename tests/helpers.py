"""Test helpers: a real stapesd on a temporary STAPES_DIR, plain HTTP over its unix socket."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from stapes.host.mounts import unmount_below

VENV_BIN = Path(sys.executable).parent
STAPES = str(VENV_BIN / "stapes")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 120) -> None:
        super().__init__("stapes", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def metadata(self) -> Any:
        return self.json()["metadata"]


class Daemon:
    """One stapesd process with its own STAPES_DIR. A fresh one is set up at its first start
    as `admin init --minimal` would (a ``default`` dir pool, the default profile's root disk),
    unless ``init`` is False (a test of what a fresh daemon is)."""

    def __init__(self, root: Path, *, init: bool = True) -> None:
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "stapesd.test.log"
        self.init = init

    @property
    def socket(self) -> str:
        return str(self.root / "unix.socket")

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "STAPES_DIR": str(self.root)}

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "stapesd"), "--debug"],
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.time() + 30
        while time.time() < deadline:
            if os.path.exists(self.socket):
                try:
                    if self.request("GET", "/1.0").status == 200:
                        self._set_up()
                        return
                except OSError:
                    pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"stapesd exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError("stapesd did not start in 30s")

    def _set_up(self) -> None:
        """What `stapes admin init --minimal` makes, once (a fresh daemon has no pool)."""
        if not self.init or self.request("GET", "/1.0/storage-pools").metadata:
            return
        pool = {"name": "default", "driver": "dir", "config": {}}
        assert self.request("POST", "/1.0/storage-pools", pool).status == 201
        root = {"root": {"type": "disk", "path": "/", "pool": "default"}}
        assert self.request("PATCH", "/1.0/profiles/default", {"devices": root}).status == 200

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        self.proc = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        conn = UnixHTTPConnection(self.socket)
        try:
            data = (
                raw
                if raw is not None
                else (json.dumps(body).encode() if body is not None else None)
            )
            sent = dict(headers or {})
            if raw is None and body is not None:
                sent.setdefault("Content-Type", "application/json")  # as real clients send
            conn.request(method, path, body=data, headers=sent)
            resp = conn.getresponse()
            return Response(resp.status, dict(resp.getheaders()), resp.read())
        finally:
            conn.close()

    def wait(self, response: Response, timeout: float = 120) -> Response:
        """Wait on the operation of an async response; returns the /wait response."""
        assert response.status == 202, response.body
        op = response.json()["operation"]
        return self.request("GET", f"{op}/wait?timeout={timeout}")

    def ok(self, response: Response, timeout: float = 120) -> dict[str, Any]:
        result = self.wait(response, timeout)
        assert result.status == 200, result.body
        meta: dict[str, Any] = result.metadata
        assert meta["status"] == "Success", meta
        return meta

    def cli(
        self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [STAPES, *args],
            env=self.env,
            capture_output=True,
            timeout=timeout,
            input=input.decode() if input else None,
            text=True,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"stapes {' '.join(args)} failed ({proc.returncode}): {proc.stdout}{proc.stderr}"
            )
        return proc

    def launch(self, image: str = "bb", name: str | None = None, **extra: Any) -> str:
        name = name or unique("c")
        body = {"name": name, "source": {"type": "image", "alias": image}, "start": True, **extra}
        self.ok(self.request("POST", "/1.0/instances", body))
        return name

    def force_delete(self, name: str) -> None:
        resp = self.request("GET", f"/1.0/instances/{name}")
        if resp.status == 404:
            return
        if resp.metadata["status"] != "Stopped":
            self.force_stop(name)
        self.wait(self.request("DELETE", f"/1.0/instances/{name}"))

    def force_stop(self, name: str) -> None:
        self.wait(
            self.request("PUT", f"/1.0/instances/{name}/state", {"action": "stop", "force": True})
        )


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def new_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="stapes-test-", dir="/var/tmp"))


def remove_root(root: Path) -> None:
    """End the copies a killed daemon left running into its root (a spare image copy goes on
    after a kill -9 and would write into the root as it is deleted), unmount what the daemon
    mounted below it (btrfs pools), then delete it."""
    for copier in _copies_into(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(copier, signal.SIGKILL)
    unmount_below(root)
    shutil.rmtree(root, ignore_errors=True)


def _copies_into(root: Path) -> list[int]:
    """cp, rsync and tar processes with a path below ``root`` on their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        tool = os.path.basename(argv[0]).decode(errors="replace")
        below = f"{root}/".encode()
        if tool in ("cp", "rsync", "tar") and any(a.startswith(below) for a in argv[1:]):
            found.append(int(entry.name))
    return found


def monitor_processes(root: Path, name: str) -> list[str]:
    """liblxc monitor processes of container ``name`` under this daemon's lxcpath."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    needle = f"[lxc monitor] {root / 'containers'} {name}"
    return [line for line in out.splitlines() if line.strip() == needle]


class ClientCert:
    """A client certificate on disk (for HTTPS requests and the incus CLI)."""

    def __init__(self, directory: Path, name: str = "client") -> None:
        from stapes import certs

        cert, key = certs.generate(name)
        self.cert, self.key = directory / f"{name}.crt", directory / f"{name}.key"
        self.cert.write_bytes(cert)
        self.key.write_bytes(key)
        self.fingerprint = certs.fingerprint(certs.parse(cert))


def https_request(
    address: str,
    method: str,
    path: str,
    body: Any = None,
    client: ClientCert | None = None,
    timeout: float = 60,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[Response, str]:
    """One request over HTTPS (the server's certificate is not checked here, it is returned:
    (response, the server certificate's fingerprint))."""
    import hashlib
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=context)
    try:
        data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
        conn.request(
            method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})}
        )
        resp = conn.getresponse()
        der = conn.sock.getpeercert(binary_form=True) if conn.sock else b""
        result = Response(resp.status, dict(resp.getheaders()), resp.read())
        return result, hashlib.sha256(der or b"").hexdigest()
    finally:
        conn.close()


def backup_with_index(tarball: bytes, change: Any) -> bytes:
    """A backup tarball with its index.yaml changed by ``change`` (uncompressed)."""
    import io
    import tarfile

    import yaml

    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tarball)) as src,
        tarfile.open(fileobj=out, mode="w") as dst,
    ):
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if member.name == "backup/index.yaml" and data is not None:
                index = yaml.safe_load(data.read())
                change(index)
                raw = yaml.safe_dump(index).encode()
                member.size = len(raw)
                dst.addfile(member, io.BytesIO(raw))
            else:
                dst.addfile(member, data)
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
