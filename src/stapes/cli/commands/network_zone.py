"""network zone list|show|create|get|set|unset|edit|delete and network zone record
list|show|create|get|set|unset|edit|delete|entry add|entry remove."""

from __future__ import annotations

from typing import Any

import click

from stapes.api.errors import RemoteError
from stapes.cli.commands._editing import Target, add_config_commands, named
from stapes.cli.main import parse_key_values, run
from stapes.cli.output import format_option, print_rows
from stapes.client.instance_server import InstanceServer


class ZoneTarget(Target):
    def load(self, server: InstanceServer) -> tuple[dict[str, Any], str]:
        zone, etag = server.network_zone(self.name)
        return {k: zone[k] for k in ("description", "config")}, etag

    def save(self, server: InstanceServer, body: dict[str, Any], etag: str) -> None:
        server.update_network_zone(self.name, body, etag)


class RecordTarget(Target):
    def __init__(self, zone: str, name: str) -> None:
        super().__init__(name)
        self.zone = zone

    @property
    def label(self) -> str:
        return f"{self.zone}/{self.name}"

    def load(self, server: InstanceServer) -> tuple[dict[str, Any], str]:
        record, etag = server.network_zone_record(self.zone, self.name)
        body = {k: record[k] for k in ("description", "config", "entries")}
        body["entries"] = body["entries"] or []
        return body, etag

    def save(self, server: InstanceServer, body: dict[str, Any], etag: str) -> None:
        server.update_network_zone_record(self.zone, self.name, body, etag)


def _record_target(verb: str, args: tuple[str, ...]) -> tuple[Target, tuple[str, ...]]:
    if len(args) < 2:
        raise click.UsageError("Missing the zone and record names")
    return RecordTarget(args[0], args[1]), args[2:]


@click.group()
def zone() -> None:
    """Manage network zones (DNS records served by core.dns_address)."""


add_config_commands(zone, named(ZoneTarget, "zone"))


@zone.command(name="list")
@format_option
@click.option("--all-projects", is_flag=True, help="List the zones of every project")
def list_zones(fmt: str, all_projects: bool) -> None:
    """List network zones."""

    def go(server: InstanceServer) -> None:
        found = server.network_zones(all_projects)
        rows = [[z["name"], z["description"], str(len(z["used_by"]))] for z in found]
        head = ["NAME", "DESCRIPTION", "USED BY"]
        if all_projects:
            rows = [[z["project"], *r] for z, r in zip(found, rows, strict=True)]
            head = ["PROJECT", *head]
        print_rows(head, rows, found, fmt)

    run(go)


@zone.command()
@click.argument("name")
@click.argument("pairs", nargs=-1)
@click.option("--description", default="", help="Zone description")
def create(name: str, pairs: tuple[str, ...], description: str) -> None:
    """Create a zone: NAME [KEY=VALUE...] (peers.NAME.address, peers.NAME.key,
    dns.nameservers, network.nat, user.*)."""
    body = {"name": name, "description": description, "config": parse_key_values(pairs, "K=V")}
    run(lambda s: s.create_network_zone(body))
    click.echo(f"Network Zone {name} created")


@zone.command()
@click.argument("name")
def delete(name: str) -> None:
    """Delete a zone (no network may use it)."""
    run(lambda s: s.delete_network_zone(name))
    click.echo(f"Network Zone {name} deleted")


@zone.group()
def record() -> None:
    """Manage the records added to a zone by hand."""


add_config_commands(record, _record_target)


@record.command(name="list")
@click.argument("zone_name")
@format_option
def list_records(zone_name: str, fmt: str) -> None:
    """List the records of ZONE."""

    def go(server: InstanceServer) -> None:
        found = server.network_zone_records(zone_name)
        rows = [
            [
                r["name"],
                r["description"],
                "\n".join(f"{e['type']} {e['value']}" for e in r["entries"] or []),
            ]
            for r in found
        ]
        print_rows(["NAME", "DESCRIPTION", "ENTRIES"], rows, found, fmt)

    run(go)


@record.command(name="create")
@click.argument("zone_name")
@click.argument("name")
@click.argument("pairs", nargs=-1)
@click.option("--description", default="", help="Record description")
def create_record(zone_name: str, name: str, pairs: tuple[str, ...], description: str) -> None:
    """Create a record without entries: ZONE NAME [user.KEY=VALUE...] (@ is the zone itself)."""
    body = {"name": name, "description": description, "config": parse_key_values(pairs, "K=V")}
    run(lambda s: s.create_network_zone_record(zone_name, body))
    click.echo(f"Network zone record {name} created")


@record.command(name="delete")
@click.argument("zone_name")
@click.argument("name")
def delete_record(zone_name: str, name: str) -> None:
    """Delete a record."""
    run(lambda s: s.delete_network_zone_record(zone_name, name))
    click.echo(f"Network zone record {name} deleted")


@record.group()
def entry() -> None:
    """Add and remove the DNS entries of a record."""


@entry.command(name="add")
@click.argument("zone_name")
@click.argument("name")
@click.argument("kind", metavar="TYPE")
@click.argument("value")
@click.option("--ttl", type=click.IntRange(0, 2**31 - 1), default=0, help="Time to live (300)")
def entry_add(zone_name: str, name: str, kind: str, value: str, ttl: int) -> None:
    """Add an entry: ZONE RECORD TYPE VALUE (A 192.0.2.10, MX "10 mail.example.net.")."""
    new: dict[str, Any] = {"type": kind, "value": value, **({"ttl": ttl} if ttl else {})}
    RecordTarget(zone_name, name).edit(lambda body: body["entries"].append(new))


@entry.command(name="remove")
@click.argument("zone_name")
@click.argument("name")
@click.argument("kind", metavar="TYPE")
@click.argument("value")
def entry_remove(zone_name: str, name: str, kind: str, value: str) -> None:
    """Remove the entry of this type and value."""

    def change(body: dict[str, Any]) -> None:
        kept = [e for e in body["entries"] if (e["type"], e["value"]) != (kind, value)]
        if len(kept) == len(body["entries"]):
            raise RemoteError("Couldn't find a matching entry", 404)
        body["entries"] = kept

    RecordTarget(zone_name, name).edit(change)
