"""The schema as an ordered list of migrations; ``PRAGMA user_version`` records the last applied."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Executor(Protocol):
    """What a migration runs its statements on (a Database, in its transaction)."""

    def execute(self, sql: str, params: tuple[Any, ...] = ...) -> Any: ...


Migration = Callable[[Executor], None]


def _script(conn: Executor, sql: str) -> None:
    """Run several statements inside the caller's transaction (executescript would commit it)."""
    for statement in sql.split(";"):
        if statement.strip():
            conn.execute(statement)


def _v1(conn: Executor) -> None:
    _script(
        conn,
        """
        CREATE TABLE projects (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE profiles (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL DEFAULT '{}',
            devices TEXT NOT NULL DEFAULT '{}',
            UNIQUE (project_id, name)
        );
        CREATE TABLE storage_pools (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            driver TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'Created'
        );
        CREATE TABLE instances (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id),
            name TEXT NOT NULL,
            type TEXT NOT NULL,
            architecture TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            ephemeral INTEGER NOT NULL DEFAULT 0,
            stateful INTEGER NOT NULL DEFAULT 0,
            config TEXT NOT NULL DEFAULT '{}',
            devices TEXT NOT NULL DEFAULT '{}',
            profiles TEXT NOT NULL DEFAULT '[]',
            pool TEXT NOT NULL,
            created_at TEXT NOT NULL,
            last_used_at TEXT NOT NULL DEFAULT '',
            UNIQUE (project_id, name)
        );
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id),
            fingerprint TEXT NOT NULL,
            filename TEXT NOT NULL,
            size INTEGER NOT NULL,
            type TEXT NOT NULL,
            architecture TEXT NOT NULL,
            public INTEGER NOT NULL DEFAULT 0,
            auto_update INTEGER NOT NULL DEFAULT 0,
            cached INTEGER NOT NULL DEFAULT 0,
            split INTEGER NOT NULL DEFAULT 0,
            properties TEXT NOT NULL DEFAULT '{}',
            profiles TEXT NOT NULL DEFAULT '["default"]',
            created_at TEXT NOT NULL,
            uploaded_at TEXT NOT NULL,
            last_used_at TEXT NOT NULL DEFAULT '',
            expires_at TEXT NOT NULL DEFAULT '',
            UNIQUE (project_id, fingerprint)
        );
        CREATE TABLE image_aliases (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id),
            name TEXT NOT NULL,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            description TEXT NOT NULL DEFAULT '',
            UNIQUE (project_id, name)
        );
        CREATE TABLE config (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """,
    )


def _v2(conn: Executor) -> None:
    _script(
        conn,
        """
        CREATE TABLE instance_snapshots (
            id INTEGER PRIMARY KEY,
            instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            architecture TEXT NOT NULL,
            ephemeral INTEGER NOT NULL DEFAULT 0,
            stateful INTEGER NOT NULL DEFAULT 0,
            config TEXT NOT NULL DEFAULT '{}',
            devices TEXT NOT NULL DEFAULT '{}',
            profiles TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL DEFAULT '',
            last_used_at TEXT NOT NULL DEFAULT '',
            UNIQUE (instance_id, name)
        );
        """,
    )


def _v3(conn: Executor) -> None:
    """Custom storage volumes and their snapshots (instance and image volumes are described by
    their instance and image rows)."""
    _script(
        conn,
        """
        CREATE TABLE storage_volumes (
            id INTEGER PRIMARY KEY,
            pool_id INTEGER NOT NULL REFERENCES storage_pools(id) ON DELETE CASCADE,
            project_id INTEGER NOT NULL REFERENCES projects(id),
            name TEXT NOT NULL,
            type TEXT NOT NULL,
            content_type TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            UNIQUE (pool_id, project_id, type, name)
        );
        CREATE TABLE storage_volume_snapshots (
            id INTEGER PRIMARY KEY,
            volume_id INTEGER NOT NULL REFERENCES storage_volumes(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL DEFAULT '',
            UNIQUE (volume_id, name)
        );
        """,
    )


def _v4(conn: Executor) -> None:
    """Backups of instances and of custom volumes (the tarballs live under backups/)."""
    _script(
        conn,
        """
        CREATE TABLE backups (
            id INTEGER PRIMARY KEY,
            instance_id INTEGER REFERENCES instances(id) ON DELETE CASCADE,
            volume_id INTEGER REFERENCES storage_volumes(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL DEFAULT '',
            without_snapshots INTEGER NOT NULL DEFAULT 0,
            optimized INTEGER NOT NULL DEFAULT 0,
            compression TEXT NOT NULL DEFAULT 'gzip',
            CHECK ((instance_id IS NULL) != (volume_id IS NULL))
        );
        CREATE UNIQUE INDEX backups_of_instance ON backups (instance_id, name)
            WHERE instance_id IS NOT NULL;
        CREATE UNIQUE INDEX backups_of_volume ON backups (volume_id, name)
            WHERE volume_id IS NOT NULL;
        """,
    )


