"""stapes export and stapes import: an instance to and from a backup tarball (Incus's format,
so `incus import` reads what `stapes export` writes and the reverse)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from stapes.cli.main import run

COMPRESSIONS = ["none", "gzip", "bzip2", "xz", "lzma", "zstd", "lz4"]


F = TypeVar("F", bound=Callable[..., Any])


def export_options(what: str) -> Callable[[F], F]:
    """--*-only, --optimized-storage, --compression, for instances and volumes alike."""

    def add(command: F) -> F:
        command = click.option(
            "--compression",
            type=click.Choice(COMPRESSIONS),
            default=None,
            help="Compression algorithm (default: gzip)",
        )(command)
        command = click.option(
            "--optimized-storage",
            is_flag=True,
            help="Store the pool driver's own stream (btrfs send): restores only onto the "
            "same driver",
        )(command)
        return click.option(
            f"--{what}-only", "without_snapshots", is_flag=True, help="Leave the snapshots out"
        )(command)

    return add


def export_body(
    without_snapshots: bool, optimized: bool, compression: str | None, what: str
) -> dict[str, object]:
    return {
        f"{what}_only": without_snapshots,
        "optimized_storage": optimized,
        "compression_algorithm": compression or "",
    }


@click.command("export")
@click.argument("instance")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@export_options("instance")
def export(
    instance: str,
    file: Path | None,
    without_snapshots: bool,
    optimized_storage: bool,
    compression: str | None,
) -> None:
    """Export an instance (and its snapshots) as a backup tarball, FILE or INSTANCE.tar.gz."""
    target = file or Path(f"{instance}.tar.gz")
    body = export_body(without_snapshots, optimized_storage, compression, "instance")
    run(lambda s: s.export_instance(instance, target, body))
    click.echo("Backup exported successfully!")


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("name", required=False, default="")
@click.option("--storage", "-s", default="", help="Storage pool to restore into")
def import_(file: Path, name: str, storage: str) -> None:
    """Make an instance from a backup tarball (named as in the backup unless NAME is given)."""
    run(lambda s: s.import_backup(file, name, storage).wait())


COMMANDS = [export, import_]
