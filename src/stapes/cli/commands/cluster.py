"""cluster list|show|enable|add|join|remove|rename|group ...: as incus's."""

from __future__ import annotations

from typing import Any

import click

from stapes.api.errors import RemoteError
from stapes.api.join_token import token_text
from stapes.cli.main import run
from stapes.cli.output import format_option, print_object, print_rows
from stapes.client.cluster import certificate_at, decode_token
from stapes.client.instance_server import InstanceServer


@click.group()
def cluster() -> None:
    """Manage the cluster and its members."""


@cluster.command(name="list")
@format_option
def list_members(fmt: str) -> None:
    """List the cluster's members."""

    def go(server: InstanceServer) -> None:
        members = server.members()
        rows = [
            [
                m["server_name"],
                m["url"],
                "\n".join(m["roles"]),
                m["architecture"],
                m["failure_domain"],
                m["description"],
                m["status"].upper(),
                m["message"],
            ]
            for m in members
        ]
        columns = ["NAME", "URL", "ROLES", "ARCHITECTURE", "FAILURE DOMAIN", "DESCRIPTION",
                   "STATE", "MESSAGE"]  # fmt: skip
        print_rows(columns, rows, members, fmt)

    run(go)


@cluster.command()
@click.argument("name")
def show(name: str) -> None:
    """Show a member."""
    run(lambda s: print_object(s.member(name)[0]))


@cluster.command()
@click.argument("name")
def enable(name: str) -> None:
    """Make this server the first member of a new cluster, named NAME (core.https_address
    must be set)."""

    def go(server: InstanceServer) -> None:
        server.update_cluster({"server_name": name, "enabled": True}).wait()
        click.echo(f"Clustering enabled, this server is member {name}")

    run(go)


@cluster.command()
@click.argument("name")
def add(name: str) -> None:
    """Make a join token for a new member NAME."""

    def go(server: InstanceServer) -> None:
        op = server.join_token(name)
        click.echo(f"Member {name} join token:")
        click.echo(token_text(op.metadata["metadata"]))

    run(go)


@cluster.command()
@click.argument("token")
@click.option("--name", default="", help="The member's name (default: the token's)")
@click.option(
    "--address", default="", help="This server's address (default: its core.https_address)"
)
@click.option(
    "--config",
    "member_config",
    multiple=True,
    help="This member's value of a pool key: storage-pool.POOL.KEY=VALUE (source, size...)",
)
def join(token: str, name: str, address: str, member_config: tuple[str, ...]) -> None:
    """Join this (empty) server to the cluster whose token TOKEN is."""

    def go(server: InstanceServer) -> None:
        fields = decode_token(token)
        own = address or server.server().get("config", {}).get("core.https_address", "")
        if not own:
            raise RemoteError("Give --address: this server has no core.https_address", 400)
        problems = []
        for cluster_address in fields["addresses"]:
            try:
                certificate = certificate_at(cluster_address, fields["fingerprint"])
                break
            except (OSError, RemoteError) as exc:
                problems.append(f"{cluster_address}: {exc}")
        else:
            raise RemoteError("No member of the token answers: " + "; ".join(problems), 400)
        put = {
            "server_name": name or fields["server_name"],
            "enabled": True,
            "cluster_address": cluster_address,
            "cluster_certificate": certificate,
            "server_address": own,
            "cluster_token": token,
            "member_config": [_member_key(item) for item in member_config],
        }
        server.update_cluster(put).wait()
        click.echo(f"Joined the cluster as {put['server_name']}")

    run(go)


def _member_key(item: str) -> dict[str, str]:
    spec, sep, value = item.partition("=")
    entity, _, rest = spec.partition(".")
    pool, _, key = rest.rpartition(".")
    if not sep or entity != "storage-pool" or not pool or not key:
        raise click.BadParameter(
            f"{item!r} is not storage-pool.POOL.KEY=VALUE", param_hint="--config"
        )
    return {"entity": "storage-pool", "name": pool, "key": key, "value": value}


@cluster.command()
@click.argument("name")
@click.option("--force", is_flag=True, help="Remove it even if it does not answer")
def remove(name: str, force: bool) -> None:
    """Remove a member from the cluster."""

    def go(server: InstanceServer) -> None:
        server.remove_member(name, force=force)
        click.echo(f"Member {name} removed")

    run(go)


@cluster.command()
@click.argument("name")
@click.argument("new_name")
def rename(name: str, new_name: str) -> None:
    """Rename a member."""
    run(lambda s: s.rename_member(name, new_name))


@cluster.command(name="set")
@click.argument("name")
@click.argument("pairs", nargs=-1, required=True)
def set_keys(name: str, pairs: tuple[str, ...]) -> None:
    """Set a member's config (KEY=VALUE...: scheduler.instance, user.*)."""

    def go(server: InstanceServer) -> None:
        current, etag = server.member(name)
        put: dict[str, Any] = {k: current[k] for k in ("description", "config", "failure_domain",
                                                        "groups", "roles")}  # fmt: skip
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise click.BadParameter(f"{pair!r} is not KEY=VALUE")
            if key in ("description", "failure_domain"):
                put[key] = value
            else:
                put["config"] = {**put["config"], key: value}
        server.update_member(name, put, etag)

    run(go)


@cluster.command()
@click.argument("name")
@click.option("--action", "mode", default="", help="stop, migrate or live-migrate (default: "
              "each instance's cluster.evacuate)")  # fmt: skip
def evacuate(name: str, mode: str) -> None:
    """Move or stop a member's instances (maintenance)."""

    def go(server: InstanceServer) -> None:
        server.member_state(name, {"action": "evacuate", "mode": mode}).wait()
        click.echo(f"Member {name} evacuated")

    run(go)


@cluster.command()
@click.argument("name")
def restore(name: str) -> None:
    """Bring an evacuated member's instances back."""

    def go(server: InstanceServer) -> None:
        server.member_state(name, {"action": "restore"}).wait()
        click.echo(f"Member {name} restored")

    run(go)


@cluster.group()
def group() -> None:
    """Manage cluster groups."""


@group.command(name="list")
@format_option
def list_groups(fmt: str) -> None:
    """List the cluster groups."""

    def go(server: InstanceServer) -> None:
        groups = server.cluster_groups()
        rows = [[g["name"], g["description"], str(len(g["members"]))] for g in groups]
        print_rows(["NAME", "DESCRIPTION", "MEMBERS"], rows, groups, fmt)

    run(go)


@group.command(name="create")
@click.argument("name")
@click.option("--description", default="")
def create_group(name: str, description: str) -> None:
    """Create a cluster group."""
    run(lambda s: s.create_cluster_group(name, description))


@group.command(name="delete")
@click.argument("name")
def delete_group(name: str) -> None:
    """Delete a cluster group (without members)."""
    run(lambda s: s.delete_cluster_group(name))


@group.command(name="assign")
@click.argument("member")
@click.argument("groups")
def assign(member: str, groups: str) -> None:
    """Put MEMBER in the comma-separated GROUPS (and only those)."""

    def go(server: InstanceServer) -> None:
        current, etag = server.member(member)
        put = {k: current[k] for k in ("description", "config", "failure_domain", "roles")}
        put["groups"] = [g for g in groups.split(",") if g]
        server.update_member(member, put, etag)

    run(go)


COMMANDS = [cluster]
