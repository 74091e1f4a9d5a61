"""The ``filter`` query parameter of list endpoints (Incus's API filtering).

Grammar: ``[not] FIELD OP VALUE`` clauses joined by ``and`` / ``or`` (left to right, ``and``
binding tighter); OP is ``eq`` or ``ne``; FIELD is a dotted path into the rendered object
(``status``, ``config.image.os``, ``expanded_config.user.x``); VALUE may be quoted. String
values compare case-sensitively, with ``eq`` also accepting a full regular-expression match."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from stapes.api.errors import BadRequest


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: str
    negate: bool


Filter = list[list[Clause]]
"""OR of ANDs."""


def parse(text: str) -> Filter:
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise BadRequest(f"Invalid filter {text!r}: {exc}") from None
    groups: Filter = [[]]
    i = 0
    while i < len(words):
        negate = False
        if words[i] == "not":
            negate = True
            i += 1
        if len(words) - i < 3:
            raise BadRequest(f"Invalid filter {text!r}: expected FIELD eq|ne VALUE")
        field, op, value = words[i], words[i + 1], words[i + 2]
        if op not in ("eq", "ne"):
            raise BadRequest(f"Invalid filter {text!r}: unknown operator {op!r} (use eq or ne)")
        groups[-1].append(Clause(field, op, value, negate))
        i += 3
        if i < len(words):
            joiner = words[i]
            if joiner == "or":
                groups.append([])
            elif joiner != "and":
                raise BadRequest(f"Invalid filter {text!r}: expected and/or, got {joiner!r}")
            i += 1
            if i >= len(words):
                raise BadRequest(f"Invalid filter {text!r}: ends with {joiner!r}")
    return groups


def _lookup(obj: Any, path: str) -> Any:
    current = obj
    parts = path.split(".")
    i = 0
    while i < len(parts):
        if not isinstance(current, dict):
            return None
        # config keys contain dots: try the longest key first
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in current:
                current = current[key]
                i = j
                break
        else:
            return None
    return current


def _equal(actual: Any, wanted: str) -> bool:
    """As Incus compares: without regard to case (status=running matches Running), the
    wanted text also tried as a regular expression (case-insensitive too)."""
    text = "" if actual is None else str(actual)
    if text.lower() == wanted.lower():
        return True
    try:
        return re.fullmatch(wanted, text, re.IGNORECASE) is not None
    except re.error:
        return False


def matches(flt: Filter, obj: dict[str, Any]) -> bool:
    def clause_ok(c: Clause) -> bool:
        result = _equal(_lookup(obj, c.field), c.value)
        if c.op == "ne":
            result = not result
        return not result if c.negate else result

    return any(all(clause_ok(c) for c in group) for group in flt)
