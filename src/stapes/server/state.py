"""The daemon's State: the one object the daemon builds and hands to every layer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from stapes.db.connection import ServerDatabase
from stapes.host.capabilities import HostCaps
from stapes.host.paths import Paths
from stapes.runtime.events import EventBus
from stapes.runtime.locks import InstanceLocks
from stapes.runtime.membership import Membership
from stapes.runtime.operations import Operations
from stapes.runtime.side_loop import SideLoop
from stapes.runtime.warnings import Warnings
from stapes.server.http_policy import HttpPolicy
from stapes.server.listeners import Https
from stapes.server.loki import LokiPusher
from stapes.server.oidc import OidcVerifier
from stapes.server.syslog_socket import SyslogSocket

if TYPE_CHECKING:
    from stapes.cluster.admission import Admission
    from stapes.cluster.evacuation import Evacuation
    from stapes.cluster.images import ClusterImages
    from stapes.cluster.moves import ClusterMoves
    from stapes.cluster.networks import ClusterNetworks
    from stapes.cluster.pools import ClusterPools
    from stapes.cluster.rebalance import Rebalancer
    from stapes.cluster.service import Cluster
    from stapes.guestapi.service import GuestApi
    from stapes.images.secrets import ImageSecrets
    from stapes.images.store import ImageStore
    from stapes.instance.backups import InstanceBackups
    from stapes.instance.files import InstanceFiles
    from stapes.instance.profiles import ProfileService
    from stapes.instance.recover import Recovery
    from stapes.instance.service import InstanceService
    from stapes.instance.snapshots import SnapshotService
    from stapes.network.acl_service import NetworkAcls
    from stapes.network.dns_server import DnsServer
    from stapes.network.forward_service import NetworkForwards
    from stapes.network.service import Networks
    from stapes.network.zone_service import NetworkZones
    from stapes.project.service import Projects
    from stapes.server.forward import Forwarder
    from stapes.server.metrics_history import MetricsHistory
    from stapes.server.trust import Trust
    from stapes.storage.pool import Pools
    from stapes.storage.volume_backups import VolumeBackups
    from stapes.storage.volume_snapshots import VolumeSnapshots
    from stapes.storage.volumes import Volumes


@dataclass
class ShutdownRequest:
    """A request to stop every instance and exit (SIGPWR, PUT /internal/shutdown)."""

    requested: asyncio.Event = field(default_factory=asyncio.Event)
    force: bool = False
    """Kill the instances rather than wait for them to shut down."""


@dataclass
class State:
    paths: Paths
    db: ServerDatabase
    membership: Membership
    """Which cluster member this daemon is (nothing when the server is not clustered)."""
    cluster: Cluster
    admission: Admission
    """Join tokens and the servers that present them."""
    events: EventBus
    operations: Operations
    caps: HostCaps
    warnings: Warnings
    https: Https
    metrics_https: Https
    """core.metrics_address: /1.0/metrics only."""
    side: SideLoop
    """The loop the HTTPS listeners' TLS and the cluster's traffic run on."""
    oidc: OidcVerifier
    trust: Trust
    projects: Projects
    locks: InstanceLocks
    images: ImageStore
    image_secrets: ImageSecrets
    pools: Pools
    instances: InstanceService
    profiles: ProfileService
    snapshots: SnapshotService
    backups: InstanceBackups
    files: InstanceFiles
    volumes: Volumes
    volume_snapshots: VolumeSnapshots
    volume_backups: VolumeBackups
    recovery: Recovery
    networks: Networks
    forwards: NetworkForwards
    acls: NetworkAcls
    zones: NetworkZones
    dns: DnsServer
    """core.dns_address: serves the network zones to their peers."""
    guest_api: GuestApi
    shutdown: ShutdownRequest = field(default_factory=ShutdownRequest)
    syslog: SyslogSocket | None = None
    """core.syslog_socket's listener (made with the paths)."""
    loki: LokiPusher | None = None
    """Pushes events to Loki while loki.api.url is set (made with the bus)."""
    moves: ClusterMoves | None = None
    """Instances moving between cluster members (set once State is)."""
    image_replicas: ClusterImages | None = None
    """Copies of images' files on other members (set once State is)."""
    cluster_networks: ClusterNetworks | None = None
    """Managed networks brought up and removed on every member (set once State is)."""
    cluster_pools: ClusterPools | None = None
    """Storage pools made and deleted on every member (set once State is)."""
    evacuation: Evacuation | None = None
    """This member emptied and filled again (set once State is)."""
    rebalancer: Rebalancer | None = None
    """Running VMs moved live off the busiest member, by the leader (set once State is)."""
    forwarder: Forwarder | None = None
    """Requests about what lives on other cluster members go there (set once State is)."""
    http_policy: HttpPolicy = field(default_factory=HttpPolicy)
    """CORS and trusted proxies (core.https_*), kept as the config last set them."""
    metrics_history: MetricsHistory | None = None
    """The last hour of the local instances' metrics (set once State is)."""


STATE: web.AppKey[State] = web.AppKey("state", State)
