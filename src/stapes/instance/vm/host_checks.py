"""What a VM's config asks of the host beyond QEMU itself, checked at start: AMD SEV
(security.sev), with the C-bit position QEMU's sev-guest object needs."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from stapes.api.errors import MissingHostFeature
from stapes.config.validate import parse_bool

SEV_PARAMETER = Path("/sys/module/kvm_amd/parameters/sev")
CPUID = Path("/dev/cpu/0/cpuid")
SEV_LEAF = 0x8000001F
"""CPUID leaf of AMD's memory encryption: EBX holds the C-bit position and the physical
address bits it takes away."""


@dataclass(frozen=True)
class Sev:
    cbitpos: int
    reduced_phys_bits: int


def wants_sev(config: dict[str, str]) -> bool:
    return parse_bool(config.get("security.sev", "false"))


def check_sev(config: dict[str, str], accelerator: str) -> Sev | None:
    """None when the VM does not ask for SEV; else the host's SEV parameters, or why not."""
    if not wants_sev(config):
        return None
    if accelerator != "kvm":
        raise MissingHostFeature(
            "security.sev needs KVM on an AMD CPU with SEV; this host runs VMs under "
            f"{accelerator} (no usable /dev/kvm)"
        )
    try:
        enabled = SEV_PARAMETER.read_text().strip() in ("1", "Y", "y")
    except OSError:
        enabled = False
    if not enabled:
        raise MissingHostFeature(
            "security.sev needs AMD SEV enabled in KVM (kvm_amd's sev parameter, "
            f"{SEV_PARAMETER}), which this host does not have"
        )
    try:
        with open(CPUID, "rb") as f:
            f.seek(SEV_LEAF)
            _, ebx, _, _ = struct.unpack("<4I", f.read(16))
    except OSError as exc:
        raise MissingHostFeature(
            f"security.sev: cannot read CPUID leaf {SEV_LEAF:#x} from {CPUID} (modprobe cpuid): "
            f"{exc}"
        ) from None
    return Sev(cbitpos=ebx & 0x3F, reduced_phys_bits=(ebx >> 6) & 0x3F)
