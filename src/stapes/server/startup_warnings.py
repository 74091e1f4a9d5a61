"""What the host lacks, told at every daemon start as Incus tells it: warnings (GET
/1.0/warnings) raised for missing features and resolved when the host has them again."""

from __future__ import annotations

from collections.abc import Callable

from stapes.host import accel
from stapes.runtime.warnings import Warnings

Check = Callable[[], str]
"""Returns why the feature is missing, or "" when the host has it."""

DISK_PRIORITY = "Couldn't find the CGroup blkio.weight"
NO_KVM = "KVM acceleration unavailable"


def host_checks(io_weight: str) -> dict[str, Check]:
    """Warning type -> its check (``io_weight``: the block I/O weight file the kernel has)."""

    def disk_priority() -> str:
        if io_weight:
            return ""
        return "limits.disk.priority cannot be applied: instances that set it do not start"

    def kvm() -> str:
        found = accel.probe()
        if found.name == "kvm":
            return ""
        return f"{found.why}: virtual machines run under TCG emulation (slow)"

    return {DISK_PRIORITY: disk_priority, NO_KVM: kvm}


def raise_host_warnings(warnings: Warnings, checks: dict[str, Check]) -> None:
    for kind, check in checks.items():
        why = check()
        if why:
            warnings.raise_(kind, why)
        else:
            warnings.resolve(kind)
