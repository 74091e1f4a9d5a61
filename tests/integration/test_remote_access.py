"""Remote access: core.https_address starts an HTTPS listener with the server's certificate;
untrusted clients see only GET /1.0 and may enrol with a trust token; trusted ones get the
whole API, and the real incus client works over HTTPS (remote add with a token, list, launch,
exec, file, events). Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from stapes import certs
from stapes.api.certificate import TrustToken
from stapes.api.times import now, parse_timestamp
from tests.helpers import (
    STAPES,
    ClientCert,
    Daemon,
    free_port,
    https_request,
    unique,
)

pytestmark = [pytest.mark.root]

CERTS = "/1.0/certificates"


def new_token(daemon: Daemon, name: str) -> tuple[str, dict]:  # type: ignore[type-arg]
    """(the token a client is given, its operation)."""
    resp = daemon.request("POST", CERTS, {"name": name, "type": "client", "token": True})
    assert resp.status == 202, resp.body
    op = resp.json()["metadata"]
    meta = op["metadata"]
    token = TrustToken(
        client_name=name,
        fingerprint=meta["fingerprint"],
        addresses=meta["addresses"],
        secret=meta["secret"],
    )
    return token.encode(), op


def test_untrusted_clients_see_only_the_public_api(
    daemon: Daemon, https: str, tmp_path: Path
) -> None:
    stranger = ClientCert(tmp_path, "stranger")
    resp, server_fp = https_request(https, "GET", "/1.0", client=stranger)
    meta = resp.metadata
    assert resp.status == 200 and meta["auth"] == "untrusted" and "environment" not in meta
    assert meta["api_extensions"] and meta["config"] == {}
    env = daemon.request("GET", "/1.0").metadata["environment"]
    assert env["certificate_fingerprint"] == server_fp
    assert (tmp_path / "x").exists() is False
    assert (daemon.root / "server.key").stat().st_mode & 0o077 == 0
    for client in (stranger, None):
        for method, path, body in [
            ("GET", "/1.0/instances", None),
            ("POST", "/1.0/instances", {"name": "x", "source": {"type": "none"}}),
            ("PATCH", "/1.0", {"config": {"core.https_address": ""}}),
            ("GET", CERTS, None),
            ("POST", CERTS, {"type": "client", "trust_token": "bogus"}),
            ("POST", CERTS, {"type": "client", "certificate": "x"}),
        ]:
            resp, _ = https_request(https, method, path, body, client=client)
            assert resp.status == 403 and resp.json()["error"] == "not authorized", (path, body)
    assert daemon.request("GET", "/1.0/instances/x").status == 404
    assert daemon.request("GET", CERTS).metadata == []
    # garbage instead of a TLS handshake: that connection closes, the daemon serves on
    host, port = https.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(4096))
        raw.settimeout(5)
        try:
            while raw.recv(4096):
                pass
        except OSError:
            pass
    resp, _ = https_request(https, "GET", "/1.0", client=stranger)
    assert resp.status == 200


def test_a_trust_token_enrols_a_client_once(daemon: Daemon, https: str, tmp_path: Path) -> None:
    laptop, other = ClientCert(tmp_path, "laptop"), ClientCert(tmp_path, "other")
    token, op = new_token(daemon, "laptop")
    assert op["class"] == "token" and op["metadata"]["addresses"] == [https]
    _, server_fp = https_request(https, "GET", "/1.0", client=laptop)
    assert op["metadata"]["fingerprint"] == server_fp

    resp, _ = https_request(https, "POST", CERTS, {"type": "client", "trust_token": token}, laptop)
    assert resp.status == 201, resp.body
    meta = https_request(https, "GET", "/1.0", client=laptop)[0].metadata
    assert meta["auth"] == "trusted" and meta["auth_user_method"] == "tls"
    assert meta["auth_user_name"] == laptop.fingerprint
    assert meta["environment"]["certificate_fingerprint"] == server_fp
    resp, _ = https_request(https, "GET", "/1.0/instances", client=laptop)
    assert resp.status == 200
    (cert,) = daemon.request("GET", f"{CERTS}?recursion=1").metadata
    assert (cert["name"], cert["type"], cert["fingerprint"]) == (
        "laptop",
        "client",
        laptop.fingerprint,
    )
    # used: its operation is over and it lets nobody else in
    done = daemon.request("GET", f"/1.0/operations/{op['id']}").metadata
    assert done["status"] == "Cancelled"
    resp, _ = https_request(https, "POST", CERTS, {"type": "client", "trust_token": token}, other)
    assert resp.status == 403
    resp, _ = https_request(https, "POST", CERTS, {"type": "client", "trust_token": token}, laptop)
    assert resp.status == 400 and "already trusted" in resp.json()["error"]

    # removed from the trust store: untrusted again
    assert daemon.request("DELETE", f"{CERTS}/{laptop.fingerprint[:12]}").status == 200
    resp, _ = https_request(https, "GET", "/1.0/instances", client=laptop)
    assert resp.status == 403


def test_tokens_and_trust_outlive_a_restart_and_tokens_can_be_revoked(
    daemon: Daemon, https: str, tmp_path: Path
) -> None:
    first, second = ClientCert(tmp_path, "first"), ClientCert(tmp_path, "second")
    kept, _ = new_token(daemon, "first")
    revoked, _ = new_token(daemon, "second")
    daemon.stop()
    daemon.start()
    resp, _ = https_request(https, "GET", "/1.0", client=first)
    assert resp.status == 200  # the listener is back on its address
    running = daemon.request("GET", "/1.0/operations?recursion=1").metadata.get("running", [])
    tokens = {op["metadata"]["request"]["name"]: op for op in running if op["class"] == "token"}
    assert sorted(tokens) == ["first", "second"]
    assert daemon.request("DELETE", f"/1.0/operations/{tokens['second']['id']}").status == 200
    body = {"type": "client", "trust_token": revoked}
    assert https_request(https, "POST", CERTS, body, second)[0].status == 403
    body = {"type": "client", "trust_token": kept}
    assert https_request(https, "POST", CERTS, body, first)[0].status == 201
    daemon.stop()
    daemon.start()
    resp, _ = https_request(https, "GET", "/1.0/instances", client=first)
    assert resp.status == 200


def test_core_remote_token_expiry(daemon: Daemon, https: str, tmp_path: Path) -> None:
    """A token made while core.remote_token_expiry is set carries expiresAt and stops working
    (its operation ends) when that time passes."""
    bad = daemon.request("PATCH", "/1.0", {"config": {"core.remote_token_expiry": "1h"}})
    assert bad.status == 400 and "expiry" in bad.json()["error"]
    resp = daemon.request("PATCH", "/1.0", {"config": {"core.remote_token_expiry": "2S"}})
    assert resp.status == 200, resp.body
    try:
        late = ClientCert(tmp_path, "late")
        token, op = new_token(daemon, "late")
        expires = parse_timestamp(op["metadata"]["expiresAt"])
        assert expires is not None and 0 < (expires - now()).total_seconds() <= 2
        time.sleep(3)
        body = {"type": "client", "trust_token": token}
        assert https_request(https, "POST", CERTS, body, late)[0].status == 403
        done = daemon.request("GET", f"/1.0/operations/{op['id']}").metadata
        assert done["status"] == "Cancelled"
    finally:
        daemon.request("PATCH", "/1.0", {"config": {"core.remote_token_expiry": ""}})
    token, op = new_token(daemon, "late")  # unset: no expiry
    assert "expiresAt" not in op["metadata"]


def test_certificate_api_and_listener_config(daemon: Daemon, https: str, tmp_path: Path) -> None:
    client = ClientCert(tmp_path, "desk")
    pem = client.cert.read_text()
    body = "".join(pem.splitlines()[1:-1])  # the bare base64 incus sends
    resp = daemon.request("POST", CERTS, {"type": "client", "certificate": body, "name": "desk"})
    assert resp.status == 201, resp.body
    assert resp.headers["Location"] == f"{CERTS}/{client.fingerprint}"
    assert daemon.request("GET", CERTS).metadata == [f"{CERTS}/{client.fingerprint}"]
    url = f"{CERTS}/{client.fingerprint[:10]}"
    assert daemon.request("PATCH", url, {"description": "my desk"}).status == 200
    got = daemon.request("GET", url).metadata
    assert got["description"] == "my desk" and got["certificate"].strip() == pem.strip()
    assert https_request(https, "GET", "/1.0/instances", client=client)[0].status == 200

    server_pem = daemon.request("GET", "/1.0").metadata["environment"]["certificate"]
    for bad, expected in [
        ({"type": "client", "certificate": pem}, "already in trust store"),
        ({"type": "admin", "certificate": pem}, "Invalid certificate type"),
        ({"type": "client", "certificate": "bm90IGEgY2VydA=="}, "Invalid certificate"),
        ({"type": "client", "certificate": server_pem}, "server's own certificate"),
        ({"type": "client", "token": True}, "needs the name"),
    ]:
        resp = daemon.request("POST", CERTS, bad)
        assert resp.status in (400, 409) and expected in resp.json()["error"], (bad, resp.body)
    resp = daemon.request("PATCH", url, {"projects": ["nosuch"]})
    assert resp.status == 400 and "nosuch" in resp.json()["error"]
    assert daemon.request("GET", f"{CERTS}/ffff").status == 404

    # a port already taken: refused, and the listener stays where it was
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        resp = daemon.request("PATCH", "/1.0", {"config": {"core.https_address": busy}})
        assert resp.status == 400 and busy in resp.json()["error"]
    assert daemon.request("GET", "/1.0").metadata["config"]["core.https_address"] == https
    assert https_request(https, "GET", "/1.0", client=client)[0].status == 200
    for bad in ("127.0.0.1:http", "127.0.0.1:70000"):
        resp = daemon.request("PATCH", "/1.0", {"config": {"core.https_address": bad}})
        assert resp.status == 400, bad

    # an administrator replaces the certificate (renewed): the entry takes its fingerprint
    renewed = ClientCert(tmp_path, "desk-renewed")
    resp = daemon.request("PATCH", url, {"certificate": renewed.cert.read_text()})
    assert resp.status == 200, resp.body
    assert daemon.request("GET", CERTS).metadata == [f"{CERTS}/{renewed.fingerprint}"]
    assert https_request(https, "GET", "/1.0", client=renewed)[0].metadata["auth"] == "trusted"
    assert https_request(https, "GET", "/1.0", client=client)[0].metadata["auth"] == "untrusted"
    url = f"{CERTS}/{renewed.fingerprint}"
    assert daemon.request("PATCH", url, {"certificate": "nonsense"}).status == 400
    assert daemon.request("DELETE", url).status == 200


@pytest.mark.liblxc
@pytest.mark.incus_cli
def test_incus_cli_over_https(daemon: Daemon, busybox: str, https: str, tmp_path: Path) -> None:
    """incus remote add with a token, then list, launch, exec, file push/pull and monitor, all
    over HTTPS."""
    incus = shutil.which("incus")
    if incus is None:
        pytest.skip("the incus client is not installed (make test installs it from backports)")
    env = {k: v for k, v in os.environ.items() if k != "INCUS_SOCKET"}
    env["INCUS_CONF"] = str(tmp_path / "incus")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [incus, *args], env=env, capture_output=True, text=True, timeout=120,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert not check or proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    token, _ = new_token(daemon, "incus-cli")
    run("remote", "add", "far", token)
    name = unique("far")
    run("launch", f"far:{busybox}", f"far:{name}")
    try:
        assert f"{name},RUNNING" in run("list", "far:", "--format", "csv", "-c", "ns").stdout
        proc = run("exec", f"far:{name}", "--", "sh", "-c", "echo over tls; exit 4", check=False)
        assert proc.stdout == "over tls\n" and proc.returncode == 4
        (tmp_path / "up.txt").write_text("pushed over https\n")
        run("file", "push", str(tmp_path / "up.txt"), f"far:{name}/root/up.txt")
        run("file", "pull", f"far:{name}/root/up.txt", str(tmp_path / "down.txt"))
        assert (tmp_path / "down.txt").read_text() == "pushed over https\n"
        monitor = subprocess.Popen(
            [incus, "monitor", "far:", "--type", "lifecycle", "--format", "json"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            run("exec", f"far:{name}", "--", "true")  # the monitor is connected by now
            run("stop", "--force", f"far:{name}")
            line = ""
            assert monitor.stdout is not None
            for line in monitor.stdout:
                if "instance-stopped" in line:
                    break
            event = json.loads(line)
            assert event["metadata"]["requestor"]["protocol"] == "tls"
        finally:
            monitor.kill()
            monitor.communicate()
    finally:
        daemon.force_delete(name)


def test_a_restricted_certificate_stays_in_its_projects(
    daemon: Daemon, https: str, tmp_path: Path
) -> None:
    """Restricted to the default project (the only one until projects can be created): its
    instances and operations, nothing global, no other project, no trust token."""
    client = ClientCert(tmp_path, "team")
    cert = {
        "type": "client",
        "certificate": client.cert.read_text(),
        "restricted": True,
        "projects": ["default"],
    }
    assert daemon.request("POST", CERTS, cert).status == 201
    _, token_op = new_token(daemon, "someone")  # its secret must stay hidden
    mine = unique("c")
    try:

        def call(method: str, path: str, payload: object = None) -> int:
            return https_request(https, method, path, payload, client=client)[0].status

        created = https_request(
            https, "POST", "/1.0/instances", {"name": mine, "source": {"type": "none"}}, client
        )[0]
        assert created.status == 202, created.body
        op_id = created.json()["metadata"]["id"]
        assert call("GET", f"/1.0/operations/{op_id}/wait") == 200
        assert call("GET", f"/1.0/instances/{mine}") == 200
        for method, path in [
            ("GET", "/1.0/instances?all-projects=true"),
            ("GET", "/1.0/instances?project=other"),
            ("GET", f"/1.0/instances/{mine}?project=other"),
            ("GET", "/1.0/networks"),
            ("GET", "/1.0/storage-pools"),
            ("GET", "/1.0/warnings"),
            ("GET", CERTS),
            ("POST", CERTS),
            ("PATCH", "/1.0"),
            ("GET", "/1.0/projects/other"),
        ]:
            assert call(method, path, {}) == 403, (method, path)
        assert call("GET", "/1.0/projects/default") == 200
        assert call("GET", f"/1.0/operations/{token_op['id']}") == 404
        assert call("DELETE", f"/1.0/operations/{token_op['id']}") == 404
        listed = https_request(https, "GET", "/1.0/operations?recursion=1", client=client)[0]
        assert all(op["class"] != "token" for ops in listed.metadata.values() for op in ops)
        assert daemon.request("GET", f"/1.0/operations/{token_op['id']}").status == 200
    finally:
        daemon.force_delete(mine)


@pytest.mark.liblxc
def test_stapes_cli_manages_a_second_host_over_https(
    daemon: Daemon, second_host: tuple[Daemon, str], tmp_path: Path
) -> None:
    """From this host's CLI (its local remote is the session daemon) to the second host, over
    HTTPS: remote add with a token, then list, launch, exec, file push/pull and events."""
    far, address = second_host
    far.cli("image", "build", "busybox", "--alias", "bb")
    token = far.cli("config", "trust", "add", "host-a").stdout.strip().splitlines()[-1]
    env = {**daemon.env, "STAPES_CONF": str(tmp_path / "conf")}

    def stapes(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [STAPES, *args], env=env, capture_output=True, text=True, timeout=120,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert not check or proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    out = stapes("remote", "add", "far", token).stdout
    assert "Remote far added" in out
    assert f"far,https://{address},incus,tls" in stapes("remote", "list", "--format", "csv").stdout
    assert (tmp_path / "conf" / "client.key").stat().st_mode & 0o077 == 0
    listed = far.request("GET", "/1.0/certificates?recursion=1").metadata
    assert [c["name"] for c in listed] == ["host-a"]
    name = unique("far")
    stapes("launch", "far:bb", f"far:{name}")
    assert far.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Running"
    assert daemon.request("GET", f"/1.0/instances/{name}").status == 404
    assert f"{name},RUNNING" in stapes("list", "far:", "--format", "csv").stdout
    proc = stapes("exec", f"far:{name}", "--", "sh", "-c", "echo over tls; exit 5", check=False)
    assert proc.stdout == "over tls\n" and proc.returncode == 5
    (tmp_path / "up.txt").write_text("between hosts\n")
    stapes("file", "push", str(tmp_path / "up.txt"), f"far:{name}/root/up.txt")
    stapes("file", "pull", f"far:{name}/root/up.txt", str(tmp_path / "down.txt"))
    assert (tmp_path / "down.txt").read_text() == "between hosts\n"
    monitor = subprocess.Popen(
        [STAPES, "monitor", "far:", "--type", "lifecycle", "--format", "json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        stapes("exec", f"far:{name}", "--", "true")  # the monitor is connected by now
        stapes("stop", "--force", f"far:{name}")
        assert monitor.stdout is not None
        line = next(x for x in monitor.stdout if "instance-stopped" in x)
        assert json.loads(line)["metadata"]["requestor"]["protocol"] == "tls"
    finally:
        monitor.kill()
        monitor.communicate()

    # the default remote; a remote whose certificate changed is refused
    stapes("remote", "switch", "far")
    assert f"{name},STOPPED" in stapes("list", "--format", "csv").stdout
    pinned = tmp_path / "conf" / "servercerts" / "far.crt"
    pinned.write_text(daemon.request("GET", "/1.0").metadata["environment"]["certificate"])
    proc = stapes("list", "far:", check=False)
    assert proc.returncode == 1 and "certificate" in proc.stderr and "changed" in proc.stderr
    proc = stapes("list", "far:", "local:", check=False)
    assert proc.returncode != 0 and "two remotes" in proc.stderr

    # by URL: the certificate must be accepted, and without a token the client is not trusted
    other = {**env, "STAPES_CONF": str(tmp_path / "conf2")}

    def stapes2(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([STAPES, *args], env=other, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip

    proc = stapes2("remote", "add", "far", f"https://{address}")
    assert proc.returncode == 1 and "--accept-certificate" in proc.stderr
    proc = stapes2("remote", "add", "far", f"https://{address}", "--accept-certificate")
    assert proc.returncode == 1 and "not trusted" in proc.stderr
    assert "far" not in stapes2("remote", "list", "--format", "csv").stdout
    token2 = far.cli("config", "trust", "add", "host-a2").stdout.strip().splitlines()[-1]
    proc = stapes2("remote", "add", "far", f"https://{address}", "--token", token2)
    assert proc.returncode == 0, proc.stderr
    assert f"{name},STOPPED" in stapes2("list", "far:", "--format", "csv").stdout


def test_public_images_are_open_to_untrusted_clients(
    daemon: Daemon, busybox: str, https: str, tmp_path: Path
) -> None:
    """As in Incus: an untrusted client lists, reads and exports public images (and sees their
    aliases); private ones do not exist for it."""
    import hashlib

    stranger = ClientCert(tmp_path, "stranger")
    fingerprint = daemon.request("GET", f"/1.0/images/aliases/{busybox}").metadata["target"]

    def get(path: str) -> tuple[int, bytes]:
        resp = https_request(https, "GET", path, client=stranger)[0]
        return resp.status, resp.body

    assert get("/1.0/images")[1].count(b"/1.0/images/") == 0
    assert get(f"/1.0/images/{fingerprint}")[0] == 404
    assert get(f"/1.0/images/{fingerprint}/export")[0] == 404
    assert get(f"/1.0/images/aliases/{busybox}")[0] == 404
    assert daemon.request("PATCH", f"/1.0/images/{fingerprint}", {"public": True}).status == 200
    try:
        assert json.loads(get("/1.0/images")[1])["metadata"] == [f"/1.0/images/{fingerprint}"]
        assert json.loads(get(f"/1.0/images/{fingerprint}")[1])["metadata"]["public"] is True
        assert get(f"/1.0/images/aliases/{busybox}")[0] == 200
        status, body = get(f"/1.0/images/{fingerprint}/export")
        assert status == 200 and hashlib.sha256(body).hexdigest() == fingerprint
        for method, path in [("DELETE", f"/1.0/images/{fingerprint}"),
                             ("PATCH", f"/1.0/images/{fingerprint}")]:  # fmt: skip
            assert https_request(https, method, path, {}, client=stranger)[0].status == 403
    finally:
        daemon.request("PATCH", f"/1.0/images/{fingerprint}", {"public": False})


def test_metrics_for_trusted_and_metrics_certificates(
    daemon: Daemon, container: str, https: str, tmp_path: Path
) -> None:
    """Prometheus text with Incus's metric names; a metrics certificate reads /1.0/metrics and
    nothing else."""
    text = daemon.request("GET", "/1.0/metrics").body.decode()
    assert "# TYPE incus_cpu_seconds_total counter" in text
    labels = f'name="{container}",project="default",type="container"'
    assert f"incus_procs_total{{{labels}}} " in text
    rss = next(x for x in text.splitlines() if x.startswith(f"incus_memory_RSS_bytes{{{labels}}}"))
    assert int(rss.rsplit(" ", 1)[1]) > 0
    assert 'incus_instances{state="Running",type="container"}' in text  # labels sorted, as Go's
    # the cgroup's counters, under Incus's names: per-CPU time, memory.stat, OOM kills
    for metric in [
        f'incus_cpu_seconds_total{{cpu="0",mode="system",{labels}}} ',
        f"incus_cpu_effective_total{{{labels}}} ",
        f"incus_memory_Cached_bytes{{{labels}}} ",
        f"incus_memory_Active_anon_bytes{{{labels}}} ",
        f"incus_memory_OOM_kills_total{{{labels}}} 0",
    ]:
        assert metric in text, metric
    # the root filesystem's real size and room (a dir pool has no quota: the host's)
    fs_labels = f'device="root",mountpoint="/",{labels}'
    sizes = {
        line.split("{", 1)[0]: int(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.endswith(tuple("0123456789")) and f"{{{fs_labels}}}" in line
    }
    found = os.statvfs(daemon.root / "storage-pools")
    assert sizes["incus_filesystem_size_bytes"] == found.f_blocks * found.f_frsize
    assert 0 < sizes["incus_filesystem_avail_bytes"] <= sizes["incus_filesystem_size_bytes"]
    scraper = ClientCert(tmp_path, "prometheus")
    body = {"type": "metrics", "name": "prom", "certificate": certs.bare(scraper.cert.read_text())}
    assert daemon.request("POST", "/1.0/certificates", body).status == 201
    resp = https_request(https, "GET", "/1.0/metrics", client=scraper)[0]
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    assert b"incus_procs_total" in resp.body
    for path in ("/1.0/instances", f"/1.0/instances/{container}", "/1.0/certificates"):
        assert https_request(https, "GET", path, client=scraper)[0].status == 403, path
    assert (
        https_request(https, "GET", "/1.0/metrics", client=ClientCert(tmp_path, "x"))[0].status
        == 403
    )
    # core.metrics_address: a listener of its own that serves /1.0/metrics and nothing else
    metrics = f"127.0.0.1:{free_port()}"
    resp = daemon.request("PATCH", "/1.0", {"config": {"core.metrics_address": metrics}})
    assert resp.status == 200, resp.body
    try:
        resp = https_request(metrics, "GET", "/1.0/metrics", client=scraper)[0]
        assert resp.status == 200 and b"incus_procs_total" in resp.body
        anyone = ClientCert(tmp_path, "anyone")
        assert https_request(metrics, "GET", "/1.0/metrics", client=anyone)[0].status == 403
        for path in ("/1.0", "/1.0/instances"):
            resp = https_request(metrics, "GET", path, client=scraper)[0]
            assert resp.status == 404 and "core.metrics_address" in resp.json()["error"], path
        # core.metrics_authentication=false: metrics open to any client, the API still closed
        off = {"core.metrics_authentication": "false"}
        assert daemon.request("PATCH", "/1.0", {"config": off}).status == 200
        assert https_request(metrics, "GET", "/1.0/metrics", client=anyone)[0].status == 200
        assert https_request(https, "GET", "/1.0/instances", client=anyone)[0].status == 403
        taken = daemon.request("PATCH", "/1.0", {"config": {"core.metrics_address": https}})
        assert taken.status == 400 and "Cannot listen" in taken.json()["error"]
        assert https_request(https, "GET", "/1.0", client=anyone)[0].status == 200  # kept
    finally:
        unset = {"core.metrics_address": "", "core.metrics_authentication": ""}
        daemon.request("PATCH", "/1.0", {"config": unset})
    with pytest.raises(ConnectionRefusedError):
        https_request(metrics, "GET", "/1.0/metrics", client=scraper)
