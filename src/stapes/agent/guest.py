"""The Stapes guest agent: runs inside a VM, answers stapesd over the virtio-serial port
/dev/virtio-ports/org.stapes.agent.0 (exec, files, state, shutdown).

Standard library only and one file beside protocol.py: the config drive carries both into the
guest, where `python3 guest.py` runs them (the images' boot scripts start it)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pty
import queue
import select
import signal
import socket
import stat as stat_module
import struct
import subprocess
import sys
import termios
import threading
import time

try:
    from stapes.agent import protocol as p
except ImportError:  # in the guest: protocol.py sits beside this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import protocol as p  # type: ignore[import-not-found,no-redef]

PORT = "/dev/virtio-ports/org.stapes.agent.0"
CHUNK = 64 * 1024


class Port:
    """The serial port (or a vsock connection): whole frames written under a lock; read by
    one thread."""

    def __init__(self, path: str = "", fd: int = -1) -> None:
        self.fd = fd if fd >= 0 else os.open(path, os.O_RDWR | os.O_CLOEXEC)
        self.lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self.lock:
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self.fd, view)
                except BlockingIOError:
                    select.select([], [self.fd], [], 1)
                    continue
                except OSError:
                    return  # the host is gone: nothing to tell
                view = view[written:]

    def read(self) -> bytes:
        return os.read(self.fd, CHUNK)


class Channel:
    def __init__(self, agent: Agent, number: int) -> None:
        self.agent = agent
        self.number = number
        self.inbox: queue.Queue[bytes] = queue.Queue()
        """STDIN payloads, in order (an empty one: end of input), until a handler takes them."""
        self.process: subprocess.Popen[bytes] | None = None
        self.master = -1

    def send(self, kind: int, payload: bytes = b"") -> None:
        self.agent.port.send(p.pack(self.number, kind, payload))

    def send_json(self, kind: int, value: object) -> None:
        self.agent.port.send(p.pack_json(self.number, kind, value))

    def finish(self, **result: object) -> None:
        self.send_json(p.EXIT, result)
        self.agent.channels.pop(self.number, None)


class Agent:
    def __init__(self, port: Port) -> None:
        self.port = port
        self.channels: dict[int, Channel] = {}

    def serve(self, once: bool = False) -> None:
        """Frames until the end of time (the serial port, where the host comes and goes), or
        until the connection ends (``once``: a vsock connection)."""
        reader = p.Reader()
        while True:
            try:
                data = self.port.read()
            except OSError:
                data = b""
            if not data and once:
                return
            if not data:  # no host on the other end: wait for one, start afresh
                reader = p.Reader()
                time.sleep(0.2)
                continue
            try:
                frames = reader.feed(data)
            except ValueError:
                reader = p.Reader()
                continue
            for number, kind, payload in frames:
                try:
                    self.dispatch(number, kind, payload)
                except Exception as exc:  # one bad request must not end the agent
                    Channel(self, number).finish(error=f"{type(exc).__name__}: {exc}")

    def dispatch(self, number: int, kind: int, payload: bytes) -> None:
        if kind == p.OPEN:
            channel = Channel(self, number)
            self.channels[number] = channel
            request = json.loads(payload)
            handler = HANDLERS.get(request.get("type", ""))
            if handler is None:
                channel.finish(error=f"unknown request {request.get('type')!r}")
                return
            threading.Thread(target=_run, args=(handler, channel, request), daemon=True).start()
            return
        channel_or_none = self.channels.get(number)
        if channel_or_none is None:
            return
        channel = channel_or_none
        if kind == p.STDIN:
            channel.inbox.put(payload)
        elif kind == p.SIGNAL and channel.process is not None:
            _signal(channel.process, int(json.loads(payload)["signal"]))
        elif kind == p.RESIZE and channel.master >= 0:
            size = json.loads(payload)
            fcntl.ioctl(
                channel.master,
                termios.TIOCSWINSZ,
                struct.pack("HHHH", int(size["height"]), int(size["width"]), 0, 0),
            )


def _run(handler, channel: Channel, request: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    try:
        handler(channel, request)
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0, "EIO")
        channel.finish(error=f"{exc.strerror or exc}", errno=code)
    except Exception as exc:
        channel.finish(error=f"{type(exc).__name__}: {exc}")


def _write_stdin(channel: Channel, fd: int, terminal: bool) -> None:
    """The command's input, from the channel's inbox; closed (or ^D on a terminal) at the end."""
    while True:
        data = channel.inbox.get()
        if not data:
            if terminal:
                with contextlib.suppress(OSError):
                    os.write(fd, b"\x04")
            else:
                os.close(fd)
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            if not terminal:
                os.close(fd)
            return


def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except OSError:
        try:
            process.send_signal(signum)
        except OSError:
            pass


def _pump(fd: int, channel: Channel, kind: int) -> None:
    while True:
        try:
            data = os.read(fd, CHUNK)
        except OSError:
            data = b""
        if not data:
            return
        channel.send(kind, data)


def _exec(channel: Channel, request: dict) -> None:  # type: ignore[type-arg]
    command = request["command"]
    env = request.get("environment") or {}
    cwd = request.get("cwd") or "/"
    uid, gid = int(request.get("uid", 0)), int(request.get("gid", 0))

    def as_user() -> None:
        os.setsid()
        if gid:
            os.setgid(gid)
        if uid:
            os.setuid(uid)

    if request.get("interactive"):
        master, slave = pty.openpty()
        if request.get("width") and request.get("height"):
            size = struct.pack("HHHH", request["height"], request["width"], 0, 0)
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)

        def with_tty() -> None:
            as_user()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        process = subprocess.Popen(
            command, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
            preexec_fn=with_tty, close_fds=True,
        )  # fmt: skip
        os.close(slave)
        channel.process, channel.master = process, master
        channel.send_json(p.REPLY, {"pid": process.pid})
        writer = threading.Thread(target=_write_stdin, args=(channel, master, True), daemon=True)
        writer.start()
        _pump(master, channel, p.STDOUT)
        code = process.wait()
        channel.inbox.put(b"")  # the writer is done before the terminal closes
        writer.join(5)
        os.close(master)
    else:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=cwd, preexec_fn=as_user, close_fds=True,
        )  # fmt: skip
        assert process.stdin and process.stdout and process.stderr
        channel.process = process
        stdin = os.dup(process.stdin.fileno())
        process.stdin.close()
        channel.send_json(p.REPLY, {"pid": process.pid})
        writer = threading.Thread(target=_write_stdin, args=(channel, stdin, False), daemon=True)
        writer.start()
        pumps = [
            threading.Thread(target=_pump, args=(process.stdout.fileno(), channel, p.STDOUT)),
            threading.Thread(target=_pump, args=(process.stderr.fileno(), channel, p.STDERR)),
        ]
        for pump in pumps:
            pump.start()
        code = process.wait()
        for pump in pumps:
            pump.join()
        channel.inbox.put(b"")  # the writer lets go of stdin if the input never ended
    channel.finish(code=128 - code if code < 0 else code)


def _file_get(channel: Channel, request: dict) -> None:  # type: ignore[type-arg]
    path = request["path"]
    st = os.lstat(path)
    info = {"uid": st.st_uid, "gid": st.st_gid, "mode": st.st_mode & 0o7777, "mtime": st.st_mtime}
    if stat_module.S_ISDIR(st.st_mode):
        channel.send_json(
            p.REPLY, {**info, "type": "directory", "entries": sorted(os.listdir(path))}
        )
    elif stat_module.S_ISLNK(st.st_mode):
        channel.send_json(p.REPLY, {**info, "type": "symlink", "target": os.readlink(path)})
    else:
        channel.send_json(p.REPLY, {**info, "type": "file", "size": st.st_size})
        with open(path, "rb") as f:
            while True:
                data = f.read(CHUNK)
                if not data:
                    break
                channel.send(p.STDOUT, data)
    channel.finish(code=0)


def _file_put(channel: Channel, request: dict) -> None:  # type: ignore[type-arg]
    """kind file|directory|symlink (its target is the content); uid, gid, mode -1: keep what
    an existing file has (new ones: root's, 0644 or 0755)."""
    path = request["path"]
    kind = request.get("kind", "file")
    uid, gid, mode = (
        int(request.get("uid", -1)),
        int(request.get("gid", -1)),
        int(request.get("mode", -1)),
    )
    existing = os.lstat(path) if os.path.lexists(path) else None
    channel.send_json(p.REPLY, {"ready": True})
    content = b""
    if kind == "directory":
        if existing is None:
            os.mkdir(path, 0o755 if mode < 0 else mode)
        elif not stat_module.S_ISDIR(existing.st_mode):
            raise OSError(errno.EEXIST, "exists and is not a directory")
    elif kind == "symlink":
        while data := channel.inbox.get():
            content += data
        if existing is not None:
            if stat_module.S_ISDIR(existing.st_mode):
                raise OSError(errno.EISDIR, "a directory is in the way")
            os.unlink(path)
        os.symlink(content.decode(), path)
    else:
        if existing is not None and stat_module.S_ISDIR(existing.st_mode):
            raise OSError(errno.EISDIR, "is a directory")
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if request.get("append") else os.O_TRUNC)
        fd = os.open(path, flags, 0o644 if mode < 0 else mode)
        try:
            while data := channel.inbox.get():
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    if existing is None or uid >= 0 or gid >= 0:
        keep_uid = existing.st_uid if existing is not None else 0
        keep_gid = existing.st_gid if existing is not None else 0
        os.lchown(path, uid if uid >= 0 else keep_uid, gid if gid >= 0 else keep_gid)
    if mode >= 0 and kind != "symlink":
        os.chmod(path, mode)
    channel.finish(code=0)


