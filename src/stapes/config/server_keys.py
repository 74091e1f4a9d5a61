"""The server's config keys (GET/PUT/PATCH /1.0): the table, as for instances."""

from __future__ import annotations

from stapes.api.errors import BadRequest
from stapes.config import validate as v
from stapes.config.keys import Key, check_value


def _more_than(low: int) -> v.Validator:
    def check(value: str) -> None:
        v.is_uint(value)
        if int(value) <= low:
            raise ValueError(f"Value must be greater than '{low}'")

    return check


def _odd_at_least(low: int) -> v.Validator:
    def check(value: str) -> None:
        v.is_uint(value)
        if int(value) < low or int(value) % 2 == 0:
            raise ValueError(f"Value must be an odd number equal to or higher than {low}")

    return check


def _at_most(high: int) -> v.Validator:
    def check(value: str) -> None:
        v.is_uint(value)
        if int(value) > high:
            raise ValueError(f"Value must be between 0 and {high}")

    return check


SERVER_KEYS: dict[str, Key] = {
    "core.https_address": Key(
        v.is_listen_address,
        "",
        live=True,
        help="Address of the HTTPS API (HOST:PORT, [V6]:PORT or :PORT); empty: unix socket only",
    ),
    "core.metrics_address": Key(
        v.is_listen_address,
        "",
        live=True,
        help="Address of an HTTPS listener serving /1.0/metrics only; empty: none",
    ),
    "core.dns_address": Key(
        v.is_listen_address,
        "",
        live=True,
        help="Address of the DNS server that serves the network zones to their peers "
        "(HOST[:PORT], port 53 by default); empty: none",
    ),
    "core.metrics_authentication": Key(
        v.is_bool,
        "true",
        live=True,
        help="Whether /1.0/metrics needs a trusted (client or metrics) certificate",
    ),
    "core.remote_token_expiry": Key(
        v.is_expiry,
        "",
        live=True,
        help="How long a trust token lasts (15M, 3H, 1d...); empty: until it is used",
    ),
    "instances.vm.accelerator": Key(
        v.one_of("auto", "kvm", "tcg"),
        "auto",
        live=True,
        help="What VMs run on: auto (KVM when usable, else TCG emulation), kvm (never "
        "emulate) or tcg",
    ),
    "oidc.issuer": Key(
        v.any_value, "", live=True, help="OIDC issuer URL whose bearer tokens are trusted"
    ),
    "oidc.client.id": Key(v.any_value, "", live=True, help="OIDC client id (audience by default)"),
    "oidc.audience": Key(v.any_value, "", live=True, help="Expected audience of OIDC tokens"),
    "oidc.claim": Key(
        v.any_value, "", live=True, help="Token claim naming the user (default: email, then sub)"
    ),
    "images.auto_update_interval": Key(
        v.is_uint, "6", live=True, help="Hours between image auto-updates (0: never)"
    ),
    "images.auto_update_cached": Key(
        v.is_bool, "true", live=True, help="Whether cached images are auto-updated too"
    ),
    "images.remote_cache_expiry": Key(
        v.is_uint, "10", live=True, help="Days an unused cached image is kept (0: forever)"
    ),
    "core.shutdown_timeout": Key(
        v.is_uint,
        "5",
        live=True,
        help="Minutes stapesd waits for running operations when it is asked to stop",
    ),
    "oidc.scopes": Key(
        v.is_scope_list,
        "openid,offline_access",
        live=True,
        help="Scopes a client asks the OIDC issuer for (comma-separated)",
    ),
    "images.compression_algorithm": Key(
        v.is_compression,
        "gzip",
        live=True,
        help="Compression of images published from instances (none, gzip, xz, zstd...)",
    ),
    "backups.compression_algorithm": Key(
        v.is_compression, "gzip", live=True, help="Compression of backups (none, gzip, xz...)"
    ),
    "images.default_architecture": Key(
        v.is_architecture,
        "",
        live=True,
        help="Architecture of images pulled for new instances when none is asked for",
    ),
    "instances.nic.host_name": Key(
        v.one_of("random", "mac"),
        "random",
        live=True,
        help="Host-side NIC names: random (vethXXXXXXXX) or from the MAC (incXXXXXXXXXXXX)",
    ),
    "core.https_allowed_origin": Key(
        v.is_one_line, "", live=True, help="Access-Control-Allow-Origin sent to browsers"
    ),
    "core.https_allowed_methods": Key(
        v.is_one_line, "", live=True, help="Access-Control-Allow-Methods sent to browsers"
    ),
    "core.https_allowed_headers": Key(
        v.is_one_line, "", live=True, help="Access-Control-Allow-Headers sent to browsers"
    ),
    "core.https_allowed_credentials": Key(
        v.is_bool, "false", live=True, help="Send Access-Control-Allow-Credentials: true"
    ),
    "core.https_trusted_proxy": Key(
        v.is_ip_list,
        "",
        live=True,
        help="Proxies (comma-separated IPs) whose X-Forwarded-For names the client",
    ),
    "core.proxy_http": Key(
        v.is_http_url, "", live=True, help="Proxy for plain HTTP image downloads"
    ),
    "core.proxy_https": Key(v.is_http_url, "", live=True, help="Proxy for HTTPS image downloads"),
    "core.proxy_ignore_hosts": Key(
        v.is_one_line,
        "",
        live=True,
        help="Hosts downloaded from without the proxy (comma-separated; * for all)",
    ),
    "core.trust_ca_certificates": Key(
        v.is_bool,
        "false",
        live=True,
        help="Trust client certificates the CA in server.ca signed (and server.crl keeps)",
    ),
    "loki.api.url": Key(v.is_http_url, "", live=True, help="Loki server events are pushed to"),
    "loki.api.ca_cert": Key(
        v.any_value, "", live=True, help="CA certificate (PEM) the Loki server is checked with"
    ),
    "loki.auth.username": Key(v.is_one_line, "", live=True, help="Loki basic auth user"),
    "loki.auth.password": Key(v.is_one_line, "", live=True, help="Loki basic auth password"),
    "loki.instance": Key(
        v.is_one_line, "", live=True, help="The instance label (default: the host name)"
    ),
    "loki.labels": Key(
        v.is_name_list, "", live=True, help="Event fields also used as labels (project, name...)"
    ),
    "loki.loglevel": Key(
        v.one_of("debug", "info", "warn", "error", "crit"),
        "info",
        live=True,
        help="Least level of logging events pushed",
    ),
    "loki.types": Key(
        v.is_subset("lifecycle", "logging"),
        "lifecycle,logging",
        live=True,
        help="Event types pushed (lifecycle, logging)",
    ),
    "core.syslog_socket": Key(
        v.is_bool,
        "false",
        live=True,
        help="Take syslog messages on syslog.socket (unixgram) as logging events",
    ),
    "storage.backups_volume": Key(
        v.is_pool_volume,
        "",
        live=True,
        help="A custom volume (POOL/VOLUME) that holds the daemon's backups",
    ),
    "storage.images_volume": Key(
        v.is_pool_volume,
        "",
        live=True,
        help="A custom volume (POOL/VOLUME) that holds the daemon's image files",
    ),
    "instances.lxcfs.per_instance": Key(
        v.only_false("a lxcfs daemon per instance is not run by this stapesd"),
        "false",
        live=True,
        help="One lxcfs per instance (not available here)",
    ),
    "cluster.https_address": Key(
        v.is_listen_address,
        "",
        live=True,
        help="Address the other cluster members reach this one at (HOST:PORT); "
        "core.https_address's when clustering is enabled without it",
    ),
    "cluster.offline_threshold": Key(
        _more_than(10),
        "20",
        live=True,
        help="Seconds without a heartbeat after which a member is offline",
    ),
    "cluster.max_voters": Key(
        _odd_at_least(3), "3", live=True, help="Members that vote in the database's elections"
    ),
    "cluster.max_standby": Key(
        _at_most(5), "2", live=True, help="Members that keep a copy of the database ready to vote"
    ),
    "cluster.join_token_expiry": Key(
        v.is_expiry, "3H", live=True, help="How long a join token lasts (15M, 3H, 1d...)"
    ),
    "cluster.healing_threshold": Key(
        v.is_uint,
        "0",
        live=True,
        help="Seconds offline after which a member's instances are evacuated (0: never)",
    ),
    "cluster.rebalance.interval": Key(
        v.is_uint, "0", live=True, help="How often (minutes) to consider rebalancing (0: never)"
    ),
    "cluster.rebalance.threshold": Key(
        v.is_uint,
        "20",
        live=True,
        help="Percent by which the busiest member's load must exceed the least busy one's",
    ),
    "cluster.rebalance.batch": Key(
        v.is_uint, "1", live=True, help="Most instances moved in one rebalancing run"
    ),
    "cluster.rebalance.cooldown": Key(
        v.is_expiry, "6H", live=True, help="How long a moved instance is not moved again"
    ),
    "cluster.images_minimal_replica": Key(
        v.is_int,
        "3",
        live=True,
        help="Members that keep a copy of each image (-1: all)",
    ),
}


