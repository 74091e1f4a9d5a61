"""Instance types: a name for a size, turned into limits.cpu and limits.memory at create.
``cN-mM`` (N CPUs, M GiB, as Incus accepts) and a small built-in table of cloud names."""

from __future__ import annotations

import re

from stapes.api.errors import BadRequest

BUILT_IN: dict[str, tuple[int, float]] = {
    "t2.nano": (1, 0.5),
    "t2.micro": (1, 1),
    "t2.small": (1, 2),
    "t2.medium": (2, 4),
    "t2.large": (2, 8),
    "t2.xlarge": (4, 16),
    "m5.large": (2, 8),
    "m5.xlarge": (4, 16),
    "c5.large": (2, 4),
    "c5.xlarge": (4, 8),
    "e2-micro": (2, 1),
    "e2-small": (2, 2),
    "e2-medium": (2, 4),
}
"""name -> (CPUs, GiB of memory); ``aws:`` or ``gce:`` prefixes are accepted."""

_SHORTHAND = re.compile(r"c(\d+)-m(\d+(?:\.\d+)?)")


def limits(instance_type: str) -> dict[str, str]:
    name = instance_type.split(":", 1)[-1]
    match = _SHORTHAND.fullmatch(name)
    if match:
        cpus, gib = int(match[1]), float(match[2])
    elif name in BUILT_IN:
        cpus, gib = BUILT_IN[name]
    else:
        raise BadRequest(
            f"Unknown instance type {instance_type!r}: use cN-mM (N CPUs, M GiB of memory, "
            f"such as c2-m4) or one of {', '.join(sorted(BUILT_IN))}"
        )
    if cpus < 1 or gib <= 0:
        raise BadRequest(f"Instance type {instance_type!r} needs at least 1 CPU and some memory")
    memory = f"{int(gib)}GiB" if gib == int(gib) else f"{int(gib * 1024)}MiB"
    return {"limits.cpu": str(cpus), "limits.memory": memory}