def _file_delete(channel: Channel, request: dict) -> None:  # type: ignore[type-arg]
    path = request["path"]
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)
    else:
        os.unlink(path)
    channel.finish(code=0)


def _state(channel: Channel, request: dict) -> None:  # type: ignore[type-arg]
    channel.send_json(p.REPLY, state())
    channel.finish(code=0)


def _shutdown(channel: Channel, request: dict) -> None:  # type: ignore[type-arg]
    channel.finish(code=0)
    for argv in (["systemctl", "poweroff"], ["poweroff"]):
        try:
            subprocess.Popen(argv)
            return
        except OSError:
            continue


def _sync(channel: Channel, request: dict) -> None:  # type: ignore[type-arg]
    os.sync()
    channel.send_json(p.REPLY, {"synced": True})
    channel.finish(code=0)


def _ping(channel: Channel, request: dict) -> None:  # type: ignore[type-arg]
    channel.send_json(p.REPLY, {"pong": True, "python": sys.version.split()[0]})
    channel.finish(code=0)


HANDLERS = {
    "exec": _exec,
    "file-get": _file_get,
    "file-put": _file_put,
    "file-delete": _file_delete,
    "state": _state,
    "shutdown": _shutdown,
    "ping": _ping,
    "sync": _sync,
}


def state() -> dict:  # type: ignore[type-arg]
    """Addresses, processes, memory and the OS, in the shape of Incus's instance state."""
    network = {}
    for _, name in socket.if_nameindex():
        addresses = []
        v4 = _ipv4(name)
        if v4:
            addresses.append(
                {
                    "family": "inet",
                    "address": v4[0],
                    "netmask": v4[1],
                    "scope": "global" if name != "lo" else "local",
                }
            )
        for address, prefix, scope in _ipv6(name):
            addresses.append(
                {"family": "inet6", "address": address, "netmask": prefix, "scope": scope}
            )
        base = f"/sys/class/net/{name}"
        network[name] = {
            "addresses": addresses,
            "hwaddr": _read(f"{base}/address"),
            "mtu": int(_read(f"{base}/mtu") or 0),
            "state": "up" if _read(f"{base}/operstate") in ("up", "unknown") else "down",
            "type": "loopback" if name == "lo" else "broadcast",
            "counters": {
                "bytes_received": int(_read(f"{base}/statistics/rx_bytes") or 0),
                "bytes_sent": int(_read(f"{base}/statistics/tx_bytes") or 0),
                "packets_received": int(_read(f"{base}/statistics/rx_packets") or 0),
                "packets_sent": int(_read(f"{base}/statistics/tx_packets") or 0),
            },
        }
    meminfo = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, value = line.partition(":")
        meminfo[key] = int(value.split()[0]) * 1024 if value.split() else 0
    release = {}
    for line in _read("/etc/os-release").splitlines():
        key, _, value = line.partition("=")
        release[key] = value.strip().strip('"')
    return {
        "mounts": MOUNTS,
        "network": network,
        "processes": sum(1 for d in os.listdir("/proc") if d.isdigit()),
        "memory": {
            "usage": meminfo.get("MemTotal", 0) - meminfo.get("MemAvailable", 0),
            "total": meminfo.get("MemTotal", 0),
        },
        "os_info": {
            "os": release.get("NAME", ""),
            "os_version": release.get("VERSION_ID", ""),
            "kernel_version": os.uname().release,
            "hostname": socket.gethostname(),
        },
    }


