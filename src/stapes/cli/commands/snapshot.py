"""stapes snapshot create|list|show|restore|rename|delete."""

from __future__ import annotations

import click

from stapes.api.errors import RemoteError
from stapes.api.times import ZERO_TIME
from stapes.cli.instance_views import SNAPSHOT_COLUMNS, snapshot_rows
from stapes.cli.main import run
from stapes.cli.output import format_option, print_object, print_rows
from stapes.client.instance_server import InstanceServer


@click.group()
def snapshot() -> None:
    """Manage instance snapshots."""


def _create(
    server: InstanceServer, name: str, snap: str, no_expiry: bool, reuse: bool, stateful: bool
) -> None:
    if reuse and snap:
        try:
            server.snapshot(name, snap)
        except RemoteError as exc:
            if exc.status != 404:
                raise
        else:
            server.delete_snapshot(name, snap).wait()
    expires_at = ZERO_TIME if no_expiry else None
    server.create_snapshot(name, snap, expires_at=expires_at, stateful=stateful).wait()


@snapshot.command()
@click.argument("instance")
@click.argument("name", required=False, default="")
@click.option("--no-expiry", is_flag=True, help="Ignore the instance's snapshots.expiry")
@click.option("--reuse", is_flag=True, help="Replace a snapshot of the same name")
@click.option("--stateful", is_flag=True, help="Save the running VM's memory and CPU state too")
def create(instance: str, name: str, no_expiry: bool, reuse: bool, stateful: bool) -> None:
    """Snapshot an instance (named after snapshots.pattern unless NAME is given)."""
    run(lambda s: _create(s, instance, name, no_expiry, reuse, stateful))


def _list(server: InstanceServer, instance: str, fmt: str) -> None:
    snaps = server.snapshots(instance)
    print_rows(SNAPSHOT_COLUMNS, snapshot_rows(snaps), snaps, fmt)


@snapshot.command("list")
@click.argument("instance")
@format_option
def list_(instance: str, fmt: str) -> None:
    """List an instance's snapshots, oldest first."""
    run(lambda s: _list(s, instance, fmt))


@snapshot.command()
@click.argument("instance")
@click.argument("name")
def show(instance: str, name: str) -> None:
    """Show a snapshot's configuration."""
    run(lambda s: print_object(s.snapshot(instance, name)))


@snapshot.command()
@click.argument("instance")
@click.argument("name")
@click.option("--stateful", is_flag=True, help="Resume a VM where its stateful snapshot was")
def restore(instance: str, name: str, stateful: bool) -> None:
    """Put an instance back as it was in a snapshot (a running one is restarted)."""
    run(lambda s: s.restore_snapshot(instance, name, stateful=stateful).wait())


@snapshot.command()
@click.argument("instance")
@click.argument("name")
@click.argument("new_name")
def rename(instance: str, name: str, new_name: str) -> None:
    """Rename a snapshot."""
    run(lambda s: s.rename_snapshot(instance, name, new_name).wait())


def _delete(server: InstanceServer, instance: str, names: tuple[str, ...]) -> None:
    for name in names:
        server.delete_snapshot(instance, name).wait()


@snapshot.command()
@click.argument("instance")
@click.argument("names", nargs=-1, required=True)
def delete(instance: str, names: tuple[str, ...]) -> None:
    """Delete snapshots."""
    run(lambda s: _delete(s, instance, names))


COMMANDS = [snapshot]
