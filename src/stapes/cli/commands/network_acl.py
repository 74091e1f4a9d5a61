"""network acl list|show|create|get|set|unset|edit|rename|delete|rule add|rule remove."""

from __future__ import annotations

from typing import Any

import click

from stapes.api.errors import RemoteError
from stapes.cli.commands._editing import Target, add_config_commands, named
from stapes.cli.main import parse_key_values, run
from stapes.cli.output import format_option, print_rows
from stapes.client.instance_server import InstanceServer

DIRECTIONS = click.Choice(["ingress", "egress"])


class AclTarget(Target):
    def load(self, server: InstanceServer) -> tuple[dict[str, Any], str]:
        acl, etag = server.network_acl(self.name)
        return {k: acl[k] for k in ("description", "config", "ingress", "egress")}, etag

    def save(self, server: InstanceServer, body: dict[str, Any], etag: str) -> None:
        server.update_network_acl(self.name, body, etag)


@click.group()
def acl() -> None:
    """Manage network ACLs."""


add_config_commands(acl, named(AclTarget, "ACL"))


@acl.command(name="list")
@format_option
def list_acls(fmt: str) -> None:
    """List network ACLs."""

    def go(server: InstanceServer) -> None:
        found = server.network_acls()
        rows = [[a["name"], a["description"], str(len(a["used_by"]))] for a in found]
        print_rows(["NAME", "DESCRIPTION", "USED BY"], rows, found, fmt)

    run(go)


@acl.command()
@click.argument("name")
@click.argument("pairs", nargs=-1)
@click.option("--description", default="", help="ACL description")
def create(name: str, pairs: tuple[str, ...], description: str) -> None:
    """Create an ACL without rules: NAME [user.KEY=VALUE...]."""
    body = {
        "name": name,
        "description": description,
        "config": parse_key_values(pairs, "KEY=VALUE"),
    }
    run(lambda s: s.create_network_acl(body))
    click.echo(f"Network ACL {name} created")


@acl.command()
@click.argument("name")
@click.argument("new_name")
def rename(name: str, new_name: str) -> None:
    """Rename an ACL (no network may use it)."""
    run(lambda s: s.rename_network_acl(name, new_name))
    click.echo(f"Network ACL {name} renamed to {new_name}")


@acl.command()
@click.argument("name")
def delete(name: str) -> None:
    """Delete an ACL (no network may use it)."""
    run(lambda s: s.delete_network_acl(name))
    click.echo(f"Network ACL {name} deleted")


@acl.group()
def rule() -> None:
    """Add and remove ACL rules."""


@rule.command(name="add")
@click.argument("name")
@click.argument("direction", type=DIRECTIONS)
@click.argument("pairs", nargs=-1, required=True)
def rule_add(name: str, direction: str, pairs: tuple[str, ...]) -> None:
    """Add a rule: NAME ingress|egress action=allow|reject|drop [protocol=tcp
    destination_port=80 source=10.0.0.0/8 ...]."""
    spec = {"state": "enabled", **parse_key_values(pairs, "KEY=VALUE")}
    AclTarget(name).edit(lambda body: body[direction].append(spec))


@rule.command(name="remove")
@click.argument("name")
@click.argument("direction", type=DIRECTIONS)
@click.argument("pairs", nargs=-1)
@click.option("--force", is_flag=True, help="Remove every matching rule")
def rule_remove(name: str, direction: str, pairs: tuple[str, ...], force: bool) -> None:
    """Remove the rule whose properties match KEY=VALUE..."""
    wanted = parse_key_values(pairs, "KEY=VALUE")

    def change(body: dict[str, Any]) -> None:
        def matches(spec: dict[str, Any]) -> bool:
            return all(spec.get(k, "") == v for k, v in wanted.items())

        found = [r for r in body[direction] if matches(r)]
        if not found:
            raise RemoteError("No matching rule", 404)
        if len(found) > 1 and not force:
            raise RemoteError("Several rules match: give more properties or use --force", 400)
        body[direction] = [r for r in body[direction] if not matches(r)]

    AclTarget(name).edit(change)
