"""config set|unset|get|show|edit [INSTANCE], and config device ...: an instance's config, or
the server's when no instance is named (as incus decides it: `config set core.x VALUE`,
`config get core.x`, `config show`)."""

from __future__ import annotations

import click

from stapes.cli.commands._editing import (
    InstanceTarget,
    ServerTarget,
    Target,
    add_config_commands,
    device_group,
)
from stapes.cli.commands.trust import trust


def _server_or_instance(verb: str, args: tuple[str, ...]) -> tuple[Target, tuple[str, ...]]:
    server = False
    if verb == "set":
        server = (len(args) == 1 and "=" in args[0]) or (
            len(args) == 2 and "=" not in args[0] and "=" not in args[1]
        )
    elif verb in ("unset", "get"):
        server = len(args) == 1
    elif verb in ("show", "edit"):
        server = not args
    if server:
        return ServerTarget(), args
    if not args:
        raise click.UsageError("Missing the instance name")
    return InstanceTarget(args[0]), args[1:]


@click.group()
def config() -> None:
    """Manage instance (or server) configuration, and instance devices."""


add_config_commands(config, _server_or_instance)
config.add_command(device_group(InstanceTarget))
config.add_command(trust)

COMMANDS = [config]
