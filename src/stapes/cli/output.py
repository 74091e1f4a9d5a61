"""Printing lists and objects: ASCII tables as incus draws them, or --format
json|yaml|csv|compact."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from typing import Any

import click

# yaml is imported where it is used: the commands that print no YAML start without it

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
        sys.stdout.write("".join(table_lines(columns, rows, borders=fmt == "table")))


def table_lines(columns: Sequence[str], rows: list[list[str]], borders: bool) -> list[str]:
    """The table as incus prints it: headers centred, cells left-aligned, a cell's lines
    (several addresses) one under the other, a rule between rows; ``borders`` False is the
    compact form. Written here rather than with rich: importing and rendering rich took
    ~25 ms of a ~100 ms `stapes list`."""
    cells = [[str(cell).split("\n") for cell in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        for i, lines in enumerate(row):
            widths[i] = max(widths[i], *(len(line) for line in lines))
    head = [_centred(c, w) for c, w in zip(columns, widths, strict=True)]
    body = [
        [
            [(ls[n] if n < len(ls) else "").ljust(w) for ls, w in zip(row, widths, strict=True)]
            for n in range(max((len(lines) for lines in row), default=1))
        ]
        for row in cells
    ]
    if not borders:
        return ["  " + "  ".join(line) + "  \n" for line in [head] + [x for r in body for x in r]]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"
    out = [rule, "| " + " | ".join(head) + " |\n", rule]
    for row_lines in body:
        out += ["| " + " | ".join(line) + " |\n" for line in row_lines]
        out.append(rule)
    return out


def _centred(text: str, width: int) -> str:
    left = (width - len(text)) // 2
    return " " * left + text + " " * (width - len(text) - left)


def print_object(obj: Any, fmt: str = "yaml") -> None:
    if fmt == "json":
        click.echo(json.dumps(obj, indent=2))
    else:
        import yaml

        click.echo(yaml.safe_dump(obj, sort_keys=False), nl=False)


def when(stamp: str) -> str:
    """An API timestamp as incus lists it (2006/01/02 15:04 UTC); empty for the zero time."""
    if not stamp or stamp.startswith("0001-"):
        return ""
    return f"{stamp[:10].replace('-', '/')} {stamp[11:16]} UTC"


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.2f}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1024
    return f"{size:.2f}TiB"
