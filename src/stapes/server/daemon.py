"""The daemon: builds State, starts in order (db, pools, instances, listeners), stops in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sqlite3

from aiohttp import web

from stapes.api.errors import StapesError
from stapes.cluster.admission import Admission
from stapes.cluster.evacuation import Evacuation
from stapes.cluster.event_relay import EventRelay
from stapes.cluster.files import ClusterFiles
from stapes.cluster.images import ClusterImages
from stapes.cluster.moves import ClusterMoves
from stapes.cluster.networks import ClusterNetworks
from stapes.cluster.peers import Peers
from stapes.cluster.pools import ClusterPools
from stapes.cluster.rebalance import Rebalancer
from stapes.cluster.service import Cluster
from stapes.cluster.transport import ClusterTransport
from stapes.config.server_keys import DNS_KEY, METRICS_KEY, SYSLOG_KEY, server_value
from stapes.config.validate import parse_bool
from stapes.db.connection import ServerDatabase, SqliteDatabase, Unavailable
from stapes.db.instances import InstanceRow, find_instance
from stapes.db.local import open_local
from stapes.db.projects import ensure_profile, ensure_project, ensure_root_disk
from stapes.db.server_config import get_config
from stapes.guestapi.service import GuestApi
from stapes.host.capabilities import probe
from stapes.host.idmap import IdMap
from stapes.host.paths import Paths
from stapes.images.refresh import ImageUpkeep
from stapes.images.secrets import ImageSecrets
from stapes.images.store import ImageStore
from stapes.instance import hotplug_events, layout_upgrade
from stapes.instance.attach_client import shared_helper
from stapes.instance.backup_file import BackupFileKeeper
from stapes.instance.backups import BACKUP_FILE, InstanceBackups
from stapes.instance.devices.hotplug import UeventWatcher
from stapes.instance.files import InstanceFiles
from stapes.instance.host_power import HostPower
from stapes.instance.lxc import LxcDriver
from stapes.instance.profiles import ProfileService
from stapes.instance.recover import Recovery
from stapes.instance.registry import InstanceDrivers
from stapes.instance.service import InstanceService
from stapes.instance.snapshots import SnapshotService
from stapes.instance.vm.qemu import QemuDriver
from stapes.network.acl_service import NetworkAcls
from stapes.network.dns_server import DnsServer
from stapes.network.forward_service import NetworkForwards
from stapes.network.service import Networks
from stapes.network.zone_service import NetworkZones
from stapes.project.service import Projects
from stapes.runtime.events import EventBus, EventLogHandler
from stapes.runtime.locks import InstanceLocks
from stapes.runtime.membership import Membership
from stapes.runtime.operations import Operations
from stapes.runtime.side_loop import SideLoop
from stapes.runtime.warnings import Warnings
from stapes.server.extensions import API_EXTENSIONS
from stapes.server.forward import Forwarder
from stapes.server.http_policy import HttpPolicy, policy_middleware
from stapes.server.listeners import Https
from stapes.server.loki import LokiPusher, LokiSettings
from stapes.server.metrics_history import MetricsHistory
from stapes.server.oidc import OidcSettings, OidcVerifier
from stapes.server.response import error_middleware
from stapes.server.routes import register
from stapes.server.startup_warnings import host_checks, raise_host_warnings
from stapes.server.state import STATE, State
from stapes.server.syslog_socket import SyslogSocket
from stapes.server.trust import Trust
from stapes.storage.pool import Pools
from stapes.storage.volume_backups import VolumeBackups
from stapes.storage.volume_snapshots import VolumeSnapshots
from stapes.storage.volumes import Volumes, instance_volume

log = logging.getLogger(__name__)

DEFAULT_PROJECT_CONFIG = {
    "features.images": "true",
    "features.profiles": "true",
    "features.storage.volumes": "true",
    "features.networks": "true",
}


def open_database(files: ClusterFiles) -> ServerDatabase:
    """The standalone database; on a cluster member, its local one, the cluster's to be
    reached once its listener is up (Cluster.resume)."""
    if files.clustered:
        why = "the cluster's database is not reached yet: the member is starting"
        return ServerDatabase(Unavailable(why), open_local(files.local))
    return ServerDatabase(SqliteDatabase(files.standalone))


def build_state(paths: Paths) -> State:
    paths.ensure()
    caps = probe()
    membership = Membership()
    files = ClusterFiles(paths.database.parent)
    db = open_database(files)
    events = EventBus(membership)
    side = SideLoop()
    transport = ClusterTransport(side, paths.server_cert, paths.server_key, lambda: "")
    cluster = Cluster(db, files, membership, events, transport, len(API_EXTENSIONS))
    transport.target = cluster.node_socket
    operations = Operations(events)
    locks = InstanceLocks()
    images = ImageStore(db, paths, events)
    pools = Pools(db, paths, events)
    idmap = IdMap.from_host() if caps.unprivileged else None
    drivers = InstanceDrivers(
        {
            "container": LxcDriver(paths, caps, idmap),
            "virtual-machine": QemuDriver(paths, lambda: get_config(db)),
        }
    )
    instances = InstanceService(
        db=db,
        paths=paths,
        events=events,
        operations=operations,
        locks=locks,
        images=images,
        pools=pools,
        drivers=drivers,
        membership=membership,
    )
    profiles = ProfileService(db, events, instances)

    async def instance_running(project: str, name: str) -> bool:
        row = find_instance(db, project, name)
        return row is not None and await instances.is_running(row)

    volumes = Volumes(db, pools, events, operations, instance_running)
    warnings = Warnings(db, events, membership)
    https = Https(paths.server_cert, paths.server_key, side)
    https.internal = transport
    networks = Networks(db, paths, events, warnings)
    instances.networks = networks
    instances.volumes = volumes
    snapshots = SnapshotService(instances)
    volume_snapshots = VolumeSnapshots(volumes)
    snapshots.minute_hooks.append(volume_snapshots.scheduled)
    snapshots.minute_hooks.append(ImageUpkeep(images, pools.delete_image_volumes))
    backups = InstanceBackups(instances, snapshots, profiles, volumes)
    snapshots.minute_hooks.append(backups.records.expire)
    volume_backups = VolumeBackups(volumes, volume_snapshots, paths)
    snapshots.minute_hooks.append(volume_backups.records.expire)
    volumes.deleted_hooks.append(volume_backups.forget)
    zones = NetworkZones(db, networks, events)
    dns_server = DnsServer(zones)
    zones.on_change = dns_server.reload_keys
    guest_api = GuestApi(paths, instances, images, events)
    instances.starting_hooks.append(guest_api.starting)
    instances.stopped_hooks.append(guest_api.stopped)
    instances.changed_hooks.append(guest_api.changed)
    st = State(
        paths=paths,
        guest_api=guest_api,
        db=db,
        membership=membership,
        cluster=cluster,
        admission=Admission(cluster, operations),
        events=events,
        operations=operations,
        caps=caps,
        warnings=warnings,
        https=https,
        metrics_https=Https(paths.server_cert, paths.server_key, side, metrics_only=True),
        side=side,
        oidc=OidcVerifier(),
        trust=Trust(db, operations, events, https),
        projects=Projects(db, events),
        locks=locks,
        images=images,
        image_secrets=ImageSecrets(),
        pools=pools,
        instances=instances,
        profiles=profiles,
        snapshots=snapshots,
        backups=backups,
        files=InstanceFiles(instances),
        volumes=volumes,
        volume_snapshots=volume_snapshots,
        volume_backups=volume_backups,
        recovery=Recovery(backups, volumes),
        networks=networks,
        forwards=NetworkForwards(db, networks, events),
        loki=LokiPusher(events),
        syslog=SyslogSocket(paths.root / "syslog.socket"),
        acls=NetworkAcls(db, networks, events),
        zones=zones,
        dns=dns_server,
    )
    peers = Peers(paths.server_cert, paths.server_key)
    st.forwarder = Forwarder(st, peers, EventRelay(db, membership, peers, events))
    st.metrics_history = MetricsHistory(instances)
    st.moves = ClusterMoves(instances, cluster, peers)
    st.evacuation = Evacuation(instances, cluster, st.moves, peers)
    st.rebalancer = Rebalancer(instances, cluster, peers)
    st.cluster_pools = ClusterPools(cluster, pools, peers)
    st.cluster_networks = ClusterNetworks(cluster, networks, peers)
    st.image_replicas = ClusterImages(db, membership, peers, images)
    images.fetch_missing = st.image_replicas.fetch
    images.changed = st.image_replicas.changed
    return st


async def initialise(st: State) -> list[InstanceRow]:
    """Database defaults, pools, and re-adoption; returns the instances to autostart."""
    with st.db.transaction():
        ensure_project(st.db, "default", "Default Incus project", DEFAULT_PROJECT_CONFIG)
    restored = await st.pools.mount_all()
    await st.networks.start_all()  # before instances: their NICs attach to the bridges
    with st.db.transaction():
        # as a fresh incusd's: no devices until admin init (or a preseed) gives it some
        ensure_profile(st.db, "default", "default", "Default Incus profile", {})
        if restored:  # a lost database: the recorded default pool serves as it did
            ensure_root_disk(st.db, "default", "default", "default")
    for leftover in [
        *st.paths.images.glob("upload-*"),
        *(st.paths.backups / "uploads").glob("upload-*"),
    ]:
        leftover.unlink(missing_ok=True)
    container = st.instances.drivers.get("container")
    io_weight = container.host.io_weight if isinstance(container, LxcDriver) else ""
    raise_host_warnings(st.warnings, host_checks(io_weight))
    await layout_upgrade.upgrade(st.instances)  # an earlier stapesd's names, before adoption
    to_start = await HostPower(st.instances).readopt()
    await st.guest_api.reopen()
    for row in st.instances.local_instances():  # volumes made before stapesd kept backup.yaml
        volume = st.pools.driver(row.pool).volume_path(*instance_volume(row))
        if volume.is_dir() and not (volume / BACKUP_FILE).exists():
            await st.backups.write_backup_file(row)
    return to_start


async def serve(paths: Paths, *, group: str | None = None) -> None:
    """Run the daemon until SIGTERM/SIGINT (instances keep running) or a shutdown request
    (instances stop first). ``group``: the group that may use the unix socket."""
    st = build_state(paths)
    logging.getLogger("stapes").addHandler(EventLogHandler(st.events))
    middlewares = [policy_middleware(lambda request: request.app[STATE].http_policy)]
    app = web.Application(middlewares=[*middlewares, error_middleware], client_max_size=0)
    app[STATE] = st
    register(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    st.https.app_server = st.metrics_https.app_server = runner.server
    if st.cluster.files.clustered:  # the other members reach this one's node through HTTPS
        own = get_config(st.db.member_local)  # the cluster's keys are not reachable yet
        await st.https.apply(server_value(own, "core.https_address"))
        await asyncio.to_thread(st.cluster.resume)
    to_start = await initialise(st)
    st.http_policy = HttpPolicy.from_config(get_config(st.db))
    with contextlib.suppress(FileNotFoundError):
        paths.socket.unlink()
    site = web.UnixSite(runner, str(paths.socket))
    await site.start()
    os.chmod(paths.socket, 0o660)
    if group:
        shutil.chown(paths.socket, group=group)
    log.info("stapesd listening on %s", paths.socket)
    st.oidc.configure(OidcSettings.from_config(get_config(st.db)))
    if st.loki is not None:
        st.loki.configure(LokiSettings.from_config(get_config(st.db)))
    if st.syslog is not None:
        try:
            await st.syslog.apply(parse_bool(server_value(get_config(st.db), SYSLOG_KEY)))
        except OSError as exc:
            st.warnings.raise_("Syslog socket unavailable", f"{SYSLOG_KEY}: {exc}", "/1.0")
    st.https.certificate()
    for listener, key in ((st.https, "core.https_address"), (st.metrics_https, METRICS_KEY)):
        try:
            await listener.apply(server_value(get_config(st.db), key))
        except StapesError as exc:
            st.warnings.raise_("HTTPS listener unavailable", f"{key}: {exc.message}", "/1.0")
    try:
        await st.dns.apply(server_value(get_config(st.db), DNS_KEY))
    except StapesError as exc:
        st.warnings.raise_("DNS server unavailable", exc.message, "/1.0")
    st.trust.restore_tokens()
    st.admission.restore_tokens()

    loop = asyncio.get_running_loop()
    power = HostPower(st.instances)
    autostart = loop.create_task(power.autostart(to_start))
    uevents = UeventWatcher(lambda event: hotplug_events.handle(st.instances, event))
    uevents.start()
    schedule = loop.create_task(st.snapshots.run_schedule())
    heartbeats = loop.create_task(st.cluster.heartbeats())
    token_sweep = loop.create_task(st.admission.sweep_tokens())
    assert st.rebalancer is not None
    rebalancing = loop.create_task(st.rebalancer.run())
    assert st.forwarder is not None
    peers = st.forwarder.peers
    relay = loop.create_task(st.forwarder.relay.run())
    backup_files = loop.create_task(BackupFileKeeper(st.backups, st.events).run())
    assert st.metrics_history is not None
    sampling = loop.create_task(st.metrics_history.run())
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
        # and at once, even while the loop waits on a cluster that lost its quorum: statements
        # waiting for a leader give up (asyncio still sees the signal: its wakeup fd is C's)
        signal.signal(signum, lambda _sig, _frame: st.db.interrupt())
    loop.add_signal_handler(signal.SIGPWR, st.shutdown.requested.set)
    host_down = loop.create_task(st.shutdown.requested.wait())
    try:
        await asyncio.wait(
            {loop.create_task(stop.wait()), host_down}, return_when=asyncio.FIRST_COMPLETED
        )
        autostart.cancel()
        schedule.cancel()
        heartbeats.cancel()
        token_sweep.cancel()
        rebalancing.cancel()
        relay.cancel()
        backup_files.cancel()
        sampling.cancel()
        uevents.close()
        if host_down.done():
            log.info("host shutdown requested (SIGPWR or /internal/shutdown): stopping instances")
            await power.shutdown_host(force=st.shutdown.force)
    finally:
        if host_down.done():
            log.info("stapesd shutting down after stopping its instances")
        else:
            log.info("stapesd shutting down (instances keep running)")
        try:
            minutes = int(server_value(get_config(st.db), "core.shutdown_timeout"))
        except sqlite3.Error:  # a cluster member that lost its cluster: no waiting on it
            minutes = 0
        await st.operations.drain(60 * minutes)
        if st.loki is not None:
            st.loki.stop()
        if st.syslog is not None:
            st.syslog.close()
        st.events.close()
        await st.operations.shutdown()
        await peers.close()
        await st.https.stop()
        await st.metrics_https.stop()
        st.instances.watcher.close()
        await st.guest_api.close_all()
        await st.dns.close()
        shared_helper().close()  # its commands are orphaned, as a restart leaves them
        await st.pools.close()
        await runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            paths.socket.unlink()
        st.db.close()
        st.cluster.close()
        st.side.close()
