"""Server keys of Incus 6.0.4's table: the ones stapesd applies, and the ones it refuses with
the reason (what this host or this stapesd lacks)."""

from __future__ import annotations

import datetime
import http.server
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers import ClientCert, Daemon, free_port, https_request

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


def _set(daemon: Daemon, config: dict[str, str]) -> tuple[int, str]:
    resp = daemon.request("PATCH", "/1.0", {"config": config})
    return resp.status, resp.json()["error"] if resp.status != 200 else ""


def test_defaults_for_backups_images_and_nics(lone: Daemon) -> None:
    lone.cli("image", "build", "busybox", "--alias", "bb")
    keys = {
        "backups.compression_algorithm": "xz",
        "images.compression_algorithm": "xz",
        "instances.nic.host_name": "mac",
        "images.default_architecture": "x86_64",
    }
    assert _set(lone, keys) == (200, "")
    assert {k: lone.request("GET", "/1.0").metadata["config"][k] for k in keys} == keys
    bridge = "stpk" + lone.root.name[-6:].replace("_", "0")
    config = {"ipv4.address": "none", "ipv6.address": "none"}
    assert lone.request("POST", "/1.0/networks", {"name": bridge, "config": config}).status == 201
    nic = {"eth0": {"type": "nic", "network": bridge, "name": "eth0"}}
    name = lone.launch("bb", devices=nic)
    try:
        config = lone.request("GET", f"/1.0/instances/{name}").metadata["config"]
        mac = config["volatile.eth0.hwaddr"]
        assert config["volatile.eth0.host_name"] == "inc" + mac.replace(":", "")
        assert Path("/sys/class/net", config["volatile.eth0.host_name"]).exists()

        lone.ok(lone.request("POST", f"/1.0/instances/{name}/backups", {"name": "b"}))
        files = list((lone.root / "backups" / "instances").rglob("*"))
        archive = next(f for f in files if f.is_file())
        assert archive.read_bytes()[:6] == b"\xfd7zXZ\x00"  # xz, the server's default
        lone.ok(lone.request("PUT", f"/1.0/instances/{name}/state", {"action": "stop",
                                                                   "force": True}))  # fmt: skip
        op = lone.ok(lone.request("POST", "/1.0/images", {"source": {"type": "instance",
                                                                    "name": name}}))  # fmt: skip
        fingerprint = op["metadata"]["fingerprint"]
        stored = next(p for p in (lone.root / "images").iterdir() if p.name.startswith(fingerprint))
        assert stored.read_bytes()[:6] == b"\xfd7zXZ\x00"
    finally:
        lone.force_delete(name)
        lone.request("DELETE", f"/1.0/networks/{bridge}")


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("acme.domain", "example.org", "ACME"),
        ("core.bgp_asn", "65000", "BGP"),
        ("core.debug_address", "127.0.0.1:8444", "pprof"),
        ("core.storage_buckets_address", "127.0.0.1:8555", "MinIO"),
        ("cluster.rebalance.cooldown", "soon", "expiry"),
        ("cluster.max_voters", "4", "odd number"),
        ("cluster.offline_threshold", "5", "greater than '10'"),
        ("cluster.max_standby", "6", "between 0 and 5"),
        ("authorization.scriptlet", "x", "Starlark"),
        ("openfga.api.url", "http://127.0.0.1:1", "OpenFGA"),
        ("network.ovn.northbound_connection", "unix:/run/ovn/ovnnb_db.sock", "OVN"),
        ("instances.lxcfs.per_instance", "true", "lxcfs"),
        ("backups.compression_algorithm", "rar", "rar"),
        ("images.default_architecture", "z80", "architecture"),
        ("instances.nic.host_name", "pretty", "pretty"),
    ],
)
def test_keys_refused_with_the_reason(daemon: Daemon, key: str, value: str, reason: str) -> None:
    status, error = _set(daemon, {key: value})
    assert status == 400 and key in error and reason in error, error
    assert key not in daemon.request("GET", "/1.0").metadata["config"]


def test_backups_and_images_on_custom_volumes(lone: Daemon) -> None:
    """storage.backups_volume / storage.images_volume, as Incus: the daemon's files move onto
    the volume (and back when unset); the volume cannot go while it serves."""
    lone.cli("image", "build", "busybox", "--alias", "bb")
    name = lone.launch("bb", start=False)
    volumes = "/1.0/storage-pools/default/volumes/custom"
    for volume in ("bk", "im"):
        assert lone.request("POST", volumes, {"name": volume}).status == 200
    lone.ok(lone.request("POST", f"/1.0/instances/{name}/backups", {"name": "before"}))
    assert _set(lone, {"storage.backups_volume": "default/nosuch"})[0] == 400
    keys = {"storage.backups_volume": "default/bk", "storage.images_volume": "default/im"}
    assert _set(lone, keys) == (200, "")
    backups, images = lone.root / "backups", lone.root / "images"
    assert backups.is_symlink() and images.is_symlink()
    assert backups.resolve().name == "default_bk" and images.resolve().name == "default_im"
    assert any(images.iterdir())  # the busybox image moved there
    lone.ok(lone.request("POST", f"/1.0/instances/{name}/backups", {"name": "after"}))
    assert len([p for p in backups.resolve().rglob("*") if p.is_file()]) == 2
    refused = lone.request("DELETE", f"{volumes}/bk")
    assert refused.status == 400 and "storage.backups_volume" in refused.json()["error"]

    lone.stop()  # a restart keeps them there
    lone.start()
    export = lone.request("GET", f"/1.0/instances/{name}/backups/after/export")
    assert export.status == 200 and len(export.body) > 0
    second = lone.launch("bb", start=False)  # the image is read from the volume
    lone.force_delete(second)

    assert _set(lone, {"storage.backups_volume": "", "storage.images_volume": ""}) == (200, "")
    assert not backups.is_symlink() and backups.is_dir() and not images.is_symlink()
    assert len([p for p in backups.rglob("*") if p.is_file()]) == 2
    assert not any(Path(lone.root, "storage-pools/default/custom/default_bk").iterdir())
    assert lone.request("DELETE", f"{volumes}/bk").status == 200
    lone.force_delete(name)


