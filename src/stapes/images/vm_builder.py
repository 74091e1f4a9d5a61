"""VM images, offline: the Debian cloud kernel (from the host's apt mirror), a busybox
initramfs that loads the virtio modules and switches to the disk, and the disk. Written as a
split Incus VM image: a metadata tarball (metadata.yaml, templates/) and a qcow2 disk.

The busybox image carries boot/ (vmlinuz, initrd.img, cmdline) in its metadata and is booted by
direct kernel boot (no firmware, a few seconds under TCG): Stapes' extension to the format,
ignored by Incus. The Debian image is a GPT disk with an EFI system partition, booted through
UEFI as Incus boots its images (Incus itself is not tried here: it needs KVM)."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from stapes.api.errors import BadRequest, MissingHostFeature
from stapes.host import mounts
from stapes.host.run import RunError, run
from stapes.images import builder
from stapes.images.recipe import Recipe, builtin

KERNEL_PACKAGE = "linux-image-cloud-amd64"
KERNEL_CACHE = Path("/var/cache/stapes/kernels")

MODULES = (
    "virtio_pci",
    "virtio_blk",
    "virtio_console",
    "virtio_rng",
    "virtio_net",
    "button",
    "evdev",
    "isofs",
    "virtio_scsi",
    "sr_mod",
)
"""Loaded by the initramfs, after what each depends on (those built in are skipped)."""

INITRAMFS_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do insmod /modules/$m 2>/dev/null; done
root=/dev/vda
for arg in $(cat /proc/cmdline); do case $arg in root=*) root=${arg#root=};; esac; done
i=0
while [ ! -b $root ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
mkdir -p /newroot
mount -o rw $root /newroot || { echo "stapes initramfs: cannot mount $root"; exec sh; }
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /sbin/init
"""

RC_S = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /run /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
hostname -F /etc/hostname
ip link set lo up
for e in /sys/class/input/event*; do
  if grep -q "Power Button" "$e/device/name" 2>/dev/null; then
    # the ACPI power button (QEMU's system_powerdown): power off cleanly
    (head -c 1 "/dev/input/${e##*/}" >/dev/null && poweroff) &
  fi
done
for n in /sys/class/net/eth*; do
  [ -e "$n" ] || continue
  ip link set "${n##*/}" up
  # in the background: boot goes on while DHCP answers (or never does)
  udhcpc -f -S -i "${n##*/}" -s /etc/udhcpc.script -t 0 -T 2 >/dev/null 2>&1 &
done
/etc/rc.agent &
echo "stapes-vm: ready"
"""

RC_AGENT = """#!/bin/sh
# The Stapes agent, from the config drive stapesd attaches (an ISO 9660 volume labelled cidata)
mkdir -p /run/config
while true; do
  for dev in /dev/vd*; do
    mount -t iso9660 -o ro "$dev" /run/config 2>/dev/null || continue
    [ -f /run/config/stapes-agent/guest.py ] && break
    umount /run/config
  done
  [ -f /run/config/stapes-agent/guest.py ] && break
  sleep 1
done
name=$(sed -n 's/^local-hostname: //p' /run/config/meta-data)
[ -n "$name" ] && hostname "$name"
while true; do
  python3 -I -S -B /run/config/stapes-agent/guest.py
  sleep 1
done
"""

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    ;;
esac
"""


async def debian_kernel(say: builder.Say) -> Path:
    """The unpacked Debian cloud kernel package (boot/vmlinuz-*, lib/modules/*), downloaded
    once from the host's apt mirror into /var/cache/stapes/kernels."""
    try:
        _, out, _ = await run(["apt-cache", "depends", KERNEL_PACKAGE])
    except (RunError, FileNotFoundError) as exc:
        raise MissingHostFeature(
            f"apt cannot find {KERNEL_PACKAGE} (run apt-get update): {exc}"
        ) from None
    package = next(
        (
            line.split()[1]
            for line in out.decode().splitlines()
            if line.strip().startswith("Depends: linux-image-")
        ),
        "",
    )
    if not package:
        raise MissingHostFeature(f"apt knows no kernel package behind {KERNEL_PACKAGE}")
    return await debian_package(package, say)


