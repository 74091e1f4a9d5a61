"""Devices: host paths, device nodes, veth NICs and proxies, at start and hot plugged, and the
400s that bad devices get."""

from __future__ import annotations

import http.server
import shutil
import socket
import struct
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Daemon, Response, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sh(daemon: Daemon, name: str, script: str, check: bool = True) -> str:
    return daemon.cli("exec", name, "--", "sh", "-c", script, check=check).stdout


def devices_patch(daemon: Daemon, name: str, devices: dict[str, object]) -> tuple[int, str]:
    resp = daemon.request("PATCH", f"/1.0/instances/{name}", {"devices": devices})
    return resp.status, resp.json()["error"] if resp.status != 200 else ""


def put_devices(daemon: Daemon, name: str, devices: dict[str, object]) -> tuple[int, str]:
    current = daemon.request("GET", f"/1.0/instances/{name}").metadata
    body = {k: current[k] for k in ("config", "profiles", "description", "architecture")}
    body["devices"] = devices
    resp = daemon.request("PUT", f"/1.0/instances/{name}", body)
    if resp.status != 202:
        return resp.status, resp.json()["error"]
    done = daemon.wait(resp)  # a failed operation's /wait is an error envelope, as in Incus
    return (200, "") if done.status == 200 else (done.status, done.json()["error"])


def start_error(daemon: Daemon, resp: Response) -> str:
    """The error of an operation that must fail with a 400 (a failed /wait is an envelope)."""
    done = daemon.wait(resp)
    assert done.status == 400, done.body
    error: str = done.json()["error"]
    return error


@pytest.fixture
def share(daemon: Daemon) -> Iterator[Path]:
    """A host directory the containers' root can reach (pytest's tmp_path is closed: 0700)."""
    directory = daemon.root / unique("share")
    directory.mkdir(mode=0o755)
    (directory / "hello").write_text("from the host\n")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def stopped(daemon: Daemon, busybox: str) -> Iterator[str]:
    name = unique("dev")
    daemon.ok(
        daemon.request(
            "POST", "/1.0/instances", {"name": name, "source": {"type": "image", "alias": busybox}}
        )
    )
    try:
        yield name
    finally:
        daemon.force_delete(name)


def start(daemon: Daemon, name: str) -> None:
    daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "start"}))


def test_devices_at_start(daemon: Daemon, stopped: str, share: Path) -> None:
    devices = {
        "share": {"type": "disk", "source": str(share), "path": "/mnt/share", "readonly": "true"},
        "shifted": {"type": "disk", "source": str(share), "path": "/mnt/shifted", "shift": "true"},
        "zero": {"type": "unix-char", "source": "/dev/zero", "path": "/dev/z", "mode": "0600"},
        "eth0": {"type": "nic", "nictype": "p2p", "mtu": "1400"},
    }
    assert devices_patch(daemon, stopped, devices) == (200, "")
    start(daemon, stopped)
    assert sh(daemon, stopped, "cat /mnt/share/hello") == "from the host\n"
    assert "Read-only" in sh(daemon, stopped, "touch /mnt/share/x 2>&1", check=False)
    # host root's files show as nobody without shift, as root with it (an idmapped mount)
    assert sh(daemon, stopped, "stat -c %u /mnt/share/hello").strip() == "65534"
    assert sh(daemon, stopped, "stat -c %u /mnt/shifted/hello").strip() == "0"
    assert sh(daemon, stopped, "stat -c '%A %t,%T' /dev/z").strip() == "crw------- 1,5"
    assert sh(daemon, stopped, "head -c 3 /dev/z | od -An -tx1").split() == ["00"] * 3
    config = daemon.request("GET", f"/1.0/instances/{stopped}").metadata["config"]
    hwaddr, host_name = config["volatile.eth0.hwaddr"], config["volatile.eth0.host_name"]
    link = sh(daemon, stopped, "ip link show eth0")
    assert hwaddr in link and "mtu 1400" in link
    assert Path(f"/sys/class/net/{host_name}").exists()

    daemon.ok(
        daemon.request("PUT", f"/1.0/instances/{stopped}/state", {"action": "stop", "force": True})
    )
    assert not Path(f"/sys/class/net/{host_name}").exists()
    assert not list((daemon.root / "devices" / stopped).glob("zero.*"))
    start(daemon, stopped)  # the MAC address is kept across starts
    assert hwaddr in sh(daemon, stopped, "ip link show eth0")


