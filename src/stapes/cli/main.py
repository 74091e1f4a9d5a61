"""The ``stapes`` command tree. Command modules load on demand, so that `stapes exec` does not
pay for the imports of `stapes image build`."""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from stapes.api.errors import RemoteError, StapesError
from stapes.cli.fast import config_file_exists
from stapes.client.connection import Connection
from stapes.client.instance_server import InstanceServer

T = TypeVar("T")

# command name -> module in stapes.cli.commands that defines it (attribute COMMANDS)
COMMAND_MODULES = {
    "launch": "instance",
    "init": "instance",
    "start": "instance",
    "stop": "instance",
    "restart": "instance",
    "pause": "instance",
    "delete": "instance",
    "info": "instance",
    "list": "listing",
    "exec": "exec",
    "image": "image",
    "publish": "image",
    "operation": "operation",
    "monitor": "monitor",
    "profile": "profile",
    "config": "config",
    "file": "file",
    "snapshot": "snapshot",
    "console": "console",
    "copy": "copy",
    "move": "copy",
    "rename": "copy",
    "storage": "storage",
    "export": "backup",
    "import": "backup",
    "admin": "admin",
    "network": "network",
    "warning": "warning",
    "remote": "remote",
    "project": "project",
    "cluster": "cluster",
}

ALIASES = {"create": "init"}
"""Other names of commands, as incus has them."""

_REMOTE_ARG = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]*):(.*)", re.DOTALL)
_remote: str | None = None
"""The remote this command talks to: named by its arguments (``far:c1``), or the default."""
_project: str | None = None
"""``--project NAME``, wherever it stands on the command line."""


def pick_project(args: list[str]) -> tuple[str | None, list[str]]:
    """Take ``--project NAME`` / ``--project=NAME`` out of the arguments (every command has it,
    as in incus)."""
    project, left, i = None, [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            left += args[i:]
            break
        if arg == "--project" and i + 1 < len(args):
            project, i = args[i + 1], i + 2
            continue
        if arg.startswith("--project="):
            project = arg.split("=", 1)[1]
        else:
            left.append(arg)
        i += 1
    return project, left


def pick_remote(args: list[str]) -> tuple[str | None, list[str]]:
    """Strip ``REMOTE:`` from the arguments that name a known remote (``REMOTE:`` alone is
    dropped); (the remote, the arguments left). All of them must name the same remote."""
    if not args or args[0] == "remote" or not any(":" in a for a in args):
        return None, args
    if args[0] in ("launch", "init", "copy", "move") or args[:2] == ["image", "copy"]:
        return None, args  # a source and a target: the command resolves each (split_remote)
    if args[:3] in (["storage", "volume", "copy"], ["storage", "volume", "move"]):
        return None, args
    from stapes.client.remotes import Remotes

    names = set(Remotes().names())
    chosen: str | None = None
    left = []
    for arg in args:
        match = _REMOTE_ARG.fullmatch(arg) if not arg.startswith("-") else None
        if match is None or match.group(1) not in names:
            left.append(arg)
            continue
        if chosen is not None and chosen != match.group(1):
            raise click.UsageError(
                f"The arguments name two remotes ({chosen}, {match.group(1)}): one command "
                "works on one remote"
            )
        chosen = match.group(1)
        if match.group(2):
            left.append(match.group(2))
    return chosen, left


def split_remote(arg: str) -> tuple[str | None, str]:
    """``REMOTE:REST`` -> (REMOTE, REST) when REMOTE is a known remote; else (None, arg)."""
    match = _REMOTE_ARG.fullmatch(arg)
    if match is None:
        return None, arg
    from stapes.client.remotes import Remotes

    if match.group(1) not in Remotes().names():
        return None, arg
    return match.group(1), match.group(2)


def use_remote(name: str | None) -> None:
    """Talk to remote ``name`` (None: the default) from now on (commands that resolve their
    own arguments: launch, init, image copy)."""
    global _remote
    _remote = name


def connect() -> InstanceServer:
    """The daemon of the remote the arguments named (else the default remote), in the project
    ``--project`` names (else the remote's current one)."""
    return server_for(_remote)


def server_for(remote: str | None, project: str = "") -> InstanceServer:
    """The daemon of ``remote`` (None: the default one), in ``project`` (else ``--project``,
    else the remote's current one)."""
    if remote is None and "STAPES_CONF" not in os.environ and not config_file_exists():
        # no remotes configured: the local daemon, without reading any config file
        return InstanceServer(Connection(None, project or _project or ""))
    from stapes.client.remotes import Remotes

    remotes = Remotes()
    remote = remote or remotes.default
    return InstanceServer(
        Connection(remotes.target(remote), project or _project or remotes.project(remote))
    )


def run(fn: Callable[[InstanceServer], T]) -> T:
    """Run one command against the daemon; print errors the way incus does."""
    return run_on(_remote, fn)


def run_on(remote: str | None, fn: Callable[[InstanceServer], T]) -> T:
    """``run`` against the daemon of ``remote`` (None: the default one)."""

    def act() -> T:
        with server_for(remote) as server:
            return fn(server)

    return guarded(act)


def guarded(fn: Callable[[], T]) -> T:
    """Run ``fn`` (which may talk to several daemons); print errors the way incus does."""
    try:
        return fn()
    except (RemoteError, StapesError) as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def parse_key_values(pairs: tuple[str, ...], param_hint: str) -> dict[str, str]:
    """``("K=V", ...)`` from repeated options -> a dict; a pair without ``=`` is a usage error."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=param_hint)
        result[key] = value
    return result


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd_name = ALIASES.get(cmd_name, cmd_name)
        module_name = COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"stapes.cli.commands.{module_name}")
        commands: list[click.Command] = module.COMMANDS
        return next((c for c in commands if c.name == cmd_name), None)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stapes", prog_name="stapes")
def cli() -> None:
    """Stapes: system containers, application containers and VMs, with an Incus-compatible
    API."""


def main() -> Any:
    global _remote, _project
    try:
        _project, args = pick_project(sys.argv[1:])
        _remote, args = pick_remote(args)
    except click.UsageError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    return cli(args=args)
