"""copy, move, rename: instances within this server."""

from __future__ import annotations

from typing import Any

import click

from stapes.cli.main import parse_key_values, run
from stapes.client.instance_server import InstanceServer


def _copy(server: InstanceServer, options: dict[str, Any]) -> None:
    source: dict[str, Any] = {
        "type": "copy",
        "source": options["source"],
        "instance_only": options["instance_only"],
        "refresh": options["refresh"],
    }
    body: dict[str, Any] = {
        "name": options["target"],
        "source": source,
        "config": parse_key_values(options["config"], "--config"),
        "ephemeral": options["ephemeral"],
    }
    if options["storage"]:
        body["devices"] = {"root": {"type": "disk", "path": "/", "pool": options["storage"]}}
    if options["no_profiles"]:
        body["profiles"] = []
    elif options["profiles"]:
        body["profiles"] = list(options["profiles"])
    op = server.create_instance(body)
    op.wait()
    if options["start"]:
        created = op.metadata["resources"]["instances"][0].rsplit("/", 1)[-1].split("?")[0]
        server.update_state(created, "start").wait()


@click.command()
@click.argument("source")
@click.argument("target", required=False, default="")
@click.option("--instance-only", is_flag=True, help="Copy the instance without its snapshots")
@click.option("--refresh", is_flag=True, help="Update an earlier copy with what changed since")
@click.option("--config", "-c", "config", multiple=True, help="Config key=value of the copy")
@click.option("--profile", "-p", "profiles", multiple=True, help="Profile of the copy")
@click.option("--no-profiles", is_flag=True, help="Copy without any profile")
@click.option("--ephemeral", "-e", is_flag=True, help="Make the copy ephemeral")
@click.option("--start", is_flag=True, help="Start the copy")
@click.option("--storage", "-s", default="", help="Storage pool of the copy")
@click.option("--stateless", is_flag=True, help="Copy without running state (the only way here)")
def copy(**options: Any) -> None:
    """Copy an instance or a snapshot (SOURCE is NAME or NAME/SNAPSHOT)."""
    run(lambda s: _copy(s, options))


@click.command()
@click.argument("name")
@click.argument("new_name")
def rename(name: str, new_name: str) -> None:
    """Rename a (stopped) instance."""
    run(lambda s: s.rename_instance(name, new_name).wait())


@click.command()
@click.argument("name")
@click.argument("new_name", required=False, default="")
@click.option("--storage", "-s", default="", help="Move the (stopped) instance to this pool")
def move(name: str, new_name: str, storage: str) -> None:
    """Move an instance within this server: rename it, or move it to another storage pool."""
    if bool(new_name) == bool(storage):
        raise click.UsageError("Give either NEW_NAME or --storage")
    if storage:
        run(lambda s: s.move_to_pool(name, storage).wait())
    else:
        run(lambda s: s.rename_instance(name, new_name).wait())


COMMANDS = [copy, rename, move]
