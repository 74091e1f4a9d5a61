"""list: instances as a table (NAME, STATE, IPV4, IPV6, TYPE, SNAPSHOTS) or json/yaml/csv."""

from __future__ import annotations

from typing import Any

import click

from stapes.cli.main import run
from stapes.cli.output import format_option, print_rows
from stapes.client.instance_server import InstanceServer

COLUMNS = ["NAME", "STATE", "IPV4", "IPV6", "TYPE", "SNAPSHOTS"]


def _addresses(instance: dict[str, Any], family: str) -> str:
    network = (instance.get("state") or {}).get("network") or {}
    found = []
    for nic, data in sorted(network.items()):
        if nic == "lo":
            continue
        found += [
            f"{addr['address']} ({nic})"
            for addr in data.get("addresses", [])
            if addr.get("family") == family and addr.get("scope") == "global"
        ]
    return "\n".join(found)


def row(instance: dict[str, Any]) -> list[str]:
    kind = "CONTAINER" if instance["type"] == "container" else "VIRTUAL-MACHINE"
    if instance.get("ephemeral"):
        kind += " (EPHEMERAL)"
    return [
        instance["name"],
        instance["status"].upper(),
        _addresses(instance, "inet"),
        _addresses(instance, "inet6"),
        kind,
        str(len(instance.get("snapshots") or [])),
    ]


def _list(server: InstanceServer, fmt: str, filters: tuple[str, ...], all_projects: bool) -> None:
    clauses = []
    for item in filters:
        key, sep, value = item.partition("=")
        clauses.append(f"{key} eq {value}" if sep else f"name eq {item}.*")
    instances = server.instances(
        recursion=2, filter=" and ".join(clauses), all_projects=all_projects
    )
    print_rows(COLUMNS, [row(i) for i in instances], instances, fmt)


@click.command(name="list")
@click.argument("filters", nargs=-1)
@format_option
@click.option("--all-projects", is_flag=True, help="List instances of every project")
def list_command(filters: tuple[str, ...], fmt: str, all_projects: bool) -> None:
    """List instances. FILTERS: a name prefix, or key=value (status=Running, config.user.x=y)."""
    run(lambda s: _list(s, fmt, filters, all_projects))


COMMANDS = [list_command]
