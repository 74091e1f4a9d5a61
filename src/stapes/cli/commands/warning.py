"""warning list|show|ack|delete."""

from __future__ import annotations

import click

from stapes.api.errors import RemoteError
from stapes.cli.main import run
from stapes.cli.output import format_option, print_object, print_rows
from stapes.client.instance_server import InstanceServer


def _find(server: InstanceServer, prefix: str) -> str:
    """The UUID a prefix names (as incus, a unique prefix is enough)."""
    found: list[str] = [w["uuid"] for w in server.warnings() if w["uuid"].startswith(prefix)]
    if len(found) != 1:
        raise RemoteError(
            f"No warning matches {prefix!r}" if not found else f"Several warnings match {prefix!r}",
            404 if not found else 400,
        )
    return found[0]


@click.group()
def warning() -> None:
    """Manage warnings."""


@warning.command(name="list")
@click.option("--all", "show_all", is_flag=True, help="Show resolved warnings too")
@format_option
def list_warnings(show_all: bool, fmt: str) -> None:
    """List warnings (unresolved ones unless --all)."""

    def go(server: InstanceServer) -> None:
        found = [w for w in server.warnings() if show_all or w["status"] != "resolved"]
        rows = [
            [
                w["uuid"][:8],
                w["type"],
                w["status"].upper(),
                w["severity"].upper(),
                str(w["count"]),
                w["project"],
                w["last_seen_at"],
            ]
            for w in found
        ]
        columns = ["UUID", "TYPE", "STATUS", "SEVERITY", "COUNT", "PROJECT", "LAST SEEN"]
        if any(w.get("location", "none") != "none" for w in found):  # a cluster's members
            columns.append("LOCATION")
            for row, w in zip(rows, found, strict=True):
                row.append(w["location"])
        print_rows(columns, rows, found, fmt)

    run(go)


@warning.command()
@click.argument("uuid")
def show(uuid: str) -> None:
    """Show a warning (a unique UUID prefix is enough)."""
    run(lambda s: print_object(s.warning(_find(s, uuid))))


@warning.command()
@click.argument("uuid")
def ack(uuid: str) -> None:
    """Acknowledge a warning."""
    run(lambda s: s.set_warning_status(_find(s, uuid), "acknowledged"))


@warning.command()
@click.argument("uuid")
def delete(uuid: str) -> None:
    """Delete a warning."""
    run(lambda s: s.delete_warning(_find(s, uuid)))


COMMANDS = [warning]
