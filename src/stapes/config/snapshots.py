"""The snapshots.* keys as pure functions: schedules (cron), expiry durations, name patterns."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime

from croniter import croniter
from dateutil.relativedelta import relativedelta

from stapes.api.errors import BadRequest
from stapes.api.times import client_time, parse_timestamp
from stapes.config.validate import name_problem

_ALIASES = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@annually", "@yearly")
_CRON_OF_ALIAS = {"@midnight": "@daily", "@annually": "@yearly"}


_EVENTS = ("@startup", "@never")
"""Aliases that are not times: a snapshot at each start, none at all."""


def _parts(value: str) -> list[str]:
    """The comma-separated entries of a snapshots.schedule value, each checked: a cron
    expression (5 fields) or an alias (@hourly, @daily..., @startup, @never)."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    for part in parts:
        if part.startswith("@"):
            if part not in (*_ALIASES, *_EVENTS):
                raise ValueError(
                    f"unknown schedule alias {part!r} (use one of {(*_ALIASES, *_EVENTS)})"
                )
        elif len(part.split()) != 5 or not croniter.is_valid(part):
            raise ValueError(
                f"{part!r}: expected a cron expression of 5 fields (minute hour day-of-month "
                "month day-of-week), e.g. '0 3 * * *', or aliases such as @daily or @startup, "
                "comma-separated"
            )
    return parts


def schedules(value: str) -> list[str]:
    """The cron expressions of a snapshots.schedule value (as Incus: cron expressions and
    aliases, comma-separated; @startup and @never name no time). Raises ValueError."""
    return [_CRON_OF_ALIAS.get(p, p) for p in _parts(value) if p not in _EVENTS]


def at_startup(value: str) -> bool:
    """Whether the schedule asks for a snapshot at each start (@startup)."""
    try:
        return "@startup" in _parts(value)
    except ValueError:
        return False


def is_schedule(value: str) -> None:
    schedules(value)


def due(value: str, minute: datetime) -> bool:
    """Whether a schedule fires in this minute."""
    at = minute.replace(second=0, microsecond=0, tzinfo=None)
    return any(croniter.match(expr, at) for expr in schedules(value))


_EXPIRY_UNITS: dict[str, Callable[[int], relativedelta]] = {
    "M": lambda n: relativedelta(minutes=n),
    "H": lambda n: relativedelta(hours=n),
    "d": lambda n: relativedelta(days=n),
    "w": lambda n: relativedelta(weeks=n),
    "m": lambda n: relativedelta(months=n),
    "y": lambda n: relativedelta(years=n),
}
_EXPIRY_PART = re.compile(r"(\d+)([MHdwmy])")


def expiry(value: str) -> relativedelta:
    """snapshots.expiry: space-separated amounts with a unit (M minutes, H hours, d days,
    w weeks, m months, y years), e.g. ``1w 2d``. Raises ValueError when invalid."""
    delta = relativedelta()
    parts = value.split()
    if not parts:
        raise ValueError("empty expiry")
    for part in parts:
        match = _EXPIRY_PART.fullmatch(part)
        if match is None:
            raise ValueError(
                f"invalid expiry {part!r}: use an amount with a unit among M (minutes), "
                "H (hours), d (days), w (weeks), m (months), y (years), e.g. '2w 3d'"
            )
        delta += _EXPIRY_UNITS[match[2]](int(match[1]))
    return delta


def is_expiry(value: str) -> None:
    expiry(value)


_DATE_TAG = re.compile(r"\{\{\s*creation_date\s*(?:\|\s*date\s*:\s*(['\"])(.*?)\1\s*)?\}\}")
_GO_LAYOUT = (
    ("2006", "%Y"),
    ("Jan", "%b"),
    ("Mon", "%a"),
    ("MST", "%Z"),
    ("01", "%m"),
    ("02", "%d"),
    ("15", "%H"),
    ("03", "%I"),
    ("04", "%M"),
    ("05", "%S"),
    ("06", "%y"),
    ("PM", "%p"),
)


def _go_date(layout: str, when: datetime) -> str:
    out = []
    i = 0
    while i < len(layout):
        for token, fmt in _GO_LAYOUT:
            if layout.startswith(token, i):
                out.append(when.strftime(fmt))
                i += len(token)
                break
        else:
            out.append(layout[i])
            i += 1
    return "".join(out)


def render_pattern(pattern: str, when: datetime) -> str:
    """Expand ``{{ creation_date|date:'2006-01-02' }}`` (Go layouts, as Incus) in a pattern."""

    def date(match: re.Match[str]) -> str:
        layout = match[2]
        return _go_date(layout, when) if layout else when.strftime("%Y-%m-%dT%H:%M:%SZ")

    return _DATE_TAG.sub(date, pattern)


def next_name(pattern: str, existing: Iterable[str], when: datetime) -> str:
    """The name of the next snapshot: ``%d`` in the pattern becomes the lowest index above every
    existing one (snap0, snap1...); a pattern without it that is taken gets ``-0``, ``-1``..."""
    taken = set(existing)
    name = render_pattern(pattern, when)
    if name.count("%d") > 1:
        raise BadRequest("snapshots.pattern may contain %d only once")
    if "%d" not in name:
        if name not in taken:
            return name
        name += "-%d"
    head, tail = name.split("%d")
    index = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + "$")
    used = [int(m[1]) for n in taken if (m := index.match(n))]
    return f"{head}{max(used) + 1 if used else 0}{tail}"


_NAME = re.compile(r"[^/\s]+")


def validate_name(name: str) -> None:
    """A snapshot name (of an instance or a volume)."""
    problem = name_problem(name)
    if problem is None and not _NAME.fullmatch(name):
        problem = "it cannot contain spaces"
    if problem is not None:
        raise BadRequest(f"Invalid snapshot name {name!r}: {problem}")


def parse_expiry_time(text: str) -> str:
    """A client's expires_at as the stored text ('' for never): as the client wrote it, in
    Go's form (Incus gives back the offset and nanoseconds it was sent)."""
    try:
        when = parse_timestamp(text)
        kept = client_time(text) if when is not None else ""
    except ValueError:
        raise BadRequest(
            f"Invalid expires_at {text!r}: use an RFC 3339 time such as 2030-01-31T12:00:00Z"
        ) from None
    return kept
