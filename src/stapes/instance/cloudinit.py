"""cloud-init's NoCloud seed of a container: the files cloud-init reads at boot from
/var/lib/cloud/seed/nocloud-net, made from the cloud-init.* keys."""

from __future__ import annotations

import uuid
from pathlib import Path

from stapes.instance.rootfs_write import make_dirs, write_file

SEED_DIR = "/var/lib/cloud/seed/nocloud-net"
KEYS = ("cloud-init.user-data", "cloud-init.vendor-data", "cloud-init.network-config")
INSTANCE_ID = "volatile.cloud-init.instance-id"
EMPTY_CLOUD_CONFIG = "#cloud-config\n{}\n"


def new_instance_id() -> str:
    return str(uuid.uuid4())


def wanted(config: dict[str, str], has_cloud_init: bool) -> bool:
    return has_cloud_init or any(config.get(key) for key in KEYS)


def meta_data(name: str, config: dict[str, str]) -> str:
    """cloud-init's meta-data: the instance's id and host name, then user.meta-data."""
    head = f"instance-id: {config.get(INSTANCE_ID) or name}\nlocal-hostname: {name}\n"
    return head + config.get("user.meta-data", "")


def guest_meta_data(name: str, config: dict[str, str]) -> str:
    """meta-data as the guest API's /1.0/meta-data serves it."""
    return "#cloud-config\n" + meta_data(name, config)


def seed(name: str, config: dict[str, str]) -> dict[str, str]:
    """File name -> content, for SEED_DIR."""
    files = {
        "meta-data": meta_data(name, config),
        "user-data": config.get("cloud-init.user-data") or EMPTY_CLOUD_CONFIG,
        "vendor-data": config.get("cloud-init.vendor-data") or EMPTY_CLOUD_CONFIG,
    }
    if config.get("cloud-init.network-config"):
        files["network-config"] = config["cloud-init.network-config"]
    return files


def changed(old: dict[str, str], new: dict[str, str]) -> bool:
    """A change of cloud-init data gives the instance a new instance-id, so cloud-init runs it."""
    return any(old.get(key) != new.get(key) for key in KEYS)


async def write_seed(rootfs: Path, root_id: int, files: dict[str, str]) -> None:
    """Write the seed inside the rootfs (owned by the instance's root, user-data private)."""
    await make_dirs(rootfs, SEED_DIR, root_id)
    for name, content in files.items():
        mode = 0o600 if name == "user-data" else 0o644
        await write_file(rootfs, f"{SEED_DIR}/{name}", content.encode(), root_id, mode=mode)
