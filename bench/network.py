"""Managed bridge networks, in one run:
  - time from `start` of a container with a NIC on a managed bridge to its first DHCP lease
    (the container asks with busybox udhcpc, run by exec right after start);
  - throughput between two containers on the bridge (busybox httpd and wget, 256 MiB) against
    the same download between two network namespaces wired by a bare veth pair, as a ratio.
The bridge has its own private subnet and NAT off, and is removed at the end. Run as root:
`make bench`."""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import time
from pathlib import Path

from common import BIN, line, stapes_daemon, timed

from stapes.client.instance_server import InstanceServer

RUNS = int(os.environ.get("BENCH_RUNS", "10"))
MIB = 256
BUSYBOX = "/bin/busybox"


def lease_series(server: InstanceServer, env: dict[str, str], network: str) -> list[float]:
    samples = []
    for i in range(RUNS):
        name = f"bench-lease-{i}"
        nic = {"eth0": {"type": "nic", "network": network, "name": "eth0"}}
        server.create_instance(
            {"name": name, "source": {"type": "image", "alias": "bb"}, "devices": nic}
        ).wait()
        start = time.perf_counter()
        server.update_state(name, "start").wait()
        dhcp = ["udhcpc", "-i", "eth0", "-n", "-q", "-s", "/bin/true", "-x", f"hostname:{name}"]
        subprocess.run(
            [str(BIN / "stapes"), "exec", name, "--", *dhcp],
            env=env,
            check=True,
            capture_output=True,
        )
        while not any(x["hostname"] == name for x in server.network_leases(network)):
            time.sleep(0.002)
        samples.append(time.perf_counter() - start)
        server.update_state(name, "stop", force=True).wait()
        server.delete_instance(name).wait()
    return samples


def fetch_series(
    serve: list[str], fetch: list[str], address: str, env: dict[str, str] | None = None
) -> list[float]:
    """Seconds for ``fetch`` to download a MIB MiB file over HTTP from a busybox httpd started
    with ``serve`` (each an argv prefix that runs a command in the right place; the file is
    /tmp/stapes-bench/big on the serving side)."""
    server = subprocess.Popen(
        [*serve, BUSYBOX, "httpd", "-f", "-p", "8080", "-h", "/tmp/stapes-bench"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        time.sleep(0.5)
        url = f"http://{address}:8080/big"
        # what starting a command costs on each side (`stapes exec`, `ip netns exec`) is
        # measured and taken out: only the download is compared
        overhead = statistics.median(
            timed(lambda: subprocess.run([*fetch, BUSYBOX, "true"], check=True, env=env), 3)
        )
        download = [*fetch, BUSYBOX, "wget", "-q", "-O", "/dev/null", url]
        samples = [
            t - overhead
            for t in timed(
                lambda: subprocess.run(download, check=True, timeout=120, env=env),
                max(3, RUNS // 2),
            )
        ]
        return samples
    finally:
        server.terminate()
        server.wait(30)


def make_file(prefix: list[str], env: dict[str, str] | None = None) -> None:
    script = "mkdir -p /tmp/stapes-bench && "
    script += f"dd if=/dev/zero of=/tmp/stapes-bench/big bs=1M count={MIB}"
    subprocess.run([*prefix, BUSYBOX, "sh", "-c", script], check=True, env=env, capture_output=True)


def veth_series(subnet: str) -> list[float]:
    """The floor: two network namespaces joined by a veth pair, the same busybox tools."""
    tag = secrets.token_hex(3)
    a, b = f"stpba{tag}", f"stpbb{tag}"
    try:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(
            ["ip", "link", "add", "va", "netns", a, "type", "veth", "peer", "vb", "netns", b],
            check=True,
        )
        for ns, dev, host in ((a, "va", 1), (b, "vb", 2)):
            subprocess.run(
                ["ip", "-n", ns, "addr", "add", f"{subnet}.{host}/24", "dev", dev], check=True
            )
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        make_file([])
        return fetch_series(["ip", "netns", "exec", a], ["ip", "netns", "exec", b], f"{subnet}.1")
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["rm", "-rf", "/tmp/stapes-bench"], check=False)


def main() -> None:
    octet = secrets.randbelow(250) + 1
    network = "stpbench" + secrets.token_hex(2)
    with stapes_daemon() as st:
        server = InstanceServer.unix(Path(st.root) / "unix.socket")
        config = {
            "ipv4.address": f"10.218.{octet}.1/24",
            "ipv4.nat": "false",
            "ipv6.address": "none",
        }
        server.create_network({"name": network, "config": config})
        try:
            print(f"Managed bridge {network} (RUNS={RUNS})")
            lease = line("start to first DHCP lease", lease_series(server, st.env, network))
            rx = {"eth0": {"type": "nic", "network": network, "name": "eth0"}}
            for name in ("bench-rx", "bench-tx"):
                server.create_instance(
                    {
                        "name": name,
                        "start": True,
                        "source": {"type": "image", "alias": "bb"},
                        "devices": rx,
                    }
                ).wait()
            address = f"10.218.{octet}.10"
            for name, host in (("bench-rx", 10), ("bench-tx", 11)):
                add = ["ip", "addr", "add", f"10.218.{octet}.{host}/24", "dev", "eth0"]
                subprocess.run(
                    [str(BIN / "stapes"), "exec", name, "--", *add], env=st.env, check=True
                )
            stapes = [str(BIN / "stapes"), "exec"]
            make_file([*stapes, "bench-rx", "--"], st.env)
            samples = fetch_series(
                [*stapes, "bench-rx", "--"], [*stapes, "bench-tx", "--"], address, st.env
            )
            bridged = line(f"{MIB} MiB between two containers on the bridge", samples)
            floor = line(f"{MIB} MiB over a bare veth pair", veth_series(f"10.219.{octet}"))
            print("\nRatios")
            print(f"  start to first lease {lease:.1f} ms")
            print(
                f"  bridge throughput {MIB / (bridged / 1000):.0f} MiB/s, bare veth "
                f"{MIB / (floor / 1000):.0f} MiB/s: {floor / bridged:.2f}x the floor's speed"
            )
        finally:
            for name in ("bench-rx", "bench-tx"):
                try:
                    server.update_state(name, "stop", force=True).wait()
                    server.delete_instance(name).wait()
                except Exception:
                    pass
            server.delete_network(network)
            server.close()


if __name__ == "__main__":
    main()
