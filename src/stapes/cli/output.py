"""Printing lists and objects for the click commands: ASCII tables as incus draws them, or
--format json|yaml|csv|compact (the rendering itself is cli/tables.py, click-free)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from stapes.cli.tables import human_size, render_rows, table_lines, when

# yaml is imported where it is used: the commands that print no YAML start without it

__all__ = ["format_option", "human_size", "print_object", "print_rows", "table_lines", "when"]

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
    sys.stdout.write(render_rows(columns, rows, raw, fmt))


def print_object(obj: Any, fmt: str = "yaml") -> None:
    if fmt == "json":
        click.echo(json.dumps(obj, indent=2))
    else:
        import yaml

        click.echo(yaml.safe_dump(obj, sort_keys=False), nl=False)
