"""project list|create|show|get|set|unset|edit|delete|rename|info|switch."""

from __future__ import annotations

import sys
from typing import Any

import click

from stapes.api.errors import RemoteError
from stapes.cli import main as cli_main
from stapes.cli.commands._editing import Target, add_config_commands, named
from stapes.cli.main import parse_key_values, run
from stapes.cli.output import format_option, print_rows
from stapes.client.instance_server import InstanceServer

FEATURES = (
    "images",
    "profiles",
    "storage.volumes",
    "storage.buckets",
    "networks",
    "networks.zones",
)


class ProjectTarget(Target):
    def load(self, server: InstanceServer) -> tuple[dict[str, Any], str]:
        project, etag = server.project(self.name)
        return {"config": project["config"], "description": project["description"]}, etag

    def save(self, server: InstanceServer, body: dict[str, Any], etag: str) -> None:
        server.update_project(self.name, body, etag)


@click.group()
def project() -> None:
    """Manage projects."""


add_config_commands(project, named(ProjectTarget, "project"))


def _current() -> tuple[str, str]:
    """(remote, its current project)."""
    from stapes.client.remotes import Remotes

    remotes = Remotes()
    remote = cli_main._remote or remotes.default
    return remote, cli_main._project or remotes.project(remote) or "default"


@project.command(name="list")
@format_option
def list_projects(fmt: str) -> None:
    """List projects (the current one marked)."""
    current = _current()[1]

    def go(server: InstanceServer) -> None:
        found = server.projects()
        rows = [
            [
                p["name"] + (" (current)" if p["name"] == current else ""),
                *("YES" if p["config"].get(f"features.{f}") == "true" else "NO" for f in FEATURES),
                p["description"],
                str(len(p["used_by"])),
            ]
            for p in found
        ]
        columns = ["NAME", "IMAGES", "PROFILES", "STORAGE VOLUMES", "STORAGE BUCKETS",
                   "NETWORKS", "NETWORK ZONES", "DESCRIPTION", "USED BY"]  # fmt: skip
        print_rows(columns, rows, found, fmt)

    run(go)


@project.command()
@click.argument("name")
@click.option("--config", "-c", "pairs", multiple=True, help="Config key=value (repeatable)")
@click.option("--description", default="", help="Project description")
def create(name: str, pairs: tuple[str, ...], description: str) -> None:
    """Create a project (every feature but networks on, unless features.* are given)."""
    body = {"name": name, "config": parse_key_values(pairs, "--config"), "description": description}
    run(lambda s: s.create_project(body))
    click.echo(f"Project {name} created")


@project.command()
@click.argument("name")
def delete(name: str) -> None:
    """Delete an empty project."""
    run(lambda s: s.delete_project(name))
    click.echo(f"Project {name} deleted")


@project.command()
@click.argument("name")
@click.argument("new_name")
def rename(name: str, new_name: str) -> None:
    """Rename an empty project."""
    run(lambda s: s.rename_project(name, new_name))
    click.echo(f"Project {name} renamed to {new_name}")


@project.command()
@click.argument("name")
@format_option
def info(name: str, fmt: str) -> None:
    """Show what a project uses against its limits."""

    def go(server: InstanceServer) -> None:
        resources = server.project_state(name)["resources"]
        rows = [
            [key.upper(), "UNLIMITED" if r["Limit"] < 0 else str(r["Limit"]), str(r["Usage"])]
            for key, r in sorted(resources.items())
        ]
        print_rows(["RESOURCE", "LIMIT", "USAGE"], rows, resources, fmt)

    run(go)


@project.command()
@click.argument("name")
def switch(name: str) -> None:
    """Make NAME the current project of the current remote."""
    from stapes.client.remotes import Remotes

    run(lambda s: s.project(name))  # it must exist
    remote = _current()[0]
    try:
        Remotes().set_project(remote, name)
    except RemoteError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(1)


COMMANDS = [project]
