"""The web UI's files, served at /ui/ to every client as Incus serves its UI (INCUS_UI).

The files are a static single-page application built from ``ui/`` by ``ui/build.mjs``; what a
browser may see or do is decided by the API it calls, never here: an untrusted browser gets
the same files, and the page asks ``GET /1.0`` who it is before it shows anything but the
enrolment page.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from aiohttp import web

from stapes.api.errors import NotFound

PREFIX = "/ui/"
ENV = "STAPES_UI"
"""A directory of built UI files to serve instead of the checkout's ``ui/dist``."""

SECURITY_HEADERS = {
    # The page loads its own files only and talks to its own origin only (fetch, websockets).
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def ui_directory() -> Path | None:
    """Where the built UI is, or None when it was not built."""
    configured = os.environ.get(ENV, "")
    directory = (
        Path(configured) if configured else Path(__file__).resolve().parents[3] / "ui" / "dist"
    )
    return directory if (directory / "index.html").is_file() else None


def wants_ui(request: web.Request) -> bool:
    """A web browser asking for the server's root: sent on to the UI (as Incus does)."""
    return "Gecko" in request.headers.get("User-Agent", "") and ui_directory() is not None


def redirect_to_ui() -> web.StreamResponse:
    return web.Response(status=301, headers={"Location": PREFIX})


def _file_below(root: Path, relative: str) -> Path | None:
    """The file ``relative`` names below ``root``; None for anything that is not a plain
    relative path to a regular file there (``..``, absolute paths, links out of the tree)."""
    parts = PurePosixPath(relative).parts
    if not parts or any(part in ("..", ".") or "\\" in part or "\0" in part for part in parts):
        return None
    if parts[0] == "/":
        return None
    candidate = root.joinpath(*parts).resolve()
    if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
        return None
    return candidate


async def serve_file(request: web.Request) -> web.StreamResponse:
    root = ui_directory()
    if root is None:
        raise NotFound(
            "The web UI is not built here: run `make run` (or `npm ci && npm run build` in ui/) "
            f"or set {ENV} to a directory of built UI files"
        )
    relative = request.match_info.get("path", "")
    found = _file_below(root, relative) if relative else None
    if found is None and "." in PurePosixPath(relative).name:
        raise NotFound(f"No such file in the web UI: {relative}")
    # Paths without a file name extension are the application's own pages: its index answers.
    response = web.FileResponse(found or root / "index.html")
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-cache"
    return response


async def redirect(request: web.Request) -> web.StreamResponse:
    return redirect_to_ui()


def register(app: web.Application) -> None:
    app.router.add_get("/ui", redirect)
    app.router.add_get(PREFIX + "{path:.*}", serve_file)
