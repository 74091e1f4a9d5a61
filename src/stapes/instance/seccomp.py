"""The seccomp policy of a container from its security.syscalls.* keys (liblxc's v2 format)."""

from __future__ import annotations

from stapes.config.validate import parse_bool

KEYS = (
    "security.syscalls.allow",
    "security.syscalls.deny",
    "security.syscalls.deny_default",
    "security.syscalls.deny_compat",
    "raw.seccomp",
)

DEFAULT_DENIED = ("kexec_load", "open_by_handle_at", "init_module", "finit_module", "delete_module")
"""What a container may never do by default: load kernels or modules, open files by handle."""

ENOSYS = 38
EPERM = 1


def wanted(config: dict[str, str]) -> bool:
    """Whether the config asks for a policy of its own (else liblxc's common one applies)."""
    return any(key in config for key in KEYS)


def _entries(value: str) -> list[str]:
    """One syscall (with an optional action) per line or comma."""
    return [part.strip() for line in value.splitlines() for part in line.split(",") if part.strip()]


def policy(config: dict[str, str]) -> str:
    raw = config.get("raw.seccomp", "")
    if raw:
        return raw if raw.endswith("\n") else raw + "\n"
    allow = _entries(config.get("security.syscalls.allow", ""))
    if allow:
        return "2\nallowlist\n[all]\n" + "".join(f"{name}\n" for name in allow)
    lines = ["2", "denylist"]
    if parse_bool(config.get("security.syscalls.deny_default", "true")):
        lines.append("reject_force_umount")
        lines.append("[all]")
        lines += [f"{name} errno {ENOSYS}" for name in DEFAULT_DENIED]
    else:
        lines.append("[all]")
    for entry in _entries(config.get("security.syscalls.deny", "")):
        lines.append(entry if " " in entry else f"{entry} errno {EPERM}")
    return "\n".join(lines) + "\n"


def check(config: dict[str, str]) -> str | None:
    """Why the combination is refused, or None (the single keys are checked by the table)."""
    has_allow = bool(config.get("security.syscalls.allow"))
    deny = bool(config.get("security.syscalls.deny")) or parse_bool(
        config.get("security.syscalls.deny_compat", "false")
    )
    if config.get("raw.seccomp") and (has_allow or deny):
        return "raw.seccomp cannot be combined with security.syscalls.*"
    if has_allow and deny:
        return "security.syscalls.allow cannot be combined with security.syscalls.deny*"
    return None
