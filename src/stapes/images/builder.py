"""The offline image builder: real Incus image files from the host's busybox or from Debian.

Both builders write a unified image tarball (metadata.yaml, templates/, rootfs/) that Stapes and
Incus import alike."""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from stapes.api.errors import BadRequest, MissingHostFeature
from stapes.host import mounts
from stapes.host.run import RunError, run
from stapes.images.recipe import Recipe, builtin

Say = Callable[[str], None]

DEBIAN_RELEASES = {"12": "bookworm", "bookworm": "bookworm", "13": "trixie", "trixie": "trixie"}

HOSTNAME_TEMPLATE = "{{ instance.name }}\n"
HOSTS_TEMPLATE = (
    "127.0.0.1\tlocalhost\n127.0.1.1\t{{ instance.name }}\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
)


def metadata(os_name: str, release: str, description: str, variant: str) -> dict[str, object]:
    return {
        "architecture": platform.machine(),
        "creation_date": int(time.time()),
        "properties": {
            "description": description,
            "os": os_name,
            "release": release,
            "variant": variant,
            "architecture": platform.machine(),
        },
        "templates": {
            "/etc/hostname": {"when": ["create", "copy"], "template": "hostname.tpl"},
            "/etc/hosts": {"when": ["create", "copy"], "template": "hosts.tpl"},
        },
    }


def write_meta(work: Path, meta: dict[str, object]) -> None:
    (work / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    templates = work / "templates"
    templates.mkdir(exist_ok=True)
    (templates / "hostname.tpl").write_text(HOSTNAME_TEMPLATE)
    (templates / "hosts.tpl").write_text(HOSTS_TEMPLATE)


async def _pack(work: Path, out: Path) -> Path:
    await run(
        [
            "tar",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-C",
            str(work),
            "-czf",
            str(out),
            "metadata.yaml",
            "templates",
            "rootfs",
        ],
        timeout=1800,
    )
    return out


def find_busybox() -> Path:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(candidate):
            return Path(candidate)
    raise MissingHostFeature("busybox is not installed: apt-get install busybox-static")


async def build_busybox(work: Path, out: Path, say: Say = lambda _: None) -> Path:
    release = await build_busybox_tree(work / "rootfs")
    write_meta(work, metadata("busybox", release, f"busybox {release}", "default"))
    say(f"Packing busybox {release} image")
    return await _pack(work, out)


async def build_busybox_tree(rootfs: Path) -> str:
    """A busybox system in ``rootfs``; returns busybox's version."""
    busybox = find_busybox()
    _, listing, _ = await run([str(busybox), "--list-full"])
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "run",
        "var/log",
        "home",
    ):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    for applet in listing.decode().split():
        target = rootfs / applet
        if applet == "bin/busybox" or target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        depth = len(Path(applet).parts) - 1
        target.symlink_to("../" * depth + "bin/busybox")
    (rootfs / "etc" / "inittab").write_text(
        "::sysinit:/bin/hostname -F /etc/hostname\n"
        "::respawn:/bin/sleep 2147483647\n"
        "::askfirst:-/bin/sh\n"
        "::shutdown:/bin/true\n"
    )
    (rootfs / "etc" / "hostname").write_text("busybox\n")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\n")
    _, version, _ = await run([str(busybox), "--help"], check=False)
    return version.decode(errors="replace").split()[1].lstrip("v") if version else "1"


def _apt_uris() -> list[str]:
    """The archive URIs this host's apt is configured with, in order."""
    uris: list[str] = []
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        uris += [
            line.split()[1]
            for line in sources.read_text().splitlines()
            if line.startswith("URIs:") and len(line.split()) > 1
        ]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb":
                uris.append(parts[1])
    return uris


def debian_mirror() -> str:
    """The Debian mirror this host's apt uses (read at run time, never built in)."""
    for uri in _apt_uris():
        if "security" not in uri:
            return uri
    raise MissingHostFeature(
        "No Debian mirror in /etc/apt/sources.list.d/debian.sources or "
        "/etc/apt/sources.list: configure apt first"
    )


def _security_mirror() -> str | None:
    return next((uri for uri in _apt_uris() if "security" in uri), None)


CACHE = Path("/var/cache/stapes/bootstrap")
"""Bootstrapped trees by recipe (distribution, release, architecture, packages): a rebuild
unpacks one instead of running debootstrap again."""


