"""Printing lists and objects: rich tables, or --format json|yaml|csv."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from typing import Any

import click

# yaml and rich are imported where they are used: `stapes list --format csv` and the commands
# that print nothing start without them

FORMATS = ("table", "json", "yaml", "csv", "compact")

format_option = click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format",
)


def print_rows(columns: Sequence[str], rows: list[list[str]], raw: Any, fmt: str) -> None:
    """Print a list: ``rows`` for table/csv, ``raw`` (the API objects) for json/yaml."""
    if fmt == "json":
        click.echo(json.dumps(raw, indent=None))
    elif fmt == "yaml":
        import yaml

        click.echo(yaml.safe_dump(raw, sort_keys=False), nl=False)
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerows(rows)
    else:
        from rich import box
        from rich.console import Console
        from rich.table import Table

        table = Table(box=box.ASCII if fmt == "table" else None, show_lines=fmt == "table")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row)
        width = Console().width if sys.stdout.isatty() else 1000
        Console(soft_wrap=False, width=width).print(table)


def print_object(obj: Any, fmt: str = "yaml") -> None:
    if fmt == "json":
        click.echo(json.dumps(obj, indent=2))
    else:
        import yaml

        click.echo(yaml.safe_dump(obj, sort_keys=False), nl=False)


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.2f}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1024
    return f"{size:.2f}TiB"
