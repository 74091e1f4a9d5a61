"""Fixtures of the integration tests that need a managed network."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import Daemon, free_port, new_root, remove_root, unique

NETS = "/1.0/networks"
CERTS = "/1.0/certificates"


@pytest.fixture
def network(daemon: Daemon) -> Iterator[tuple[str, str]]:
    """A managed bridge with a unique name, a private /24 and NAT off: (name, address)."""
    name = "stpt" + secrets.token_hex(4)
    address = f"10.214.{secrets.randbelow(250) + 1}.1/24"
    config = {"ipv4.address": address, "ipv4.nat": "false", "ipv6.address": "none"}
    resp = daemon.request("POST", NETS, {"name": name, "config": config})
    assert resp.status == 201, resp.body
    try:
        yield name, address
    finally:
        daemon.request("DELETE", f"{NETS}/{name}")
        subprocess.run(["ip", "link", "del", name], capture_output=True)


@pytest.fixture
def https(daemon: Daemon) -> Iterator[str]:
    """The daemon listening on a free loopback port; its trust store emptied afterwards."""
    address = f"127.0.0.1:{free_port()}"
    resp = daemon.request("PATCH", "/1.0", {"config": {"core.https_address": address}})
    assert resp.status == 200, resp.body
    try:
        yield address
    finally:
        daemon.request("PATCH", "/1.0", {"config": {"core.https_address": ""}})
        for url in daemon.request("GET", CERTS).metadata:
            daemon.request("DELETE", url)
        for op in daemon.request("GET", "/1.0/operations?recursion=1").metadata.get("running", []):
            if op["class"] == "token":
                daemon.request("DELETE", f"/1.0/operations/{op['id']}")


@pytest.fixture
def lone() -> Iterator[Daemon]:
    """A daemon of its own (for tests that stop it, throw its database away or change its
    defaults); whatever it holds goes with it: instances of every project, then pools."""
    daemon = Daemon(new_root())
    daemon.start()
    try:
        yield daemon
    finally:
        try:
            if daemon.proc is not None:
                for url in daemon.request("GET", "/1.0/instances?all-projects=true").metadata:
                    name, _, query = url.rsplit("/", 1)[-1].partition("?")
                    stop = {"action": "stop", "force": True}
                    daemon.wait(daemon.request("PUT", f"/1.0/instances/{name}/state?{query}", stop))
                    daemon.wait(daemon.request("DELETE", f"/1.0/instances/{name}?{query}"))
                for url in daemon.request("GET", "/1.0/storage-pools").metadata:
                    daemon.request("DELETE", url)
        finally:
            daemon.stop()
            remove_root(daemon.root)


@pytest.fixture
def second_host() -> Iterator[tuple[Daemon, str]]:
    """Another stapesd (its own state directory), listening on another loopback port."""
    other = Daemon(new_root())
    other.start()
    address = f"127.0.0.1:{free_port()}"
    try:
        resp = other.request("PATCH", "/1.0", {"config": {"core.https_address": address}})
        assert resp.status == 200, resp.body
        yield other, address
    finally:
        try:
            for url in other.request("GET", "/1.0/instances").metadata:
                other.force_delete(url.rsplit("/", 1)[-1])
        finally:
            other.stop()
            remove_root(other.root)


@pytest.fixture
def subids_for_1000() -> Iterator[Callable[[], None]]:
    """A callable that delegates host id 1000 to root in /etc/subuid and /etc/subgid (as
    Incus's docs ask for raw.idmap); the files are put back afterwards."""
    files = [Path("/etc/subuid"), Path("/etc/subgid")]
    saved = {f: f.read_text() if f.exists() else None for f in files}

    def delegate() -> None:
        for f in files:
            f.write_text((saved[f] or "") + "root:1000:1\n")

    yield delegate
    for f, text in saved.items():
        if text is None:
            f.unlink(missing_ok=True)
        else:
            f.write_text(text)


INCUS = shutil.which("incus")


@pytest.fixture
def incus(daemon: Daemon, tmp_path: Path):  # type: ignore[no-untyped-def]
    if INCUS is None:
        pytest.skip(
            "the incus client is not installed (make test installs incus-client from "
            "bookworm-backports)"
        )
    env = {**os.environ, "INCUS_SOCKET": daemon.socket, "INCUS_CONF": str(tmp_path / "conf")}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [INCUS, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    return run


@pytest.fixture(scope="module")
def vm_image(daemon: Daemon) -> str:
    """`stapes image build busybox --vm` (the kernel comes from the host's Debian mirror)."""
    if daemon.request("GET", "/1.0/images/aliases/bbvm").status != 200:
        daemon.cli("image", "build", "busybox", "--vm", "--alias", "bbvm", timeout=900)
    return "bbvm"


@pytest.fixture
def vm(daemon: Daemon, vm_image: str) -> Iterator[str]:
    name = daemon.launch(vm_image, unique("vm"), type="virtual-machine")
    try:
        yield name
    finally:
        daemon.force_delete(name)


@pytest.fixture
def listen_address() -> Iterator[str]:
    """A TEST-NET-2 address on the host's loopback (traffic to it never leaves the host)."""
    address = f"198.51.100.{secrets.randbelow(200) + 20}"
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    try:
        yield address
    finally:
        subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], check=False)