def _v5(conn: Executor) -> None:
    """Managed networks (global, as Incus's without network projects)."""
    _script(
        conn,
        """
        CREATE TABLE networks (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL DEFAULT '{}'
        );
        """,
    )


def _v6(conn: Executor) -> None:
    """Network forwards (one per listen address of a network) and network ACLs."""
    _script(
        conn,
        """
        CREATE TABLE network_forwards (
            id INTEGER PRIMARY KEY,
            network_id INTEGER NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
            listen_address TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL DEFAULT '{}',
            ports TEXT NOT NULL DEFAULT '[]',
            UNIQUE (network_id, listen_address)
        );
        CREATE TABLE network_acls (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL DEFAULT '{}',
            ingress TEXT NOT NULL DEFAULT '[]',
            egress TEXT NOT NULL DEFAULT '[]'
        );
        """,
    )


def _v7(conn: Executor) -> None:
    """Warnings: one row per (type, entity), counted each time the problem is seen again."""
    _script(
        conn,
        """
        CREATE TABLE warnings (
            id INTEGER PRIMARY KEY,
            uuid TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            entity_url TEXT NOT NULL DEFAULT '',
            project TEXT NOT NULL DEFAULT '',
            severity TEXT NOT NULL DEFAULT 'low',
            status TEXT NOT NULL DEFAULT 'new',
            count INTEGER NOT NULL DEFAULT 1,
            first_seen_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            last_message TEXT NOT NULL DEFAULT '',
            UNIQUE (type, entity_url, project)
        );
        """,
    )


def _v8(conn: Executor) -> None:
    """Trusted certificates and pending trust tokens."""
    _script(
        conn,
        """
        CREATE TABLE certificates (
            id INTEGER PRIMARY KEY,
            fingerprint TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            name TEXT NOT NULL,
            certificate TEXT NOT NULL,
            restricted INTEGER NOT NULL DEFAULT 0,
            projects TEXT NOT NULL DEFAULT '[]',
            description TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE trust_tokens (
            id INTEGER PRIMARY KEY,
            secret TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            request TEXT NOT NULL DEFAULT '{}',
            expires_at TEXT NOT NULL DEFAULT ''
        );
        """,
    )


def _v9(conn: Executor) -> None:
    """The project of a network (names stay unique on the host: they name interfaces)."""
    _script(conn, "ALTER TABLE networks ADD COLUMN project TEXT NOT NULL DEFAULT 'default'")


def _v10(conn: Executor) -> None:
    """Where an image pulled from a server came from (for auto-update)."""
    _script(
        conn,
        """
        CREATE TABLE image_sources (
            image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
            server TEXT NOT NULL,
            protocol TEXT NOT NULL,
            alias TEXT NOT NULL DEFAULT '',
            certificate TEXT NOT NULL DEFAULT ''
        );
        """,
    )


def _v11(conn: Executor) -> None:
    """What a client sets on an instance's volume (user.* keys, a description), as Incus
    keeps it on the instance's volume record."""
    _script(
        conn,
        """
        ALTER TABLE instances ADD COLUMN volume_description TEXT NOT NULL DEFAULT '';
        ALTER TABLE instances ADD COLUMN volume_config TEXT NOT NULL DEFAULT '{}';
        """,
    )


def _v12(conn: Executor) -> None:
    """Network ACLs belong to a project (the one that holds the project's networks), their
    names unique within it, as Incus keeps them."""
    _script(
        conn,
        """
        CREATE TABLE network_acls_v12 (
            id INTEGER PRIMARY KEY,
            project TEXT NOT NULL DEFAULT 'default',
            name TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL DEFAULT '{}',
            ingress TEXT NOT NULL DEFAULT '[]',
            egress TEXT NOT NULL DEFAULT '[]',
            UNIQUE (project, name)
        );
        INSERT INTO network_acls_v12 (id, project, name, description, config, ingress, egress)
            SELECT id, 'default', name, description, config, ingress, egress FROM network_acls;
        DROP TABLE network_acls;
        ALTER TABLE network_acls_v12 RENAME TO network_acls;
        """,
    )


