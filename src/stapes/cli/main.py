"""The ``stapes`` command tree: global handling of errors, the commands come from cli/commands."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from stapes.api.errors import RemoteError, StapesError
from stapes.client.instance_server import InstanceServer

T = TypeVar("T")


def run(coro_fn: Callable[[InstanceServer], Awaitable[T]]) -> T:
    """Run one command against the local daemon; print errors the way incus does."""

    async def main() -> T:
        async with InstanceServer.unix() as server:
            return await coro_fn(server)

    try:
        return asyncio.run(main())
    except (RemoteError, StapesError) as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stapes", prog_name="stapes")
def cli() -> None:
    """Stapes: system containers (and soon VMs) with an Incus-compatible API."""


def main() -> Any:
    from stapes.cli.commands import exec as exec_cmd
    from stapes.cli.commands import image, instance, listing, monitor, operation

    for module in (instance, listing, exec_cmd, image, operation, monitor):
        for command in module.COMMANDS:
            cli.add_command(command)
    return cli()