async def debian_package(package: str, say: builder.Say) -> Path:
    """A Debian package from the host's apt mirror, unpacked (not installed) once per version
    into /var/cache/stapes/kernels/PACKAGE_VERSION."""
    try:
        _, out, _ = await run(["apt-cache", "policy", package])
    except (RunError, FileNotFoundError) as exc:
        raise MissingHostFeature(f"apt cannot find {package}: {exc}") from None
    version = next(
        (ln.split()[1] for ln in out.decode().splitlines() if ln.strip().startswith("Candidate:")),
        "(none)",
    )
    if version == "(none)":
        raise MissingHostFeature(f"apt has no {package} to download (run apt-get update)")
    tree = KERNEL_CACHE / f"{package}_{version.replace(':', '%3a')}"
    if tree.is_dir():
        return tree
    say(f"Downloading {package} from the Debian mirror")
    download = KERNEL_CACHE / "download"
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    try:
        try:
            await run(["apt-get", "download", "-q", package], cwd=str(download), timeout=600)
        except RunError as exc:
            raise MissingHostFeature(
                f"apt cannot download {package} (run apt-get update): {exc}"
            ) from None
        (deb,) = download.glob("*.deb")
        partial = tree.with_name(f"{tree.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        await run(["dpkg-deb", "-x", str(deb), str(partial)], timeout=600)
        partial.rename(tree)
    finally:
        shutil.rmtree(download, ignore_errors=True)
    return tree


async def make_initramfs(kernel_tree: Path, out: Path) -> None:
    """A gzipped newc cpio: static busybox, the virtio modules, an init that mounts root=."""
    work = out.with_suffix(".d")
    shutil.rmtree(work, ignore_errors=True)
    for d in ("bin", "dev", "proc", "sys", "modules"):
        (work / d).mkdir(parents=True)
    shutil.copy2(builder.find_busybox(), work / "bin" / "busybox")
    (work / "init").write_text(INITRAMFS_INIT)
    (work / "init").chmod(0o755)
    (modules_root,) = (kernel_tree / "lib" / "modules").iterdir()
    order = module_order(modules_root, MODULES)
    for source in order:
        shutil.copy2(source, work / "modules" / source.name)
    order_names = [p.name for p in order]
    (work / "modules.order").write_text("\n".join(order_names) + "\n")
    names = sorted(str(p.relative_to(work)) for p in work.rglob("*"))
    listing = ("\n".join(names) + "\n").encode()
    _, archive, _ = await run(["busybox", "cpio", "-o", "-H", "newc"], input=listing, cwd=str(work))
    _, packed, _ = await run(["gzip", "-1", "-c"], input=archive)
    out.write_bytes(packed)
    shutil.rmtree(work, ignore_errors=True)


def _module_name(path: Path) -> str:
    return path.name.removesuffix(".ko").replace("-", "_")


def _depends(path: Path) -> list[str]:
    """The ``depends=`` of a module's .modinfo section (no modinfo binary needed)."""
    data = path.read_bytes()
    at = data.find(b"\0depends=")
    if at < 0:
        return []
    value = data[at + 9 : data.index(b"\0", at + 9)].decode()
    return [d.replace("-", "_") for d in value.split(",") if d]


def module_order(modules_root: Path, wanted: tuple[str, ...]) -> list[Path]:
    """The module files for ``wanted`` and everything they need, dependencies first."""
    index = {_module_name(p): p for p in modules_root.rglob("*.ko")}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in index:
            return  # built into the kernel, or already placed
        seen.add(name)
        for dep in _depends(index[name]):
            visit(dep)
        order.append(index[name])

    for name in wanted:
        visit(name)
    return order


async def make_disk(rootfs: Path, qcow2: Path, size_mib: int) -> None:
    """A qcow2 disk that is one ext4 filesystem (labelled root) holding ``rootfs``."""
    raw = qcow2.with_suffix(".raw")
    await _ext4(rootfs, raw, size_mib)
    await _to_qcow2(raw, qcow2)


ESP_MIB = 64
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
"""GPT partition types: the EFI system partition, a Linux x86-64 root."""
EFI_ROOT = "/dev/vda2"
"""Where the root filesystem is in a VM booted from a disk of make_efi_disk."""

GRUB_CFG = """set timeout=0
linux /vmlinuz {cmdline}
initrd /initrd.img
boot
"""


async def efi_loaders(say: builder.Say) -> tuple[Path, Path]:
    """Debian's signed shim and GRUB (from shim-signed and grub-efi-amd64-signed): a disk that
    boots through them passes UEFI secure boot with Microsoft's keys, as Debian's own do."""
    shim = await debian_package("shim-signed", say)
    grub = await debian_package("grub-efi-amd64-signed", say)
    return (
        shim / "usr/lib/shim/shimx64.efi.signed",
        grub / "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
    )


async def make_efi_disk(rootfs: Path, qcow2: Path, root_mib: int, esp: dict[str, Path]) -> None:
    """A qcow2 disk with a GPT: an EFI system partition (FAT) holding ``esp`` (path on the
    partition -> file), then the root partition, ext4 labelled root, holding ``rootfs``."""
    for tool, package in (("sfdisk", "fdisk"), ("mkfs.vfat", "dosfstools"), ("mcopy", "mtools")):
        if shutil.which(tool) is None:
            raise MissingHostFeature(f"{tool} is missing: install Debian's {package}")
    esp_img = qcow2.with_name("esp.img")
    root_img = qcow2.with_name("root.img")
    raw = qcow2.with_suffix(".raw")
    try:
        await run(["mkfs.vfat", "-C", "-n", "ESP", str(esp_img), str(ESP_MIB * 1024)])
        folders = {p for target in esp for p in Path(target).parents if str(p) != "."}
        for folder in sorted(folders, key=lambda p: len(p.parts)):
            await run(["mmd", "-i", str(esp_img), f"::/{folder}"])
        for target, source in esp.items():
            await run(["mcopy", "-i", str(esp_img), str(source), f"::/{target}"])
        await _ext4(rootfs, root_img, root_mib)
        with open(raw, "wb") as f:
            f.truncate((1 + ESP_MIB + root_mib + 1) * 1024**2)
        table = (
            "label: gpt\nfirst-lba: 2048\n"
            f"start=2048, size={ESP_MIB * 2048}, type={ESP_TYPE}, name=ESP\n"
            f"start={(1 + ESP_MIB) * 2048}, size={root_mib * 2048}, type={ROOT_TYPE}, name=root\n"
        )
        await run(
            ["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(raw)], input=table.encode()
        )
        for image, at_mib in ((esp_img, 1), (root_img, 1 + ESP_MIB)):
            await run(["dd", f"if={image}", f"of={raw}", "bs=1M", f"seek={at_mib}",
                       "conv=notrunc,sparse", "status=none"], timeout=600)  # fmt: skip
        await _to_qcow2(raw, qcow2)
    finally:
        for leftover in (esp_img, root_img, raw):
            leftover.unlink(missing_ok=True)


async def _ext4(rootfs: Path, out: Path, size_mib: int) -> None:
    await run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(rootfs), str(out), f"{size_mib}M"])


