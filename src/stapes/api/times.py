"""Times on the wire as Incus writes them (Go's RFC 3339 with nanoseconds, its zero time), in
a module of their own: the CLI reads them without importing the API models (pydantic)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

ZERO_TIME = "0001-01-01T00:00:00Z"


def now() -> datetime:
    return datetime.now(UTC)


def timestamp(when: datetime | None) -> str:
    """A time as Go's RFC 3339 encoder writes Incus's: in UTC with a Z, the fraction without
    its trailing zeros (none when it is whole)."""
    if when is None:
        return ZERO_TIME
    utc = when.astimezone(UTC)
    fraction = f"{utc.microsecond:06d}".rstrip("0")
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<zone>[Zz]|[+-]\d{2}:\d{2})"
)


def client_time(text: str) -> str:
    """A client's RFC 3339 time as Incus gives it back: its own offset and nanoseconds kept,
    written as Go writes them (Z for a zero offset, the fraction's trailing zeros dropped);
    ZERO_TIME stays as it is. Raises ValueError when ``text`` is not such a time."""
    found = _RFC3339.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not an RFC 3339 time")
    zone = found["zone"].upper()
    zone = "Z" if zone in ("Z", "+00:00", "-00:00") else zone
    datetime.fromisoformat(f"{found['date']}T{found['time']}{'+00:00' if zone == 'Z' else zone}")
    fraction = (found["fraction"] or "").rstrip("0")
    return f"{found['date']}T{found['time']}" + (f".{fraction}" if fraction else "") + zone


_FRACTION = re.compile(r"\.(\d+)")


def parse_timestamp(text: str) -> datetime | None:
    """An RFC 3339 timestamp from a client (nanoseconds allowed); None for Go's zero time.
    Raises ValueError when it is not one."""
    if not text or text.startswith("0001-01-01"):
        return None
    cleaned = _FRACTION.sub(lambda m: "." + m[1][:6].ljust(6, "0"), text.strip(), count=1)
    when = datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


def is_past(text: str, before: datetime) -> bool:
    """A stored time (any offset) earlier than ``before``; never for ZERO_TIME or garbage."""
    try:
        when = parse_timestamp(text)
    except ValueError:
        return False
    return when is not None and when < before
