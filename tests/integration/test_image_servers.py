"""Images between hosts: a second stapesd serves its public images as a simplestreams tree and
over its Incus API; this host pulls one (image copy, with aliases) and launches from one (a
cached image), the server's self-signed certificate pinned. Bad sources are clear errors and
leave no image behind."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.helpers import Daemon, free_port, https_request, unique

pytestmark = [pytest.mark.root]


def serve_busybox(far: Daemon) -> str:
    """Build the busybox image on the server, public; its fingerprint."""
    far.cli("image", "build", "busybox", "--alias", "bb")
    fingerprint: str = far.request("GET", "/1.0/images/aliases/bb").metadata["target"]
    assert far.request("PATCH", f"/1.0/images/{fingerprint}", {"public": True}).status == 200
    return fingerprint


def local_images(daemon: Daemon) -> set[str]:
    return {u.rsplit("/", 1)[-1] for u in daemon.request("GET", "/1.0/images").metadata}


def test_simplestreams_tree_and_pull(
    daemon: Daemon, second_host: tuple[Daemon, str], tmp_path: Path
) -> None:
    far, address = second_host
    fingerprint = serve_busybox(far)
    server_pem = far.request("GET", "/1.0").metadata["environment"]["certificate"]

    # the tree, readable without a client certificate
    index = https_request(address, "GET", "/streams/v1/index.json")[0].json()
    assert index["format"] == "index:1.0"
    tree = https_request(address, "GET", "/streams/v1/images.json")[0].json()
    (product,) = tree["products"].values()
    assert "bb" in product["aliases"].split(",") and product["arch"] == "amd64"
    (version,) = product["versions"].values()
    item = version["items"]["incus_combined.tar.gz"]
    assert item["sha256"] == fingerprint
    body = https_request(address, "GET", "/" + item["path"])[0].body
    assert hashlib.sha256(body).hexdigest() == fingerprint and len(body) == item["size"]

    # image copy from the simplestreams server, with an alias, into this host
    alias = unique("copied")
    if fingerprint in local_images(daemon):
        daemon.ok(daemon.request("DELETE", f"/1.0/images/{fingerprint}"))
    source = {"type": "image", "mode": "pull", "server": f"https://{address}",
              "protocol": "simplestreams", "alias": "bb", "certificate": server_pem}  # fmt: skip
    pull = {"source": source, "aliases": [{"name": alias}]}
    done = daemon.ok(daemon.request("POST", "/1.0/images", pull))
    assert done["metadata"]["fingerprint"] == fingerprint
    image = daemon.request("GET", f"/1.0/images/{fingerprint}").metadata
    assert image["cached"] is False and [a["name"] for a in image["aliases"]] == [alias]
    # as Incus shows where a pulled image came from (incus image info: Source)
    assert image["update_source"] == {
        "alias": "bb", "certificate": server_pem, "image_type": "container",
        "protocol": "simplestreams", "server": f"https://{address}",
    }  # fmt: skip
    extensions = daemon.request("GET", "/1.0").metadata["api_extensions"]
    assert {"image_create_aliases", "image_force_refresh"} <= set(extensions)
    refreshed = daemon.ok(daemon.request("POST", f"/1.0/images/{fingerprint}/refresh", {}))
    assert refreshed["metadata"]["refreshed"] is False  # the server has nothing newer
    # the server's own image was made there: no server to ask, the refresh fails as Incus's
    failed = far.wait(far.request("POST", f"/1.0/images/{fingerprint}/refresh", {}))
    assert failed.status == 404
    assert failed.json()["error"] == (
        f'Failed to update image "{fingerprint}" in project "default": Image source not found'
    )
    daemon.ok(daemon.request("DELETE", f"/1.0/images/{fingerprint}"))

    # launch from the server over its Incus API: pulled as a cached image
    name = unique("far")
    instance_source = {**source, "protocol": "incus", "alias": "bb"}
    body2 = {"name": name, "source": instance_source, "start": True}
    try:
        daemon.ok(daemon.request("POST", "/1.0/instances", body2))
        out = daemon.cli("exec", name, "--", "cat", "/etc/hostname").stdout
        assert out.strip() == name
        assert daemon.request("GET", f"/1.0/images/{fingerprint}").metadata["cached"] is True
    finally:
        daemon.force_delete(name)
        daemon.wait(daemon.request("DELETE", f"/1.0/images/{fingerprint}"))


def test_bad_image_sources_leave_nothing(
    daemon: Daemon, second_host: tuple[Daemon, str], tmp_path: Path
) -> None:
    far, address = second_host
    serve_busybox(far)
    own_pem = daemon.request("GET", "/1.0").metadata["environment"]["certificate"]
    server_pem = far.request("GET", "/1.0").metadata["environment"]["certificate"]
    before = local_images(daemon)
    base = {"type": "image", "protocol": "simplestreams", "alias": "bb", "certificate": server_pem}
    for source, status, expected in [
        ({**base, "server": address}, 400, "scheme"),
        ({**base, "server": f"https://{address}", "protocol": "ftp"}, 400, "protocol"),
        ({**base, "server": f"https://{address}", "alias": "nosuch"}, 404, "nosuch"),
        ({**base, "server": f"https://{address}", "certificate": own_pem}, 400, "not the one"),
        ({**base, "server": f"https://127.0.0.1:{free_port()}"}, 400, "Could not get"),
    ]:
        resp = daemon.request("POST", "/1.0/images", {"source": source})
        if resp.status == 202:
            resp = daemon.wait(resp)
        assert resp.status == status and expected in resp.json()["error"], (source, resp.body)
    assert local_images(daemon) == before
    assert not list((daemon.root / "images").glob("upload-*"))


@pytest.mark.liblxc
def test_cli_image_servers_and_launch_from_a_remote(
    daemon: Daemon, second_host: tuple[Daemon, str], tmp_path: Path
) -> None:
    """stapes remote add --protocol simplestreams, image copy from it; and launch REMOTE:IMAGE
    onto this host from a remote whose image is private (an image secret lets this host's
    daemon fetch it)."""
    import subprocess

    from tests.helpers import STAPES

    far, address = second_host
    far.cli("image", "build", "busybox", "--alias", "bb")
    fingerprint = far.request("GET", "/1.0/images/aliases/bb").metadata["target"]
    env = {**daemon.env, "STAPES_CONF": str(tmp_path / "conf")}

    def stapes(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([STAPES, *args], env=env, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
        assert not check or proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    if fingerprint in local_images(daemon):
        daemon.ok(daemon.request("DELETE", f"/1.0/images/{fingerprint}"))
    # private on the server: launched onto this host through an image secret
    token = far.cli("config", "trust", "add", "host-a").stdout.strip().splitlines()[-1]
    stapes("remote", "add", "far", token)
    name = unique("pulled")
    try:
        stapes("launch", "far:bb", name)
        assert daemon.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Running"
        assert far.request("GET", f"/1.0/instances/{name}").status == 404
        assert daemon.request("GET", f"/1.0/images/{fingerprint}").metadata["cached"] is True
    finally:
        daemon.force_delete(name)
        daemon.wait(daemon.request("DELETE", f"/1.0/images/{fingerprint}"))

    # a simplestreams image server: pinned certificate, image copy with an alias
    assert far.request("PATCH", f"/1.0/images/{fingerprint}", {"public": True}).status == 200
    url = f"https://{address}"
    proc = stapes("remote", "add", "st", url, "--protocol", "simplestreams", check=False)
    assert proc.returncode == 1 and "--accept-certificate" in proc.stderr
    stapes("remote", "add", "st", url, "--protocol", "simplestreams", "--accept-certificate")
    listed = stapes("image", "list", "st:", "--format", "csv").stdout
    assert fingerprint[:12] in listed and "bb" in listed
    stapes("remote", "set-url", "st", f"https://{address}/")
    assert (
        f"st,https://{address},simplestreams" in stapes("remote", "list", "--format", "csv").stdout
    )
    assert stapes("remote", "set-url", "st", "nope", check=False).returncode == 1
    alias = unique("st")
    stapes("image", "copy", "st:bb", "local:", "--alias", alias)
    got = daemon.request("GET", f"/1.0/images/aliases/{alias}").metadata
    assert got["target"] == fingerprint
    proc = stapes("list", "st:", check=False)
    assert proc.returncode == 1 and "image server" in proc.stderr
    daemon.ok(daemon.request("DELETE", f"/1.0/images/{fingerprint}"))


def test_static_tree_from_image_build(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    """stapes image build --streams DIR writes a simplestreams tree a plain web server can
    publish; a daemon pulls from it over HTTP."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    tree = tmp_path / "tree"
    alias = unique("static")
    out = daemon.cli("image", "build", "busybox", "--alias", unique("b"), "--streams", str(tree))
    fingerprint = out.stdout.strip().rsplit(" ", 1)[-1]
    assert (tree / "streams" / "v1" / "index.json").is_file()
    daemon.ok(daemon.request("DELETE", f"/1.0/images/{fingerprint}"))

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Quiet, directory=str(tree)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = {"type": "image", "server": f"http://127.0.0.1:{port}",
                  "protocol": "simplestreams", "alias": "busybox/1.35.0"}  # fmt: skip
        pull = {"source": source, "aliases": [{"name": alias}]}
        done = daemon.ok(daemon.request("POST", "/1.0/images", pull))
        assert done["metadata"]["fingerprint"] == fingerprint
        daemon.wait(daemon.request("DELETE", f"/1.0/images/{fingerprint}"))
        # a server whose file does not match its index (truncated here): refused, nothing kept
        served = tree / "streams" / "images" / fingerprint / "incus_combined.tar.gz"
        served.write_bytes(served.read_bytes()[:-1000])
        before = local_images(daemon)
        resp = daemon.wait(daemon.request("POST", "/1.0/images", {"source": source}))
        assert resp.status == 400 and "sha256 mismatch" in resp.json()["error"]
        assert local_images(daemon) == before
        assert not list((daemon.root / "images").glob("upload-*"))
    finally:
        server.shutdown()
        server.server_close()
        if fingerprint in local_images(daemon):
            daemon.wait(daemon.request("DELETE", f"/1.0/images/{fingerprint}"))