async def _to_qcow2(raw: Path, qcow2: Path) -> None:
    await run(["qemu-img", "convert", "-c", "-O", "qcow2", str(raw), str(qcow2)], timeout=600)
    raw.unlink()


STDLIB_LEFT_OUT = (
    "config-*", "test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip",
    "pydoc_data", "distutils", "site-packages", "dist-packages",
)  # fmt: skip
"""Parts of Debian's standard library the guest agent and small scripts never need."""


async def copy_python(rootfs: Path) -> None:
    """Debian's python3 for the agent: the interpreter, its standard library (compiled, less
    STDLIB_LEFT_OUT) and the shared libraries they load, at the host's paths."""
    python = Path("/usr/bin/python3")
    if not python.exists():
        raise MissingHostFeature("/usr/bin/python3 is missing: install Debian's python3")
    interpreter = python.resolve()
    _, out, _ = await run([str(python), "-I", "-S", "-c", "import os; print(os.__file__)"])
    stdlib = Path(out.decode().strip()).parent
    await run([str(python), "-I", "-S", "-m", "compileall", "-q", "-x", "/test/", str(stdlib)],
              check=False, timeout=600)  # fmt: skip
    shutil.copytree(
        stdlib,
        rootfs / str(stdlib).lstrip("/"),
        symlinks=True,
        ignore=shutil.ignore_patterns(*STDLIB_LEFT_OUT),
    )
    files: set[Path] = {interpreter}
    for binary in [interpreter, *stdlib.glob("lib-dynload/*.so")]:
        _, deps, _ = await run(["ldd", str(binary)], check=False)
        for line in deps.decode().splitlines():
            path = next((w for w in line.split() if w.startswith("/")), "")
            if path:
                files.add(Path(path).resolve())
                files.add(Path(path))
    for source in sorted(files):
        target = rootfs / str(source).lstrip("/")
        if source.exists() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source.resolve(), target)
    link = rootfs / "usr" / "bin" / "python3"
    link.unlink(missing_ok=True)
    link.symlink_to(interpreter.name)


