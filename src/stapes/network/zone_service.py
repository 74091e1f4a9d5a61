"""Network zones and their records: rows of a project (the one holding its zones:
``features.networks.zones``), names unique across projects; checked in full before they are
written. A zone's content is made when a peer asks for it, from the leases of the networks
whose ``dns.zone.*`` keys name it."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any

import dns.name
import dns.rrset

from stapes.api.errors import BadRequest, Conflict, Forbidden
from stapes.api.lifecycle import NetworkZoneAction
from stapes.api.network import (
    NetworkZonePut,
    NetworkZoneRecordPut,
    NetworkZoneRecordsPost,
    NetworkZonesPost,
)
from stapes.api.urls import network_url, zone_record_url, zone_url
from stapes.config import validate as v
from stapes.db import network_zones as zq
from stapes.db import networks as q
from stapes.db.connection import Database
from stapes.db.projects import feature_project
from stapes.network import zones
from stapes.network.service import Networks
from stapes.project.restrictions import check_zone
from stapes.runtime.events import EventBus


class NetworkZones:
    def __init__(self, db: Database, networks: Networks, events: EventBus) -> None:
        self.db = db
        self.networks = networks
        self.events = events
        self.on_change: Callable[[], None] = lambda: None
        """Told when zones change (the DNS server reloads its TSIG keys)."""

    def holder(self, project: str) -> str:
        """The project whose zones ``project`` sees (its own with features.networks.zones)."""
        return feature_project(self.db, project, "networks.zones")

    def list_zones(self, project: str | None) -> list[zq.ZoneRow]:
        if project is None:
            return zq.list_zones(self.db, None)
        return [z for z in zq.list_zones(self.db, self.holder(project)) if self._may(project, z)]

    def _may(self, project: str, zone: zq.ZoneRow) -> bool:
        try:
            check_zone(self.db, project, zone.name)
        except Forbidden:
            return False
        return True

    def get(self, project: str, name: str) -> zq.ZoneRow:
        """The zone as a client of ``project`` reaches it: a restricted project reaches only
        the zones restricted.networks.zones gives it, even among the default project's."""
        row = zq.get_zone(self.db, self.holder(project), name)
        check_zone(self.db, project, row.name)
        return row

    def _users(self, row: zq.ZoneRow) -> list[q.NetworkRow]:
        return [
            n
            for n in q.list_networks(self.db)
            if n.project == row.project
            and any(row.name in zones.zone_names(n.config, key) for key in zones.ZONE_KEYS)
        ]

    def render(self, row: zq.ZoneRow) -> dict[str, Any]:
        return {
            "name": row.name,
            "description": row.description,
            "config": row.config,
            "used_by": [network_url(n.name, n.project) for n in self._users(row)],
            "project": row.project,
        }

    @staticmethod
    def writable(row: zq.ZoneRow) -> dict[str, Any]:
        return {"config": row.config, "description": row.description}

    async def create(self, req: NetworkZonesPost, project: str) -> zq.ZoneRow:
        zones.check_zone_name(req.name)
        holder = self.holder(project)
        check_zone(self.db, project, req.name)
        config = {k: val for k, val in req.config.items() if val != ""}
        zones.check_zone_config(config)
        if zq.find_zone(self.db, req.name) is not None:
            raise Conflict("The network zone already exists")
        row = zq.ZoneRow(0, req.name, holder, req.description, config)
        with self.db.transaction():
            zq.insert_zone(self.db, row)
        self.on_change()
        self.events.lifecycle(NetworkZoneAction.CREATED, zone_url(row.name, holder), project=holder)
        return row

    async def update(self, row: zq.ZoneRow, put: NetworkZonePut) -> None:
        config = {k: val for k, val in put.config.items() if val != ""}
        zones.check_zone_config(config)
        row.description, row.config = put.description, config
        with self.db.transaction():
            zq.update_zone(self.db, row)
        self.on_change()
        self.events.lifecycle(
            NetworkZoneAction.UPDATED, zone_url(row.name, row.project), project=row.project
        )

    async def delete(self, row: zq.ZoneRow) -> None:
        if self._users(row):
            raise BadRequest("Cannot delete a zone that is in use")
        with self.db.transaction():
            zq.delete_zone(self.db, row.id)
        self.on_change()
        self.events.lifecycle(
            NetworkZoneAction.DELETED, zone_url(row.name, row.project), project=row.project
        )

    # -- records ------------------------------------------------------------------------------

    @staticmethod
    def render_record(record: zq.RecordRow) -> dict[str, Any]:
        entries = [
            {k: val for k, val in e.items() if not (k == "ttl" and not val)} for e in record.entries
        ]
        return {
            "name": record.name,
            "description": record.description,
            "entries": entries or None,
            "config": record.config,
        }

    @staticmethod
    def writable_record(record: zq.RecordRow) -> dict[str, Any]:
        rendered = NetworkZones.render_record(record)
        rendered.pop("name")
        return rendered

    @staticmethod
    def _checked(put: NetworkZoneRecordPut) -> tuple[list[dict[str, Any]], dict[str, str]]:
        config = {k: val for k, val in put.config.items() if val != ""}
        zones.check_record_config(config)
        entries = [e.model_dump() for e in put.entries]
        zones.check_entries(entries)
        return entries, config

    async def create_record(self, row: zq.ZoneRow, req: NetworkZoneRecordsPost) -> None:
        zones.check_record_name(req.name)
        entries, config = self._checked(req)
        if zq.find_record(self.db, row.id, req.name) is not None:
            raise Conflict("The network zone record already exists")
        record = zq.RecordRow(0, row.id, req.name, req.description, entries, config)
        with self.db.transaction():
            zq.insert_record(self.db, record)
        self.events.lifecycle(
            NetworkZoneAction.RECORD_CREATED,
            zone_record_url(row.name, record.name, row.project),
            project=row.project,
        )

    async def update_record(
        self, row: zq.ZoneRow, record: zq.RecordRow, put: NetworkZoneRecordPut
    ) -> None:
        record.entries, record.config = self._checked(put)
        record.description = put.description
        with self.db.transaction():
            zq.update_record(self.db, record)
        self.events.lifecycle(
            NetworkZoneAction.RECORD_UPDATED,
            zone_record_url(row.name, record.name, row.project),
            project=row.project,
        )

    async def delete_record(self, row: zq.ZoneRow, record: zq.RecordRow) -> None:
        with self.db.transaction():
            zq.delete_record(self.db, record.id)
        self.events.lifecycle(
            NetworkZoneAction.RECORD_DELETED,
            zone_record_url(row.name, record.name, row.project),
            project=row.project,
        )

    # -- content, for the DNS server ----------------------------------------------------------

    def keyring(self) -> dict[dns.name.Name, bytes]:
        return zones.peer_keyring((z.name, z.config) for z in zq.list_zones(self.db, None))

    def _hosts(self, zone: zq.ZoneRow) -> list[zones.Host]:
        include_nat = v.parse_bool(zone.config.get("network.nat") or "true")
        found: list[zones.Host] = []
        for network in q.list_networks(self.db):
            if not any(zone.name in zones.zone_names(network.config, k) for k in zones.ZONE_KEYS):
                continue
            natted = {
                f for f in (4, 6) if v.parse_bool(network.config.get(f"ipv{f}.nat") or "false")
            }
            families = {4, 6} if include_nat else {4, 6} - natted
            if zones.is_reverse(zone.name):
                # each forward zone of the network gives its project's view of the addresses
                views = [
                    (owner.project, forward)
                    for forward in zones.zone_names(network.config, "dns.zone.forward")
                    if (owner := zq.find_zone(self.db, forward)) is not None
                ]
            else:
                views = [(zone.project, "")]
            for project, forward in views:
                for lease in self.networks.leases(network, project):
                    try:
                        address = ipaddress.ip_address(lease["address"])
                    except ValueError:
                        continue
                    host = str(lease.get("hostname") or "")
                    if address.version in families and host:
                        found.append(zones.Host(f"{host}.{forward}." if forward else host, address))
        return found

    def content(self, name: str, full: bool) -> tuple[zq.ZoneRow, list[dns.rrset.RRset]] | None:
        """The zone called ``name`` and its records (all of them, or its SOA and NS)."""
        zone = zq.find_zone(self.db, name)
        if zone is None:
            return None
        serial = int(time.time())
        if not full:
            return zone, zones.soa(zone.name, zone.config, serial)
        records = [(r.name, r.entries) for r in zq.list_records(self.db, zone.id)]
        return zone, zones.content(zone.name, zone.config, self._hosts(zone), records, serial)