def test_cors_headers_and_options(lone: Daemon) -> None:
    """core.https_allowed_*: a request with an Origin gets Incus's CORS headers; OPTIONS is
    answered at once."""
    keys = {
        "core.https_allowed_origin": "https://ui.example.org",
        "core.https_allowed_methods": "GET, POST, PUT, DELETE, OPTIONS",
        "core.https_allowed_headers": "Content-Type",
        "core.https_allowed_credentials": "true",
    }
    assert _set(lone, keys) == (200, "")
    origin = {"Origin": "https://ui.example.org"}
    got = lone.request("GET", "/1.0/instances", headers=origin)
    assert got.status == 200
    assert got.headers["Access-Control-Allow-Origin"] == "https://ui.example.org"
    assert got.headers["Access-Control-Allow-Methods"] == keys["core.https_allowed_methods"]
    assert got.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert got.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Access-Control-Allow-Origin" not in lone.request("GET", "/1.0/instances").headers
    preflight = lone.request("OPTIONS", "/1.0/instances/anything", headers=origin)
    assert preflight.status == 200 and preflight.body == b""
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://ui.example.org"
    assert _set(lone, {"core.https_trusted_proxy": "127.0.0.1, ::1"}) == (200, "")
    assert _set(lone, {"core.https_trusted_proxy": "proxy.example.org"})[0] == 400


@dataclass
class _Pki:
    ca: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    client: ClientCert


def _pki(tmp_path: Path) -> _Pki:
    """A CA, and a client certificate it signed (on disk, as ClientCert keeps one)."""
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - day).not_valid_after(now + 30 * day)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA384())
    )  # fmt: skip
    client = ClientCert(tmp_path, "laptop")  # its key; the certificate is replaced by one
    key = serialization.load_pem_private_key(client.key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "laptop")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - day).not_valid_after(now + 30 * day)
        .sign(ca_key, hashes.SHA384())
    )  # fmt: skip
    client.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return _Pki(ca, ca_key, cert, client)


def test_certificates_signed_by_the_server_ca(lone: Daemon, tmp_path: Path) -> None:
    """core.trust_ca_certificates: a client certificate server.ca signed is trusted, unless
    server.crl revokes it."""
    pki = _pki(tmp_path)
    (lone.root / "server.ca").write_bytes(pki.ca.public_bytes(serialization.Encoding.PEM))
    address = f"127.0.0.1:{free_port()}"
    assert _set(lone, {"core.https_address": address}) == (200, "")

    def auth() -> str:
        return str(https_request(address, "GET", "/1.0", client=pki.client)[0].metadata["auth"])

    assert auth() == "untrusted"
    assert _set(lone, {"core.trust_ca_certificates": "true"}) == (200, "")
    assert auth() == "trusted"
    now = datetime.datetime.now(datetime.UTC)
    revoked = (
        x509.RevokedCertificateBuilder().serial_number(pki.cert.serial_number)
        .revocation_date(now).build()
    )  # fmt: skip
    crl = (
        x509.CertificateRevocationListBuilder().issuer_name(pki.ca.subject)
        .last_update(now).next_update(now + datetime.timedelta(days=1))
        .add_revoked_certificate(revoked).sign(pki.ca_key, hashes.SHA384())
    )  # fmt: skip
    (lone.root / "server.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    assert auth() == "untrusted"


class _Loki(http.server.BaseHTTPRequestHandler):
    pushes: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Loki.pushes.append(
            {"path": self.path, "auth": self.headers.get("Authorization", ""),
             "body": json.loads(self.rfile.read(length))}
        )  # fmt: skip
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def test_events_are_pushed_to_loki(lone: Daemon) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Loki)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        keys = {
            "loki.api.url": f"http://127.0.0.1:{server.server_address[1]}",
            "loki.auth.username": "ada",
            "loki.auth.password": "secret",
            "loki.instance": "lab",
            "loki.labels": "project,name",
            "loki.types": "lifecycle",
        }
        assert _set(lone, keys) == (200, "")
        assert lone.request("POST", "/1.0/profiles", {"name": "pushed"}).status == 201
        deadline = time.time() + 15
        found: list[tuple[dict[str, str], list[str]]] = []
        while time.time() < deadline and not found:
            time.sleep(0.2)
            found = [
                (stream["stream"], value)
                for push in list(_Loki.pushes)
                for stream in push["body"]["streams"]
                for value in stream["values"]
                if "profile-created" in value[1]
            ]
        assert found, _Loki.pushes
        labels, (stamp, line) = found[0]
        assert labels == {"app": "incus", "type": "lifecycle", "location": "none",
                          "instance": "lab", "project": "default", "name": "pushed"}  # fmt: skip
        assert int(stamp) > 0 and "source='/1.0/profiles/pushed'" in line
        assert _Loki.pushes[0]["path"] == "/loki/api/v1/push"
        assert _Loki.pushes[0]["auth"].startswith("Basic ")
        assert _set(lone, {"loki.types": "metrics"})[0] == 400
    finally:
        lone.request("PATCH", "/1.0", {"config": {"loki.api.url": ""}})
        server.shutdown()
        server.server_close()
