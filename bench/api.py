"""API throughput: ``GET /1.0/instances`` by CLIENTS (50) concurrent clients for SECONDS each
round, over the unix socket and over HTTPS with a client certificate, Stapes beside real Incus
(../shared/tools/incus-anchor start) in one run.

Prints requests per second and the median and p99 latency, and the Stapes/Incus ratios. Both
daemons hold INSTANCES (20) stopped empty containers the bench makes (and removes). The load
comes from this process (aiohttp, keep-alive connections), which shares the 2 cores with the
daemon under test, the same for both. Run as root: `make bench`."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from common import INCUS_SOCKET, real_incus, stapes_daemon

from stapes import certs
from stapes.client.instance_server import InstanceServer

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "50"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
INSTANCES = int(os.environ.get("BENCH_INSTANCES", "20"))


@dataclass
class Result:
    rps: float
    median_ms: float
    p99_ms: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(connector_factory: Callable[[], aiohttp.BaseConnector], base: str) -> Result:
    latencies: list[float] = []
    deadline = time.perf_counter() + SECONDS

    async def client(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            async with session.get(f"{base}/1.0/instances") as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"GET /1.0/instances answered {resp.status}")
            latencies.append(time.perf_counter() - start)

    async with aiohttp.ClientSession(connector=connector_factory()) as session:
        began = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(CLIENTS)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return Result(
        len(latencies) / elapsed,
        latencies[len(latencies) // 2] * 1000,
        latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000,
    )


def unix_round(socket_path: Path) -> Result:
    return asyncio.run(
        load(lambda: aiohttp.UnixConnector(path=str(socket_path), limit=CLIENTS), "http://daemon")
    )


def https_round(address: str, cert: Path, key: Path) -> Result:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(cert, key)
    return asyncio.run(
        load(lambda: aiohttp.TCPConnector(ssl=context, limit=CLIENTS), f"https://{address}")
    )


def populate(server: InstanceServer, prefix: str, names: list[str]) -> None:
    """Make INSTANCES empty containers, each recorded in ``names`` once made."""
    for name in (f"{prefix}{i}" for i in range(INSTANCES)):
        op = server.conn.request(
            "POST", "/1.0/instances", json_body={"name": name, "source": {"type": "none"}}
        )
        server.conn.request("GET", f"/1.0/operations/{op['id']}/wait")
        names.append(name)


def depopulate(server: InstanceServer, names: list[str]) -> None:
    for name in names:
        op = server.conn.request("DELETE", f"/1.0/instances/{name}")
        server.conn.request("GET", f"/1.0/operations/{op['id']}/wait")


def measure(
    server: InstanceServer, socket_path: Path, cert: Path, key: Path
) -> tuple[Result, Result]:
    """Both rounds on one daemon: its listener moved to a free port and the bench's
    certificate trusted for the run, both put back afterwards."""
    before = server.conn.request("GET", "/1.0")["config"].get("core.https_address", "")
    address = f"127.0.0.1:{free_port()}"
    fingerprint = certs.fingerprint(certs.parse(cert.read_bytes()))
    names: list[str] = []
    server.conn.request("PATCH", "/1.0", json_body={"config": {"core.https_address": address}})
    try:
        body = {"type": "client", "name": "bench-api", "certificate": certs.bare(cert.read_text())}
        server.conn.request("POST", "/1.0/certificates", json_body=body)
        populate(server, f"api{uuid.uuid4().hex[:6]}-", names)
        return unix_round(socket_path), https_round(address, cert, key)
    finally:
        depopulate(server, names)
        if any(c["fingerprint"] == fingerprint for c in server.certificates()):
            server.conn.request("DELETE", f"/1.0/certificates/{fingerprint}")
        server.conn.request("PATCH", "/1.0", json_body={"config": {"core.https_address": before}})


def show(label: str, result: Result) -> None:
    print(
        f"  {label:<34} {result.rps:8.0f} req/s   median {result.median_ms:7.1f} ms"
        f"   p99 {result.p99_ms:7.1f} ms"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "bench.crt", Path(tmp) / "bench.key"
        pem, private = certs.generate("bench-api")
        cert.write_bytes(pem)
        key.write_bytes(private)
        print(
            f"GET /1.0/instances, {CLIENTS} clients, {SECONDS:.0f} s a round, {INSTANCES} instances"
        )
        with stapes_daemon() as daemon:
            socket_path = daemon.root / "unix.socket"
            with InstanceServer.unix(socket_path) as server:
                ours = measure(server, socket_path, cert, key)
        show("stapes over the unix socket", ours[0])
        show("stapes over HTTPS", ours[1])
        incus = real_incus()
        if incus is None:
            return
        with incus:
            theirs = measure(incus, INCUS_SOCKET, cert, key)
        show("incus over the unix socket", theirs[0])
        show("incus over HTTPS", theirs[1])
        print("\nRatios (Stapes / Incus)")
        for label, a, b in (("unix socket", ours[0], theirs[0]), ("HTTPS", ours[1], theirs[1])):
            print(
                f"  {label:<12} throughput {a.rps / b.rps:5.2f}x   p99 latency "
                f"{a.p99_ms / b.p99_ms:5.2f}x"
            )
        print(json.dumps({"stapes": [vars(r) for r in ours], "incus": [vars(r) for r in theirs]}))


if __name__ == "__main__":
    main()