def _address(family: str, address: str, netmask: str, scope: str) -> dict[str, str]:
    return {"family": family, "address": address, "netmask": netmask, "scope": scope}


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _ipv4(name: str) -> tuple[str, str] | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        packed = struct.pack("256s", name.encode()[:15])
        address = fcntl.ioctl(sock.fileno(), 0x8915, packed)[20:24]  # SIOCGIFADDR
        mask = fcntl.ioctl(sock.fileno(), 0x891B, packed)[20:24]  # SIOCGIFNETMASK
    except OSError:
        return None
    finally:
        sock.close()
    prefix = bin(int.from_bytes(mask, "big")).count("1")
    return socket.inet_ntoa(address), str(prefix)


def _ipv6(name: str) -> list[tuple[str, str, str]]:
    found = []
    for line in _read("/proc/net/if_inet6").splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[5] == name:
            raw = bytes.fromhex(parts[0])
            scope = {"00": "global", "20": "link", "10": "local"}.get(parts[3], "global")
            found.append((socket.inet_ntop(socket.AF_INET6, raw), str(int(parts[2], 16)), scope))
    return found


MOUNTS: list[dict[str, object]] = []
"""The 9p shares of the config drive's mounts.json and how mounting each went (for state)."""


def mount_shares() -> None:
    """Mount the VM's shared directories (virtiofs or 9p; the tag is the disk's name)."""
    listing = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mounts.json")
    try:
        with open(listing) as f:
            wanted = json.load(f)
    except (OSError, ValueError):
        return
    for share in wanted:
        tag, path = str(share["tag"]), str(share["path"])
        fstype = str(share.get("type", "9p"))
        options = "trans=virtio,version=9p2000.L" if fstype == "9p" else "defaults"
        options += ",ro" if share.get("readonly") else ""
        os.makedirs(path, exist_ok=True)
        if os.path.ismount(path):  # the agent restarted: mounted by its predecessor
            MOUNTS.append({"tag": tag, "path": path, "error": ""})
            continue
        done = subprocess.run(
            ["mount", "-t", fstype, "-o", options, tag, path], capture_output=True, text=True
        )
        error = done.stderr.strip() if done.returncode else ""
        if error:
            print(f"stapes-agent: cannot mount {tag} at {path}: {error}", file=sys.stderr)
        MOUNTS.append({"tag": tag, "path": path, "error": error})


