"""storage list|show|create|set|unset|get|edit|delete|info, and the ``storage volume`` group."""

from __future__ import annotations

from typing import Any

import click

from stapes.cli.commands._editing import Target, add_config_commands, named
from stapes.cli.commands.storage_volume import volume
from stapes.cli.main import parse_key_values, run
from stapes.cli.output import format_option, human_size, print_object, print_rows
from stapes.client.instance_server import InstanceServer


class PoolTarget(Target):
    def load(self, server: InstanceServer) -> tuple[dict[str, Any], str]:
        pool, etag = server.pool(self.name, self.member)
        return {"config": pool["config"], "description": pool["description"]}, etag

    def save(self, server: InstanceServer, body: dict[str, Any], etag: str) -> None:
        server.update_pool(self.name, body, etag, self.member)


@click.group()
def storage() -> None:
    """Manage storage pools and volumes."""


add_config_commands(storage, named(PoolTarget, "storage pool"), per_member=True)
storage.add_command(volume)


@storage.command(name="list")
@format_option
def list_pools(fmt: str) -> None:
    """List storage pools."""

    def go(server: InstanceServer) -> None:
        pools = server.pools()
        rows = [
            [p["name"], p["driver"], p["description"], str(len(p["used_by"])), p["status"].upper()]
            for p in pools
        ]
        print_rows(["NAME", "DRIVER", "DESCRIPTION", "USED BY", "STATE"], rows, pools, fmt)

    run(go)


@storage.command()
@click.argument("name")
@click.argument("driver")
@click.argument("pairs", nargs=-1)
@click.option("--description", default="", help="Pool description")
@click.option(
    "--target", default="", help="Cluster member whose own values (source, size) these are"
)
def create(name: str, driver: str, pairs: tuple[str, ...], description: str, target: str) -> None:
    """Create a storage pool: NAME DRIVER [KEY=VALUE...] (dir, btrfs, lvm, zfs). In a cluster,
    give each member's source/size with --target first, then create it without --target."""
    config = parse_key_values(pairs, "KEY=VALUE")
    body = {"name": name, "driver": driver, "config": config, "description": description}
    run(lambda s: s.create_pool(body, target=target))
    click.echo(f"Storage pool {name} {'pending on ' + target if target else 'created'}")


@storage.command()
@click.argument("name")
def delete(name: str) -> None:
    """Delete a storage pool (it must not be in use)."""
    run(lambda s: s.delete_pool(name))
    click.echo(f"Storage pool {name} deleted")


@storage.command()
@click.argument("name")
@click.option("--bytes", "raw_bytes", is_flag=True, help="Show sizes in bytes")
def info(name: str, raw_bytes: bool) -> None:
    """Show a pool's usage and what uses it."""

    def size(value: int) -> str:
        return str(value) if raw_bytes else human_size(value)

    def go(server: InstanceServer) -> None:
        pool, _ = server.pool(name)
        res = server.pool_resources(name)
        print_object(
            {
                "info": {
                    "name": pool["name"],
                    "driver": pool["driver"],
                    "description": pool["description"],
                    "total space": size(res["space"]["total"]),
                    "space used": size(res["space"]["used"]),
                },
                "used by": _grouped(pool["used_by"]),
            }
        )

    run(go)


def _grouped(urls: list[str]) -> dict[str, list[str]]:
    """used_by URLs grouped by kind, as incus prints them."""
    groups: dict[str, list[str]] = {}
    for url in urls:
        path = url.split("?", 1)[0].removeprefix("/1.0/")
        kind, _, rest = path.partition("/")
        if kind == "storage-pools":
            kind, rest = "volumes", rest.split("/volumes/", 1)[-1]
        groups.setdefault(kind, []).append(rest)
    return groups


COMMANDS = [storage]
