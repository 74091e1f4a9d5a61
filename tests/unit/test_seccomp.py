"""security.syscalls.* as a liblxc seccomp policy."""

from __future__ import annotations

from stapes.instance import seccomp


def test_default_policy_and_deny_list() -> None:
    text = seccomp.policy({"security.syscalls.deny": "mkdir\nmount errno 38, umount2"})
    lines = text.splitlines()
    assert lines[:3] == ["2", "denylist", "reject_force_umount"]
    assert "kexec_load errno 38" in lines
    assert lines[-3:] == ["mkdir errno 1", "mount errno 38", "umount2 errno 1"]
    bare = seccomp.policy({"security.syscalls.deny_default": "false"}).splitlines()
    assert "kexec_load errno 38" not in bare


def test_allow_list_raw_and_conflicts() -> None:
    assert seccomp.policy({"security.syscalls.allow": "read,write"}) == (
        "2\nallowlist\n[all]\nread\nwrite\n"
    )
    assert seccomp.policy({"raw.seccomp": "2\ndenylist\n"}) == "2\ndenylist\n"
    assert not seccomp.wanted({})
    assert seccomp.wanted({"security.syscalls.deny_default": "true"})
    assert seccomp.check({"security.syscalls.allow": "a", "security.syscalls.deny": "b"})
    assert seccomp.check({"raw.seccomp": "x", "security.syscalls.allow": "a"})
    assert seccomp.check({"security.syscalls.allow": "a"}) is None