def test_hot_plug_and_unplug(daemon: Daemon, container: str, share: Path) -> None:
    disk = {"type": "disk", "source": str(share), "path": "/opt/hot", "readonly": "true"}
    assert devices_patch(daemon, container, {"hot": disk}) == (200, "")
    assert sh(daemon, container, "cat /opt/hot/hello") == "from the host\n"
    node = {"type": "unix-char", "source": "/dev/zero", "path": "/dev/hotzero"}
    nic = {"type": "nic", "nictype": "p2p", "name": "eth7"}
    assert devices_patch(daemon, container, {"z": node, "n": nic}) == (200, "")
    assert sh(daemon, container, "head -c 2 /dev/hotzero | od -An -tx1").split() == ["00"] * 2
    assert "eth7" in sh(daemon, container, "ip link")

    assert put_devices(daemon, container, {}) == (200, "")
    # the mount is gone and so is its empty mount point, as Incus leaves it
    assert sh(daemon, container, "ls /opt") == ""
    assert "eth7" not in sh(daemon, container, "ip link")
    assert sh(daemon, container, "head -c 1 /dev/hotzero 2>&1", check=False) != "\0"


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"host says hi"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


def test_proxy_both_ways(daemon: Daemon, container: str) -> None:
    # host -> instance: busybox httpd inside, on the container's loopback (down at start, as
    # in Incus: an init system brings it up, busybox init does not)
    sh(daemon, container, "ip link set lo up && mkdir -p /srv && echo inside > /srv/f")
    sh(daemon, container, "httpd -p 127.0.0.1:8000 -h /srv")
    port = free_port()
    proxy = {"type": "proxy", "listen": f"tcp:127.0.0.1:{port}", "connect": "tcp:127.0.0.1:8000"}
    assert devices_patch(daemon, container, {"web": proxy}) == (200, "")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/f", timeout=10) as resp:
        assert resp.read() == b"inside\n"

    # instance -> host: a listener in the container that reaches a server on the host
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        back = {
            "type": "proxy",
            "bind": "instance",
            "listen": "tcp:127.0.0.1:9000",
            "connect": f"tcp:127.0.0.1:{server.server_address[1]}",
        }
        assert devices_patch(daemon, container, {"back": back}) == (200, "")
        got = sh(daemon, container, "wget -qO- http://127.0.0.1:9000/")
        assert got == "host says hi"
    finally:
        server.shutdown()
        server.server_close()

    assert put_devices(daemon, container, {}) == (200, "")
    with pytest.raises(OSError, match=r"refused|reset|closed|timed out"):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/f", timeout=2)


def test_proxy_port_ranges_and_lists(daemon: Daemon, container: str) -> None:
    """As Incus: a listen range to one connect port, and a list to a list of the same length
    (each port to the one at its place)."""
    sh(daemon, container, "ip link set lo up && mkdir -p /a /b && echo a > /a/f && echo b > /b/f")
    sh(daemon, container, "httpd -p 127.0.0.1:8001 -h /a && httpd -p 127.0.0.1:8002 -h /b")
    first, second = free_port(), free_port()
    listed = {"type": "proxy", "listen": f"tcp:127.0.0.1:{first},{second}",
              "connect": "tcp:127.0.0.1:8001,8002"}  # fmt: skip
    assert devices_patch(daemon, container, {"listed": listed}) == (200, "")
    for port, body in ((first, b"a\n"), (second, b"b\n")):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/f", timeout=10) as resp:
            assert resp.read() == body
    low = free_port()
    while True:  # two free ports in a row for a range
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", low + 1))
                break
            except OSError:
                low = free_port()
    ranged = {"type": "proxy", "listen": f"tcp:127.0.0.1:{low}-{low + 1}",
              "connect": "tcp:127.0.0.1:8002"}  # fmt: skip
    assert devices_patch(daemon, container, {"ranged": ranged}) == (200, "")
    for port in (low, low + 1):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/f", timeout=10) as resp:
            assert resp.read() == b"b\n"
    assert put_devices(daemon, container, {}) == (200, "")


