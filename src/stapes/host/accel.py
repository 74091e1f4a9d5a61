"""Which accelerator QEMU can use here: KVM when /dev/kvm opens and the kernel has a
hardware virtualisation module (kvm_intel or kvm_amd), else TCG (emulation, slow but real).

/dev/kvm alone proves little: a kernel built with only KVM_PVM (as on hosts that are themselves
guests) exposes it, and a VM started on it hangs."""

from __future__ import annotations

import functools
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

QEMU_BINARY = "qemu-system-x86_64"
OVMF_DIR = Path("/usr/share/OVMF")


@dataclass(frozen=True)
class Accelerator:
    name: str
    """kvm or tcg."""
    why: str
    """Why KVM is not used (empty with KVM)."""


@functools.cache
def probe() -> Accelerator:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return Accelerator("tcg", f"/dev/kvm cannot be opened ({exc.strerror})")
    os.close(fd)
    modules = [m for m in ("kvm_intel", "kvm_amd") if Path("/sys/module", m).exists()]
    if not modules:
        return Accelerator(
            "tcg", "/dev/kvm exists but the kernel has neither kvm_intel nor kvm_amd"
        )
    return Accelerator("kvm", "")


def vsock() -> bool:
    """Whether VMs can have a vsock device (vhost-vsock)."""
    return os.path.exists("/dev/vhost-vsock") and hasattr(socket, "AF_VSOCK")


def qemu_binary() -> str | None:
    return shutil.which(QEMU_BINARY)
