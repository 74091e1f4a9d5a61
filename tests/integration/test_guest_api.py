"""The guest API (/dev/incus/sock), as Incus 6.0.4 answers it inside a container (checked
against the real daemon from incus-anchor): the instance's user.* and cloud-init.* keys, its
devices, meta-data, the ready state, config and device events, images with
security.guestapi.images; only the container's root may use it; security.guestapi turns it on
and off live. The tests speak to the instance's socket on the host as the container's root
uid (the daemon reads who connects from the socket)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Daemon, new_root

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


def _root_uid(daemon: Daemon, name: str) -> int:
    config = daemon.request("GET", f"/1.0/instances/{name}").metadata["config"]
    for entry in json.loads(config.get("volatile.idmap.current", "[]")):
        if entry["Isuid"] and entry["Nsid"] == 0:
            return int(entry["Hostid"])
    return 0


def _connect(path: Path, uid: int) -> socket.socket:
    """A connection made as ``uid`` (SO_PEERCRED records the effective uid at connect)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    os.seteuid(uid)
    try:
        sock.connect(str(path))
    finally:
        os.seteuid(0)
    return sock


class Guest:
    def __init__(self, daemon: Daemon, name: str) -> None:
        self.daemon = daemon
        self.name = name
        self.socket = daemon.root / "guestapi" / name / "sock"
        self.uid = _root_uid(daemon, name)

    def request(
        self, method: str, path: str, body: object = None, *, uid: int | None = None
    ) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection("localhost")
        conn.sock = _connect(self.socket, self.uid if uid is None else uid)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type", ""), resp.read()
        finally:
            conn.close()

    def json(self, path: str) -> Any:
        status, kind, body = self.request("GET", path)
        assert status == 200 and kind == "application/json", (status, body)
        return json.loads(body)

    def websocket(self, path: str) -> socket.socket:
        """An upgraded connection to ``path``, its handshake read."""
        sock = _connect(self.socket, self.uid)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        return sock