@pytest.mark.parametrize(
    ("device", "message"),
    [
        (
            {"type": "proxy", "listen": "tcp:127.0.0.1:7001", "connect": "tcp:localhost:80"},
            "Not an IP address 'localhost'",
        ),
        (
            {"type": "proxy", "listen": "tcp:127.0.0.1:7001", "connect": "tcp:127.0.0.1:80-81"},
            "Mismatch between listen port(s) and connect port(s) count",
        ),
        (
            {"type": "disk", "source": "/tmp", "path": "/mnt"},
            "More than one disk device uses the same path '/mnt'",
        ),
        ({"type": "tpm", "path": "/dev/tpm0"}, "'pathrm' is required"),
        (
            {"type": "disk", "source": "/", "path": "/h", "readonly": "true", "recursive": "true"},
            "Recursive read-only bind-mounts aren't currently supported",
        ),
    ],
)
def test_incus_device_checks(
    daemon: Daemon, stopped: str, device: dict[str, str], message: str
) -> None:
    """Checks Incus makes on a device, with its words."""
    if device["type"] == "disk":
        first = {"type": "disk", "source": "/tmp", "path": "/mnt"}
        assert devices_patch(daemon, stopped, {"first": first}) == (200, "")
    status, error = devices_patch(daemon, stopped, {"bad": device})
    assert status == 400 and message in error, error
    put_devices(daemon, stopped, {})


@pytest.mark.parametrize(
    ("device", "named"),
    [
        ({"type": "floppy"}, "floppy"),
        ({"type": "disk", "source": "/tmp", "path": "/x", "bogus": "1"}, "bogus"),
        ({"type": "disk", "path": "/x"}, "source"),
        ({"type": "disk", "source": "/tmp", "path": "/x", "readonly": "maybe"}, "readonly"),
        ({"type": "nic", "nictype": "bridged", "parent": "br0"}, "bridged"),
        ({"type": "nic", "nictype": "p2p", "hwaddr": "zz"}, "hwaddr"),
        ({"type": "proxy", "listen": "tcp:1.2.3.4", "connect": "tcp:1.1.1.1:1"}, "listen"),
        ({"type": "proxy", "listen": "udp:127.0.0.1:5", "connect": "tcp:127.0.0.1:5"}, "udp"),
        ({"type": "unix-char", "path": "/dev/x"}, "major"),
        ({"type": "unix-hotplug", "productid": "1234"}, "vendorid"),
    ],
)
def test_bad_devices_are_named(
    daemon: Daemon, stopped: str, device: dict[str, str], named: str
) -> None:
    status, error = devices_patch(daemon, stopped, {"bad": device})
    assert status == 400, error
    assert "bad" in error and named in error
    assert "bad" not in daemon.request("GET", f"/1.0/instances/{stopped}").metadata["devices"]


@pytest.mark.parametrize(
    ("device", "named"),
    [
        ({"type": "disk", "source": "/no/such/dir", "path": "/x"}, "/no/such/dir"),
        ({"type": "gpu"}, "GPU"),
        ({"type": "usb", "vendorid": "ffff", "productid": "0001"}, "ffff:0001"),
        ({"type": "tpm", "path": "/dev/tpm0", "pathrm": "/dev/tpmrm0"}, "vtpmx"),
        ({"type": "unix-hotplug", "vendorid": "ffff", "required": "true"}, "ffff"),
    ],
)
def test_absent_host_devices_fail_start_cleanly(
    daemon: Daemon, stopped: str, device: dict[str, str], named: str
) -> None:
    assert devices_patch(daemon, stopped, {"missing": device}) == (200, "")
    resp = daemon.request("PUT", f"/1.0/instances/{stopped}/state", {"action": "start"})
    error = start_error(daemon, resp)
    assert "missing" in error and named in error
    assert daemon.request("GET", f"/1.0/instances/{stopped}").metadata["status"] == "Stopped"