def test_auto_update_from_the_server(
    daemon: Daemon, second_host: tuple[Daemon, str], tmp_path: Path
) -> None:
    """An image copied with auto_update follows its server: a refresh finds the newer image,
    which takes over the alias; the old one goes."""
    far, address = second_host
    old = serve_busybox(far)
    server_pem = far.request("GET", "/1.0").metadata["environment"]["certificate"]
    source = {"type": "image", "server": f"https://{address}", "protocol": "simplestreams",
              "alias": "bb", "certificate": server_pem}  # fmt: skip
    alias = unique("auto")
    if old in local_images(daemon):
        daemon.ok(daemon.request("DELETE", f"/1.0/images/{old}"))
    pull = {"source": source, "aliases": [{"name": alias}], "auto_update": True}
    daemon.ok(daemon.request("POST", "/1.0/images", pull))
    new = ""
    try:
        done = daemon.ok(daemon.request("POST", f"/1.0/images/{old}/refresh", {}))
        assert done["metadata"]["refreshed"] is False
        # the server publishes a newer build of the same product
        far.cli("image", "build", "busybox", "--alias", "bb-next")
        new = far.request("GET", "/1.0/images/aliases/bb-next").metadata["target"]
        assert far.request("PATCH", f"/1.0/images/{new}", {"public": True}).status == 200
        out = daemon.cli("image", "refresh", alias).stdout
        assert new in out
        got = daemon.request("GET", f"/1.0/images/aliases/{alias}").metadata
        assert got["target"] == new
        assert daemon.request("GET", f"/1.0/images/{new}").metadata["auto_update"] is True
        assert daemon.request("GET", f"/1.0/images/{old}").status == 404
    finally:
        for fingerprint in (old, new):
            if fingerprint and fingerprint in local_images(daemon):
                daemon.wait(daemon.request("DELETE", f"/1.0/images/{fingerprint}"))