def configure_nics() -> None:
    """agent.nic_config: each NIC listed in the config drive's nics.json (found by its MAC
    address) takes the name and MTU the instance's config gives it."""
    listing = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nics.json")
    try:
        with open(listing) as f:
            wanted = json.load(f)
    except (OSError, ValueError):
        return
    by_mac = {}
    for name in os.listdir("/sys/class/net"):
        by_mac[_read(f"/sys/class/net/{name}/address").strip().lower()] = name
    for nic in wanted:
        current = by_mac.get(str(nic.get("hwaddr", "")).lower())
        if current is None:
            continue
        steps = [["ip", "link", "set", "dev", current, "down"]]
        if nic.get("name") and nic["name"] != current:
            steps.append(["ip", "link", "set", "dev", current, "name", nic["name"]])
            current = nic["name"]
        if nic.get("mtu"):
            steps.append(["ip", "link", "set", "dev", current, "mtu", str(nic["mtu"])])
        steps.append(["ip", "link", "set", "dev", current, "up"])
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"stapes-agent: {' '.join(step)}: {done.stderr.strip()}", file=sys.stderr)
                break


def grow_root() -> None:
    """The root disk may have grown (its size key): grow the root partition, when root is one,
    with sfdisk, then an ext4 root filesystem to fill it (online; a no-op when it already
    does). Images without sfdisk or resize2fs keep their size."""
    root = ""
    for line in _read("/proc/mounts").splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[1] == "/" and fields[2] == "ext4":
            root = fields[0]
    if root == "/dev/root":
        for arg in _read("/proc/cmdline").split():
            if arg.startswith("root=/dev/"):
                root = arg[5:]
    if not root.startswith("/dev/"):
        return
    grow_partition(os.path.basename(os.path.realpath(root)))
    resize2fs = _tool("resize2fs")
    if resize2fs:
        subprocess.run([resize2fs, root], capture_output=True)