def test_failed_hot_plug_keeps_the_previous_devices(
    daemon: Daemon, container: str, share: Path
) -> None:
    good = {"type": "disk", "source": str(share), "path": "/opt/good"}
    assert devices_patch(daemon, container, {"good": good}) == (200, "")
    absent = {"type": "disk", "source": "/no/such/dir", "path": "/opt/absent"}
    status, error = devices_patch(daemon, container, {"absent": absent})
    assert status == 400 and "/no/such/dir" in error
    devices = daemon.request("GET", f"/1.0/instances/{container}").metadata["devices"]
    assert "absent" not in devices and "good" in devices
    root = {"root": {"type": "disk", "path": "/", "pool": "default", "size": "1GiB"}}
    status, error = devices_patch(daemon, container, root)
    assert status == 400 and "root" in error


def test_unreachable_host_paths_are_explained(daemon: Daemon, stopped: str, tmp_path: Path) -> None:
    closed = tmp_path / "closed"  # below pytest's 0700 directories
    closed.mkdir()
    disk = {"type": "disk", "source": str(closed), "path": "/mnt/closed"}
    assert devices_patch(daemon, stopped, {"closed": disk}) == (200, "")
    resp = daemon.request("PUT", f"/1.0/instances/{stopped}/state", {"action": "start"})
    assert "chmod o+x" in start_error(daemon, resp)


def test_unix_hotplug_waits_for_its_device(daemon: Daemon, stopped: str) -> None:
    """Not required (the default): the instance starts without the device, and uevents of
    other devices (here /dev/null's, made on demand) change nothing."""
    hotplug = {"type": "unix-hotplug", "vendorid": "ffff", "productid": "0001"}
    assert devices_patch(daemon, stopped, {"usbthing": hotplug}) == (200, "")
    start(daemon, stopped)
    Path("/sys/class/mem/null/uevent").write_text("add")
    assert sh(daemon, stopped, "echo alive") == "alive\n"
    assert not list((daemon.root / "devices" / stopped).glob("usbthing.*"))


def test_proxy_protocol_names_the_client(daemon: Daemon, container: str) -> None:
    """proxy_protocol=true: the target first reads a PROXY protocol v2 header (HAProxy's) with
    the client's and the listener's addresses, then the client's bytes."""
    sh(daemon, container, "ip link set lo up")
    got: list[bytes] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(20)

        def accept() -> None:
            conn, _ = server.accept()
            with conn:
                data = b""
                while len(data) < 28 + 4:  # the IPv4 header, then "GET "
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                got.append(data)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        back = {
            "type": "proxy",
            "bind": "instance",
            "listen": "tcp:127.0.0.1:9001",
            "connect": f"tcp:127.0.0.1:{server.getsockname()[1]}",
            "proxy_protocol": "true",
        }
        assert devices_patch(daemon, container, {"pp": back}) == (200, "")
        assert sh(daemon, container, "wget -qO- http://127.0.0.1:9001/") == "ok"
        thread.join(20)
    header = got[0]
    assert header[:12] == b"\r\n\r\n\x00\r\nQUIT\n"
    assert header[12:16] == bytes([0x21, 0x11, 0, 12])  # v2 PROXY, TCP over IPv4, 12 bytes
    assert header[16:24] == bytes([127, 0, 0, 1, 127, 0, 0, 1])
    assert struct.unpack("!H", header[26:28])[0] == 9001 and header[28:32] == b"GET "
    udp = {"type": "proxy", "listen": "udp:127.0.0.1:9002", "connect": "udp:127.0.0.1:9",
           "proxy_protocol": "true"}  # fmt: skip
    status, error = devices_patch(daemon, container, {"ppu": udp})
    assert status == 400 and "stream connections only" in error
    assert put_devices(daemon, container, {}) == (200, "")
