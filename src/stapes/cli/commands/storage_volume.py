"""storage volume list|create|show|edit|set|unset|get|delete|rename|copy|move|attach|detach|
snapshot|restore|info|export|import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stapes.api.errors import RemoteError
from stapes.cli.commands._editing import InstanceTarget, Target, add_config_commands
from stapes.cli.commands.backup import export_body, export_options
from stapes.cli.main import guarded, parse_key_values, run, run_on, server_for, split_remote
from stapes.cli.output import format_option, human_size, print_object, print_rows
from stapes.client.instance_server import InstanceServer
from stapes.client.operation import RemoteOperation
from stapes.client.storage import split_volume


class VolumeTarget(Target):
    def __init__(self, pool: str, name: str) -> None:
        super().__init__(name)
        self.pool = pool

    @property
    def label(self) -> str:
        return f"volume {self.name} of pool {self.pool}"

    def load(self, server: InstanceServer) -> tuple[dict[str, Any], str]:
        vol, etag = server.volume(self.pool, self.name)
        return {"config": vol["config"], "description": vol["description"]}, etag

    def save(self, server: InstanceServer, body: dict[str, Any], etag: str) -> None:
        server.update_volume(self.pool, self.name, body, etag)


def _resolve(verb: str, args: tuple[str, ...]) -> tuple[Target, tuple[str, ...]]:
    if len(args) < 2:
        raise click.UsageError("Expected POOL VOLUME")
    return VolumeTarget(args[0], args[1]), args[2:]


def pool_and_volume(text: str) -> tuple[str, str]:
    """``POOL/VOLUME`` as copy and move take them."""
    pool, sep, name = text.partition("/")
    if not sep or not pool or not name:
        raise click.UsageError(f"{text!r}: expected POOL/VOLUME")
    return pool, name


@click.group()
def volume() -> None:
    """Manage storage volumes."""


add_config_commands(volume, _resolve)


@volume.command(name="list")
@click.argument("pool")
@format_option
def list_volumes(pool: str, fmt: str) -> None:
    """List the volumes of a pool."""

    def go(server: InstanceServer) -> None:
        vols = server.volumes(pool)
        rows = [
            [
                v["type"] + (" (snapshot)" if "/" in v["name"] else ""),
                v["name"],
                v["description"],
                v["content_type"],
                str(len(v["used_by"])),
            ]
            for v in vols
        ]
        columns = ["TYPE", "NAME", "DESCRIPTION", "CONTENT-TYPE", "USED BY"]
        print_rows(columns, rows, vols, fmt)

    run(go)


@volume.command()
@click.argument("pool")
@click.argument("name")
@click.argument("pairs", nargs=-1)
@click.option(
    "--type",
    "content_type",
    type=click.Choice(["filesystem", "block"]),
    default="filesystem",
    help="Content type",
)
@click.option("--description", default="", help="Volume description")
def create(
    pool: str, name: str, pairs: tuple[str, ...], content_type: str, description: str
) -> None:
    """Create a custom volume: POOL NAME [KEY=VALUE...]."""
    body = {
        "name": name,
        "type": "custom",
        "content_type": content_type,
        "description": description,
        "config": parse_key_values(pairs, "KEY=VALUE"),
    }
    run(lambda s: s.create_volume(pool, body))
    click.echo(f"Storage volume {name} created")


@volume.command()
@click.argument("pool")
@click.argument("name")
def delete(pool: str, name: str) -> None:
    """Delete a custom volume (it must not be attached)."""
    run(lambda s: s.delete_volume(pool, name))
    click.echo(f"Storage volume {name} deleted")


@volume.command()
@click.argument("pool")
@click.argument("name")
@click.argument("new_name")
def rename(pool: str, name: str, new_name: str) -> None:
    """Rename a custom volume."""
    run(lambda s: s.move_volume(pool, name, {"name": new_name}).wait())
    click.echo(f'Renamed storage volume from "{name}" to "{new_name}"')


def _copy(source: str, target: str, volume_only: bool, refresh: bool, mode: str) -> bool:
    """Copy within a server or to another one; True when it went to another server."""
    src_remote, source = split_remote(source)
    dst_remote, target = split_remote(target)
    src_pool, src_name = pool_and_volume(source)
    dst_pool, dst_name = pool_and_volume(target)
    if src_remote != dst_remote:
        src, dst = (src_pool, src_name), (dst_pool, dst_name)
        guarded(lambda: _between(src_remote, dst_remote, src, dst, volume_only, refresh, mode))
        return True
    body = {
        "name": dst_name,
        "type": "custom",
        "source": {
            "type": "copy",
            "pool": src_pool,
            "name": src_name,
            "volume_only": volume_only,
            "refresh": refresh,
        },
    }

    def go(server: InstanceServer) -> None:
        op = server.create_volume(dst_pool, body)
        if op is not None:
            op.wait()

    run_on(src_remote, go)
    return False


def _between(
    src_remote: str | None,
    dst_remote: str | None,
    src: tuple[str, str],
    dst: tuple[str, str],
    volume_only: bool,
    refresh: bool,
    mode: str,
) -> None:
    """A custom volume from one server to another through the migration API."""
    from stapes.client import migration

    with server_for(src_remote) as source, server_for(dst_remote) as target:
        vol, _ = source.volume(*src)
        body: dict[str, Any] = {
            "name": dst[1],
            "type": "custom",
            "config": {
                k: v for k, v in (vol.get("config") or {}).items() if not k.startswith("volatile.")
            },
            "description": vol.get("description") or "",
            "content_type": vol.get("content_type") or "filesystem",
            "source": {"type": "migration", "volume_only": volume_only, "refresh": refresh},
        }

        def start_source(push: dict[str, Any] | None) -> RemoteOperation:
            request: dict[str, Any] = {
                "migration": True,
                "name": src[1],
                "volume_only": volume_only,
            }
            if push is not None:
                request["target"] = push
            return source.move_volume(*src, request)

        def start_target(fields: dict[str, Any]) -> RemoteOperation:
            op = target.create_volume(dst[0], {**body, "source": {**body["source"], **fields}})
            assert op is not None
            return op

        migration.migrate(
            migration.Endpoint.of(source),
            migration.Endpoint.of(target),
            start_source,
            start_target,
            mode,
            "Transferring volume",
        )


_MODE = click.option(
    "--mode",
    type=click.Choice(["pull", "push", "relay"]),
    default="pull",
    help="Between servers: the target pulls, the source pushes, or this client relays",
)


@volume.command()
@click.argument("source")
@click.argument("target")
@click.option("--volume-only", is_flag=True, help="Leave the snapshots behind")
@click.option("--refresh", is_flag=True, help="Update an existing copy")
@_MODE
def copy(source: str, target: str, volume_only: bool, refresh: bool, mode: str) -> None:
    """Copy a custom volume: [REMOTE:]POOL/VOLUME[/SNAPSHOT] [REMOTE:]POOL/VOLUME."""
    _copy(source, target, volume_only, refresh, mode)
    click.echo("Storage volume copied successfully!")


@volume.command()
@click.argument("source")
@click.argument("target")
@click.option("--volume-only", is_flag=True, help="Leave the snapshots behind")
@_MODE
def move(source: str, target: str, volume_only: bool, mode: str) -> None:
    """Move or rename a custom volume: [REMOTE:]POOL/VOLUME [REMOTE:]POOL/VOLUME."""
    src_remote, local = split_remote(source)
    if src_remote != split_remote(target)[0]:  # to another server: copy, then delete here
        _copy(source, target, volume_only, False, mode)
        src_pool, src_name = pool_and_volume(local)
        run_on(src_remote, lambda s: s.delete_volume(src_pool, src_name))
        click.echo("Storage volume moved successfully!")
        return
    source = local
    src_pool, src_name = pool_and_volume(source)
    dst_pool, dst_name = pool_and_volume(split_remote(target)[1])
    body = {"name": dst_name, "pool": dst_pool, "volume_only": volume_only}
    run_on(src_remote, lambda s: s.move_volume(src_pool, src_name, body).wait())
    click.echo("Storage volume moved successfully!")


@volume.command()
@click.argument("pool")
@click.argument("name")
@click.argument("instance")
@click.argument("rest", nargs=-1)
def attach(pool: str, name: str, instance: str, rest: tuple[str, ...]) -> None:
    """Attach a custom volume: POOL VOLUME INSTANCE [DEVICE] PATH."""
    if len(rest) not in (1, 2):
        raise click.UsageError("Expected [DEVICE] PATH after the instance")
    device, path = (name, rest[0]) if len(rest) == 1 else rest

    def change(body: dict[str, Any]) -> None:
        if device in body["devices"]:
            raise RemoteError(f"Device {device!r} already exists on {instance}", 409)
        body["devices"][device] = {"type": "disk", "pool": pool, "source": name, "path": path}

    InstanceTarget(instance).edit(change)


@volume.command()
@click.argument("pool")
@click.argument("name")
@click.argument("instance")
@click.argument("device", required=False)
def detach(pool: str, name: str, instance: str, device: str | None) -> None:
    """Detach a custom volume: POOL VOLUME INSTANCE [DEVICE]."""

    def change(body: dict[str, Any]) -> None:
        found = [
            d
            for d, conf in body["devices"].items()
            if conf.get("type") == "disk"
            and conf.get("pool") == pool
            and conf.get("source") == name
            and (device is None or d == device)
        ]
        if not found:
            raise RemoteError(f"No device of {instance} attaches volume {name}", 404)
        for d in found:
            del body["devices"][d]

    InstanceTarget(instance).edit(change)


@volume.command()
@click.argument("pool")
@click.argument("name")
def info(pool: str, name: str) -> None:
    """Show a volume, its usage and its snapshots."""

    def go(server: InstanceServer) -> None:
        vol, _ = server.volume(pool, name)
        usage = server.volume_state(pool, name).get("usage") or {}
        shown: dict[str, Any] = {
            "name": vol["name"],
            "type": vol["type"],
            "content type": vol["content_type"],
            "created": vol["created_at"],
        }
        if usage:
            shown["usage"] = human_size(usage["used"])
            if usage.get("total"):
                shown["total"] = human_size(usage["total"])
        if split_volume(name)[0] == "custom":
            snaps = server.volume_snapshots(pool, name)
            if snaps:
                shown["snapshots"] = {s["name"].rsplit("/", 1)[-1]: s["created_at"] for s in snaps}
        print_object(shown)

    run(go)


@volume.command()
@click.argument("pool")
@click.argument("name")
@click.argument("snap")
def restore(pool: str, name: str, snap: str) -> None:
    """Restore a custom volume from one of its snapshots."""
    run(lambda s: s.restore_volume(pool, name, snap))


@volume.group()
def snapshot() -> None:
    """Manage custom volume snapshots."""


@snapshot.command(name="create")
@click.argument("pool")
@click.argument("name")
@click.argument("snap", required=False, default="")
@click.option("--expiry", default=None, help="Expiry time (RFC 3339)")
def snapshot_create(pool: str, name: str, snap: str, expiry: str | None) -> None:
    """Snapshot a custom volume: POOL VOLUME [SNAPSHOT]."""
    run(lambda s: s.create_volume_snapshot(pool, name, snap, expiry).wait())


@snapshot.command(name="list")
@click.argument("pool")
@click.argument("name")
@format_option
def snapshot_list(pool: str, name: str, fmt: str) -> None:
    """List the snapshots of a custom volume."""

    def go(server: InstanceServer) -> None:
        snaps = server.volume_snapshots(pool, name)
        rows = [
            [s["name"].rsplit("/", 1)[-1], s["created_at"], s.get("expires_at") or ""]
            for s in snaps
        ]
        print_rows(["NAME", "TAKEN AT", "EXPIRES AT"], rows, snaps, fmt)

    run(go)


@snapshot.command(name="delete")
@click.argument("pool")
@click.argument("name")
@click.argument("snap")
def snapshot_delete(pool: str, name: str, snap: str) -> None:
    """Delete a snapshot of a custom volume."""
    run(lambda s: s.delete_volume_snapshot(pool, name, snap).wait())


@snapshot.command(name="rename")
@click.argument("pool")
@click.argument("name")
@click.argument("snap")
@click.argument("new_name")
def snapshot_rename(pool: str, name: str, snap: str, new_name: str) -> None:
    """Rename a snapshot of a custom volume."""
    run(lambda s: s.rename_volume_snapshot(pool, name, snap, new_name).wait())


snapshot.add_command(restore)


@volume.command("export")
@click.argument("pool")
@click.argument("name")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@export_options("volume")
def export_volume(
    pool: str,
    name: str,
    file: Path | None,
    without_snapshots: bool,
    optimized_storage: bool,
    compression: str | None,
) -> None:
    """Export a custom volume (and its snapshots) as a backup tarball, FILE or NAME.tar.gz."""
    target = file or Path(f"{name}.tar.gz")
    body = export_body(without_snapshots, optimized_storage, compression, "volume")
    run(lambda s: s.export_volume(pool, name, target, body))
    click.echo("Backup exported successfully!")


@volume.command("import")
@click.argument("pool")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("name", required=False, default="")
def import_volume(pool: str, file: Path, name: str) -> None:
    """Make a custom volume from a backup tarball (named as in the backup unless NAME is given)."""
    run(lambda s: s.import_volume(pool, file, name).wait())
