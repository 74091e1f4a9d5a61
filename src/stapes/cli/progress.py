"""Waiting on an operation with a progress bar on a terminal (the percent the daemon reports
in the operation's metadata), quietly otherwise."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from stapes.client.operation import RemoteOperation


def wait(op: RemoteOperation, label: str) -> dict[str, Any]:
    """The finished operation (a failure raises), with a bar meanwhile on a terminal."""
    if not sys.stderr.isatty():
        return op.wait()
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(label, total=100)
        while True:
            current = op.wait(timeout=0.5)
            percent = ((current.get("metadata") or {}).get("progress") or {}).get("percent")
            if percent:
                progress.update(task, completed=float(percent))
            if current.get("status_code", 0) >= 200:
                break
    return op.wait()
