"""raw.qemu.conf: sections of QEMU's configuration file format, given to QEMU with
``-readconfig``. The text is parsed into sections and written back by ``render``, the one
writer of that file: a value QEMU's format cannot carry (a quote, a backslash, a control
character) is refused, so a value never becomes a line or a section of its own.

    [device "dev-extra-rng"]
    driver = "virtio-rng-pci"

Incus writes its whole QEMU configuration in this format and raw.qemu.conf overrides its
sections; Stapes gives QEMU its configuration on the command line, so the sections here are
added to it (a section naming an id Stapes uses is refused by QEMU at start)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEADER = re.compile(r'\[\s*([a-z][a-z0-9-]*)\s*(?:"([A-Za-z0-9._-]+)")?\s*\]')
_ENTRY = re.compile(r'([a-z0-9][a-z0-9_.-]*)\s*=\s*"([^"\\\x00-\x1f\x7f]*)"')


@dataclass
class Section:
    kind: str
    id: str = ""
    entries: list[tuple[str, str]] = field(default_factory=list)


def parse(text: str) -> list[Section]:
    """The sections of ``text``; ValueError names the first line QEMU's format cannot take."""
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if header := _HEADER.fullmatch(line):
            sections.append(Section(header.group(1), header.group(2) or ""))
            continue
        entry = _ENTRY.fullmatch(line)
        if entry is None:
            raise ValueError(
                f'line {number} is neither [section "id"] nor key = "value" (values cannot '
                f"hold quotes, backslashes or control characters): {raw!r}"
            )
        if not sections:
            raise ValueError(f"line {number} comes before any [section]: {raw!r}")
        sections[-1].entries.append((entry.group(1), entry.group(2)))
    return sections


def check(text: str) -> None:
    parse(text)


def render(sections: list[Section]) -> str:
    out: list[str] = []
    for section in sections:
        out.append(f'[{section.kind} "{section.id}"]' if section.id else f"[{section.kind}]")
        out += [f'  {key} = "{value}"' for key, value in section.entries]
        out.append("")
    return "\n".join(out)
