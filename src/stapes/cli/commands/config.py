"""config set|unset|get|show|edit INSTANCE, and config device ..."""

from __future__ import annotations

import click

from stapes.cli.commands._editing import InstanceTarget, add_config_commands, device_group


@click.group()
def config() -> None:
    """Manage instance configuration and devices."""


add_config_commands(config, InstanceTarget, "instance")
config.add_command(device_group(InstanceTarget))

COMMANDS = [config]
