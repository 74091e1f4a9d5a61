"""Lists as text, without click: ASCII tables as incus draws them, csv, json (the fast
commands of cli/fast.py print with these, as the click commands do through cli/output.py)."""

from __future__ import annotations

import io

TYPE_CHECKING = False  # not typing's: it imports re, a few ms of every fast command
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


def render_rows(columns: Sequence[str], rows: list[list[str]], raw: Any, fmt: str) -> str:
    """A list as text: ``rows`` for table/compact/csv, ``raw`` (the API objects) for
    json/yaml."""
    if fmt == "json":
        import json  # here, not above: json and csv import re (~3 ms of every list)

        return json.dumps(raw, indent=None) + "\n"
    if fmt == "yaml":
        import yaml

        return str(yaml.safe_dump(raw, sort_keys=False))
    if fmt == "csv":
        import csv

        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        return text.getvalue()
    return "".join(table_lines(columns, rows, borders=fmt == "table"))


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
