"""copy, move, rename: instances within a server, or from one server to another (the migration
API, in pull, push or relay mode)."""

from __future__ import annotations

from typing import Any

import click

from stapes.cli.main import guarded, parse_key_values, run, run_on, server_for, split_remote
from stapes.client.instance_server import InstanceServer


def _local_copy(server: InstanceServer, source: str, target: str, options: dict[str, Any]) -> str:
    body: dict[str, Any] = {
        "name": target,
        "source": {
            "type": "copy",
            "source": source,
            "instance_only": options["instance_only"],
            "refresh": options["refresh"],
            "project": options.get("source_project", ""),
        },
        "config": parse_key_values(options["config"], "--config"),
        "ephemeral": options["ephemeral"],
    }
    _overrides(body, options)
    op = server.create_instance(body)
    result = op.wait()
    urls = (result.get("resources") or {}).get("instances") or [target]
    return str(urls[0]).rsplit("/", 1)[-1].split("?")[0]


def _overrides(body: dict[str, Any], options: dict[str, Any]) -> None:
    if options["storage"]:
        body.setdefault("devices", {})["root"] = {
            "type": "disk",
            "path": "/",
            "pool": options["storage"],
        }
    if options["no_profiles"]:
        body["profiles"] = []
    elif options["profiles"]:
        body["profiles"] = list(options["profiles"])


def _remote_copy(
    src: InstanceServer,
    dst: InstanceServer,
    name: str,
    new_name: str,
    options: dict[str, Any],
    *,
    move: bool,
    live: bool,
) -> None:
    from stapes.client import migration

    body = migration.instance_body(
        src,
        name,
        new_name,
        instance_only=options["instance_only"],
        refresh=options["refresh"],
        keep_volatile=move,
    )
    body["config"].update(parse_key_values(options["config"], "--config"))
    body["ephemeral"] = body["ephemeral"] or options["ephemeral"]
    _overrides(body, options)
    source, target = migration.Endpoint.of(src), migration.Endpoint.of(dst)

    def start_source(push: dict[str, Any] | None) -> Any:
        request: dict[str, Any] = {
            "migration": True,
            "live": live,
            "instance_only": options["instance_only"],
        }
        if push is not None:
            request["target"] = push
        return src._op("POST", f"/1.0/instances/{name}", json_body=request)

    def start_target(fields: dict[str, Any]) -> Any:
        return dst.create_instance({**body, "source": {**body["source"], **fields, "live": live}})

    migration.migrate(
        source, target, start_source, start_target, options["mode"], "Transferring instance"
    )


def _copy_or_move(options: dict[str, Any], *, move: bool) -> None:
    src_remote, source = split_remote(options["source"])
    dst_remote, target = split_remote(options["target"] or "")
    if dst_remote is None and not target and options["target"]:
        dst_remote = src_remote
    name = source.split("/", 1)[0]
    if "/" in source and move:
        raise click.UsageError("Move an instance, not a snapshot")
    new_name = target or name

    def act() -> None:
        with (
            server_for(src_remote) as src,
            server_for(dst_remote, options["target_project"]) as dst,
        ):
            if src_remote == dst_remote:  # one server: a local copy (maybe to another project)
                local = {**options, "source_project": src.conn.project}
                made = _local_copy(dst, source, target if not move else new_name, local)
                if move:
                    src.delete_instance(name).wait()
                _start(dst, made, options)
                return
            running = src.instance_state(name).get("status") == "Running"
            live = running and not options["stateless"] and "/" not in source
            if move and running and not live:
                src.update_state(name, "stop", force=True).wait()
            _remote_copy(src, dst, source, new_name, options, move=move, live=live)
            if move:
                if live:  # it runs over there now; the one here goes
                    src.update_state(name, "stop", force=True).wait()
                src.delete_instance(name).wait()
                if running and not live:
                    dst.update_state(new_name, "start").wait()
            _start(dst, new_name, options)

    guarded(act)


def _start(server: InstanceServer, name: str, options: dict[str, Any]) -> None:
    if options.get("start"):
        server.update_state(name, "start").wait()


_MODE = click.option(
    "--mode",
    type=click.Choice(["pull", "push", "relay"]),
    default="pull",
    help="Between servers: the target pulls, the source pushes, or this client relays",
)


@click.command()
@click.argument("source")
@click.argument("target", required=False, default="")
@click.option("--instance-only", is_flag=True, help="Copy the instance without its snapshots")
@click.option("--refresh", is_flag=True, help="Update an earlier copy with what changed since")
@click.option("--config", "-c", "config", multiple=True, help="Config key=value of the copy")
@click.option("--profile", "-p", "profiles", multiple=True, help="Profile of the copy")
@click.option("--no-profiles", is_flag=True, help="Copy without any profile")
@click.option("--ephemeral", "-e", is_flag=True, help="Make the copy ephemeral")
@click.option("--start", is_flag=True, help="Start the copy")
@click.option("--storage", "-s", default="", help="Storage pool of the copy")
@click.option("--target-project", default="", help="Project of the copy")
@click.option(
    "--stateless", is_flag=True, help="Copy a running instance's files, not its running state"
)
@_MODE
def copy(**options: Any) -> None:
    """Copy an instance or a snapshot ([REMOTE:]NAME[/SNAPSHOT]) to [REMOTE:][NAME]."""
    _copy_or_move(options, move=False)


@click.command()
@click.argument("name")
@click.argument("new_name")
def rename(name: str, new_name: str) -> None:
    """Rename a (stopped) instance."""
    run(lambda s: s.rename_instance(name, new_name).wait())


@click.command()
@click.argument("name")
@click.argument("new_name", required=False, default="")
@click.option("--storage", "-s", default="", help="Move the (stopped) instance to this pool")
@click.option("--instance-only", is_flag=True, help="Move the instance without its snapshots")
@click.option(
    "--stateless", is_flag=True, help="Stop a running instance, move it, start it (not live)"
)
@click.option("--target-project", default="", help="Project to move the instance to")
@click.option("--target", "member", default="", help="Cluster member to move the instance to")
@_MODE
def move(name: str, new_name: str, storage: str, member: str, **options: Any) -> None:
    """Move an instance: rename it, move it to another pool, to another cluster member, or
    to another server or project ([REMOTE:]NAME [REMOTE:][NEW_NAME])."""
    src_remote, local_name = split_remote(name)
    if member:
        live = not options["stateless"]  # refused for a running instance: not yet in a cluster
        run_on(src_remote, lambda s: s.move_to_member(local_name, member, live).wait())
        return
    dst_remote, local_new = split_remote(new_name) if new_name else (src_remote, "")
    if new_name and dst_remote is None and not local_new:
        dst_remote = src_remote
    if src_remote != dst_remote or options["target_project"]:
        _copy_or_move(
            {
                **options,
                "source": name,
                "target": new_name,
                "refresh": False,
                "config": (),
                "profiles": (),
                "no_profiles": False,
                "ephemeral": False,
                "storage": storage,
            },
            move=True,
        )
        return
    if bool(local_new) == bool(storage):
        raise click.UsageError("Give either NEW_NAME or --storage")
    if storage:
        run_on(src_remote, lambda s: s.move_to_pool(local_name, storage).wait())
    else:
        run_on(src_remote, lambda s: s.rename_instance(local_name, local_new).wait())


COMMANDS = [copy, rename, move]
