"""The layout of $STAPES_DIR, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIR = Path("/var/lib/stapes")


def instance_entry(project: str, name: str) -> str:
    """The name an instance's own things carry on the host (its volume on the pool, its
    logs, devices and liblxc directories), as Incus names them: ``<name>`` in the default
    project, ``<project>_<name>`` elsewhere (project names hold no ``_``, instance names
    neither, so two instances never share one). Raises ValueError for a name that is not
    one path component."""
    for part in (project, name):
        if not part or "/" in part or "\0" in part or part in (".", ".."):
            raise ValueError(f"{part!r} cannot name a file of an instance")
    return name if project == "default" else project + "_" + name


def stapes_dir() -> Path:
    return Path(os.environ.get("STAPES_DIR", str(DEFAULT_DIR)))


def move_instance_dir(old: Path, new: Path) -> None:
    """An instance's directory (logs, devices) to its new name; what a deleted instance of
    that name left there goes first."""
    if not old.exists():
        return
    import shutil  # here: the CLI imports this module and never moves a directory

    shutil.rmtree(new, ignore_errors=True)
    old.rename(new)


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def socket(self) -> Path:
        return self.root / "unix.socket"

    @property
    def server_cert(self) -> Path:
        """The HTTPS listener's certificate (its key is server.key beside it)."""
        return self.root / "server.crt"

    @property
    def server_ca(self) -> Path:
        """A CA whose client certificates core.trust_ca_certificates trusts (Incus's PKI)."""
        return self.root / "server.ca"

    @property
    def server_crl(self) -> Path:
        """Certificates the CA revoked (PEM CRL), refused even when it signed them."""
        return self.root / "server.crl"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    @property
    def database(self) -> Path:
        return self.root / "database" / "stapes.db"

    @property
    def images(self) -> Path:
        """Image files as uploaded, named by fingerprint (plus ``.rootfs`` for split images)."""
        return self.root / "images"

    @property
    def containers(self) -> Path:
        """liblxc's lxcpath: one directory per container, a link to its volume on the pool."""
        return self.root / "containers"

    @property
    def storage_pools(self) -> Path:
        return self.root / "storage-pools"

    @property
    def disks(self) -> Path:
        """Loop files of pools that make their own (btrfs, lvm, zfs without a source)."""
        return self.root / "disks"

    @property
    def networks(self) -> Path:
        """One directory per managed network (dnsmasq's config, pid and leases)."""
        return self.root / "networks"

    @property
    def backups(self) -> Path:
        """Backup tarballs of instances and custom volumes, until deleted."""
        return self.root / "backups"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def instance_logs(self, project: str, name: str) -> Path:
        return self.logs / instance_entry(project, name)

    @property
    def devices(self) -> Path:
        """What devices make on the host for an instance (device nodes, TPM state)."""
        return self.root / "devices"

    def instance_devices(self, project: str, name: str) -> Path:
        return self.devices / instance_entry(project, name)

    @property
    def guestapi(self) -> Path:
        """The guest API's sockets, a directory per running container (/dev/incus in it)."""
        return self.root / "guestapi"

    def ensure(self) -> None:
        for path in (
            self.root,
            self.database.parent,
            self.images,
            self.containers,
            self.storage_pools,
            self.logs,
            self.devices,
            self.guestapi,
        ):
            if not path.is_symlink():  # images on a volume (storage.images_volume) stay so
                path.mkdir(parents=True, exist_ok=True)
        # as Incus keeps them: what belongs to instances is traversable (their own root walks
        # to its rootfs) but not listable; the logs, database and images are root's alone
        for path in (self.root, self.containers, self.storage_pools, self.devices, self.guestapi):
            path.chmod(0o711)
        for path in (self.database.parent, self.images, self.logs):
            if path.exists():
                path.chmod(0o700)
