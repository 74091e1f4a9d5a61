"""Whether CRIU can checkpoint processes on this host (live container migration needs it):
``criu check``, asked once per daemon."""

from __future__ import annotations

import functools
import shutil

from stapes.host.run import run_sync


@functools.cache
def problem() -> str | None:
    """Why CRIU cannot be used here, or None when ``criu check`` passes."""
    if shutil.which("criu") is None:
        return "CRIU is not installed (Debian package criu)"
    rc, out = run_sync(["criu", "check"], timeout=30, with_stderr=True)
    if rc == 0:
        return None
    detail = next((text.strip() for text in out.splitlines() if "Error" in text), "")
    return "CRIU cannot checkpoint on this host: criu check failed" + (
        f" ({detail})" if detail else ""
    )
