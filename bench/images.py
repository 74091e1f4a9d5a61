"""Images between hosts, Stapes beside real Incus (../shared/tools/incus-anchor start), in one run:
  - pull: a second stapesd serves the image (busybox; BENCH_IMAGE=debian/12 for Debian) and this
    one copies it over simplestreams (Incus pulls the same image from the same server over the
    Incus protocol: it refuses self-signed simplestreams servers);
  - launch from the pulled image (the first launch unpacks it) against the floor: plain
    ``tar -xf`` of the same file;
  - publish of a stopped instance of it.
Prints medians and p90s (milliseconds) and the ratios. Run as root: `make bench`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from common import line, real_incus, stapes_daemon

from stapes.client.instance_server import InstanceServer
from stapes.client.operation import RemoteOperation

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
IMAGE = os.environ.get("BENCH_IMAGE", "busybox")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def op(server: InstanceServer, method: str, path: str, body: object) -> dict:  # type: ignore[type-arg]
    started = server.conn.request(method, path, json_body=body)
    return RemoteOperation(server.conn, started).wait()


def timed(fn: Callable[[], object], before: Callable[[], object] = lambda: None) -> list[float]:
    samples = []
    for _ in range(RUNS):
        before()
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def drop_image(server: InstanceServer, fingerprint: str) -> None:
    try:
        server.image(fingerprint)
    except Exception:
        return
    op(server, "DELETE", f"/1.0/images/{fingerprint}", None)


def drop_images(server: InstanceServer, fingerprints: list[str]) -> None:
    for fingerprint in fingerprints:
        drop_image(server, fingerprint)


def drop_instance(server: InstanceServer, name: str) -> None:
    try:
        server.conn.request("GET", f"/1.0/instances/{name}")
    except Exception:
        return
    try:
        op(server, "PUT", f"/1.0/instances/{name}/state", {"action": "stop", "force": True})
    except Exception:
        pass
    op(server, "DELETE", f"/1.0/instances/{name}", None)


def pull_create_publish(
    server: InstanceServer, pull_source: dict[str, str], fingerprint: str
) -> tuple[list[float], list[float], list[float]]:
    """RUNS timings each of: pulling the image from ``pull_source``, creating an instance
    from it, publishing that (stopped) instance. The pulled image stays; the instance and the
    published images go."""
    drop_image(server, fingerprint)
    pull = timed(
        lambda: op(server, "POST", "/1.0/images", {"source": pull_source}),
        lambda: drop_image(server, fingerprint),
    )
    name = f"bench-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "source": {"type": "image", "fingerprint": fingerprint}}
    create = timed(
        lambda: op(server, "POST", "/1.0/instances", body),
        lambda: drop_instance(server, name),
    )
    published: list[str] = []

    def publish() -> None:
        done = op(server, "POST", "/1.0/images", {"source": {"type": "instance", "name": name}})
        published.append(done["metadata"]["fingerprint"])

    publish_runs = timed(publish, lambda: drop_images(server, published))
    drop_images(server, published)
    drop_instance(server, name)
    return pull, create, publish_runs


def main() -> None:
    print(f"Image: {IMAGE}, {RUNS} runs each")
    with stapes_daemon() as far, stapes_daemon() as near:
        address = f"127.0.0.1:{free_port()}"
        with InstanceServer.unix(far.root / "unix.socket") as server:
            server.conn.request(
                "PATCH", "/1.0", json_body={"config": {"core.https_address": address}}
            )
            alias = "bb"
            if IMAGE != "busybox":
                subprocess.run(
                    [str(Path(sys.executable).parent / "stapes"), "image", "build", IMAGE,
                     "--alias", "bench"], env=far.env, check=True, capture_output=True,
                )  # fmt: skip
                alias = "bench"
            fingerprint = server.alias(alias)["target"]
            server.conn.request("PATCH", f"/1.0/images/{fingerprint}", json_body={"public": True})
            pem = server.conn.request("GET", "/1.0")["environment"]["certificate"]
            image_file = far.root / "images" / fingerprint
        source = {"type": "image", "server": f"https://{address}", "certificate": pem}
        ss = {**source, "protocol": "simplestreams", "alias": alias}
        with InstanceServer.unix(near.root / "unix.socket") as client:
            pull, launch, publish_runs = pull_create_publish(client, ss, fingerprint)
        with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:

            def untar() -> None:
                target = Path(tmp) / "x"
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir()
                subprocess.run(["tar", "-xf", str(image_file), "-C", str(target)], check=True)

            floor = timed(untar)
        print("\nStapes")
        ours_pull = line("pull over simplestreams (HTTPS)", pull)
        ours_launch = line("create from it (unpacks on the dir pool)", launch)
        floor_ms = line("floor: tar -xf of the same file", floor)
        ours_publish = line("publish a stopped instance", publish_runs)
        print(f"  create/unpack against the tar floor: {ours_launch / floor_ms:.2f}x")
        incus = real_incus()
        if incus is None:
            return
        with incus:
            incus_source = {**source, "protocol": "incus", "fingerprint": fingerprint}
            theirs_pull_runs, theirs_launch_runs, theirs_publish_runs = pull_create_publish(
                incus, incus_source, fingerprint
            )
            drop_image(incus, fingerprint)
        print("\nIncus")
        theirs_pull = line("pull from the stapesd (Incus protocol)", theirs_pull_runs)
        theirs_launch = line("create from it", theirs_launch_runs)
        theirs_publish = line("publish a stopped instance", theirs_publish_runs)
        print("\nRatios (Stapes / Incus; the pulls use different protocols)")
        print(f"  pull     {ours_pull / theirs_pull:.2f}x")
        print(f"  create   {ours_launch / theirs_launch:.2f}x")
        print(f"  publish  {ours_publish / theirs_publish:.2f}x")


if __name__ == "__main__":
    main()
