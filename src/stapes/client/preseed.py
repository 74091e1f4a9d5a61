"""``admin init``: setting a fresh daemon up, from answers or from a preseed (Incus's
InitPreseed: config, storage_pools, networks, projects, profiles), and dumping what a daemon
holds in that form. Applied through the ordinary API, as the incus client applies it, so a
preseed written for Incus applies unchanged."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from stapes.api.errors import RemoteError
from stapes.client.cluster import certificate_at, decode_token
from stapes.client.connection import Connection
from stapes.client.operation import RemoteOperation

DEFAULT_BRIDGE = "incusbr0"


def _exists(conn: Connection, path: str) -> bool:
    try:
        conn.request("GET", path)
    except RemoteError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _in(project: str) -> str:
    return f"?project={quote(project, safe='')}" if project else ""


def apply(conn: Connection, preseed: dict[str, Any]) -> None:
    """Make what the preseed names, or update it where it exists: server config first, then
    pools and networks (profiles use them), projects, and profiles; last its ``cluster``
    section (a new cluster, or a join: with a token alone, the cluster's address and
    certificate come from the token)."""
    if preseed.get("config"):
        conn.request("PATCH", "/1.0", json_body={"config": preseed["config"]})
    for pool in preseed.get("storage_pools") or []:
        name = quote(pool["name"], safe="")
        if _exists(conn, f"/1.0/storage-pools/{name}"):
            body = {"config": pool.get("config") or {}, "description": pool.get("description", "")}
            conn.request("PATCH", f"/1.0/storage-pools/{name}", json_body=body)
        else:
            conn.request("POST", "/1.0/storage-pools", json_body=pool)
    for network in preseed.get("networks") or []:
        network = dict(network)
        project = _in(network.pop("project", "") or "")
        name = quote(network["name"], safe="")
        if _exists(conn, f"/1.0/networks/{name}{project}"):
            body = {k: network[k] for k in ("config", "description") if k in network}
            conn.request("PATCH", f"/1.0/networks/{name}{project}", json_body=body)
        else:
            conn.request("POST", f"/1.0/networks{project}", json_body=network)
    for project in preseed.get("projects") or []:
        name = quote(project["name"], safe="")
        if _exists(conn, f"/1.0/projects/{name}"):
            body = {k: project[k] for k in ("config", "description") if k in project}
            conn.request("PATCH", f"/1.0/projects/{name}", json_body=body)
        else:
            conn.request("POST", "/1.0/projects", json_body=project)
    for profile in preseed.get("profiles") or []:
        profile = dict(profile)
        project = _in(profile.pop("project", "") or "")
        name = quote(profile["name"], safe="")
        if _exists(conn, f"/1.0/profiles/{name}{project}"):
            body = {k: profile.get(k) for k in ("config", "description", "devices")}
            conn.request("PUT", f"/1.0/profiles/{name}{project}", json_body=body)
        else:
            conn.request("POST", f"/1.0/profiles{project}", json_body=profile)
    cluster = preseed.get("cluster")
    if isinstance(cluster, dict) and cluster.get("enabled"):
        _cluster(conn, dict(cluster))


def _cluster(conn: Connection, put: dict[str, Any]) -> None:
    token = put.get("cluster_token")
    if token and not (put.get("cluster_address") and put.get("cluster_certificate")):
        fields = decode_token(str(token))
        put["cluster_address"] = put.get("cluster_address") or fields["addresses"][0]
        put["cluster_certificate"] = certificate_at(put["cluster_address"], fields["fingerprint"])
        put["server_name"] = put.get("server_name") or fields.get("server_name", "")
    if token and not put.get("server_address"):
        config = conn.request("GET", "/1.0").get("config", {})
        put["server_address"] = config.get("core.https_address", "")
    RemoteOperation(conn, conn.request("PUT", "/1.0/cluster", json_body=put)).wait()


def automatic(
    conn: Connection, *, backend: str = "dir", network: bool = True, nat: bool = True
) -> dict[str, Any]:
    """What ``admin init --auto`` sets up, as incus does: a ``default`` pool (``backend``) and
    the default profile's root disk on it; unless ``network`` is False (``--minimal``), a
    managed bridge with automatic addresses and the default profile's ``eth0`` on it. Only
    what is missing is made; returns the preseed applied."""
    preseed: dict[str, Any] = {"storage_pools": [], "networks": [], "profiles": []}
    if not _exists(conn, "/1.0/storage-pools/default"):
        preseed["storage_pools"].append({"name": "default", "driver": backend, "config": {}})
    profile = conn.request("GET", "/1.0/profiles/default")
    devices = dict(profile.get("devices") or {})
    if not any(d.get("type") == "disk" and d.get("path") == "/" for d in devices.values()):
        devices["root"] = {"type": "disk", "path": "/", "pool": "default"}
    managed = [n for n in conn.request("GET", "/1.0/networks?recursion=1") if n.get("managed")]
    if network and not managed:
        nat_value = "true" if nat else "false"
        config = {"ipv4.address": "auto", "ipv6.address": "auto",
                  "ipv4.nat": nat_value, "ipv6.nat": nat_value}  # fmt: skip
        preseed["networks"].append({"name": DEFAULT_BRIDGE, "type": "bridge", "config": config})
        if not any(d.get("type") == "nic" for d in devices.values()):
            devices["eth0"] = {"type": "nic", "network": DEFAULT_BRIDGE, "name": "eth0"}
    if devices != (profile.get("devices") or {}):
        preseed["profiles"].append(
            {"name": "default", "config": profile.get("config") or {},
             "description": profile.get("description", ""), "devices": devices}
        )  # fmt: skip
    apply(conn, preseed)
    return preseed


def dump(conn: Connection) -> dict[str, Any]:
    """The daemon's setup as a preseed (what ``admin init --dump`` prints)."""
    server = conn.request("GET", "/1.0")
    networks = [
        {"config": n["config"], "description": n["description"], "name": n["name"],
         "type": n["type"], "project": "default"}
        for n in conn.request("GET", "/1.0/networks?recursion=1")
        if n.get("managed")
    ]  # fmt: skip
    pools = [
        {"config": p["config"], "description": p["description"], "name": p["name"],
         "driver": p["driver"]}
        for p in conn.request("GET", "/1.0/storage-pools?recursion=1")
    ]  # fmt: skip
    profiles = [
        {"config": p["config"], "description": p["description"], "devices": p["devices"],
         "name": p["name"], "project": ""}
        for p in conn.request("GET", "/1.0/profiles?recursion=1")
    ]  # fmt: skip
    projects = [
        {"config": p["config"], "description": p["description"], "name": p["name"]}
        for p in conn.request("GET", "/1.0/projects?recursion=1")
    ]  # fmt: skip
    return {
        "config": server.get("config") or {},
        "networks": networks,
        "storage_pools": pools,
        "storage_volumes": [],
        "profiles": profiles,
        "projects": projects,
    }