def _tree_mib(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                total += os.path.getsize(full)
    return total // 1024**2


async def build_debian_vm(
    version: str, work: Path, say: builder.Say, recipe: Recipe | None = None
) -> tuple[Path, Path]:
    """(metadata tarball, qcow2 disk) of a Debian VM: the recipe's ``vm`` variant (udev, dbus,
    python3 and the agent's unit), the mirror's cloud kernel with its modules and the busybox
    initramfs, booted through UEFI (secure boot included) as Incus boots its images."""
    for tool in ("qemu-img", "mkfs.ext4"):
        if shutil.which(tool) is None:
            raise MissingHostFeature(f"{tool} is missing: install qemu-utils and e2fsprogs")
    recipe = recipe or builtin("debian", "vm", version)
    if version:
        recipe.release = version
    suite = builder.DEBIAN_RELEASES.get(recipe.release)
    if suite is None:
        raise BadRequest(f"Unknown Debian release {recipe.release!r}")
    kernel_tree = await debian_kernel(say)
    rootfs = work / "disk" / "rootfs"
    try:
        await builder.bootstrap(recipe, suite, rootfs, say)
        builder.finish_debian(rootfs, suite)
        await builder.apply_recipe(recipe, rootfs, say)
    finally:
        mounts.unmount_below(rootfs)
    say("Adding the kernel's modules")
    await run(["cp", "-a", str(kernel_tree / "lib" / "modules"), str(rootfs / "lib")])
    number = next(k for k, v in builder.DEBIAN_RELEASES.items() if v == suite and k.isdigit())
    meta = builder.metadata("Debian", number, recipe.description, "vm")
    cmdline = f"console=ttyS0 root={EFI_ROOT} rw net.ifnames=0 quiet"
    size = _tree_mib(rootfs) * 3 // 2 + 512
    return await _pack_vm(work, kernel_tree, rootfs, meta, cmdline, size, say, efi=True)


async def build_busybox_vm(work: Path, say: builder.Say) -> tuple[Path, Path]:
    """(metadata tarball, qcow2 disk) of a busybox VM that boots in seconds under TCG."""
    for tool in ("qemu-img", "mkfs.ext4"):
        if shutil.which(tool) is None:
            raise MissingHostFeature(f"{tool} is missing: install qemu-utils and e2fsprogs")
    kernel_tree = await debian_kernel(say)
    rootfs_work = work / "disk"
    rootfs_work.mkdir()
    await builder.build_busybox_tree(rootfs_work / "rootfs")
    rootfs = rootfs_work / "rootfs"
    (rootfs / "etc" / "inittab").write_text(
        "::sysinit:/etc/init.d/rcS\nttyS0::respawn:/bin/sh -l\n::shutdown:/bin/umount -a -r\n"
    )
    (rootfs / "etc" / "init.d").mkdir(exist_ok=True)
    say("Adding python3 for the agent")
    await copy_python(rootfs)
    scripts = (
        ("etc/init.d/rcS", RC_S),
        ("etc/rc.agent", RC_AGENT),
        ("etc/udhcpc.script", UDHCPC_SCRIPT),
    )
    for path, text in scripts:
        (rootfs / path).write_text(text)
        (rootfs / path).chmod(0o755)
    release = kernel_tree.name.removeprefix("linux-image-").split("_")[0]
    meta = builder.metadata("busybox", release, f"busybox VM (kernel {release})", "vm")
    size = max(64, _tree_mib(rootfs) * 2 + 32)
    return await _pack_vm(work, kernel_tree, rootfs, meta, "root=/dev/vda rw quiet", size, say)


async def _pack_vm(
    work: Path,
    kernel_tree: Path,
    rootfs: Path,
    meta: dict[str, object],
    cmdline: str,
    disk_mib: int,
    say: builder.Say,
    *,
    efi: bool = False,
) -> tuple[Path, Path]:
    """The metadata tarball (metadata.yaml, templates/) and the qcow2 disk of ``rootfs``, with
    the kernel, an initramfs and the command line either in the tarball's boot/ (direct kernel
    boot) or, ``efi``, on the disk's EFI system partition behind Debian's shim and GRUB."""
    (vmlinuz,) = (kernel_tree / "boot").glob("vmlinuz-*")
    meta_dir = work / "meta"
    boot = meta_dir / "boot"
    boot.mkdir(parents=True)
    say("Making the initramfs")
    await make_initramfs(kernel_tree, boot / "initrd.img")
    builder.write_meta(meta_dir, meta)
    say("Making the disk")
    disk = work / "rootfs.img"
    if efi:
        shim, grub = await efi_loaders(say)
        grub_cfg = boot / "grub.cfg"
        grub_cfg.write_text(GRUB_CFG.format(cmdline=cmdline))
        esp = {
            "EFI/BOOT/BOOTX64.EFI": shim,
            "EFI/BOOT/grubx64.efi": grub,
            "EFI/debian/grub.cfg": grub_cfg,
            "vmlinuz": vmlinuz,
            "initrd.img": boot / "initrd.img",
        }
        await make_efi_disk(rootfs, disk, disk_mib, esp)
        shutil.rmtree(boot)
    else:
        shutil.copy2(vmlinuz, boot / "vmlinuz")
        (boot / "cmdline").write_text(cmdline + "\n")
        await make_disk(rootfs, disk, disk_mib)
    tarball = work / "metadata.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name in ("metadata.yaml", "templates", "boot"):
            if (meta_dir / name).exists():
                tar.add(meta_dir / name, arcname=name)
    return tarball, disk
