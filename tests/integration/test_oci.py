"""OCI application containers: an OCI image layout made here with umoci (a busybox layer,
entrypoint httpd, an env var, a working directory) is imported as an image; the container runs
the entrypoint as PID 1 with the image's environment, serves the host on its routed address,
takes exec, and stops (SIGTERM, then killed after the grace period: httpd as PID 1 ignores it)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import Daemon, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


def umoci(*args: str) -> None:
    subprocess.run(["umoci", *args], check=True, capture_output=True)


def make_layout(tmp_path: Path) -> Path:
    layout, bundle = tmp_path / "layout", tmp_path / "bundle"
    umoci("init", "--layout", str(layout))
    umoci("new", "--image", f"{layout}:latest")
    umoci("unpack", "--image", f"{layout}:latest", str(bundle))
    rootfs = bundle / "rootfs"
    for directory in ("bin", "www", "etc"):
        (rootfs / directory).mkdir(exist_ok=True)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    for applet in ("sh", "httpd", "env", "cat", "pwd"):
        os.symlink("busybox", rootfs / "bin" / applet)
    (rootfs / "www" / "index.html").write_text("hello from oci\n")
    umoci("repack", "--image", f"{layout}:latest", str(bundle))
    args = ["-f", "-p", "8080", "-h", "/www"]
    umoci("config", "--image", f"{layout}:latest", "--config.entrypoint", "/bin/httpd",
          *[x for a in args for x in ("--config.cmd", a)], "--config.env", "GREETING=hi",
          "--config.workingdir", "/www")  # fmt: skip
    return layout


def fetch(url: str) -> str:
    for _ in range(50):
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return str(resp.read().decode())
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def test_oci_application_container(daemon: Daemon, tmp_path: Path) -> None:
    missing = [tool for tool in ("umoci", "skopeo") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (make test installs skopeo and umoci)")
    layout = make_layout(tmp_path)
    alias = unique("app")
    out = daemon.cli("image", "import", "--oci", str(layout), "--alias", alias).stdout
    fingerprint = out.strip().rsplit(" ", 1)[-1]
    address = f"10.221.{secrets.randbelow(250) + 1}.5"
    nic = {"eth0": {"type": "nic", "nictype": "routed", "ipv4.address": address}}
    name = daemon.launch(alias, devices=nic)
    try:
        config = daemon.request("GET", f"/1.0/instances/{name}").metadata["config"]
        assert config["volatile.container.oci"] == "true"
        assert config["oci.entrypoint"] == "/bin/httpd -f -p 8080 -h /www"
        assert fetch(f"http://{address}:8080/") == "hello from oci\n"
        assert "GREETING=hi" in daemon.cli("exec", name, "--", "env").stdout
        comm = daemon.cli("exec", name, "--", "cat", "/proc/1/cmdline").stdout
        assert comm.split("\0")[:2] == ["/bin/httpd", "-f"]
        start = time.monotonic()
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "stop"}))
        assert time.monotonic() - start < 30
        assert daemon.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Stopped"
    finally:
        daemon.force_delete(name)
        daemon.wait(daemon.request("DELETE", f"/1.0/images/{fingerprint}"))
    bad = daemon.cli("image", "import", "--oci", str(tmp_path / "nosuch"), check=False)
    assert bad.returncode == 1 and "No OCI image" in bad.stderr
