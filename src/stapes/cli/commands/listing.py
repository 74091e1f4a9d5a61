"""list: instances as a table (by default NAME, STATE, IPV4, IPV6, TYPE, SNAPSHOTS; other
columns by incus's letters with -c) or json/yaml/csv."""

from __future__ import annotations

import sys

import click

from stapes.cli.instance_views import DEFAULT_COLUMNS, FIELDS, NEEDS_FULL, list_text
from stapes.cli.main import run
from stapes.cli.output import format_option
from stapes.client.instance_server import InstanceServer


def columns_of(spec: str) -> str:
    letters = spec.replace(",", "")
    unknown = sorted({c for c in letters if c not in FIELDS})
    if unknown:
        raise click.BadParameter(
            f"Unknown column shorthand char {unknown[0]!r} in {spec!r} (known: {''.join(FIELDS)})",
            param_hint="--columns",
        )
    return letters


def _list(
    server: InstanceServer, fmt: str, filters: tuple[str, ...], all_projects: bool, letters: str
) -> None:
    if "L" in letters and not server.server().get("environment", {}).get("server_clustered"):
        raise click.UsageError("Can't specify column L when not clustered")  # incus's words
    clauses = []
    for item in filters:
        key, sep, value = item.partition("=")
        clauses.append(f"{key} eq {value}" if sep else f"name eq {item}.*")
    instances = server.instances(
        recursion=2 if NEEDS_FULL & set(letters) else 1,
        filter=" and ".join(clauses),
        all_projects=all_projects,
    )
    sys.stdout.write(list_text(instances, letters, fmt))


@click.command(name="list")
@click.argument("filters", nargs=-1)
@format_option
@click.option(
    "--columns", "-c", default=DEFAULT_COLUMNS, show_default=True,
    help="Columns by incus's letters: n s 4 6 t S d p N c l b P e a f L",
)  # fmt: skip
@click.option("--all-projects", is_flag=True, help="List instances of every project")
def list_command(filters: tuple[str, ...], fmt: str, columns: str, all_projects: bool) -> None:
    """List instances. FILTERS: a name prefix, or key=value (status=Running, config.user.x=y)."""
    letters = columns_of(columns)
    run(lambda s: _list(s, fmt, filters, all_projects, letters))


COMMANDS = [list_command]
