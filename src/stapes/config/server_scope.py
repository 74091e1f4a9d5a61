"""Which server keys are each cluster member's own (a module without imports: the database
layer reads it, and the CLI's daemon control imports that)."""

from __future__ import annotations

LOCAL_SERVER_KEYS = frozenset(
    {
        "core.https_address",
        "core.metrics_address",
        "core.dns_address",
        "core.syslog_socket",
        "core.debug_address",
        "core.storage_buckets_address",
        "core.bgp_address",
        "core.bgp_routerid",
        "cluster.https_address",
        "storage.backups_volume",
        "storage.images_volume",
    }
)
"""The keys each cluster member has its own value of (Incus's "local" scope); the others are
the cluster's."""
