"""The commands that talk to a running stapesd from its own host, as incusd's do: wait until
it is ready, tell it to stop its instances and exit, start it when something needs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from stapes.api.errors import RemoteError
from stapes.client.connection import Connection
from stapes.cluster.files import ClusterFiles
from stapes.config.validate import parse_bool
from stapes.db.connection import SqliteDatabase
from stapes.db.instances import list_instances
from stapes.db.server_config import get_config
from stapes.host.paths import Paths

POLL_SECONDS = 0.2


def _answers(paths: Paths, path: str) -> bool:
    try:
        with Connection(paths.socket) as conn:
            conn.request("GET", path)
    except RemoteError:
        return False
    return True


def wait_ready(paths: Paths, timeout: int) -> int:
    """0 once GET /internal/ready answers; 1 (with a message) when ``timeout`` passes."""
    deadline = time.monotonic() + timeout if timeout > 0 else None
    while not _answers(paths, "/internal/ready"):
        if deadline is not None and time.monotonic() > deadline:
            print(f"Error: stapesd was not ready within {timeout}s", file=sys.stderr)
            return 1
        time.sleep(POLL_SECONDS)
    return 0


def shutdown(paths: Paths, timeout: int, force: bool) -> int:
    """Ask the daemon to stop its instances and exit, then wait until it has."""
    try:
        with Connection(paths.socket) as conn:
            conn.request("PUT", "/internal/shutdown" + ("?force=true" if force else ""))
    except RemoteError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + timeout if timeout > 0 else None
    while _answers(paths, "/internal/ready") or paths.socket.exists():
        if deadline is not None and time.monotonic() > deadline:
            print(f"Error: stapesd did not stop within {timeout}s", file=sys.stderr)
            return 1
        time.sleep(POLL_SECONDS)
    return 0


def needed(paths: Paths) -> bool:
    """Whether something needs the daemon: an HTTPS or metrics address to listen on, or an
    instance that should start with it (boot.autostart, or running when it last stopped)."""
    if ClusterFiles(paths.database.parent).clustered:
        return True  # a cluster member serves the others
    if not paths.database.exists():
        return False
    db = SqliteDatabase(paths.database)
    try:
        config = get_config(db)
        if config.get("core.https_address") or config.get("core.metrics_address"):
            return True
        return any(_starts_with_the_daemon(row.config) for row in list_instances(db, None))
    finally:
        db.close()


def _starts_with_the_daemon(config: dict[str, str]) -> bool:
    autostart = config.get("boot.autostart")
    if autostart is not None:
        return parse_bool(autostart)
    return config.get("volatile.last_state.power") == "RUNNING"


def activate_if_needed(paths: Paths) -> int:
    """Quietly nothing unless something needs the daemon; then start it (in the background,
    its log in $STAPES_DIR/stapesd.log) unless it runs already, and wait until it is ready."""
    if not needed(paths) or _answers(paths, "/internal/ready"):
        return 0
    with (paths.root / "stapesd.log").open("ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "stapes.server.main"],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=os.environ.copy(),
        )
    return wait_ready(paths, 60)
