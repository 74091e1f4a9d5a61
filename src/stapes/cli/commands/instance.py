"""launch, init, start, stop, restart, delete, info."""

from __future__ import annotations

import sys
from typing import Any

import click

from stapes.api.errors import RemoteError
from stapes.cli.instance_views import info_text
from stapes.cli.main import parse_key_values, run, split_remote, use_remote
from stapes.client.instance_server import InstanceServer


def _create_options(f: Any) -> Any:
    f = click.option(
        "--profile",
        "-p",
        "profiles",
        multiple=True,
        help="Profile to apply (repeatable; default: default)",
    )(f)
    f = click.option("--config", "-c", "config", multiple=True, help="Config key=value")(f)
    f = click.option(
        "--device",
        "-d",
        "device_overrides",
        multiple=True,
        help="A profile device's key=value for this instance: NAME,KEY=VALUE[,KEY=VALUE]",
    )(f)
    f = click.option("--no-profiles", is_flag=True, help="Create without any profile")(f)
    f = click.option("--ephemeral", "-e", is_flag=True, help="Ephemeral instance")(f)
    f = click.option("--description", default="", help="Instance description")(f)
    f = click.option("--vm", is_flag=True, help="Create a virtual machine (QEMU)")(f)
    f = click.option(
        "--type",
        "-t",
        "instance_type",
        default="",
        help="Instance type: cN-mM (c2-m4) or t2.micro...",
    )(f)
    f = click.option("--network", "-n", default="", help="Network of the instance's eth0")(f)
    f = click.option("--storage", "-s", default="", help="Storage pool of the root disk")(f)
    f = click.option(
        "--target", default="", help="Cluster member (or @group) to create the instance on"
    )(f)
    f = click.argument("name", required=False, default="")(f)
    f = click.argument("image")(f)
    return f


def _create(server: InstanceServer, options: dict[str, Any], start: bool) -> None:
    body: dict[str, Any] = {
        "name": options["name"],
        "type": "virtual-machine" if options["vm"] else "container",
        "config": parse_key_values(options["config"], "--config"),
        "ephemeral": options["ephemeral"],
        "description": options["description"],
        "start": start,
        "instance_type": options["instance_type"],
    }
    if options["no_profiles"]:
        body["profiles"] = []
    elif options["profiles"]:
        body["profiles"] = list(options["profiles"])
    devices: dict[str, dict[str, str]] = {}
    if options["network"]:  # as incus: eth0 on that network, over the profiles' eth0
        devices["eth0"] = {"type": "nic", "network": options["network"], "name": "eth0"}
    if options["storage"]:
        devices["root"] = {"type": "disk", "path": "/", "pool": options["storage"]}
    if options["device_overrides"]:
        profiles = [] if options["no_profiles"] else list(options["profiles"]) or ["default"]
        _override_devices(server, devices, profiles, options["device_overrides"])
    if devices:
        body["devices"] = devices
    body["source"] = _image_source(server, options["image"])
    op = server.create_instance(body, target=options["target"])
    created = op.metadata["resources"]["instances"][0].rsplit("/", 1)[-1].split("?")[0]
    click.echo(f"{'Launching' if start else 'Creating'} {created}")
    op.wait()


def _override_devices(
    server: InstanceServer,
    devices: dict[str, dict[str, str]],
    profiles: list[str],
    overrides: tuple[str, ...],
) -> None:
    """``-d root,size=20GiB`` as incus does: the instance gets its own copy of the profiles'
    device (the last profile that has it), with those keys changed."""
    from_profiles: dict[str, dict[str, str]] = {}
    for profile in profiles:
        from_profiles.update(server.profile(profile)[0].get("devices") or {})
    for override in overrides:
        name, _, pairs = override.partition(",")
        base = devices.get(name) or from_profiles.get(name)
        if base is None:
            raise click.BadParameter(
                f"no profile of the instance has a device named {name!r}", param_hint="--device"
            )
        devices[name] = {**base, **parse_key_values(tuple(pairs.split(",")), "--device")}


def _image_source(server: InstanceServer, image: str) -> dict[str, Any]:
    """The source of an image argument: ``[REMOTE:]ALIAS-OR-FINGERPRINT``. An image on another
    remote than the target is pulled by the target daemon from that server."""
    remote, name = split_remote(image)
    source: dict[str, Any] = {"type": "image"}
    if remote is not None and remote != _target_remote():
        from stapes.client.remotes import Remotes

        remotes = Remotes()
        source.update(remotes.image_source(remote))
        if remotes.get(remote).public:
            source["alias"] = name  # an image server resolves aliases and fingerprints alike
        else:
            source.update(remotes.private_image(remote, name))
        return source
    try:
        server.alias(name)
        source["alias"] = name
    except RemoteError:
        source["fingerprint"] = name
    return source


