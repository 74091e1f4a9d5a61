"""GET /1.0, unknown endpoints, profiles, projects, pools."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import Daemon

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


def test_server_info_has_the_fields_clients_read(daemon: Daemon) -> None:
    resp = daemon.request("GET", "/1.0")
    assert resp.status == 200
    body = resp.json()
    assert body["type"] == "sync" and body["status_code"] == 200
    meta = body["metadata"]
    for key in (
        "api_extensions",
        "api_status",
        "api_version",
        "auth",
        "auth_methods",
        "config",
        "environment",
    ):
        assert key in meta
    assert "instances" in meta["api_extensions"]
    env = meta["environment"]
    assert env["server"] == "stapes"
    assert "x86_64" in env["architectures"] or env["architectures"]
    assert env["storage_supported_drivers"][0]["Name"] == "dir"
    assert resp.headers["ETag"]


def test_unknown_endpoint_is_a_404_envelope(daemon: Daemon) -> None:
    resp = daemon.request("GET", "/1.0/nope")
    assert resp.status == 404
    assert resp.json() == {
        "type": "error",
        "status": "",
        "status_code": 0,
        "operation": "",
        "error_code": 404,
        "error": "not found",
        "metadata": None,
    }


def test_unsupported_method_is_a_405_envelope(daemon: Daemon) -> None:
    resp = daemon.request("POST", "/1.0/storage-pools/default", {})
    assert resp.status == 405
    assert resp.json()["error_code"] == 405


def test_default_profile_project_and_pool_exist(daemon: Daemon) -> None:
    profile = daemon.request("GET", "/1.0/profiles/default").metadata
    assert profile["devices"]["root"] == {"path": "/", "pool": "default", "type": "disk"}
    assert daemon.request("GET", "/1.0/projects/default").metadata["name"] == "default"
    pools = daemon.request("GET", "/1.0/storage-pools?recursion=1").metadata
    default = [p for p in pools if p["name"] == "default"]
    assert default and default[0]["driver"] == "dir"
    assert daemon.request("GET", "/1.0/profiles/nope").status == 404


def test_server_config(daemon: Daemon) -> None:
    resp = daemon.request("GET", "/1.0")
    etag = resp.headers["ETag"]
    patched = daemon.request(
        "PATCH", "/1.0", {"config": {"core.shutdown_timeout": "1", "user.owner": "ops"}}
    )
    assert patched.status == 200, patched.body
    config = daemon.request("GET", "/1.0").metadata["config"]
    assert config == {"core.shutdown_timeout": "1", "user.owner": "ops"}
    stale = daemon.request("PUT", "/1.0", {"config": {}}, headers={"If-Match": etag.strip('"')})
    assert stale.status == 412
    for bad, named in (
        ({"core.bogus": "1"}, "core.bogus"),
        ({"core.shutdown_timeout": "soon"}, "core.shutdown_timeout"),
        ({"core.https_address": "127.0.0.1:port"}, "core.https_address"),
        ({"core.trust_password": "secret"}, "trust tokens"),
    ):
        resp = daemon.request("PATCH", "/1.0", {"config": bad})
        assert resp.status == 400 and named in resp.json()["error"]
    # the CLI: no instance named means the server
    daemon.cli("config", "set", "user.owner", "team")
    assert daemon.cli("config", "get", "user.owner").stdout == "team\n"
    daemon.cli("config", "unset", "user.owner")
    daemon.cli("config", "set", "core.shutdown_timeout=5")
    assert "core.shutdown_timeout: '5'" in daemon.cli("config", "show").stdout
    assert daemon.request("PUT", "/1.0", {"config": {}}).status == 200
    assert daemon.request("GET", "/1.0").metadata["config"] == {}


def test_resources_describe_this_host(daemon: Daemon) -> None:
    res = daemon.request("GET", "/1.0/resources").metadata
    assert res["cpu"]["total"] == os.cpu_count()
    threads = [t for s in res["cpu"]["sockets"] for c in s["cores"] for t in c["threads"]]
    assert sorted(t["id"] for t in threads) == list(range(os.cpu_count() or 0))
    with open("/proc/meminfo", encoding="ascii") as f:
        total_kib = int(f.readline().split()[1])
    assert res["memory"]["total"] == total_kib * 1024
    assert 0 < res["memory"]["used"] < res["memory"]["total"]
    assert res["load"]["Processes"] > 0
    names = {p["id"] for card in res["network"]["cards"] for p in card["ports"]}
    assert "lo" not in names
    assert res["storage"]["total"] == len(res["storage"]["disks"])
    assert "resources_v2" in daemon.request("GET", "/1.0").metadata["api_extensions"]
    # PCI devices as the kernel lists them (incus info --resources shows them)
    pci = Path("/sys/bus/pci/devices")
    addresses = sorted(p.name for p in pci.iterdir()) if pci.is_dir() else []
    assert [d["pci_address"] for d in res["pci"]["devices"]] == addresses
    assert res["pci"]["total"] == len(addresses)
    for device in res["pci"]["devices"]:
        assert device["vendor_id"] == (pci / device["pci_address"] / "vendor").read_text()[2:-1]
    assert set(res) == {"cpu", "gpu", "load", "memory", "network", "pci", "storage", "system",
                        "usb"}  # fmt: skip
