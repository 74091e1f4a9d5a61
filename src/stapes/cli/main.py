"""The ``stapes`` command tree. Command modules load on demand, so that `stapes exec` does not
pay for the imports of `stapes image build`."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from stapes.api.errors import RemoteError, StapesError
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
}


def run(fn: Callable[[InstanceServer], T]) -> T:
    """Run one command against the local daemon; print errors the way incus does."""
    try:
        with InstanceServer.unix() as server:
            return fn(server)
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
        module_name = COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"stapes.cli.commands.{module_name}")
        commands: list[click.Command] = module.COMMANDS
        return next((c for c in commands if c.name == cmd_name), None)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stapes", prog_name="stapes")
def cli() -> None:
    """Stapes: system containers (and soon VMs) with an Incus-compatible API."""


def main() -> Any:
    return cli()
