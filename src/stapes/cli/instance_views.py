"""Instances as the CLI shows them, without click: `list`'s columns by incus's letters, a
snapshot list's rows and `info`'s text (the click commands and cli/fast.py print these)."""

from __future__ import annotations

from stapes.cli.tables import human_size, render_rows, when

TYPE_CHECKING = False  # not typing's: it imports re, a few ms of every fast command
if TYPE_CHECKING:
    from typing import Any

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


def row(instance: dict[str, Any], letters: str = DEFAULT_COLUMNS) -> list[str]:
    return [str(FIELDS[c][1](instance)) for c in letters]


def with_location(instances: list[dict[str, Any]], letters: str) -> str:
    """The default columns of a cluster's list end with LOCATION, as incus lists them."""
    if letters == DEFAULT_COLUMNS and any(i.get("location", "none") != "none" for i in instances):
        return letters + "L"
    return letters


def list_text(instances: list[dict[str, Any]], letters: str, fmt: str) -> str:
    letters = with_location(instances, letters)
    headers = [FIELDS[c][0] for c in letters]
    return render_rows(headers, [row(i, letters) for i in instances], instances, fmt)


SNAPSHOT_COLUMNS = ["NAME", "TAKEN AT", "EXPIRES AT", "STATEFUL"]


def snapshot_rows(snaps: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            s["name"],
            when(s["created_at"]),
            when(s["expires_at"]),
            "YES" if s["stateful"] else "NO",
        ]
        for s in snaps
    ]


def info_text(inst: dict[str, Any]) -> str:
    """`info NAME`: an instance (as GET ?recursion=1 with its state and snapshots) as text."""
    state = inst.get("state") or {}
    lines = [
        f"Name: {inst['name']}",
        f"Description: {inst['description']}",
        f"Status: {inst['status'].upper()}",
        f"Type: {inst['type']}",
        f"Architecture: {inst['architecture']}",
    ]
    if state.get("pid"):
        lines.append(f"PID: {state['pid']}")
    lines += [f"Created: {inst['created_at']}", f"Last Used: {inst['last_used_at']}"]
    if inst["status"] == "Running":
        memory = state.get("memory") or {}
        cpu = state.get("cpu") or {}
        lines += [
            "",
            "Resources:",
            f"  Processes: {state.get('processes', 0)}",
            f"  CPU usage:\n    CPU usage (in seconds): {cpu.get('usage', 0) // 10**9}",
            f"  Memory usage:\n    Memory (current): {human_size(memory.get('usage', 0))}",
        ]
        if memory.get("usage_peak"):
            lines.append(f"    Memory (peak): {human_size(memory['usage_peak'])}")
        network = state.get("network") or {}
        if network:
            lines.append("  Network usage:")
            for nic, data in network.items():
                counters = data.get("counters", {})
                lines += [
                    f"    {nic}:",
                    f"      Type: {data.get('type', '')}",
                    f"      State: {data.get('state', '').upper()}",
                    f"      Bytes received: {human_size(counters.get('bytes_received', 0))}",
                    f"      Bytes sent: {human_size(counters.get('bytes_sent', 0))}",
                ]
                for addr in data.get("addresses", []):
                    lines.append(
                        f"      IP address: {addr['address']}/{addr['netmask']} ({addr['scope']})"
                    )
    devices = inst.get("expanded_devices") or {}
    if devices:
        lines += ["", "Devices:"]
        for dev_name, device in sorted(devices.items()):
            details = ", ".join(f"{k}={v}" for k, v in sorted(device.items()) if k != "type")
            lines.append(f"  {dev_name} ({device.get('type', '')}): {details}")
    text = "\n".join(lines) + "\n"
    snaps = inst.get("snapshots") or []
    if snaps:
        text += "\nSnapshots:\n"
        text += render_rows(SNAPSHOT_COLUMNS, snapshot_rows(snaps), snaps, "table")
    return text
