"""The forwarder behind proxy devices, one helper process per device:

    python -m stapes.host.proxy --pid PID --listen ADDR --connect ADDR --bind host|instance
        [--uid N --gid N --mode 0644 --id-base N --proxy-protocol]

ADDR is ``tcp:HOST:PORTS``, ``udp:HOST:PORTS`` (HOST an IP address, IPv6 in brackets; PORTS
one port, a range ``A-B`` or a comma list of both, as Incus takes them) or ``unix:PATH``
(``unix:@NAME`` for an abstract socket). Each listen port is forwarded to the connect port at
the same place in the list, or to the one connect port when there is only one.

The listening sockets are made in the network (and, for unix paths, mount) namespace of the
listening side, then the helper moves to the other side's namespaces, so every connection it
opens to ADDR is made there. It exits when the instance's init (PID) does, or on SIGTERM.
With --proxy-protocol each stream connection to ADDR starts with a PROXY protocol v2 header
(HAProxy's) naming the client.
Only the standard library: it starts fast and runs anywhere."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import struct
import sys
from dataclasses import dataclass

from stapes.host import namespaces

CHUNK = 64 * 1024


@dataclass(frozen=True)
class Address:
    kind: str  # tcp, udp or unix
    host: str = ""
    ports: tuple[int, ...] = ()
    path: str = ""

    @property
    def family(self) -> int:
        if self.kind == "unix":
            return socket.AF_UNIX
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def sock_type(self) -> int:
        return socket.SOCK_DGRAM if self.kind == "udp" else socket.SOCK_STREAM

    def at(self, index: int) -> Address:
        """This address with only its ``index``-th port (the only one when it has one)."""
        if self.kind == "unix":
            return self
        return Address(self.kind, self.host, (self.ports[index if len(self.ports) > 1 else 0],))

    def split(self) -> list[Address]:
        """One address per port (a unix address is one)."""
        return [self.at(i) for i in range(max(len(self.ports), 1))]

    @property
    def sockaddr(self) -> str | tuple[str, int]:
        if self.kind == "unix":
            return "\0" + self.path[1:] if self.path.startswith("@") else self.path
        return (self.host, self.ports[0])


MAX_PORTS = 1024
"""The most ports one proxy address may name: a helper listens on each."""


def parse_ports(text: str) -> tuple[int, ...]:
    """``80``, ``80-82`` or ``80,443,8000-8002`` (Incus's port lists)."""
    ports: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not (first.isascii() and first.isdigit()) or (
            dash and not (last.isascii() and last.isdigit())
        ):
            raise ValueError(f"invalid port {part!r}: use PORT, FIRST-LAST or a comma list")
        low, high = int(first), int(last) if dash else int(first)
        if not 0 <= low <= high < 65536:
            raise ValueError(f"invalid port range {part!r}: ports are 0 to 65535, first <= last")
        if len(ports) + high - low + 1 > MAX_PORTS:
            raise ValueError(f"too many ports: at most {MAX_PORTS} per address")
        ports.extend(range(low, high + 1))
    return tuple(ports)


def parse_address(text: str) -> Address:
    """Raises ValueError with a message a user can act on."""
    kind, sep, rest = text.partition(":")
    if not sep or kind not in ("tcp", "udp", "unix"):
        raise ValueError(f"{text!r}: use tcp:HOST:PORT, udp:HOST:PORT or unix:PATH")
    if kind == "unix":
        if not rest or not (rest.startswith("/") or rest.startswith("@")):
            raise ValueError(f"{text!r}: a unix address is an absolute path or @abstract name")
        return Address(kind, path=rest)
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]:")
    else:
        host, _, port = rest.rpartition(":")
    if not host or not port:
        raise ValueError(f"{text!r}: expected {kind}:HOST:PORT (an IPv6 HOST in brackets)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # as Incus: a name would be resolved where the helper runs, which a client must not
        # choose
        raise ValueError(f"Not an IP address {host!r}") from None
    return Address(kind, host=host, ports=parse_ports(port))


def pair(listen: Address, connect: Address) -> list[tuple[Address, Address]]:
    """Each listen port with the connect port it goes to; refuses what Incus refuses."""
    if len(connect.ports) > 1 and len(connect.ports) != len(listen.ports):
        raise ValueError("Mismatch between listen port(s) and connect port(s) count")
    return [(one, connect.at(i)) for i, one in enumerate(listen.split())]


class Namespaces:
    def __init__(self, pid: str) -> None:
        self.net = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)

    def enter(self, with_mounts: bool) -> None:
        namespaces.setns(self.net, namespaces.CLONE_NEWNET)
        if with_mounts:
            namespaces.setns(self.mnt, namespaces.CLONE_NEWNS)