def grow_partition(name: str) -> None:
    """Grow partition ``name`` (vda2) into the free space after it when it ends more than a
    MiB before its disk does: the GPT's backup moved to the disk's new end first, the kernel
    told of the new size with partx (the partition stays mounted)."""
    sysfs = os.path.realpath(f"/sys/class/block/{name}")
    number = _read(f"{sysfs}/partition").strip()
    sfdisk, partx = _tool("sfdisk"), _tool("partx")
    if not number or not sfdisk or not partx:
        return
    disk_sysfs = os.path.dirname(sysfs)
    disk = "/dev/" + os.path.basename(disk_sysfs)
    try:
        disk_sectors = int(_read(f"{disk_sysfs}/size"))
        end = int(_read(f"{sysfs}/start")) + int(_read(f"{sysfs}/size"))
    except ValueError:
        return
    if disk_sectors - end <= 2048 + 34:
        return
    steps = (
        [sfdisk, "-q", "--no-reread", "--no-tell-kernel", "--relocate", "gpt-bak-std", disk],
        [sfdisk, "-q", "--no-reread", "--no-tell-kernel", "-N", number, disk],
        [partx, "-u", "-n", number, disk],
    )
    for argv in steps:
        done = subprocess.run(argv, input=", +\n", capture_output=True, text=True)
        if done.returncode:
            print(f"stapes-agent: {' '.join(argv)}: {done.stderr.strip()}", file=sys.stderr)
            return


def _tool(name: str) -> str:
    for folder in ("/sbin", "/usr/sbin", "/bin", "/usr/bin"):
        if os.path.exists(f"{folder}/{name}"):
            return f"{folder}/{name}"
    return ""


def find_port() -> str:
    """udev's /dev/virtio-ports/NAME link, or the /dev/vportNpM behind that name."""
    if os.path.exists(PORT):
        return PORT
    name = os.path.basename(PORT)
    base = "/sys/class/virtio-ports"
    for entry in os.listdir(base) if os.path.isdir(base) else []:
        if _read(f"{base}/{entry}/name") == name and os.path.exists(f"/dev/{entry}"):
            return f"/dev/{entry}"
    return ""


def serve_vsock() -> None:
    """Where the host has vhost-vsock, stapesd reaches the agent on vsock port VSOCK_PORT
    too, one connection at a time (each with the frame protocol of the serial port)."""
    family = getattr(socket, "AF_VSOCK", None)
    if family is None or not os.path.exists("/dev/vsock"):
        return
    try:
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.bind((socket.VMADDR_CID_ANY, p.VSOCK_PORT))
        listener.listen(4)
    except OSError as exc:
        print(f"stapes-agent: no vsock listener: {exc}", file=sys.stderr)
        return

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            agent = Agent(Port(fd=conn.detach()))
            threading.Thread(target=agent.serve, args=(True,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def main() -> None:
    serve_vsock()
    path = sys.argv[1] if len(sys.argv) > 1 else find_port()
    while not path:
        time.sleep(0.5)
        path = find_port()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    mount_shares()
    configure_nics()
    grow_root()
    Agent(Port(path)).serve()


if __name__ == "__main__":
    main()
