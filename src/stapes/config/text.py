"""What text may reach the host's line-based formats (liblxc config, dnsmasq files, nft input,
QEMU option strings, seccomp policies, mount tables): the characters none of them can carry.

Each sink's writer calls these and refuses what its format cannot hold; the API edge calls them
first (through the validators) so a client learns which key or field to fix."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINE_BREAK = re.compile(r"[\x00\n\r]")

_NAMES = {"\x00": "NUL", "\n": "a newline", "\r": "a carriage return", "\t": "a tab"}


def _describe(char: str) -> str:
    return _NAMES.get(char, f"the control character {char!r}")


def control_char(value: str) -> str | None:
    """A description of the first control character in ``value`` (tab included), or None."""
    found = _CONTROL.search(value)
    return _describe(found.group()) if found else None


def line_break(value: str) -> str | None:
    """A description of the first character that ends a line (newline, CR or NUL), or None."""
    found = _LINE_BREAK.search(value)
    return _describe(found.group()) if found else None


def no_control_chars(value: str) -> None:
    """A validator: no control character at all (names, paths, single-line values)."""
    problem = control_char(value)
    if problem is not None:
        raise ValueError(f"contains {problem}, which is not allowed here")


def no_line_breaks(value: str) -> None:
    """A validator: one line (tabs allowed)."""
    problem = line_break(value)
    if problem is not None:
        raise ValueError(f"contains {problem}: the value must be a single line")
