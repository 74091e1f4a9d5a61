"""The seccomp policy of a container from its security.syscalls.* keys (liblxc's v2 format)."""

from __future__ import annotations

from stapes.api.errors import BadRequest
from stapes.config.validate import is_deny_list, is_syscall_list, parse_bool, syscall_entries

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


def policy(config: dict[str, str]) -> str:
    """The one writer of seccomp policies: liblxc's v2 text, one rule a line. Entries are
    checked again here, so no value can add a line of its own (raw.seccomp is the policy
    itself, a low-level key; NUL is all it cannot hold)."""
    raw = config.get("raw.seccomp", "")
    if raw:
        if "\x00" in raw:
            raise BadRequest("raw.seccomp cannot contain NUL")
        return raw if raw.endswith("\n") else raw + "\n"
    allow = syscall_entries(config.get("security.syscalls.allow", ""))
    try:
        is_syscall_list(config.get("security.syscalls.allow", ""))
        is_deny_list(config.get("security.syscalls.deny", ""))
    except ValueError as exc:
        raise BadRequest(f"Refusing to write the seccomp policy: {exc}") from None
    if allow:
        return "2\nallowlist\n[all]\n" + "".join(name + "\n" for name in allow)
    lines = ["2", "denylist"]
    if parse_bool(config.get("security.syscalls.deny_default", "true")):
        lines.append("reject_force_umount")
        lines.append("[all]")
        lines += [f"{name} errno {ENOSYS}" for name in DEFAULT_DENIED]
    else:
        lines.append("[all]")
    for entry in syscall_entries(config.get("security.syscalls.deny", "")):
        lines.append(entry if " " in entry else entry + " errno " + str(EPERM))
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
