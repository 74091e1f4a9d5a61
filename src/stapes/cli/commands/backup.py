"""stapes export and stapes import: an instance to and from a backup tarball (Incus's format,
so `incus import` reads what `stapes export` writes and the reverse)."""

from __future__ import annotations

from pathlib import Path

import click

from stapes.api.base import now, timestamp
from stapes.cli.main import run
from stapes.client.instance_server import InstanceServer

COMPRESSIONS = ["none", "gzip", "bzip2", "xz", "lzma", "zstd", "lz4"]


def _export(server: InstanceServer, name: str, target: Path, body: dict[str, object]) -> None:
    backup = f"stapes-export-{timestamp(now()).replace(':', '-')}"
    server.create_backup(name, {**body, "name": backup}).wait()
    try:
        server.download_backup(name, backup, target)
    finally:
        server.delete_backup(name, backup).wait()
    click.echo("Backup exported successfully!")


@click.command("export")
@click.argument("instance")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--instance-only", is_flag=True, help="Leave the snapshots out")
@click.option(
    "--optimized-storage",
    is_flag=True,
    help="Store the pool driver's own stream (btrfs send): restores only onto the same driver",
)
@click.option(
    "--compression",
    type=click.Choice(COMPRESSIONS),
    default=None,
    help="Compression algorithm (default: the server's, gzip)",
)
def export(
    instance: str,
    file: Path | None,
    instance_only: bool,
    optimized_storage: bool,
    compression: str | None,
) -> None:
    """Export an instance (and its snapshots) as a backup tarball, FILE or INSTANCE.tar.gz."""
    target = file or Path(f"{instance}.tar.gz")
    body: dict[str, object] = {
        "instance_only": instance_only,
        "optimized_storage": optimized_storage,
        "compression_algorithm": compression or "",
    }
    run(lambda s: _export(s, instance, target, body))


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("name", required=False, default="")
@click.option("--storage", "-s", default="", help="Storage pool to restore into")
def import_(file: Path, name: str, storage: str) -> None:
    """Make an instance from a backup tarball (named as in the backup unless NAME is given)."""
    run(lambda s: s.import_backup(file, name, storage).wait())


COMMANDS = [export, import_]
