"""The client installs without the daemon: `pip install stapes` in a fresh virtual environment
(no liblxc binding, no pyroute2, no aiohttp) gives a stapes CLI that drives a daemon; stapesd
there says which extra it needs. (pip fetches the client's dependencies from PyPI.)"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Daemon

ROOT = Path(__file__).resolve().parents[2]
DAEMON_ONLY = ("lxc", "aiohttp", "pyroute2", "qemu.qmp", "PyJWT", "pyOpenSSL", "Jinja2")


def test_the_client_needs_none_of_the_daemon_dependencies() -> None:
    base = [r for r in importlib.metadata.requires("stapes") or [] if "extra ==" not in r]
    names = {r.split(">")[0].split("=")[0].split("<")[0].strip() for r in base}
    assert not names & set(DAEMON_ONLY), names
    daemon = [r for r in importlib.metadata.requires("stapes") or [] if 'extra == "daemon"' in r]
    assert any(r.startswith("lxc") for r in daemon)


def test_a_fresh_venv_with_only_the_client(daemon: Daemon, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(ROOT)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    python = str(venv / "bin" / "python")
    for module in ("lxc", "aiohttp", "pyroute2"):
        found = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
        assert found.returncode != 0, f"{module} was installed with the client"
    env = {**os.environ, "STAPES_DIR": str(daemon.root)}
    listed = subprocess.run(
        [str(venv / "bin" / "stapes"), "list", "--format", "csv"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    projects = subprocess.run(
        [str(venv / "bin" / "stapes"), "project", "list", "--format", "csv"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert projects.stdout.startswith("default (current),"), projects.stdout + projects.stderr
    served = subprocess.run(
        [str(venv / "bin" / "stapesd")], env={**env, "STAPES_DIR": str(tmp_path / "none")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert served.returncode == 1 and "pip install 'stapes[daemon]'" in served.stderr


@pytest.fixture(autouse=True)
def _no_user_site(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONNOUSERSITE", "1")
