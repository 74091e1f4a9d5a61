"""The cost of replication: a 3-member cluster on cowsql against a standalone server, in one run.

Three throwaway stapesd on this host (their own state directories, HTTPS on loopback ports)
become one cluster (enable, then two joins with tokens); beside them a standalone stapesd.
Prints medians and p90s (milliseconds) and ratios against the standalone server:
  - a config change (PATCH /1.0 of a user.* key), through the leader and through a follower;
  - an instance create (a stopped busybox container on the dir pool), the same ways;
a running busybox VM (QEMU under TCG) moved live from one member to another and back: the
move's time and how long its guest was paused (QEMU's last pass, as the source noted it);
and the time the two survivors take to accept a write after the leader is killed (-9).
What this does not show: members on other hosts add their network round trips to every
write (cowsql commits on a majority), which loopback hides.
Run as root: `make bench`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack

from common import BIN, Stapes, line, stapes_daemon, timed

from stapes.api.errors import RemoteError
from stapes.api.join_token import token_text
from stapes.client.instance_server import InstanceServer

RUNS = int(os.environ.get("BENCH_RUNS", "25"))
CREATES = int(os.environ.get("BENCH_CREATES", "10"))


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def client(stapes: Stapes) -> InstanceServer:
    return InstanceServer.unix(stapes.root / "unix.socket")


def listen(server: InstanceServer) -> str:
    address = free_address()
    server.conn.request("PATCH", "/1.0", json_body={"config": {"core.https_address": address}})
    return address


def writes(server: InstanceServer, label: str, target: str = "") -> tuple[float, float]:
    """Config changes, then creates of stopped containers on ``target`` (the member asked:
    the replication is measured, not the placement), after one create to warm the pool's
    spare copy of the image."""
    counter = iter(range(1_000_000))

    def change() -> None:
        body = {"config": {"user.bench": str(next(counter))}}
        server.conn.request("PATCH", "/1.0", json_body=body)

    config = line(f"{label}: config change", timed(change, RUNS))
    names = iter(f"bench{n}" for n in range(-1, CREATES))

    def create() -> None:
        body = {"name": next(names), "source": {"type": "image", "alias": "bb"}}
        server.create_instance(body, target=target).wait()

    create()  # warm-up: the image unpacked once on this member
    made = line(f"{label}: instance create (stopped)", timed(create, CREATES))
    for n in range(-1, CREATES):
        server.delete_instance(f"bench{n}").wait()
    return config, made


def until(check: Callable[[], bool], limit: float = 120.0, what: str = "writes") -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if check():
            return time.perf_counter() - started
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


def live_moves(first: Stapes, servers: dict[str, InstanceServer]) -> None:
    """A running VM moved live m1 -> m2 -> m1 (asked of the member that has it)."""
    subprocess.run([str(BIN / "stapes"), "image", "build", "busybox", "--vm", "--alias", "bbvm"],
                   env=first.env, check=True, capture_output=True, timeout=900)  # fmt: skip
    m1 = servers["m1"]
    body = {"name": "benchvm", "type": "virtual-machine", "start": True,
            "source": {"type": "image", "alias": "bbvm"}}  # fmt: skip
    m1.create_instance(body, target="m1").wait()
    try:

        def agent_up() -> bool:
            try:
                done = m1.exec("benchvm", {"command": ["true"], "wait-for-websocket": False})
                return bool(done.wait().get("metadata", {}).get("return") == 0)
            except RemoteError:
                return False

        until(agent_up, 300, "the VM's agent")

        def pauses() -> dict[str, str]:  # every member's operations: a cluster lists them all
            return {
                op["id"]: op["metadata"]["live_downtime"]
                for op in m1.operations().get("success", [])
                if "live_downtime" in (op.get("metadata") or {})
            }

        for source, target in (("m1", "m2"), ("m2", "m1")):
            before = pauses()
            started = time.perf_counter()
            servers[source].move_to_member("benchvm", target, live=True).wait()
            took = time.perf_counter() - started
            paused = [text for op_id, text in pauses().items() if op_id not in before]
            print(
                f"  live VM move {source} -> {target}: {took * 1000:.0f} ms in all, guest "
                f"{paused[-1] if paused else 'pause not reported'}"
            )
    finally:
        m1.update_state("benchvm", "stop", force=True).wait()
        m1.delete_instance("benchvm").wait()


def main() -> None:
    with ExitStack() as stack:
        alone = stack.enter_context(stapes_daemon())
        first = stack.enter_context(stapes_daemon())
        joiners = [stack.enter_context(stapes_daemon(image=False)) for _ in range(2)]
        print(f"Cluster writes, {RUNS} config changes and {CREATES} creates each (ms):")
        base_config, base_create = writes(client(alone), "standalone")

        leader = client(first)
        cluster_address = listen(leader)
        leader.update_cluster({"server_name": "m1", "enabled": True}).wait()
        certificate = leader.server()["environment"]["certificate"]
        for n, stapes in enumerate(joiners, start=2):
            joiner = client(stapes)
            address = listen(joiner)
            token = token_text(leader.join_token(f"m{n}").metadata["metadata"])
            put = {
                "server_name": f"m{n}",
                "enabled": True,
                "cluster_address": cluster_address,
                "cluster_certificate": certificate,
                "server_address": address,
                "cluster_token": token,
            }
            joiner.update_cluster(put).wait()
        roles = {m["server_name"]: m["roles"] for m in leader.members()}
        print(f"  members and roles: {roles}")
        for label, server, name in (
            ("leader", leader, "m1"),
            ("follower", client(joiners[0]), "m2"),
        ):
            config, made = writes(server, f"3 members, on the {label}", name)
            print(
                f"  {label}: config change {config / base_config:.2f}x standalone, "
                f"create {made / base_create:.2f}x"
            )

        live_moves(first, {"m1": leader, "m2": client(joiners[0])})

        os.kill(first.pid, signal.SIGKILL)
        survivor = client(joiners[0])

        def writable() -> bool:
            try:
                survivor.create_profile(f"after-{time.monotonic_ns()}")
                return True
            except (RemoteError, OSError):
                return False

        took = until(writable)
        print(f"  leader killed (-9): writes accepted again after {took * 1000:.0f} ms")


if __name__ == "__main__":
    main()
