"""/1.0: the server's identity and environment (GET), and its config (PUT, PATCH)."""

from __future__ import annotations

import asyncio
import functools
import os
import platform
import socket
from pathlib import Path
from typing import Any

from aiohttp import web

import stapes
from stapes.api.errors import BadRequest, StapesError
from stapes.config.keys import without_empty
from stapes.config.server_keys import (
    DNS_KEY,
    METRICS_KEY,
    SYSLOG_KEY,
    server_value,
    validate_server_config,
)
from stapes.config.validate import parse_bool
from stapes.db.server_config import get_config, replace_config
from stapes.host.resources import resources as host_resources
from stapes.instance.vm.qemu import QemuDriver
from stapes.server import ui
from stapes.server.auth import identify
from stapes.server.endpoint import Action, Endpoint, check_etag, json_body, state
from stapes.server.extensions import API_EXTENSIONS
from stapes.server.http_policy import HttpPolicy
from stapes.server.loki import LokiSettings
from stapes.server.oidc import OidcSettings
from stapes.server.response import Result, Sync
from stapes.server.state import State
from stapes.storage.daemon_storage import DaemonStorage
from stapes.storage.drivers.registry import supported_recently


@functools.cache
def _os_release() -> dict[str, str]:
    """Read once, as Incus does at start (the OS changes under a daemon only by an upgrade,
    which restarts it)."""
    values: dict[str, str] = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            key, _, value = line.partition("=")
            values[key] = value.strip('"')
    except OSError:
        pass
    return values


def _architectures() -> list[str]:
    arch = platform.machine()
    return ["x86_64", "i686"] if arch == "x86_64" else [arch]


async def get_server(request: web.Request) -> Result:
    st = state(request)
    identity = identify(request)
    methods = ["tls", "oidc"] if st.oidc.settings.enabled else ["tls"]
    if not identity.trusted:
        oidc = st.oidc.settings
        public = {"oidc.issuer": oidc.issuer, "oidc.client.id": oidc.client_id}
        return Sync(
            {
                "config": public if oidc.enabled else {},
                "api_extensions": API_EXTENSIONS,
                "api_status": "stable",
                "api_version": "1.0",
                "auth": "untrusted",
                "public": False,
                "auth_methods": methods,
            }
        )
    pem, fingerprint = st.https.described()
    drivers = supported_recently()
    infos = [st.instances.drivers.get(t).info() for t in st.instances.drivers.types()]
    release = _os_release()
    environment: dict[str, Any] = {
        "addresses": st.trust.addresses() if st.https.address else [],
        "architectures": _architectures(),
        "certificate": pem,
        "certificate_fingerprint": fingerprint,
        "driver": " | ".join(d.name for d in infos),
        "driver_version": " | ".join(d.version for d in infos),
        "instance_types": [d.instance_type for d in infos],
        "vm_accelerator": vm_accelerator(st),
        "firewall": "nftables",
        "kernel": platform.system(),
        "kernel_architecture": platform.machine(),
        "kernel_features": {},
        "kernel_version": platform.release(),
        "lxc_features": {},
        "os_name": release.get("NAME", ""),
        "os_version": release.get("VERSION_ID", ""),
        "project": request.query.get("project", "") or "default",
        "server": "stapes",
        "server_clustered": st.membership.clustered,
        "server_event_mode": "full-mesh",
        "server_name": st.membership.name or socket.gethostname(),
        "server_pid": os.getpid(),
        "server_version": stapes.__version__,
        "storage": " | ".join(str(d["Name"]) for d in drivers),
        "storage_version": " | ".join(str(d["Version"]) for d in drivers),
        "storage_supported_drivers": drivers,
    }
    config = get_config(state(request).db)
    return Sync(
        {
            "config": config,
            "api_extensions": API_EXTENSIONS,
            "api_status": "stable",
            "api_version": "1.0",
            "auth": "trusted",
            "public": False,
            "auth_methods": methods,
            "auth_user_name": identity.name,
            "auth_user_method": identity.method,
            "environment": environment,
        },
        etag={"config": config},
    )


async def _config_change(request: web.Request) -> tuple[State, dict[str, str], dict[str, str]]:
    """(state, the stored config, the body's config), after the If-Match check."""
    st = state(request)
    current = get_config(st.db)
    check_etag(request, {"config": current})
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("config", {}), dict):
        raise BadRequest("Request body must be a JSON object with a config mapping")
    return st, current, body.get("config") or {}


async def put_server(request: web.Request) -> Result:
    st, _, config = await _config_change(request)
    await _store(st, without_empty(config))
    return Sync()


async def patch_server(request: web.Request) -> Result:
    st, current, config = await _config_change(request)
    await _store(st, without_empty({**current, **config}))
    return Sync()


async def _store(st: State, config: dict[str, str]) -> None:
    validate_server_config(config)
    storage = DaemonStorage(st.db, st.paths, st.pools)
    storage.check(config)
    await st.https.apply(config.get("core.https_address", ""))
    try:
        await st.metrics_https.apply(config.get(METRICS_KEY, ""))
    except StapesError:
        await st.https.apply(server_value(get_config(st.db), "core.https_address"))
        raise
    try:
        await st.dns.apply(config.get(DNS_KEY, ""))
    except StapesError:
        await st.https.apply(server_value(get_config(st.db), "core.https_address"))
        await st.metrics_https.apply(server_value(get_config(st.db), METRICS_KEY))
        raise
    st.oidc.configure(OidcSettings.from_config(config))
    await storage.apply(get_config(st.db), config)
    st.http_policy = HttpPolicy.from_config(config)
    if st.loki is not None:
        st.loki.configure(LokiSettings.from_config(config))
    if st.syslog is not None:
        try:
            await st.syslog.apply(parse_bool(config.get(SYSLOG_KEY) or "false"))
        except OSError as exc:
            raise BadRequest(f"{SYSLOG_KEY}: the syslog socket cannot be made: {exc}") from None
    with st.db.transaction():
        replace_config(st.db, config)
    st.events.lifecycle("config-updated", "/1.0")


async def get_root(request: web.Request) -> Result:
    if ui.wants_ui(request):
        return ui.redirect_to_ui()
    return Sync(["/1.0"])


async def get_resources(request: web.Request) -> Result:
    """The host's hardware (CPU, memory, disks, network cards...), as Incus reports it."""
    return Sync(await asyncio.to_thread(host_resources))


ENDPOINTS = [
    Endpoint("/resources", get=Action(get_resources)),
    Endpoint(
        "",
        get=Action(get_server, allow_untrusted=True),
        put=Action(put_server),
        patch=Action(patch_server),
    ),
]
ROOT = Endpoint("/", get=Action(get_root, allow_untrusted=True))


def vm_accelerator(st: State) -> str:
    """What VMs run on here: kvm, or tcg and why (``instances.vm.accelerator`` applied)."""
    driver = st.instances.drivers.get("virtual-machine")
    if not isinstance(driver, QemuDriver):
        return ""
    try:
        chosen = driver.accelerator()
    except StapesError as exc:
        return f"none ({exc.message})"
    return f"{chosen.name} ({chosen.why})" if chosen.why else chosen.name
