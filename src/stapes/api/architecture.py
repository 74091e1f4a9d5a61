"""Architectures as the wire names them: Incus's names (``x86_64``), the distribution aliases
clients also send (``amd64``), and Incus's numeric ids (pylxd sends ``"2"`` for x86_64)."""

from __future__ import annotations

ARCHITECTURE_IDS: dict[int, str] = {
    1: "i686",
    2: "x86_64",
    3: "armv7l",
    4: "aarch64",
    5: "ppc",
    6: "ppc64",
    7: "ppc64le",
    8: "s390x",
    9: "mips",
    10: "mips64",
    11: "riscv32",
    12: "riscv64",
    13: "loongarch64",
}
"""Incus's ids (shared/osarch), as the API and older clients use them."""

ALIASES: dict[str, str] = {
    "i386": "i686",
    "i586": "i686",
    "x86": "i686",
    "amd64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "armhf": "armv7l",
    "armel": "armv7l",
    "arm": "armv7l",
    "ppc64el": "ppc64le",
    "powerpc": "ppc",
    "mipsel": "mips",
    "mips64el": "mips64",
}
NAMES = frozenset(ARCHITECTURE_IDS.values())


def architecture_name(value: str | int) -> str:
    """The Incus name of an architecture given as a name, an alias or a numeric id; "" stays
    "" (the caller picks one). Raises ValueError naming what is accepted."""
    text = str(value)
    if text == "":
        return ""
    if text.isascii() and text.isdigit() and int(text) in ARCHITECTURE_IDS:
        return ARCHITECTURE_IDS[int(text)]
    if text in NAMES:
        return text
    if text in ALIASES:
        return ALIASES[text]
    raise ValueError(
        f"Unknown architecture {text!r}: use a name (x86_64, aarch64, i686...) or Incus's "
        "number for it (2 for x86_64, 4 for aarch64...)"
    )
