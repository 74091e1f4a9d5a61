"""list: instances as a table (by default NAME, STATE, IPV4, IPV6, TYPE, SNAPSHOTS; other
columns by incus's letters with -c) or json/yaml/csv."""

from __future__ import annotations

from typing import Any

import click

from stapes.cli.main import run
from stapes.cli.output import format_option, print_rows, when
from stapes.client.instance_server import InstanceServer

COLUMNS = ["NAME", "STATE", "IPV4", "IPV6", "TYPE", "SNAPSHOTS"]
DEFAULT_COLUMNS = "ns46tS"
NEEDS_FULL = set("46pSN")
"""Columns read from the runtime state or the snapshots: the list asks recursion=2 for them
(as incus: `-c ns` asks recursion=1)."""


def _addresses(instance: dict[str, Any], family: str) -> str:
    network = (instance.get("state") or {}).get("network") or {}
    found = []
    for nic, data in sorted(network.items()):
        if nic == "lo":
            continue
        found += [
            f"{addr['address']} ({nic})"
            for addr in data.get("addresses", [])
            if addr.get("family") == family and addr.get("scope") == "global"
        ]
    return "\n".join(found)


def _kind(instance: dict[str, Any]) -> str:
    kind = "CONTAINER" if instance["type"] == "container" else "VIRTUAL-MACHINE"
    return kind + (" (EPHEMERAL)" if instance.get("ephemeral") else "")


def _root_pool(instance: dict[str, Any]) -> str:
    devices = instance.get("expanded_devices") or {}
    for device in devices.values():
        if device.get("type") == "disk" and device.get("path") == "/":
            return str(device.get("pool", ""))
    return ""


def _while_running(instance: dict[str, Any], key: str) -> str:
    state = instance.get("state") or {}
    return str(state.get(key, "")) if (state.get("pid") or 0) > 0 else ""


FIELDS: dict[str, tuple[str, Any]] = {
    "n": ("NAME", lambda i: i["name"]),
    "s": ("STATE", lambda i: i["status"].upper()),
    "4": ("IPV4", lambda i: _addresses(i, "inet")),
    "6": ("IPV6", lambda i: _addresses(i, "inet6")),
    "t": ("TYPE", _kind),
    "S": ("SNAPSHOTS", lambda i: str(len(i.get("snapshots") or []))),
    "d": ("DESCRIPTION", lambda i: i.get("description", "")),
    "p": ("PID", lambda i: _while_running(i, "pid")),
    "N": ("PROCESSES", lambda i: _while_running(i, "processes")),
    "c": ("CREATED AT", lambda i: when(i.get("created_at", ""))),
    "l": ("LAST USED AT", lambda i: when(i.get("last_used_at", ""))),
    "b": ("STORAGE POOL", _root_pool),
    "P": ("PROFILES", lambda i: "\n".join(i.get("profiles") or [])),
    "e": ("PROJECT", lambda i: i.get("project", "")),
    "a": ("ARCHITECTURE", lambda i: i.get("architecture", "")),
    "f": ("BASE IMAGE", lambda i: (i.get("config") or {}).get("volatile.base_image", "")[:12]),
    "L": ("LOCATION", lambda i: i.get("location", "")),
}
"""incus list's column letters that Stapes knows: header and value."""


def columns_of(spec: str) -> str:
    letters = spec.replace(",", "")
    unknown = sorted({c for c in letters if c not in FIELDS})
    if unknown:
        raise click.BadParameter(
            f"Unknown column shorthand char {unknown[0]!r} in {spec!r} (known: {''.join(FIELDS)})",
            param_hint="--columns",
        )
    return letters


def row(instance: dict[str, Any], letters: str = DEFAULT_COLUMNS) -> list[str]:
    return [str(FIELDS[c][1](instance)) for c in letters]


def _list(
    server: InstanceServer, fmt: str, filters: tuple[str, ...], all_projects: bool, letters: str
) -> None:
    if "L" in letters and not server.server().get("environment", {}).get("server_clustered"):
        raise click.UsageError("Can't specify column L when not clustered")  # incus's words
    clauses = []
    for item in filters:
        key, sep, value = item.partition("=")
        clauses.append(f"{key} eq {value}" if sep else f"name eq {item}.*")
    instances = server.instances(
        recursion=2 if NEEDS_FULL & set(letters) else 1,
        filter=" and ".join(clauses),
        all_projects=all_projects,
    )
    if letters == DEFAULT_COLUMNS and any(i.get("location", "none") != "none" for i in instances):
        letters += "L"  # a cluster's: where each instance is, as incus lists them
    headers = [FIELDS[c][0] for c in letters]
    print_rows(headers, [row(i, letters) for i in instances], instances, fmt)


@click.command(name="list")
@click.argument("filters", nargs=-1)
@format_option
@click.option(
    "--columns", "-c", default=DEFAULT_COLUMNS, show_default=True,
    help="Columns by incus's letters: n s 4 6 t S d p N c l b P e a f L",
)  # fmt: skip
@click.option("--all-projects", is_flag=True, help="List instances of every project")
def list_command(filters: tuple[str, ...], fmt: str, columns: str, all_projects: bool) -> None:
    """List instances. FILTERS: a name prefix, or key=value (status=Running, config.user.x=y)."""
    letters = columns_of(columns)
    run(lambda s: _list(s, fmt, filters, all_projects, letters))


COMMANDS = [list_command]
