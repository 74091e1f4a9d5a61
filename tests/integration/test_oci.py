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


def test_oci_registry_remote(daemon: Daemon, tmp_path: Path) -> None:
    """A registry on loopback (Debian's docker-registry) holding the layout made here:
    `stapes remote add reg http://... --protocol oci` and `stapes launch reg:app NAME` pull it
    through the daemon; a second launch reuses the image of the same manifest digest."""
    missing = [t for t in ("umoci", "skopeo", "docker-registry") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (make test installs them)")
    from tests.helpers import STAPES, free_port

    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'blobs'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: error\n"
    )
    registry = subprocess.Popen(["docker-registry", "serve", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    names: list[str] = []
    try:
        layout = make_layout(tmp_path)
        for _ in range(50):
            if subprocess.run(["skopeo", "copy", "--insecure-policy", "--dest-tls-verify=false",
                               f"oci:{layout}:latest", f"docker://127.0.0.1:{port}/app:latest"],
                              capture_output=True).returncode == 0:  # fmt: skip
                break
            time.sleep(0.1)
        env = {**daemon.env, "STAPES_CONF": str(tmp_path / "conf")}

        def stapes(*args: str) -> subprocess.CompletedProcess[str]:
            proc = subprocess.run([STAPES, *args], env=env, capture_output=True, text=True,
                                  timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
            return proc

        stapes("remote", "add", "reg", f"http://127.0.0.1:{port}", "--protocol", "oci")
        for _ in range(2):
            names.append(unique("reg"))
            stapes("launch", "reg:app:latest", names[-1])
        images = {
            daemon.request("GET", f"/1.0/instances/{n}").metadata["config"]["volatile.base_image"]
            for n in names
        }
        assert len(images) == 1  # the second launch reused the first pull
        (image,) = images
        props = daemon.request("GET", f"/1.0/images/{image}").metadata["properties"]
        assert props["oci.digest"].startswith("sha256:") and props["type"] == "oci"
        comm = daemon.cli("exec", names[0], "--", "cat", "/proc/1/cmdline").stdout
        assert comm.split("\0")[0] == "/bin/httpd"
    finally:
        for name in names:
            daemon.force_delete(name)
        registry.terminate()
        registry.wait(10)
    for url in daemon.request("GET", "/1.0/images?recursion=1").metadata:
        if url["properties"].get("oci.reference", "").endswith("/app:latest"):
            daemon.wait(daemon.request("DELETE", f"/1.0/images/{url['fingerprint']}"))
