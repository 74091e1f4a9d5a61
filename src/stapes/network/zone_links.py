"""The zones a network's ``dns.zone.*`` keys attach it to, checked against the zones that
exist: at most one forward zone per project (each gives that project's view of the network's
addresses) and one reverse zone per family."""

from __future__ import annotations

from stapes.api.errors import BadRequest
from stapes.db import network_zones as zq
from stapes.db.connection import Database
from stapes.network import zones


def check_network_zones(db: Database, config: dict[str, str]) -> None:
    """The zones a network's dns.zone.* keys name exist; at most one forward zone per
    project (each gives that project's view of the network) and one reverse zone."""
    for key in zones.ZONE_KEYS:
        names = zones.zone_names(config, key)
        projects: set[str] = set()
        for name in names:
            zone = zq.find_zone(db, name)
            if zone is None:
                raise BadRequest(f'Invalid "{key}", network zone "{name}" not found')
            if zone.project in projects:
                raise BadRequest(f'Invalid "{key}", contains multiple zones from the same project')
            projects.add(zone.project)
            family = zones.is_reverse(name)
            if key == "dns.zone.forward" and family:
                raise BadRequest(f'Invalid "{key}", "{name}" is a reverse zone')
            if key != "dns.zone.forward" and family != int(key[-1]):
                raise BadRequest(f'Invalid "{key}", "{name}" is not an IPv{key[-1]} reverse zone')
        if key != "dns.zone.forward" and len(names) > 1:
            raise BadRequest(f'Invalid "{key}", only one reverse zone can be set')
