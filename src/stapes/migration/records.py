"""Snapshots and id maps as the migration header carries them (Incus's protobuf ``Snapshot``
and ``IDMapType``), to and from this server's rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from stapes.api.architecture import ARCHITECTURE_IDS, architecture_name
from stapes.api.times import parse_timestamp, timestamp
from stapes.db import snapshots as sq
from stapes.host.idmap import IdMap
from stapes.migration import wire

_ARCH_IDS = {name: number for number, name in ARCHITECTURE_IDS.items()}


def unix_time(text: str) -> int:
    """A stored time as the header's seconds since the epoch (0 for none)."""
    try:
        when = parse_timestamp(text)
    except ValueError:
        return 0
    return int(when.timestamp()) if when else 0


NANOSECONDS_FROM = 10**14
"""Above this a header time is in nanoseconds (Incus sends volume snapshots' so) not seconds."""


def stored_time(value: int) -> str:
    """The header's time (seconds, or nanoseconds for volume snapshots) as a stored time ("" for
    none or nonsense)."""
    seconds = value / 1e9 if value > NANOSECONDS_FROM else value
    try:
        return timestamp(datetime.fromtimestamp(seconds, UTC)) if seconds > 0 else ""
    except (OverflowError, OSError, ValueError):
        return ""


def snapshot_message(snap: sq.SnapshotRow) -> Any:
    msg = wire.Snapshot(
        name=snap.name,
        profiles=snap.profiles,
        ephemeral=snap.ephemeral,
        architecture=_ARCH_IDS.get(snap.architecture, 0),
        stateful=snap.stateful,
        creation_date=unix_time(snap.created_at),
        last_used_date=unix_time(snap.last_used_at),
        expiry_date=unix_time(snap.expires_at),
        description=snap.description,
    )
    for key, value in snap.config.items():
        msg.localConfig.add(key=key, value=value)
    for name, device in snap.devices.items():
        entry = msg.localDevices.add(name=name)
        for key, value in device.items():
            entry.config.add(key=key, value=value)
    return msg


def snapshot_row(msg: Any, fallback_architecture: str) -> sq.SnapshotRow:
    """A snapshot row from the peer's description (its config and devices are checked by the
    caller, as a client's would be)."""
    try:
        architecture = architecture_name(msg.architecture) if msg.architecture else ""
    except ValueError:
        architecture = ""
    return sq.SnapshotRow(
        id=0,
        instance_id=0,
        name=msg.name,
        architecture=architecture or fallback_architecture,
        created_at=stored_time(msg.creation_date) or timestamp(datetime.now(UTC)),
        expires_at=stored_time(msg.expiry_date),
        last_used_at=stored_time(msg.last_used_date),
        description=msg.description,
        ephemeral=msg.ephemeral,
        stateful=msg.stateful,
        config={c.key: c.value for c in msg.localConfig},
        devices={d.name: {c.key: c.value for c in d.config} for d in msg.localDevices},
        profiles=list(msg.profiles),
    )


def idmap_entries(idmap: IdMap | None) -> list[Any]:
    if idmap is None:
        return []
    return [
        wire.IDMapType(
            isuid=e["Isuid"],
            isgid=e["Isgid"],
            hostid=e["Hostid"],
            nsid=e["Nsid"],
            maprange=e["Maprange"],
        )
        for e in json.loads(idmap.volatile())
    ]


def idmap_of(header: Any) -> IdMap | None:
    """The map the peer's files are shifted to (None: unshifted, a privileged instance)."""
    entries = [
        {
            "Isuid": e.isuid,
            "Isgid": e.isgid,
            "Hostid": e.hostid,
            "Nsid": e.nsid,
            "Maprange": e.maprange,
        }
        for e in header.idmap
    ]
    return IdMap.from_volatile(json.dumps(entries))
