"""A bounded fuzz run of the whole API (schemathesis, from the daemon's own /1.0/openapi.json)
over HTTPS against a daemon of its own: no request may get a 5xx and the daemon must live on.
Routes that touch host resources (networks, storage pools, image uploads, the server config)
are left out: random bodies there would make bridges or loop files on the host."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stapes import certs
from tests.helpers import ClientCert, Daemon, free_port

pytestmark = [pytest.mark.root]

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
HOST_RESOURCES = r"^/1\.0(/(networks|network-acls|storage-pools|images).*)?$"


@pytest.mark.parametrize("restricted", [False, True], ids=["trusted", "restricted"])
def test_fuzzing_the_api_finds_no_server_error(
    lone: Daemon, tmp_path: Path, restricted: bool
) -> None:
    """As a trusted client, then as one restricted to a restricted project (the default one
    made restricted, so the fuzzer's requests land in the project it may use)."""
    if not SCHEMATHESIS.exists() and shutil.which("schemathesis") is None:
        pytest.fail("schemathesis is not installed: make setup-test installs the test extra")
    address = f"127.0.0.1:{free_port()}"
    assert lone.request("PATCH", "/1.0", {"config": {"core.https_address": address}}).status == 200
    client = ClientCert(tmp_path, "fuzz")
    body: dict[str, object] = {"type": "client", "certificate": certs.bare(client.cert.read_text())}
    if restricted:
        resp = lone.request("PATCH", "/1.0/projects/default", {"config": {"restricted": "true"}})
        assert resp.status == 200, resp.body
        body |= {"restricted": True, "projects": ["default"]}
    assert lone.request("POST", "/1.0/certificates", body).status == 201
    schema = tmp_path / "openapi.json"
    resp = lone.request("GET", "/1.0/openapi.json")
    assert resp.status == 200 and json.loads(resp.body)["paths"]
    schema.write_bytes(resp.body)
    proc = subprocess.run(
        [
            str(SCHEMATHESIS), "run", str(schema), "--url", f"https://{address}",
            "--checks", "not_a_server_error", "--max-examples", str(EXAMPLES),
            "--phases", "examples,fuzzing", "--workers", "2", "--seed", "1",
            "--tls-verify", "false", "--request-cert", str(client.cert),
            "--request-cert-key", str(client.key), "--exclude-path-regex", HOST_RESOURCES,
        ],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    (Path(os.environ.get("FUZZ_REPORT", str(tmp_path / "report.txt")))).write_text(out)
    cases = re.search(r"(\d+) generated", out)
    assert proc.returncode == 0 and cases is not None, out[-4000:]
    print(f"fuzz: {cases.group(1)} requests, no server error")
    assert lone.proc is not None and lone.proc.poll() is None  # alive
    assert lone.request("GET", "/1.0").status == 200
