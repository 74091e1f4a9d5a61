"""profile list|show|create|copy|edit|set|unset|get|delete|rename|device|add|remove."""

from __future__ import annotations

import sys
from typing import Any

import click

from stapes.api.errors import RemoteError
from stapes.cli.commands._editing import (
    InstanceTarget,
    ProfileTarget,
    add_config_commands,
    device_group,
    named,
    parse_yaml_body,
)
from stapes.cli.main import run
from stapes.cli.output import format_option, print_rows
from stapes.client.instance_server import InstanceServer


@click.group()
def profile() -> None:
    """Manage profiles."""


add_config_commands(profile, named(ProfileTarget, "profile"))
profile.add_command(device_group(ProfileTarget))


@profile.command(name="list")
@format_option
def list_profiles(fmt: str) -> None:
    """List profiles."""

    def go(server: InstanceServer) -> None:
        profiles = server.profiles()
        rows = [[p["name"], p["description"], str(len(p["used_by"]))] for p in profiles]
        print_rows(["NAME", "DESCRIPTION", "USED BY"], rows, profiles, fmt)

    run(go)


@profile.command()
@click.argument("name")
@click.option("--description", default="", help="Profile description")
def create(name: str, description: str) -> None:
    """Create a profile (its YAML may come on stdin)."""

    def go(server: InstanceServer) -> None:
        body: dict[str, Any] = {"description": description}
        if not sys.stdin.isatty():
            piped = sys.stdin.read()
            if piped.strip():
                body.update(parse_yaml_body(piped))
        server.create_profile(name, body)

    run(go)
    click.echo(f"Profile {name} created")


@profile.command()
@click.argument("source")
@click.argument("target")
def copy(source: str, target: str) -> None:
    """Copy a profile."""

    def go(server: InstanceServer) -> None:
        body, _ = ProfileTarget(source).load(server)
        server.create_profile(target, body)

    run(go)


@profile.command()
@click.argument("name")
def delete(name: str) -> None:
    """Delete a profile."""
    run(lambda s: s.delete_profile(name))
    click.echo(f"Profile {name} deleted")


@profile.command()
@click.argument("name")
@click.argument("new_name")
def rename(name: str, new_name: str) -> None:
    """Rename a profile."""
    run(lambda s: s.rename_profile(name, new_name))
    click.echo(f"Profile {name} renamed to {new_name}")


@profile.command()
@click.argument("instance")
@click.argument("name")
def add(instance: str, name: str) -> None:
    """Add a profile to an instance (applied after those it has)."""

    def change(body: dict[str, Any]) -> None:
        if name in body["profiles"]:
            raise RemoteError(f"Profile {name} is already applied to {instance}", 400)
        body["profiles"].append(name)

    InstanceTarget(instance).edit(change)
    click.echo(f"Profile {name} added to {instance}")


@profile.command()
@click.argument("instance")
@click.argument("name")
def remove(instance: str, name: str) -> None:
    """Remove a profile from an instance."""

    def change(body: dict[str, Any]) -> None:
        if name not in body["profiles"]:
            raise RemoteError(f"Profile {name} isn't applied to {instance}", 400)
        body["profiles"].remove(name)

    InstanceTarget(instance).edit(change)
    click.echo(f"Profile {name} removed from {instance}")


COMMANDS = [profile]
