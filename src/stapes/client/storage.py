"""Storage pools and volumes: the client side of /1.0/storage-pools."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stapes.client.connection import Connection, unwrap
from stapes.client.connection import segment as _q
from stapes.client.operation import RemoteOperation


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


def split_volume(name: str) -> tuple[str, str]:
    """``[TYPE/]NAME`` as incus takes it: custom unless a type is given."""
    kind, sep, rest = name.partition("/")
    if sep and kind in ("custom", "container", "virtual-machine", "image"):
        return kind, rest
    return "custom", name


class StorageClient:
    conn: Connection

    def _op(self, method: str, path: str, **kwargs: Any) -> RemoteOperation:
        """A request answered with an operation (InstanceServer uses it too)."""
        return RemoteOperation(self.conn, self.conn.request(method, path, **kwargs))

    # pools
    def pools(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.conn.request(
            "GET", "/1.0/storage-pools", params={"recursion": "1"}
        )
        return result

    def pool(self, name: str, target: str = "") -> tuple[dict[str, Any], str]:
        """``target``: as that cluster member has it (its own values of member keys)."""
        params = {"target": target} if target else None
        _, envelope, etag = self.conn.raw("GET", f"/1.0/storage-pools/{_q(name)}", params=params)
        return unwrap(envelope), etag

    def pool_resources(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request(
            "GET", f"/1.0/storage-pools/{_q(name)}/resources"
        )
        return result

    def create_pool(self, body: dict[str, Any], target: str = "") -> None:
        params = {"target": target} if target else None
        self.conn.request("POST", "/1.0/storage-pools", json_body=body, params=params)

    def update_pool(self, name: str, put: dict[str, Any], etag: str = "", target: str = "") -> None:
        headers = {"If-Match": etag} if etag else None
        params = {"target": target} if target else None
        path = f"/1.0/storage-pools/{_q(name)}"
        self.conn.request("PUT", path, json_body=put, headers=headers, params=params)

    def delete_pool(self, name: str) -> None:
        self.conn.request("DELETE", f"/1.0/storage-pools/{_q(name)}")

    # volumes
    def _vol(self, pool: str, volume: str) -> str:
        kind, name = split_volume(volume)
        return f"/1.0/storage-pools/{_q(pool)}/volumes/{kind}/{_q(name)}"

    # backups (of instances and of custom volumes)
    def export_backup(self, base: str, target: Path, body: dict[str, Any]) -> int:
        """Make a backup of the instance or volume at ``base``, stream it into ``target`` and
        delete it from the server (what ``export`` does); returns the size."""
        name = f"export-{uuid.uuid4().hex[:12]}"
        self._op("POST", f"{base}/backups", json_body={**body, "name": name}).wait()
        try:
            return self.conn.download(f"{base}/backups/{name}/export", target)
        finally:
            self._op("DELETE", f"{base}/backups/{name}").wait()

    def upload_backup(
        self, path: str, tarball: Path, name: str, headers: dict[str, str]
    ) -> RemoteOperation:
        """POST a backup tarball to ``path`` (the instances or custom volumes collection)."""
        headers = {
            **headers,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(os.path.getsize(tarball)),
        }
        if name:
            headers["X-Incus-name"] = name
        return self._op("POST", path, body=file_chunks(tarball), headers=headers)

    def export_volume(self, pool: str, volume: str, target: Path, body: dict[str, Any]) -> int:
        return self.export_backup(self._vol(pool, volume), target, body)

    def import_volume(self, pool: str, tarball: Path, name: str = "") -> RemoteOperation:
        return self.upload_backup(
            f"/1.0/storage-pools/{_q(pool)}/volumes/custom", tarball, name, {}
        )

    # recovery after a database loss
    def recover_scan(self, pools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Volumes on the pools (and on ``pools`` the database lost) that it does not know."""
        body = {"pools": pools or []}
        result: dict[str, Any] = self.conn.request(
            "POST", "/internal/recover/validate", json_body=body
        )
        return result

    def recover_import(self, pools: list[dict[str, Any]] | None = None) -> None:
        self.conn.request("POST", "/internal/recover/import", json_body={"pools": pools or []})

    def volumes(self, pool: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.conn.request(
            "GET", f"/1.0/storage-pools/{_q(pool)}/volumes", params={"recursion": "1"}
        )
        return result

    def volume(self, pool: str, volume: str) -> tuple[dict[str, Any], str]:
        _, envelope, etag = self.conn.raw("GET", self._vol(pool, volume))
        return unwrap(envelope), etag

    def volume_state(self, pool: str, volume: str) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request("GET", self._vol(pool, volume) + "/state")
        return result

    def create_volume(self, pool: str, body: dict[str, Any]) -> RemoteOperation | None:
        """Sync for an empty volume; an operation for a copy."""
        _, envelope, _ = self.conn.raw(
            "POST", f"/1.0/storage-pools/{_q(pool)}/volumes/custom", json_body=body
        )
        metadata = unwrap(envelope)
        return RemoteOperation(self.conn, metadata) if envelope.get("type") == "async" else None

    def update_volume(self, pool: str, volume: str, put: dict[str, Any], etag: str = "") -> None:
        headers = {"If-Match": etag} if etag else None
        self.conn.request("PUT", self._vol(pool, volume), json_body=put, headers=headers)

    def move_volume(self, pool: str, volume: str, body: dict[str, Any]) -> RemoteOperation:
        return self._op("POST", self._vol(pool, volume), json_body=body)

    def delete_volume(self, pool: str, volume: str) -> None:
        self.conn.request("DELETE", self._vol(pool, volume))

    # volume snapshots
    def volume_snapshots(self, pool: str, volume: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.conn.request(
            "GET", self._vol(pool, volume) + "/snapshots", params={"recursion": "1"}
        )
        return result

    def create_volume_snapshot(
        self, pool: str, volume: str, snap: str = "", expires_at: str | None = None
    ) -> RemoteOperation:
        body: dict[str, Any] = {"name": snap}
        if expires_at is not None:
            body["expires_at"] = expires_at
        return self._op("POST", self._vol(pool, volume) + "/snapshots", json_body=body)

    def rename_volume_snapshot(
        self, pool: str, volume: str, snap: str, new_name: str
    ) -> RemoteOperation:
        return self._op(
            "POST",
            self._vol(pool, volume) + f"/snapshots/{_q(snap)}",
            json_body={"name": new_name},
        )

    def delete_volume_snapshot(self, pool: str, volume: str, snap: str) -> RemoteOperation:
        return self._op("DELETE", self._vol(pool, volume) + f"/snapshots/{_q(snap)}")

    def restore_volume(self, pool: str, volume: str, snap: str) -> None:
        current, _ = self.volume(pool, volume)
        self.update_volume(
            pool,
            volume,
            {"config": current["config"], "description": current["description"], "restore": snap},
        )