def _frames(sock: socket.socket) -> Iterator[str]:
    """The text frames a server sends (unmasked, as servers send them)."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    while True:
        first, second = exactly(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", exactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", exactly(8))[0]
        payload = exactly(length)
        if first & 0x0F == 1:
            yield payload.decode()


@pytest.fixture
def guest(daemon: Daemon, container: str) -> Guest:
    return Guest(daemon, container)


def test_the_guest_reads_its_own_keys_devices_and_meta_data(daemon: Daemon, guest: Guest) -> None:
    name = guest.name
    listing = daemon.cli("exec", name, "--", "ls", "-l", "/dev/incus/sock").stdout
    assert listing.startswith("srw-rw-rw-"), listing
    config = {
        "user.foo": "bar",
        "user.meta-data": "x: 1",
        "cloud-init.user-data": "#cloud-config",
        "environment.A": "b",
    }
    assert daemon.request("PATCH", f"/1.0/instances/{name}", {"config": config}).status == 200
    assert guest.json("/") == ["/1.0"]
    info = guest.json("/1.0")
    assert info == {
        "state": "Started",
        "api_version": "1.0",
        "instance_type": "container",
        "location": socket.gethostname(),
    }
    assert sorted(guest.json("/1.0/config")) == [
        "/1.0/config/cloud-init.user-data",
        "/1.0/config/user.foo",
        "/1.0/config/user.meta-data",
    ]
    assert guest.request("GET", "/1.0/config/user.foo") == (200, "application/octet-stream", b"bar")
    forbidden = guest.request("GET", "/1.0/config/environment.A")
    assert forbidden == (403, "text/plain; charset=utf-8", b"not authorized\n")
    assert guest.request("GET", "/1.0/config/volatile.idmap.current")[0] == 403
    assert guest.request("GET", "/1.0/config/user.nope")[:3:2] == (404, b"not found\n")
    instance_id = daemon.request("GET", f"/1.0/instances/{name}").metadata["config"][
        "volatile.cloud-init.instance-id"
    ]
    _, _, meta = guest.request("GET", "/1.0/meta-data")
    assert meta.decode() == (
        f"#cloud-config\ninstance-id: {instance_id}\nlocal-hostname: {name}\nx: 1"
    )
    devices = guest.json("/1.0/devices")
    assert devices["root"] == {"path": "/", "pool": "default", "type": "disk"}
    assert guest.request("GET", "/1.0/nothing")[:3:2] == (404, b"404 page not found\n")
    # the host's root, or any uid but the container root's, is not the guest
    assert guest.request("GET", "/1.0", uid=0)[::2] == (401, b"Access denied for non-root user\n")


def test_ready_state(daemon: Daemon, guest: Guest) -> None:
    name = guest.name
    status, _, body = guest.request("PATCH", "/1.0", {"state": "bogus"})
    assert (status, body) == (400, b'Invalid state "bogus"\n')
    assert guest.request("DELETE", "/1.0")[::2] == (405, b'method "DELETE" not allowed\n')
    assert guest.request("PATCH", "/1.0", {"state": "Ready"})[0] == 200
    instance = daemon.request("GET", f"/1.0/instances/{name}").metadata
    assert (instance["status"], instance["status_code"]) == ("Ready", 113)
    assert instance["config"]["volatile.last_state.ready"] == "true"
    assert daemon.request("GET", f"/1.0/instances/{name}/state").metadata["status"] == "Ready"
    assert guest.json("/1.0")["state"] == "Ready"
    assert guest.request("PATCH", "/1.0", {"state": "Started"})[0] == 200
    assert daemon.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Running"


def test_config_and_device_events(daemon: Daemon, guest: Guest) -> None:
    name = guest.name
    shared = new_root()  # under /var/tmp, open to the container's unprivileged root
    shared.chmod(0o755)
    ws = guest.websocket("/1.0/events")
    heard: list[dict[str, Any]] = []

    def listen() -> None:
        try:
            heard.extend(json.loads(text) for text in _frames(ws))
        except (OSError, EOFError):
            pass

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    try:
        url = f"/1.0/instances/{name}"
        config = {"user.zz": "1", "environment.B": "c"}
        assert daemon.request("PATCH", url, {"config": config}).status == 200
        disk = {"type": "disk", "source": str(shared), "path": "/mnt/tt"}
        assert daemon.request("PATCH", url, {"devices": {"tt": disk}}).status == 200
        body = daemon.request("GET", url).metadata
        body["devices"].pop("tt")
        body["config"].pop("user.zz")
        daemon.ok(daemon.request("PUT", url, body))
        deadline = time.time() + 20
        while len(heard) < 4 and time.time() < deadline:
            time.sleep(0.1)
    finally:
        ws.close()
        shutil.rmtree(shared)
    got = [(e["type"], e["metadata"]) for e in heard]
    assert got == [
        ("config", {"key": "user.zz", "old_value": "", "value": "1"}),
        ("device", {"action": "added", "config": disk, "name": "tt"}),
        # one update tells its config changes first, then its devices (as Incus)
        ("config", {"key": "user.zz", "old_value": "1", "value": ""}),
        ("device", {"action": "removed", "config": disk, "name": "tt"}),
    ]
    # the mount went with the device: nothing left at its path in the container
    assert daemon.cli("exec", name, "--", "ls", "/mnt", check=False).stdout.strip() == ""


def test_images_only_with_security_guestapi_images(
    daemon: Daemon, guest: Guest, busybox: str
) -> None:
    image = daemon.request("GET", f"/1.0/images/aliases/{busybox}").metadata["target"]
    path = f"/1.0/images/{image}/export"
    assert guest.request("GET", path)[::2] == (403, b"not authorized\n")
    url = f"/1.0/instances/{guest.name}"
    images_on = {"config": {"security.guestapi.images": "true"}}
    assert daemon.request("PATCH", url, images_on).status == 200
    status, kind, body = guest.request("GET", path)  # the image is not public
    assert (status, kind) == (404, "application/json")
    assert json.loads(body)["error"] == f'Image "{image}" not found'
    assert daemon.request("PATCH", f"/1.0/images/{image}", {"public": True}).status == 200
    try:
        status, _, body = guest.request("GET", path)
        assert status == 200
        import hashlib

        assert hashlib.sha256(body).hexdigest() == image
    finally:
        assert daemon.request("PATCH", f"/1.0/images/{image}", {"public": False}).status == 200


def test_security_guestapi_turns_it_off_and_on_live(daemon: Daemon, guest: Guest) -> None:
    name, url = guest.name, f"/1.0/instances/{guest.name}"
    assert daemon.request("PATCH", url, {"config": {"security.guestapi": "false"}}).status == 200
    assert not guest.socket.exists()
    assert daemon.cli("exec", name, "--", "ls", "/dev/incus", check=False).returncode != 0
    assert daemon.request("PATCH", url, {"config": {"security.guestapi": "true"}}).status == 200
    assert guest.json("/1.0")["state"] == "Started"
    assert daemon.cli("exec", name, "--", "ls", "/dev/incus").stdout.strip() == "sock"
    # a stopped container has no socket; one started without the key has no /dev/incus
    daemon.ok(daemon.request("PUT", f"{url}/state", {"action": "stop", "force": True}))
    assert not guest.socket.parent.exists()
    assert daemon.request("PATCH", url, {"config": {"security.guestapi": "false"}}).status == 200
    daemon.ok(daemon.request("PUT", f"{url}/state", {"action": "start"}))
    assert daemon.cli("exec", name, "--", "ls", "/dev/incus", check=False).returncode != 0
    assert not guest.socket.parent.exists()
