"""Fixtures of the integration tests that need a managed network."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers import Daemon

NETS = "/1.0/networks"


@pytest.fixture
def network(daemon: Daemon) -> Iterator[tuple[str, str]]:
    """A managed bridge with a unique name, a private /24 and NAT off: (name, address)."""
    name = "stpt" + secrets.token_hex(4)
    address = f"10.214.{secrets.randbelow(250) + 1}.1/24"
    config = {"ipv4.address": address, "ipv4.nat": "false", "ipv6.address": "none"}
    resp = daemon.request("POST", NETS, {"name": name, "config": config})
    assert resp.status == 200, resp.body
    try:
        yield name, address
    finally:
        daemon.request("DELETE", f"{NETS}/{name}")
        subprocess.run(["ip", "link", "del", name], capture_output=True)