def _target_remote() -> str:
    from stapes.cli import main as cli_main
    from stapes.client.remotes import Remotes

    return cli_main._remote or Remotes().default


def _pick_target(options: dict[str, Any]) -> None:
    """The instance name's remote is where the instance is made (else the default one)."""
    remote, options["name"] = split_remote(options["name"])
    use_remote(remote)


@click.command()
@_create_options
def launch(**options: Any) -> None:
    """Create and start an instance from an image ([REMOTE:]ALIAS or fingerprint)."""
    _pick_target(options)
    run(lambda s: _create(s, options, start=True))


@click.command()
@_create_options
def init(**options: Any) -> None:
    """Create an instance from an image without starting it."""
    _pick_target(options)
    run(lambda s: _create(s, options, start=False))


def _state(
    server: InstanceServer, names: tuple[str, ...], action: str, force: bool, timeout: int
) -> None:
    for name in names:
        op = server.update_state(name, action, force=force, timeout=timeout)
        op.wait()


@click.command()
@click.argument("names", nargs=-1, required=True)
def start(names: tuple[str, ...]) -> None:
    """Start instances."""
    run(lambda s: _state(s, names, "start", False, -1))


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Force the instance to stop")
@click.option("--timeout", default=-1, help="Seconds to wait for a clean shutdown (-1: forever)")
def stop(names: tuple[str, ...], force: bool, timeout: int) -> None:
    """Stop instances."""
    run(lambda s: _state(s, names, "stop", force, timeout))


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Force the instance to stop")
@click.option("--timeout", default=-1, help="Seconds to wait for a clean shutdown (-1: forever)")
def restart(names: tuple[str, ...], force: bool, timeout: int) -> None:
    """Restart instances."""
    run(lambda s: _state(s, names, "restart", force, timeout))


@click.command()
@click.argument("names", nargs=-1, required=True)
def pause(names: tuple[str, ...]) -> None:
    """Pause (freeze) instances."""
    run(lambda s: _state(s, names, "freeze", False, -1))


def _delete(server: InstanceServer, names: tuple[str, ...], force: bool) -> None:
    for name in names:
        instance = server.instance(name)
        if instance["status"] != "Stopped":
            if not force:
                raise RemoteError(
                    f"The instance {name} is running: stop it first, or use --force", 400
                )
            server.update_state(name, "stop", force=True).wait()
        server.delete_instance(name).wait()


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Stop running instances first")
def delete(names: tuple[str, ...], force: bool) -> None:
    """Delete instances."""
    run(lambda s: _delete(s, names, force))


def _info(server: InstanceServer, name: str) -> None:
    sys.stdout.write(info_text(server.instance(name, full=True)))


def _server_info(server: InstanceServer) -> None:
    env = server.server()["environment"]
    lines = [
        f"Server: {env.get('server', '')} {env.get('server_version', '')}",
        f"Instance types: {', '.join(env.get('instance_types') or [])}",
        f"Drivers: {env.get('driver', '')} ({env.get('driver_version', '')})",
        f"VM accelerator: {env.get('vm_accelerator') or 'none'}",
        f"Storage drivers: {env.get('storage', '')}",
        f"Kernel: {env.get('kernel', '')} {env.get('kernel_version', '')}",
        f"OS: {env.get('os_name', '')} {env.get('os_version', '')}",
    ]
    click.echo("\n".join(lines))


@click.command()
@click.argument("name", required=False)
@click.option("--show-log", is_flag=True, help="Also print the instance's log (lxc.log, qemu.log)")
def info(name: str | None, show_log: bool) -> None:
    """Show an instance's details and resource usage (without NAME: the server's)."""
    if name is None:
        run(_server_info)
        return

    def go(server: InstanceServer) -> None:
        _info(server, name)
        if show_log:
            kind = server.instance(name)["type"]
            log = server.instance_log(name, "qemu.log" if kind == "virtual-machine" else "lxc.log")
            click.echo("\nLog:\n\n" + log.decode(errors="replace"))

    run(go)


COMMANDS = [launch, init, start, stop, restart, pause, delete, info]
