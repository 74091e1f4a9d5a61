"""pylxd's own integration suite (``integration/`` in the sdist of the installed pylxd, which
make setup-test unpacks into .venv/share) against stapesd, set up as pylxd's
run-integration-tests sets up a daemon: HTTPS on 127.0.0.1:8443, a client certificate and the
server's certificate where pylxd looks for them. Every module of it runs; its two
authentication tests need trust passwords, which Incus 6 (and stapesd) no longer has."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stapes import certs
from tests.helpers import Daemon

pytestmark = [pytest.mark.root, pytest.mark.liblxc, pytest.mark.pylxd, pytest.mark.slow]

MODULES = [
    "test_client", "test_cluster_members", "test_containers", "test_images", "test_instances",
    "test_networks", "test_profiles", "test_projects", "test_storage",
]  # fmt: skip
NEEDS_TRUST_PASSWORD = {"test_authenticate", "test_authenticate_with_project"}
"""pylxd authenticates with a trust password unless the server has LXD's explicit_trust_token
extension: Incus 6 has neither, and answers these two as stapesd does."""
PASSED_AGAINST_INCUS = 44


def test_pylxds_integration_suite(daemon: Daemon, tmp_path: Path) -> None:
    version = importlib.metadata.version("pylxd")
    source = Path(sys.prefix) / "share" / f"pylxd-{version}"
    if not (source / "integration").is_dir():
        pytest.fail(f"{source}/integration is missing: make setup-test unpacks pylxd's sdist there")
    home = tmp_path / "home"
    config = home / ".config" / "lxc"
    (config / "servercerts").mkdir(parents=True)
    cert, key = certs.generate("pylxd")
    (config / "client.crt").write_bytes(cert)
    (config / "client.key").write_bytes(key)
    server_pem = daemon.request("GET", "/1.0").metadata["environment"]["certificate"]
    (config / "servercerts" / "127.0.0.1.crt").write_text(server_pem)
    resp = daemon.request("PATCH", "/1.0", {"config": {"core.https_address": "127.0.0.1:8443"}})
    assert resp.status == 200, resp.body
    env = {**os.environ, "LXD_DIR": str(daemon.root), "HOME": str(home)}
    env["PYTHONWARNINGS"] = "ignore"
    # requests would verify the server against these bundles instead of the certificate
    # pylxd pins (servercerts/127.0.0.1.crt)
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        env.pop(variable, None)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "unittest", "-v", *(f"integration.{m}" for m in MODULES)],
            cwd=source,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    finally:
        daemon.request("PATCH", "/1.0", {"config": {"core.https_address": ""}})
        for url in daemon.request("GET", "/1.0/certificates").metadata:
            daemon.request("DELETE", url)
    failed = set(re.findall(r"^(?:ERROR|FAIL): (\w+) \(", proc.stderr, re.MULTILINE))
    ran = re.search(r"^Ran (\d+) tests?", proc.stderr, re.MULTILINE)
    assert ran is not None, proc.stderr[-4000:]
    skipped = re.search(r"skipped=(\d+)", proc.stderr)
    passed = int(ran.group(1)) - len(failed) - (int(skipped.group(1)) if skipped else 0)
    print(f"pylxd {version}: {ran.group(1)} tests, {passed} passed, failed: {sorted(failed)}")
    assert failed <= NEEDS_TRUST_PASSWORD, proc.stderr[-8000:]
    assert passed >= PASSED_AGAINST_INCUS, proc.stderr[-4000:]
