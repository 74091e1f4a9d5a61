"""Managed networks: the rows, their drivers, and who uses them. A network that fails to come
up at daemon start stays recorded with its error (status Errored) and the daemon serves on."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stapes.api.errors import BadRequest, Conflict, StapesError
from stapes.api.lifecycle import NetworkAction
from stapes.api.network import NetworkPut, NetworksPost
from stapes.api.urls import instance_url, network_url, profile_url
from stapes.config import validate as v
from stapes.config.keys import check_keys
from stapes.db import networks as q
from stapes.db.connection import Database
from stapes.db.instances import InstanceRow, list_instances
from stapes.db.projects import expand_profiles, feature_project, list_profiles, list_projects
from stapes.host.paths import Paths
from stapes.network import dnsmasq, policy
from stapes.network.dnsmasq import StaticLease
from stapes.network.drivers.driver import NetworkDriver, bridge_state, link_state
from stapes.network.host_interfaces import HostInterface, find_host_interface, host_interfaces
from stapes.network.registry import network_type
from stapes.network.zone_links import check_network_zones
from stapes.project.limits import check_network_limit
from stapes.runtime.events import EventBus
from stapes.runtime.warnings import Warnings

UNAVAILABLE = "Network unavailable"
PENDING = "Pending"

log = logging.getLogger(__name__)


def validate_config(cls: type[NetworkDriver], config: dict[str, str]) -> None:
    check_keys(config, cls.KEYS, "network")


def _lease(
    address: str, hostname: str, hwaddr: str, kind: str, location: str = "none"
) -> dict[str, Any]:
    return {
        "address": address,
        "hostname": hostname,
        "hwaddr": hwaddr,
        "location": location,
        "type": kind,
    }


def eui64(network: ipaddress.IPv6Network, hwaddr: str) -> str:
    """The SLAAC address a MAC takes in a /64: its EUI-64 interface id."""
    octets = bytearray(int(x, 16) for x in hwaddr.split(":"))
    octets[0] ^= 0x02
    iid = bytes(octets[:3]) + b"\xff\xfe" + bytes(octets[3:])
    return str(network.network_address + int.from_bytes(iid, "big"))


class Networks:
    def __init__(self, db: Database, paths: Paths, events: EventBus, warnings: Warnings) -> None:
        self.db = db
        self.paths = paths
        self.events = events
        self.warnings = warnings
        self._errors: dict[str, str] = {}

    def driver(self, row: q.NetworkRow) -> NetworkDriver:
        return network_type(row.type)(
            row.name, dict(row.config), self._directory(row.name), policy.build(self.db, row)
        )

    async def apply_policy(self, row: q.NetworkRow) -> None:
        """Forwards or ACLs of the network changed: rebuild its firewall."""
        await self.driver(row).apply_policy()

    def _directory(self, name: str) -> Path:
        return self.paths.networks / name

    def check_address(self, name: str, address: str, project: str = "default") -> None:
        """A NIC's static ``ipv4.address``/``ipv6.address`` must be a host address of its
        network's subnet (not the bridge's own); IPv6 ones need stateful DHCPv6."""
        row = q.find_network(self.db, name, project)
        if row is None:
            raise BadRequest(f"Network {name!r} does not exist")
        wanted = ipaddress.ip_address(address)
        key = f"ipv{wanted.version}.address"
        bridge = row.config.get(key, "none")
        if bridge in ("none", ""):
            raise BadRequest(
                f"Network {name!r} has no IPv{wanted.version} subnet for {key} {address}"
            )
        if wanted.version == 6 and not v.parse_bool(row.config.get("ipv6.dhcp.stateful", "false")):
            raise BadRequest(
                f"ipv6.address needs stateful DHCPv6 on network {name!r} (ipv6.dhcp.stateful=true)"
            )
        iface = ipaddress.ip_interface(bridge)
        net = iface.network
        if wanted not in net or wanted in (iface.ip, net.network_address, net.broadcast_address):
            raise BadRequest(f"{key} {address} is not a free host address of {net}")

    def _nics(self, name: str) -> Iterator[tuple[InstanceRow, str, dict[str, str], str]]:
        """Every NIC on the network: (its instance, device name, config, MAC or "")."""
        for inst in list_instances(self.db, None):
            devices = expand_profiles(
                self.db, inst.project, inst.profiles, inst.config, inst.devices
            )[1]
            for dev, conf in devices.items():
                if conf.get("type") != "nic" or conf.get("network") != name:
                    continue
                hwaddr = conf.get("hwaddr") or inst.config.get(f"volatile.{dev}.hwaddr", "")
                yield inst, dev, conf, hwaddr

    def check_mac(self, name: str, hwaddr: str, instance: tuple[str, str], device: str) -> None:
        """A NIC's MAC must be its own on the network (as Incus checks at start)."""
        for inst, dev, _, other in self._nics(name):
            if (inst.project, inst.name, dev) == (*instance, device):
                continue
            if other.lower() == hwaddr.lower():
                raise BadRequest(f"MAC address {hwaddr!r} already defined on another NIC")

    def reservations(self, name: str) -> list[StaticLease]:
        """The static leases of every NIC on the network with an ipv4/ipv6.address."""
        found = []
        for inst, _, conf, hwaddr in self._nics(name):
            ipv4, ipv6 = conf.get("ipv4.address", ""), conf.get("ipv6.address", "")
            if not (ipv4 or ipv6) or not hwaddr:
                continue
            lease = StaticLease(hwaddr, ipv4, ipv6, inst.name)
            try:
                dnsmasq.hosts_line(lease)
            except BadRequest as exc:  # one bad record must not cost the others theirs
                log.warning("static lease of %s skipped: %s", inst.name, exc.message)
                continue
            found.append(lease)
        return found

    def refresh_reservations(
        self, name: str, starting: StaticLease, project: str = "default"
    ) -> None:
        """Rewrite dnsmasq's hosts file of the network from the instances (and the NIC being
        started, whose MAC is not recorded yet) and reload it."""
        if q.find_network(self.db, name, project) is None:
            return
        hosts = [h for h in self.reservations(name) if h.hwaddr != starting.hwaddr]
        dnsmasq.write_hosts(self._directory(name), [*hosts, starting])

    def host_interface(self, name: str, project: str = "default") -> str:
        """What a NIC with ``network=NAME`` attaches to (a 400 for a missing network)."""
        row = q.find_network(self.db, name, project)
        if row is None:
            raise BadRequest(f"Network {name!r} does not exist")
        if row.status == PENDING:
            raise BadRequest(
                f"Network {name!r} is pending: create it on every member (without --target) "
                "before using it"
            )
        return self.driver(row).host_interface

    def network_type(self, name: str, project: str = "default") -> str:
        row = q.find_network(self.db, name, project)
        if row is None:
            raise BadRequest(f"Network {name!r} does not exist")
        return row.type

    # -- reading ------------------------------------------------------------------------------

    def list_networks(self, project: str | None = None) -> list[q.NetworkRow]:
        return q.list_networks(self.db, project)

    def get(self, name: str, project: str = "default") -> q.NetworkRow:
        return q.get_network(self.db, name, project)

    def find(self, name: str, project: str = "default") -> q.NetworkRow | None:
        return q.find_network(self.db, name, project)

    # -- the host's own interfaces (managed: false) --------------------------------------------

    def _sees_host(self, project: str | None) -> bool:
        """Incus lists the host's interfaces to the default project's networks (a project
        without features.networks uses those)."""
        return project is None or feature_project(self.db, project, "networks") == "default"

    async def host_interfaces(self, project: str | None) -> list[HostInterface]:
        """The host's interfaces that are not managed networks, if ``project`` sees them."""
        if not self._sees_host(project):
            return []
        managed = {r.name for r in q.list_networks(self.db, None)}
        return [i for i in await asyncio.to_thread(host_interfaces) if i.name not in managed]

    async def host_interface_named(self, name: str, project: str) -> HostInterface | None:
        if not self._sees_host(project) or q.name_taken(self.db, name):
            return None
        return await asyncio.to_thread(find_host_interface, name)

    def render_host_interface(self, iface: HostInterface) -> dict[str, Any]:
        used_by = [
            instance_url(inst.name, inst.project)
            for inst in list_instances(self.db, None)
            if any(
                d.get("type") == "nic" and iface.name in (d.get("parent"), d.get("network"))
                for d in expand_profiles(
                    self.db, inst.project, inst.profiles, inst.config, inst.devices
                )[1].values()
            )
        ]
        return {
            "name": iface.name,
            "description": "",
            "type": iface.type,
            "managed": False,
            "status": "",
            "config": {},
            "used_by": used_by,
            "locations": None,
            "project": "default",
        }

    async def host_interface_state(self, iface: HostInterface) -> dict[str, Any]:
        read = bridge_state if iface.type == "bridge" else link_state
        found = await asyncio.to_thread(read, iface.name)
        if iface.type == "loopback":
            found["type"] = "loopback"
        return found

    def in_project(self, project: str) -> ProjectNetworks:
        """The networks as an instance of ``project`` sees them (what its NICs may use)."""
        return ProjectNetworks(self, project)

    def render(self, row: q.NetworkRow) -> dict[str, Any]:
        return {
            "name": row.name,
            "description": row.description,
            "type": row.type,
            "managed": True,
            "status": "Errored" if row.name in self._errors else row.status,
            "config": row.config,
            "used_by": self.used_by(row.name),
            "locations": ["none"],
            "project": row.project,
        }

    @staticmethod
    def writable(row: q.NetworkRow) -> dict[str, Any]:
        return {"config": row.config, "description": row.description}

    def used_by(self, name: str) -> list[str]:
        """Instances and profiles with a NIC on the network."""

        def uses(devices: dict[str, dict[str, str]]) -> bool:
            return any(
                d.get("type") == "nic" and d.get("network") == name for d in devices.values()
            )

        found = []
        for inst in list_instances(self.db, None):
            devices = expand_profiles(
                self.db, inst.project, inst.profiles, inst.config, inst.devices
            )[1]
            if uses(devices):
                found.append(instance_url(inst.name, inst.project))
        for project in list_projects(self.db):
            found += [
                profile_url(p.name, project.name)
                for p in list_profiles(self.db, project.name)
                if uses(p.devices)
            ]
        return found

    async def state(self, row: q.NetworkRow) -> dict[str, Any]:
        return await asyncio.to_thread(self.driver(row).state)

    def leases(self, row: q.NetworkRow, project: str | None = None) -> list[dict[str, Any]]:
        """As Incus lists them: the network's gateway addresses, then each NIC's static
        addresses (and its SLAAC address when IPv6 is not stateful DHCP), then dnsmasq's
        leases not listed yet. Asked from ``project``: only that project's instances."""
        return [lease for lease, _ in self._lease_rows(row, project)]

    def instance_addresses(
        self, row: q.NetworkRow, project: str | None = None
    ) -> list[tuple[str, str, str]]:
        """(address, MAC, instance URL) of every address an instance (of ``project``) holds
        on the network."""
        return [
            (lease["address"], lease["hwaddr"], instance_url(inst.name, inst.project))
            for lease, inst in self._lease_rows(row, project)
            if inst is not None
        ]

    def _lease_rows(
        self, row: q.NetworkRow, project: str | None
    ) -> list[tuple[dict[str, Any], InstanceRow | None]]:
        """The leases, each with the instance it belongs to (None for the gateway's, and for a
        dnsmasq lease no NIC's MAC claims); another project's instances are left out when
        ``project`` is given (a client sees its own project's)."""
        found: list[tuple[dict[str, Any], InstanceRow | None]] = []
        # the gateway's own addresses, to a client of the network's project (as Incus)
        gateways = [row.config.get(k, "") for k in ("ipv4.address", "ipv6.address")]
        for value in gateways if project in (None, row.project) else []:
            if value and value not in ("none", "auto"):
                address = str(ipaddress.ip_interface(value).ip)
                found.append((_lease(address, f"{row.name}.gw", "", "gateway", location=""), None))
        ipv6 = row.config.get("ipv6.address", "")
        slaac = (
            ipaddress.IPv6Interface(ipv6).network
            if ipv6 not in ("", "none", "auto")
            and not v.parse_bool(row.config.get("ipv6.dhcp.stateful", "false"))
            else None
        )
        owners: dict[str, InstanceRow] = {}
        for inst, _, conf, hwaddr in self._nics(row.name):
            seen_from = feature_project(self.db, inst.project, "networks")
            if row.project not in (inst.project, seen_from):
                continue
            owners[hwaddr.lower()] = inst
            if project is not None and inst.project != project:
                continue
            found += [
                (_lease(conf[key], inst.name, hwaddr, "static"), inst)
                for key in ("ipv4.address", "ipv6.address")
                if conf.get(key)
            ]
            if slaac is not None and hwaddr and not conf.get("ipv6.address"):
                found.append((_lease(eui64(slaac, hwaddr), inst.name, hwaddr, "dynamic"), inst))
        listed = {lease["address"] for lease, _ in found}
        for lease in self.driver(row).leases():
            if lease["address"] in listed:
                continue
            owner = owners.get(lease["hwaddr"].lower())
            theirs = owner.project if owner is not None else row.project
            if project is not None and theirs != project:
                continue
            hostname = owner.name if owner is not None else lease["hostname"]
            found.append((_lease(lease["address"], hostname, lease["hwaddr"], "dynamic"), owner))
        return found

    # -- changes ------------------------------------------------------------------------------

    def admit(self, req: NetworksPost, project: str, new: bool) -> str:
        """The project that will own the network ``req`` asks for in ``project`` (its type and
        name checked, and, ``new``, the project's limit); a 4xx otherwise."""
        req.type = req.type or "bridge"  # incus sends "" for the default type
        network_type(req.type).validate_name(req.name)
        owner = feature_project(self.db, project, "networks")
        if owner != "default" and req.type != "ovn":
            raise BadRequest(
                f"Project {owner!r} has its own networks (features.networks): only OVN networks "
                "can be made there, as in Incus"
            )
        if new:
            check_network_limit(self.db, owner)
        return owner

    async def create(
        self, req: NetworksPost, project: str = "default", pending: q.NetworkRow | None = None
    ) -> None:
        """Make the network and bring it up here; ``pending``: its row, defined on cluster
        members with their own values (they join ``req``'s config)."""
        cls = network_type(req.type or "bridge")
        owner = self.admit(req, project, new=pending is None)
        cls.probe()
        config = {k: v for k, v in req.config.items() if v != ""}
        if pending is not None:
            config = {**pending.config, **config}
        validate_config(cls, config)
        policy.check_acls_exist(self.db, config, owner)
        check_network_zones(self.db, config)
        if pending is None and q.name_taken(self.db, req.name):
            raise Conflict(f"Network {req.name!r} already exists")
        row = q.NetworkRow(0, req.name, req.type, req.description, config, owner)
        if pending is not None:
            row.id = pending.id
        drv = self.driver(row)
        row.config = {**config, **await asyncio.to_thread(drv.defaults, config)}
        drv.config = dict(row.config)
        try:
            await drv.start()
        except BaseException as exc:
            await drv.delete()
            if isinstance(exc, StapesError):
                raise
            raise BadRequest(f"Network {req.name!r} could not come up: {exc}") from exc
        with self.db.transaction():
            if pending is not None:
                q.update_network(self.db, row)
            else:
                q.insert_network(self.db, row)
        self.events.lifecycle(NetworkAction.CREATED, network_url(row.name))

    async def start_all(self) -> None:
        """At daemon start: bring every network up; one that fails is marked Errored."""
        for row in self.list_networks():
            if row.status == PENDING:
                continue  # not made yet: only some members' values are given
            try:
                await self.start_here(row)
            except Exception:
                pass  # marked Errored, with a warning

    async def start_here(self, row: q.NetworkRow) -> None:
        """Bring the network up on this host (a cluster member's own bridge of it); a failure
        marks it Errored and raises."""
        try:
            await self.driver(row).start()
        except Exception as exc:
            self._failed(row.name, str(exc))
            raise
        self._recovered(row.name)

    def _failed(self, name: str, error: str) -> None:
        """The network is left down, its error in its status and in a warning."""
        self._errors[name] = error
        self.warnings.raise_(
            UNAVAILABLE, f"Network {name!r} could not come up: {error}", network_url(name)
        )

    def _recovered(self, name: str) -> None:
        self._errors.pop(name, None)
        self.warnings.resolve(UNAVAILABLE, network_url(name))

    async def update(self, row: q.NetworkRow, put: NetworkPut) -> None:
        cls = network_type(row.type)
        config = {k: v for k, v in put.config.items() if v != ""}
        validate_config(cls, config)
        policy.check_acls_exist(self.db, config, row.project)
        check_network_zones(self.db, config)
        old = dict(row.config)
        changed = q.NetworkRow(row.id, row.name, row.type, put.description, config, row.project)
        drv = self.driver(changed)
        try:
            await drv.update(old)
        except BaseException as exc:
            await self.driver(row).start()
            if isinstance(exc, StapesError):
                raise
            raise BadRequest(f"Network {row.name!r} could not apply the change: {exc}") from exc
        with self.db.transaction():
            q.update_network(self.db, changed)
        self._recovered(row.name)
        self.events.lifecycle(NetworkAction.UPDATED, network_url(row.name))

    async def reapply(self, row: q.NetworkRow, old: dict[str, str]) -> None:
        """A change another cluster member made to the network: this host's side of it
        brought from ``old`` to ``row``'s config."""
        try:
            await self.driver(row).update(old)
        except Exception as exc:
            self._failed(row.name, str(exc))
            raise
        self._recovered(row.name)

    def check_unused(self, row: q.NetworkRow, doing: str) -> None:
        users = self.used_by(row.name)
        if users:
            raise BadRequest(
                f"Cannot {doing} network {row.name!r}: it is in use by {', '.join(users)}"
            )

    async def rename(self, row: q.NetworkRow, new_name: str) -> None:
        cls = network_type(row.type)
        cls.validate_name(new_name)
        if q.name_taken(self.db, new_name):
            raise Conflict(f"Network {new_name!r} already exists")
        self.check_unused(row, "rename")
        await self.driver(row).delete()
        old = row.name
        row.name = new_name
        await self.driver(row).start()
        with self.db.transaction():
            q.update_network(self.db, row, old)
        self.events.lifecycle(
            NetworkAction.RENAMED, network_url(new_name), context={"old_name": old}
        )

    async def delete(self, row: q.NetworkRow) -> None:
        self.check_unused(row, "delete")
        await self.driver(row).delete()
        with self.db.transaction():
            q.delete_network(self.db, row.id)
        self._recovered(row.name)
        self.events.lifecycle(NetworkAction.DELETED, network_url(row.name))


class ProjectNetworks:
    """Managed networks as the instances of one project see them (a NetworkAccess)."""

    def __init__(self, networks: Networks, project: str) -> None:
        self.networks = networks
        self.project = project

    def host_interface(self, name: str) -> str:
        return self.networks.host_interface(name, self.project)

    def network_type(self, name: str) -> str:
        return self.networks.network_type(name, self.project)

    def check_address(self, name: str, address: str) -> None:
        self.networks.check_address(name, address, self.project)

    def refresh_reservations(self, name: str, starting: StaticLease) -> None:
        self.networks.refresh_reservations(name, starting, self.project)

    def check_mac(self, name: str, hwaddr: str, instance: str, device: str) -> None:
        self.networks.check_mac(name, hwaddr, (self.project, instance), device)
