"""The ``stapes`` entry point. The commands people type most, in their plain forms against the
local daemon (``stapes list [-f FORMAT] [-c COLUMNS]``, ``stapes info NAME``, with
``--project P``), are answered here with the standard library's socket and json only: the
click command tree (click ~11 ms, http.client ~13 ms through the email package) is imported
for everything else, and for these too as soon as anything is unusual (a remote, a config
file, another option, an error to report). The output is the same code's (cli/tables.py,
cli/instance_views.py).

The HTTP/1.1 request is written by hand (one GET, ``Connection: close``, the answer read to
its end): the standard library's client is what costs the time."""

from __future__ import annotations

import json
import os
import socket
import sys

TYPE_CHECKING = False  # typing itself costs a few ms (it imports re): only for mypy
if TYPE_CHECKING:
    from typing import Any

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_FORMATS = ("table", "compact", "csv", "json", "yaml")


def main() -> None:
    if not _fast(sys.argv[1:]):
        from stapes.cli.main import main as full

        full()


def _fast(argv: list[str]) -> bool:
    """Whether the command was answered here (else the full CLI takes it from the start)."""
    if "STAPES_CONF" in os.environ or _config_file():
        return False  # remotes are configured: the default one may not be this host's daemon
    options, words = _options(argv)
    if options is None or not words:
        return False
    project = options.pop("--project", "")
    if words == ["list"] and set(options) <= {"--format", "--columns"}:
        return _list(project, options.get("--format", "table"), options.get("--columns"))
    if len(words) == 2 and words[0] == "info" and not options and _safe(words[1]):
        found = _get(f"/1.0/instances/{words[1]}?recursion=1", project)
        if found is None:
            return False
        from stapes.cli.instance_views import info_text

        sys.stdout.write(info_text(found))
        return True
    return False


def _options(argv: list[str]) -> tuple[dict[str, str] | None, list[str]]:
    """``--project``, ``--format``/``-f`` and ``--columns``/``-c`` with their values, and the
    other words; None when anything else (another option, a remote) is there."""
    names = {"-f": "--format", "-c": "--columns"}
    options: dict[str, str] = {}
    words: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, sep, value = arg.partition("=")
        name = names.get(name, name)
        if name in ("--project", "--format", "--columns") and (sep or i + 1 < len(argv)):
            if not sep:
                i += 1
                value = argv[i]
            if name in options or not _safe(value.replace(",", "")):
                return None, []
            options[name] = value
        elif arg.startswith("-") or ":" in arg:
            return None, []
        else:
            words.append(arg)
        i += 1
    return options, words


def _list(project: str, fmt: str, columns: str | None) -> bool:
    from stapes.cli.instance_views import DEFAULT_COLUMNS, FIELDS, NEEDS_FULL, list_text

    letters = (columns or DEFAULT_COLUMNS).replace(",", "")
    if fmt not in _FORMATS or not letters or any(c not in FIELDS or c == "L" for c in letters):
        return False  # the full command says what is wrong (or asks whether it is clustered)
    recursion = "2" if NEEDS_FULL & set(letters) else "1"
    found = _get(f"/1.0/instances?recursion={recursion}", project)
    if not isinstance(found, list):
        return False
    sys.stdout.write(list_text(found, letters, fmt))
    return True


def _get(path: str, project: str) -> Any:
    """The metadata of a GET on the local daemon's socket; None when it did not answer 200
    (the full CLI asks again and reports it as it reports every error)."""
    if project:
        if not _safe(project):
            return None
        path += ("&" if "?" in path else "?") + "project=" + project
    where = os.environ.get("STAPES_SOCKET") or os.path.join(
        os.environ.get("STAPES_DIR", "/var/lib/stapes"), "unix.socket"
    )
    request = f"GET {path} HTTP/1.1\r\nHost: stapes\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(where)
            sock.sendall(request)
            chunks = []
            while data := sock.recv(1 << 16):
                chunks.append(data)
    except OSError:
        return None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if len(lines[0].split()) < 2 or lines[0].split()[1] != "200":
        return None
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    if headers.get("content-encoding"):
        return None
    try:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = _unchunk(body)
        return json.loads(body).get("metadata")
    except (ValueError, AttributeError):
        return None


def _unchunk(body: bytes) -> bytes:
    out = []
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(body[:size])
        body = body[size + 2 :]
    return b"".join(out)


def _safe(word: str) -> bool:
    return bool(word) and set(word) <= _SAFE


def _config_file() -> bool:
    return os.path.exists(os.path.join(os.path.expanduser("~"), ".config", "stapes", "config.yml"))