def make_listener(addr: Address, uid: int, gid: int, mode: int) -> socket.socket:
    sock = socket.socket(addr.family, addr.sock_type)
    if addr.kind != "unix":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    elif not addr.path.startswith("@"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(addr.path)
    sock.bind(addr.sockaddr)
    if addr.kind == "unix" and not addr.path.startswith("@"):
        os.chown(addr.path, uid, gid)
        os.chmod(addr.path, mode)
    if addr.sock_type == socket.SOCK_STREAM:
        sock.listen(128)
    sock.setblocking(False)
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_header(peer: object, local: object) -> bytes:
    """HAProxy's PROXY protocol (version 2) header telling the target who connected: the
    client's and the listener's TCP addresses, or LOCAL (no address) for unix listeners."""
    if isinstance(peer, tuple) and isinstance(local, tuple):
        src, dst = ipaddress.ip_address(peer[0]), ipaddress.ip_address(local[0])
        if src.version == dst.version == 4 or (src.version == dst.version == 6):
            family = 0x11 if src.version == 4 else 0x21  # TCP over IPv4 / IPv6
            body = src.packed + dst.packed + struct.pack("!HH", peer[1], local[1])
            return PROXY_V2_SIGNATURE + struct.pack("!BBH", 0x21, family, len(body)) + body
    return PROXY_V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x00, 0)  # LOCAL


async def serve_stream(listener: socket.socket, target: Address, proxy: bool = False) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if target.kind == "unix":
                up_reader, up_writer = await asyncio.open_unix_connection(str(target.sockaddr))
            else:
                up_reader, up_writer = await asyncio.open_connection(*target.sockaddr)
        except OSError:
            writer.close()
            return
        if proxy:
            peer, local = writer.get_extra_info("peername"), writer.get_extra_info("sockname")
            up_writer.write(proxy_header(peer, local))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()

    if listener.family == socket.AF_UNIX:
        server = await asyncio.start_unix_server(handle, sock=listener)
    else:
        server = await asyncio.start_server(handle, sock=listener)
    async with server:
        await server.serve_forever()


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, listener: socket.socket, client: tuple[str, int]) -> None:
        self.listener = listener
        self.client = client

    def datagram_received(self, data: bytes, addr: object) -> None:
        with contextlib.suppress(OSError):
            self.listener.sendto(data, self.client)


async def serve_datagrams(listener: socket.socket, target: Address) -> None:
    """Each client address gets its own socket to the target, so replies find their way back."""
    loop = asyncio.get_running_loop()
    upstreams: dict[object, asyncio.DatagramTransport] = {}
    while True:
        data, client = await loop.sock_recvfrom(listener, CHUNK)
        transport = upstreams.get(client)
        if transport is None or transport.is_closing():
            transport, _ = await loop.create_datagram_endpoint(
                lambda c=client: _Upstream(listener, c),  # type: ignore[misc]
                remote_addr=target.sockaddr,
                family=target.family,
            )
            upstreams[client] = transport
        transport.sendto(data)


async def run(pairs: list[tuple[socket.socket, Address]], pidfd: int, proxy: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(pidfd, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [
        loop.create_task(
            serve_datagrams(listener, target)
            if target.kind == "udp"
            else serve_stream(listener, target, proxy)
        )
        for listener, target in pairs
    ]
    await stop.wait()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stapes.host.proxy")
    parser.add_argument("--pid", required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--connect", required=True)
    parser.add_argument("--bind", choices=("host", "instance"), default="host")
    parser.add_argument("--uid", type=int, default=0)
    parser.add_argument("--gid", type=int, default=0)
    parser.add_argument("--mode", default="0644")
    parser.add_argument("--id-base", type=int, default=0)
    parser.add_argument("--proxy-protocol", action="store_true")
    args = parser.parse_args(argv)
    try:
        listen, connect = parse_address(args.listen), parse_address(args.connect)
        host = Namespaces("self")
        instance = Namespaces(args.pid)
        pidfd = os.pidfd_open(int(args.pid))
        listen_side, connect_side = (
            (instance, host) if args.bind == "instance" else (host, instance)
        )
        routes = pair(listen, connect)
        listen_side.enter(with_mounts=listen.kind == "unix")
        base = args.id_base if args.bind == "instance" else 0
        mode = int(args.mode, 8)
        pairs = [
            (make_listener(one, args.uid + base, args.gid + base, mode), target)
            for one, target in routes
        ]
        connect_side.enter(with_mounts=connect.kind == "unix" or listen.kind == "unix")
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"proxy: {exc}\n")
        return 2
    asyncio.run(run(pairs, pidfd, args.proxy_protocol))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