def cache_dir() -> Path:
    return Path(os.environ.get("STAPES_BUILD_CACHE", str(CACHE)))


async def bootstrap(recipe: Recipe, suite: str, rootfs: Path, say: Say) -> None:
    """debootstrap the recipe's packages into ``rootfs``, or unpack the cached tree of an
    earlier build of the same packages."""
    cached = cache_dir() / f"debian-{suite}-{recipe.bootstrap_key(platform.machine())}.tar"
    if cached.is_file():
        say(f"Using the cached bootstrap {cached}")
        rootfs.mkdir(parents=True, exist_ok=True)
        await run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xf",
                   str(cached), "-C", str(rootfs)], timeout=1800)  # fmt: skip
        return
    if shutil.which("debootstrap") is None:
        raise MissingHostFeature("debootstrap is not installed: apt-get install debootstrap")
    mirror = debian_mirror()
    say(f"Bootstrapping Debian {suite} from {mirror} (about a minute)")
    try:
        await run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(recipe.packages)}",
             suite, str(rootfs), mirror],
            timeout=3600,
        )  # fmt: skip
    except RunError as exc:
        log = rootfs / "debootstrap" / "debootstrap.log"
        detail = log.read_text(errors="replace")[-1500:] if log.is_file() else exc.stderr
        raise BadRequest(f"debootstrap failed (exit {exc.returncode}): {detail.strip()}") from None
    finally:  # debootstrap mounts /proc and /sys in the rootfs; an interrupted one leaves them
        mounts.unmount_below(rootfs)
    cached.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = cached.with_name(cached.name + ".partial")
    await run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-cf", str(partial),
               "-C", str(rootfs), "."], timeout=1800)  # fmt: skip
    partial.rename(cached)


async def apply_recipe(recipe: Recipe, rootfs: Path, say: Say) -> None:
    """The recipe's files, then its commands, in the tree (chroot)."""
    for item in recipe.files:
        target = rootfs / item.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(item.content)
        target.chmod(item.mode)
    for command in recipe.commands:
        say(f"Running: {command}")
        try:
            await run(["chroot", str(rootfs), "/bin/sh", "-c", command], timeout=3600)
        except RunError as exc:
            raise BadRequest(f"Recipe command {command!r} failed: {exc.stderr.strip()}") from None


async def build_debian(
    version: str, work: Path, out: Path, say: Say = lambda _: None, recipe: Recipe | None = None
) -> Path:
    """A Debian image from a recipe (the built-in one by default) for ``version``."""
    recipe = recipe or builtin("debian", release=version)
    if version:
        recipe.release = version
    suite = DEBIAN_RELEASES.get(recipe.release)
    if suite is None:
        raise BadRequest(
            f"Unknown Debian release {recipe.release!r}: use one of "
            + ", ".join(sorted(DEBIAN_RELEASES))
        )
    rootfs = work / "rootfs"
    await bootstrap(recipe, suite, rootfs, say)
    finish_debian(rootfs, suite)
    await apply_recipe(recipe, rootfs, say)
    number = next(k for k, v in DEBIAN_RELEASES.items() if v == suite and k.isdigit())
    write_meta(work, metadata("Debian", number, recipe.description, recipe.variant))
    say("Packing the image")
    return await _pack(work, out)


def finish_debian(rootfs: Path, suite: str) -> None:
    """Make a debootstrapped tree a container image: no stale ids, caches or host names."""
    units = rootfs / "etc/systemd/system"
    units.mkdir(parents=True, exist_ok=True)
    for unit in ("sys-kernel-debug.mount", "systemd-journald-audit.socket"):
        link = units / unit
        if not link.exists() and not link.is_symlink():
            link.symlink_to("/dev/null")
    (rootfs / "etc/machine-id").write_text("")
    dbus_id = rootfs / "var/lib/dbus/machine-id"
    if dbus_id.exists() and not dbus_id.is_symlink():
        dbus_id.unlink()
    (rootfs / "etc/hostname").write_text("debian\n")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / cache).glob("*"):
            if entry.is_file() and entry.name not in ("lock",):
                entry.unlink()
    lines = [f"deb {debian_mirror()} {suite} main\n"]
    security = _security_mirror()
    if security:
        lines.append(f"deb {security} {suite}-security main\n")
    (rootfs / "etc/apt/sources.list").write_text("".join(lines))
