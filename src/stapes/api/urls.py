"""The API paths of entities, as used_by lists and Location headers give them."""

from __future__ import annotations


def _in(project: str) -> str:
    return "" if project == "default" else f"?project={project}"


def instance_url(name: str, project: str = "default") -> str:
    return f"/1.0/instances/{name}{_in(project)}"


def project_url(name: str) -> str:
    return f"/1.0/projects/{name}"


def profile_url(name: str, project: str = "default") -> str:
    return f"/1.0/profiles/{name}{_in(project)}"


def network_url(name: str, project: str = "default") -> str:
    return f"/1.0/networks/{name}{_in(project)}"


def forward_url(network: str, listen_address: str) -> str:
    return f"/1.0/networks/{network}/forwards/{listen_address}"


def certificate_url(fingerprint: str) -> str:
    return f"/1.0/certificates/{fingerprint}"


def warning_url(uuid: str) -> str:
    return f"/1.0/warnings/{uuid}"


def acl_url(name: str, project: str = "default") -> str:
    return f"/1.0/network-acls/{name}{_in(project)}"


def pool_url(name: str) -> str:
    return f"/1.0/storage-pools/{name}"


def volume_url(pool: str, vol_type: str, name: str, project: str = "default") -> str:
    return f"/1.0/storage-pools/{pool}/volumes/{vol_type}/{name}{_in(project)}"


def volume_snapshot_url(
    pool: str, vol_type: str, name: str, snap: str, project: str = "default"
) -> str:
    return f"/1.0/storage-pools/{pool}/volumes/{vol_type}/{name}/snapshots/{snap}{_in(project)}"


def zone_url(name: str, project: str = "default") -> str:
    return f"/1.0/network-zones/{name}{_in(project)}"


def zone_record_url(zone: str, name: str, project: str = "default") -> str:
    return f"/1.0/network-zones/{zone}/records/{name}{_in(project)}"