class _ConnectProxy:
    """A forward proxy for HTTPS (CONNECT), on loopback, recording where it tunnelled to."""

    def __init__(self) -> None:
        import socket
        import threading

        self.targets: list[str] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    break
                head += chunk
            target = head.split(b" ")[1].decode()
            self.targets.append(target)
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: object, dst: object) -> None:
        import socket

        assert isinstance(src, socket.socket) and isinstance(dst, socket.socket)
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            src.close()  # each socket is read by one thread: that one closes it

    def close(self) -> None:
        self.server.close()


def test_image_downloads_go_through_the_configured_proxy(
    lone: Daemon, second_host: tuple[Daemon, str]
) -> None:
    """core.proxy_https carries image downloads; core.proxy_ignore_hosts exempts hosts."""
    far, address = second_host
    fingerprint = serve_busybox(far)
    server_pem = far.request("GET", "/1.0").metadata["environment"]["certificate"]
    proxy = _ConnectProxy()
    try:
        config = {"core.proxy_https": f"http://127.0.0.1:{proxy.port}"}
        assert lone.request("PATCH", "/1.0", {"config": config}).status == 200
        source = {
            "type": "image", "mode": "pull", "server": f"https://{address}",
            "protocol": "simplestreams", "alias": "bb", "certificate": server_pem,
        }  # fmt: skip
        done = lone.ok(lone.request("POST", "/1.0/images", {"source": source}))
        assert done["metadata"]["fingerprint"] == fingerprint
        assert address in proxy.targets
        lone.ok(lone.request("DELETE", f"/1.0/images/{fingerprint}"))

        seen = len(proxy.targets)
        config["core.proxy_ignore_hosts"] = "127.0.0.0/8"
        assert lone.request("PATCH", "/1.0", {"config": config}).status == 200
        lone.ok(lone.request("POST", "/1.0/images", {"source": source}))
        assert len(proxy.targets) == seen  # straight to the server
    finally:
        proxy.close()
