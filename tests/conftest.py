from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from stapes.api.errors import MissingHostFeature
from stapes.host.capabilities import probe
from stapes.storage.drivers.btrfs import BtrfsDriver
from tests.helpers import Daemon, new_root, remove_root, unique


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    caps = probe()
    for item in items:
        if "root" in item.keywords and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="needs root (containers, mounts, chown)"))
        if "liblxc" in item.keywords and caps.liblxc is None:
            item.add_marker(pytest.mark.skip(reason=caps.missing_liblxc()))
        if "btrfs" in item.keywords and (missing := _missing(BtrfsDriver.probe)):
            item.add_marker(pytest.mark.skip(reason=missing))


def _missing(probe: Callable[[], None]) -> str:
    """The reason a driver's own host probe gives, or "" when the host has what it needs."""
    try:
        probe()
    except MissingHostFeature as exc:
        return exc.message
    return ""


@pytest.fixture(scope="session")
def daemon() -> Iterator[Daemon]:
    root = new_root()
    d = Daemon(root)
    d.start()
    try:
        yield d
    finally:
        try:
            names = d.request("GET", "/1.0/instances").metadata if d.proc else []
            for url in names:
                d.force_delete(url.rsplit("/", 1)[-1])
        finally:
            d.stop()
            remove_root(root)


@pytest.fixture(scope="session")
def busybox(daemon: Daemon) -> str:
    """The busybox image, built by `stapes image build busybox`, under the alias bb."""
    daemon.cli("image", "build", "busybox", "--alias", "bb")
    return "bb"


@pytest.fixture
def container(daemon: Daemon, busybox: str) -> Iterator[str]:
    name = daemon.launch(busybox)
    try:
        yield name
    finally:
        daemon.force_delete(name)


@pytest.fixture
def btrfs_pool(daemon: Daemon) -> Iterator[str]:
    """A btrfs pool on a 512 MiB loop file of its own."""
    name = unique("bt")
    resp = daemon.request(
        "POST",
        "/1.0/storage-pools",
        {"name": name, "driver": "btrfs", "config": {"size": "512MiB"}},
    )
    assert resp.status == 201, resp.body
    try:
        yield name
    finally:
        daemon.request("DELETE", f"/1.0/storage-pools/{name}")
