"""pylxd's own integration suite (``integration/`` in the sdist of the installed pylxd, which
make setup-test unpacks into .venv/share) against stapesd over its unix socket: its container
and instance tests, as they are written (they create with ``"architecture": "2"``)."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Daemon

pytestmark = [pytest.mark.root, pytest.mark.liblxc, pytest.mark.pylxd, pytest.mark.slow]

SUITES = ["integration.test_containers", "integration.test_instances"]


def test_pylxds_container_and_instance_tests_pass(daemon: Daemon) -> None:
    version = importlib.metadata.version("pylxd")
    source = Path(sys.prefix) / "share" / f"pylxd-{version}"
    if not (source / "integration").is_dir():
        pytest.fail(f"{source}/integration is missing: make setup-test unpacks pylxd's sdist there")
    proc = subprocess.run(
        [sys.executable, "-m", "unittest", *SUITES],
        cwd=source,
        env={**os.environ, "LXD_DIR": str(daemon.root), "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    summary = re.search(r"Ran (\d+) tests?.*\n\n(OK.*|FAILED.*)", proc.stderr, re.DOTALL)
    assert proc.returncode == 0 and summary is not None, proc.stderr[-6000:]
    ran = int(summary.group(1))
    skipped = re.search(r"skipped=(\d+)", summary.group(2))
    print(f"pylxd {version}: {ran} tests, {skipped.group(1) if skipped else 0} skipped by pylxd")
    assert ran >= 25