def _v13(conn: Executor) -> None:
    """Network zones (names unique across projects, as Incus) and their records."""
    _script(
        conn,
        """
        CREATE TABLE network_zones (
            id INTEGER PRIMARY KEY,
            project TEXT NOT NULL DEFAULT 'default',
            name TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE network_zone_records (
            id INTEGER PRIMARY KEY,
            zone_id INTEGER NOT NULL REFERENCES network_zones (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            entries TEXT NOT NULL DEFAULT '[]',
            config TEXT NOT NULL DEFAULT '{}',
            UNIQUE (zone_id, name)
        );
        """,
    )


def _v14(conn: Executor) -> None:
    """Cluster members and groups, and the member each instance lives on (empty on a server
    that is not clustered)."""
    _script(
        conn,
        """
        CREATE TABLE cluster_members (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            address TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL DEFAULT '',
            architecture TEXT NOT NULL DEFAULT '',
            failure_domain TEXT NOT NULL DEFAULT 'default',
            config TEXT NOT NULL DEFAULT '{}',
            roles TEXT NOT NULL DEFAULT '[]',
            state TEXT NOT NULL DEFAULT 'created',
            schema INTEGER NOT NULL,
            api_extensions INTEGER NOT NULL,
            heartbeat TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE cluster_groups (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE cluster_group_members (
            group_id INTEGER NOT NULL REFERENCES cluster_groups (id) ON DELETE CASCADE,
            member_id INTEGER NOT NULL REFERENCES cluster_members (id) ON DELETE CASCADE,
            PRIMARY KEY (group_id, member_id)
        );
        ALTER TABLE instances ADD COLUMN location TEXT NOT NULL DEFAULT ''
        """,
    )


def _v15(conn: Executor) -> None:
    """Join tokens: a secret a server presents to join the cluster as the member named."""
    _script(
        conn,
        """
        CREATE TABLE cluster_join_tokens (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            secret TEXT NOT NULL UNIQUE,
            expires_at TEXT NOT NULL DEFAULT ''
        )
        """,
    )


def _v16(conn: Executor) -> None:
    """A cluster network is Pending while members are given their own values (--target)."""
    _script(conn, "ALTER TABLE networks ADD COLUMN status TEXT NOT NULL DEFAULT 'Created'")


def _v17(conn: Executor) -> None:
    """Warnings are each member's own: one row per (type, entity, project, member)."""
    _script(
        conn,
        """
        CREATE TABLE warnings_v17 (
            id INTEGER PRIMARY KEY,
            uuid TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            entity_url TEXT NOT NULL DEFAULT '',
            project TEXT NOT NULL DEFAULT '',
            severity TEXT NOT NULL DEFAULT 'low',
            status TEXT NOT NULL DEFAULT 'new',
            count INTEGER NOT NULL DEFAULT 1,
            first_seen_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            last_message TEXT NOT NULL DEFAULT '',
            location TEXT NOT NULL DEFAULT '',
            UNIQUE (type, entity_url, project, location)
        );
        INSERT INTO warnings_v17 (id, uuid, type, entity_url, project, severity, status, count,
                                  first_seen_at, last_seen_at, last_message)
            SELECT id, uuid, type, entity_url, project, severity, status, count, first_seen_at,
                   last_seen_at, last_message FROM warnings;
        DROP TABLE warnings;
        ALTER TABLE warnings_v17 RENAME TO warnings
        """,
    )


def _v18(conn: Executor) -> None:
    """An instance's snapshots in creation order straight from an index: listing 3,000 of
    one instance sorted them (a temporary B-tree) and finding the newest read them all."""
    _script(
        conn,
        "CREATE INDEX instance_snapshots_in_order ON instance_snapshots (instance_id, id)",
    )


MIGRATIONS: list[Migration] = [
    *(_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9, _v10, _v11, _v12),
    *(_v13, _v14, _v15, _v16, _v17, _v18),
]


def check_version(conn: Executor, migrations: list[Migration] = MIGRATIONS) -> None:
    """A cluster's schema must be this stapesd's: members never upgrade it one by one
    (rolling upgrades are not supported)."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version != len(migrations):
        raise RuntimeError(
            f"the cluster's database has schema {version} and this stapesd {len(migrations)}: "
            "every member must run the same version of stapesd (upgrade them all at once)"
        )


def migrate(conn: Executor, migrations: list[Migration] = MIGRATIONS) -> int:
    """Apply every migration past the stored version; return the new version."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(migrations):
        raise RuntimeError(
            f"database schema {version} is newer than this stapesd ({len(migrations)})"
        )
    for number, step in enumerate(migrations[version:], start=version + 1):
        step(conn)
        conn.execute(f"PRAGMA user_version = {number}")
    return len(migrations)
