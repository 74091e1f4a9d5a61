"""The virtiofsd command line for either flavour: the Rust one's options, or the C one's
``-o`` list, which cannot carry a path with a comma or a backslash (such a share goes over 9p)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stapes.instance.devices.device import VmDisk
from stapes.instance.vm import virtiofs

RUST_HELP = "Usage: virtiofsd [OPTIONS]\n      --shared-dir <SHARED_DIR>\n      --readonly\n"
C_HELP = "usage: virtiofsd [options]\n    -o source=PATH    shared directory tree\n"


def share(source: str, readonly: bool = False, name: str = "data") -> VmDisk:
    return VmDisk(name, source, "/mnt/data", readonly, share=True)


def test_the_rust_virtiofsd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(virtiofs, "_help", lambda path: RUST_HELP)
    argv = virtiofs.command("/vfsd", Path("/run/v.sock"), share("/srv/a,b", readonly=True))
    assert argv == ["/vfsd", "--socket-path=/run/v.sock", "--shared-dir=/srv/a,b",
                    "--cache=auto", "--sandbox=chroot", "--readonly"]  # fmt: skip


def test_the_c_virtiofsd_and_what_it_cannot_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(virtiofs, "_help", lambda path: C_HELP)
    monkeypatch.setattr(virtiofs, "binary", lambda: "/vfsd")
    argv = virtiofs.command("/vfsd", Path("/run/v.sock"), share("/srv/data"))
    assert argv == ["/vfsd", "--socket-path=/run/v.sock", "-o",
                    "source=/srv/data,cache=auto,sandbox=chroot"]  # fmt: skip
    sources = [("/srv/data", False), ("/srv/a,b", False), ("/srv/a\\b", False), ("/srv/ro", True)]
    shares = [share(source, ro, f"s{i}") for i, (source, ro) in enumerate(sources)]
    chosen = virtiofs.sockets(Path("/run"), shares)
    assert list(chosen) == ["s0"]  # a comma, a backslash, a read-only share: 9p
    with pytest.raises(Exception, match="cannot be given"):
        virtiofs.command("/vfsd", Path("/run/v.sock"), share("/srv/a,b"))
