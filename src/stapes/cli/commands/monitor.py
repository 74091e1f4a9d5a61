"""monitor: print events as they happen."""

from __future__ import annotations

import json

import click
import yaml

from stapes.cli.main import run
from stapes.client.instance_server import InstanceServer


@click.command()
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice(["lifecycle", "operation", "logging"]),
    help="Event type to show (repeatable; default: all)",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json", "pretty"]),
    default="yaml",
    show_default=True,
)
def monitor(types: tuple[str, ...], fmt: str) -> None:
    """Print the daemon's events (lifecycle, operation, logging) as they happen."""

    def go(server: InstanceServer) -> None:
        for event in server.events(list(types)):
            if fmt == "json":
                click.echo(json.dumps(event))
            elif fmt == "pretty":
                meta = event.get("metadata") or {}
                what = meta.get("action") or meta.get("description") or meta.get("message", "")
                extra = meta.get("source") or meta.get("status", "")
                click.echo(f"{event['timestamp']} {event['type']:9} {what} {extra}")
            else:
                click.echo(yaml.safe_dump(event, sort_keys=False) + "\n", nl=False)

    run(go)


COMMANDS = [monitor]
