"""The ``stapes`` entry point. The commands people type most, in their plain forms against the
local daemon (``stapes list [-f FORMAT] [-c COLUMNS]``, ``stapes info NAME``, ``stapes exec
NAME [-t|-T] -- COMMAND...``, with ``--project P``), are answered here with the standard
library's socket and json and client/lite.py: the click command tree (click ~11 ms,
http.client ~13 ms through the email package, websocket-client ~10 ms) is imported for
everything else, and for these too as soon as anything is unusual (a remote, a config file,
another option, an error before a command runs). The output and the exec session are the same
code's (cli/tables.py, cli/instance_views.py, cli/exec_session.py)."""

from __future__ import annotations

import os
import sys

from stapes.api.errors import RemoteError
from stapes.client.lite import LiteServer, socket_path

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_FORMATS = ("table", "compact", "csv", "json", "yaml")


def main() -> None:
    if not _fast(sys.argv[1:]):
        from stapes.cli.main import main as full

        full()


def _fast(argv: list[str]) -> bool:
    """Whether the command was answered here (else the full CLI takes it from the start)."""
    if "STAPES_CONF" in os.environ or config_file_exists():
        return False  # remotes are configured: the default one may not be this host's daemon
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    options, words = _options(argv[: len(argv) - len(command) - 1] if command else argv)
    if options is None or not words:
        return False
    project = options.pop("--project", "")
    if project and not _safe(project):
        return False
    server = LiteServer(socket_path(), project)
    if words[0] == "exec" and len(words) == 2 and command and _safe(words[1]):
        return _exec(server, words[1], command, options)
    if command:
        return False
    if words == ["list"] and set(options) <= {"--format", "--columns"}:
        return _list(server, options.get("--format", "table"), options.get("--columns"))
    if len(words) == 2 and words[0] == "info" and not options and _safe(words[1]):
        try:
            found = server.metadata("GET", f"/1.0/instances/{words[1]}?recursion=1")
        except RemoteError:
            return False
        from stapes.cli.instance_views import info_text

        sys.stdout.write(info_text(found))
        return True
    return False


def _options(argv: list[str]) -> tuple[dict[str, str] | None, list[str]]:
    """``--project``, ``--format``/``-f``, ``--columns``/``-c`` with their values, the flags
    ``-t``/``-T``, and the other words; None when anything else (another option, a remote)
    is there."""
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
        elif arg in ("-t", "-T") and arg not in options:
            options[arg] = ""
        elif arg.startswith("-") or ":" in arg:
            return None, []
        else:
            words.append(arg)
        i += 1
    return options, words


def _exec(server: LiteServer, name: str, command: list[str], options: dict[str, str]) -> bool:
    """``exec NAME [-t|-T] -- COMMAND``; the full CLI when the command could not start."""
    if set(options) - {"-t", "-T"} or len(options) > 1:
        return False
    from stapes.cli.exec_session import run_exec

    interactive = "-t" in options or ("-T" not in options and os.isatty(0) and os.isatty(1))
    started = []

    class Starting:
        def exec(self, name: str, body: dict[str, object]) -> object:
            op = server.exec(name, body)  # a refusal here: nothing ran, the full CLI says it
            started.append(op)
            return op

    try:
        code = run_exec(Starting(), name, tuple(command), {}, interactive, "", 0, 0)
    except RemoteError as exc:
        if not started:
            return False
        sys.stderr.write(f"Error: {exc.message}\n")
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    sys.exit(code)


def _list(server: LiteServer, fmt: str, columns: str | None) -> bool:
    from stapes.cli.instance_views import DEFAULT_COLUMNS, FIELDS, NEEDS_FULL, list_text

    letters = (columns or DEFAULT_COLUMNS).replace(",", "")
    if fmt not in _FORMATS or not letters or any(c not in FIELDS or c == "L" for c in letters):
        return False  # the full command says what is wrong (or asks whether it is clustered)
    whole = fmt in ("json", "yaml")  # these print the objects as recursion=2 has them
    full = bool(NEEDS_FULL & set(letters))
    try:
        found = server.metadata("GET", f"/1.0/instances?recursion={2 if whole and full else 1}")
        if isinstance(found, list) and full and not whole:
            _add_parts(server, found, letters)
    except RemoteError:
        return False
    if not isinstance(found, list):
        return False
    sys.stdout.write(list_text(found, letters, fmt))
    return True


def _add_parts(server: LiteServer, instances: list[dict[str, object]], letters: str) -> None:
    """What a table's columns read of recursion=2, asked per instance: the running ones'
    state, every one's snapshot URLs (their count is the column). recursion=2 carries every
    snapshot whole: 15 instances with 3,000 snapshots each are a 100 MB answer, ~2 s to
    write and read, where this asks 15 lists of names."""
    from stapes.cli.instance_views import NEEDS_FULL

    snapshots = "S" in letters
    state = bool(set(letters) & (NEEDS_FULL - {"S"}))
    wanted: list[tuple[dict[str, object], str, str]] = []
    for instance in instances:
        name = str(instance.get("name", ""))
        if not _safe(name):
            raise RemoteError(f"Unexpected instance name {name!r}", 500)
        if snapshots:
            wanted.append((instance, "snapshots", f"/1.0/instances/{name}/snapshots"))
        if state and instance.get("status") != "Stopped":
            wanted.append((instance, "state", f"/1.0/instances/{name}/state"))
    found = server.metadata_many([path for _, _, path in wanted])
    for (instance, key, _), value in zip(wanted, found, strict=True):
        instance[key] = value


def _safe(word: str) -> bool:
    return bool(word) and set(word) <= _SAFE


def config_file_exists() -> bool:
    """Whether the user has a remotes file (~/.config/stapes/config.yml)."""
    return os.path.exists(os.path.join(os.path.expanduser("~"), ".config", "stapes", "config.yml"))
