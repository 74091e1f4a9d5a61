"""stapes admin: init (set a fresh daemon up, from --auto answers or an Incus preseed; or
--dump what it holds), recover (find the instances and custom volumes a lost database forgot,
on the pools, and record them again, as `incus admin recover` without its questions)."""

from __future__ import annotations

import sys

import click
import yaml

from stapes.cli.main import parse_key_values, run
from stapes.client import preseed as init_data
from stapes.client.instance_server import InstanceServer


@click.group()
def admin() -> None:
    """Manage the daemon itself."""


def _recover(server: InstanceServer, pools: list[dict[str, object]], yes: bool) -> None:
    scan = server.recover_scan(pools)
    for error in scan["dependencyErrors"]:
        click.echo(f"Cannot recover: {error}", err=True)
    if scan["dependencyErrors"]:
        raise SystemExit(1)
    found = scan["unknownVolumes"]
    if not found:
        click.echo("No unknown volumes found: nothing to recover.")
        return
    click.echo("Unknown volumes:")
    for vol in found:
        click.echo(
            f" - {vol['type']} {vol['name']!r} on pool {vol['pool']!r} in project "
            f"{vol['project']!r} ({vol['snapshotCount']} snapshots)"
        )
    if not yes and not click.confirm("Recover them?", default=False):
        return
    server.recover_import(pools)
    click.echo(f"Recovered {len(found)} volumes.")


@admin.command()
@click.option(
    "--pool",
    "pools",
    multiple=True,
    metavar="NAME:DRIVER[:KEY=VALUE,...]",
    help="A pool the database lost, to mount and scan too (e.g. fast:btrfs:source=/var/lib/"
    "stapes/disks/fast.img)",
)
@click.option("--yes", "-y", is_flag=True, help="Recover without asking")
def recover(pools: tuple[str, ...], yes: bool) -> None:
    """Record again the instances and custom volumes found on the pools after a database
    loss (instances from the backup.yaml in their volume)."""
    lost: list[dict[str, object]] = []
    for spec in pools:
        name, _, rest = spec.partition(":")
        driver, _, config = rest.partition(":")
        if not name or not driver:
            raise click.BadParameter(f"{spec!r} is not NAME:DRIVER[:KEY=VALUE,...]")
        keys = parse_key_values(tuple(c for c in config.split(",") if c), "--pool")
        lost.append({"name": name, "driver": driver, "config": keys})
    run(lambda s: _recover(s, lost, yes))


@admin.command()
@click.option("--auto", "auto", is_flag=True, help="Set up with default answers (as incus)")
@click.option("--minimal", is_flag=True, help="With --auto: a storage pool only, no network")
@click.option("--preseed", is_flag=True, help="Apply an Incus preseed (YAML) read from stdin")
@click.option("--dump", is_flag=True, help="Print the daemon's setup as a preseed")
@click.option(
    "--storage-backend", default="dir", show_default=True, help="With --auto: the pool's driver"
)
def init(auto: bool, minimal: bool, preseed: bool, dump: bool, storage_backend: str) -> None:
    """Set the daemon up: a storage pool and the default profile's root disk, and unless
    --minimal a managed bridge (incusbr0) the default profile's eth0 joins."""
    if sum((auto or minimal, preseed, dump)) != 1:
        raise click.UsageError("Give one of --auto (or --minimal), --preseed or --dump")

    def go(server: InstanceServer) -> None:
        if dump:
            click.echo(yaml.safe_dump(init_data.dump(server.conn), sort_keys=False), nl=False)
        elif preseed:
            data = yaml.safe_load(sys.stdin.read()) or {}
            if not isinstance(data, dict):
                raise click.UsageError("The preseed must be a YAML mapping")
            init_data.apply(server.conn, data)
        else:
            init_data.automatic(server.conn, backend=storage_backend, network=not minimal)

    run(go)


COMMANDS = [admin]