FREE_PREFIXES = {"user.": Key(live=True, help="Free-form user data")}

METRICS_KEY = "core.metrics_address"
DNS_KEY = "core.dns_address"
SYSLOG_KEY = "core.syslog_socket"

_OVN = (
    "OVN networks need Open vSwitch and the OVN daemons, and this stapesd has no OVN "
    "northbound client"
)
LATER: dict[str, str] = {
    "core.trust_password": "trust passwords are gone from Incus 6 too: use trust tokens "
    "(stapes config trust add NAME)",
    **{
        f"acme.{key}": "ACME certificates are not requested by this stapesd: put a certificate "
        "in server.crt and server.key in its directory"
        for key in (
            "agree_tos",
            "ca_url",
            "challenge",
            "domain",
            "email",
            "http.port",
            "provider",
            "provider.environment",
            "provider.resolvers",
        )
    },
    **{
        f"core.bgp_{key}": "stapesd has no BGP speaker: announce the networks' routes with "
        "the host's own routing daemon"
        for key in ("address", "asn", "routerid")
    },
    "core.debug_address": "the debug listener is Go's pprof, which stapesd (Python) has not",
    "core.storage_buckets_address": "storage buckets need MinIO (an S3 object store), which "
    "this host does not have",
    "authorization.scriptlet": "Starlark scriptlets are not run by this stapesd",
    "instances.placement.scriptlet": "Starlark scriptlets are not run by this stapesd",
    **{
        f"openfga.{key}": "OpenFGA authorization is not implemented by this stapesd: use "
        "restricted certificates and projects"
        for key in ("api.token", "api.url", "store.id")
    },
    **{
        f"network.ovn.{key}": _OVN
        for key in (
            "ca_cert",
            "client_cert",
            "client_key",
            "integration_bridge",
            "northbound_connection",
        )
    },
    "network.ovs.connection": _OVN,
}


def validate_server_config(config: dict[str, str]) -> None:
    for key, value in config.items():
        if not isinstance(value, str):
            raise BadRequest(f"Invalid value for config key {key!r}: values must be strings")
        if key in LATER:
            raise BadRequest(f"Config key {key!r} cannot be set: {LATER[key]}")
        spec = SERVER_KEYS.get(key) or next(
            (k for prefix, k in FREE_PREFIXES.items() if key.startswith(prefix)), None
        )
        check_value(key, spec, value)


def server_value(config: dict[str, str], key: str) -> str:
    return config.get(key) or SERVER_KEYS[key].default
