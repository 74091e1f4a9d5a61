"""Config and device editing, written once for the two things that have them: instances
(`stapes config ...`) and profiles (`stapes profile ...`)."""

from __future__ import annotations

import abc
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import click
import yaml

from stapes.api.errors import RemoteError
from stapes.cli.main import parse_key_values, run
from stapes.cli.output import format_option, print_object, print_rows
from stapes.client.instance_server import InstanceServer

WRITABLE = ("config", "description", "devices")


class Target(abc.ABC):
    """Something with a writable config and devices, loaded and saved with its ETag."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.member = ""
        """A cluster member whose own values are meant (``--target``), for pools and
        networks."""

    @property
    def label(self) -> str:
        return self.name

    @abc.abstractmethod
    def load(self, server: InstanceServer) -> tuple[dict[str, Any], str]: ...

    @abc.abstractmethod
    def save(self, server: InstanceServer, body: dict[str, Any], etag: str) -> None: ...

    def edit(self, change: Callable[[dict[str, Any]], object]) -> None:
        def go(server: InstanceServer) -> None:
            body, etag = self.load(server)
            change(body)
            self.save(server, body, etag)

        run(go)


class InstanceTarget(Target):
    FIELDS = (
        "architecture",
        "config",
        "devices",
        "ephemeral",
        "profiles",
        "stateful",
        "description",
    )

    def load(self, server: InstanceServer) -> tuple[dict[str, Any], str]:
        instance, etag = server.instance_with_etag(self.name)
        return {k: instance[k] for k in self.FIELDS}, etag

    def save(self, server: InstanceServer, body: dict[str, Any], etag: str) -> None:
        server.update_instance(self.name, body, etag).wait()


class ServerTarget(Target):
    """The server's own config (GET/PUT /1.0)."""

    def __init__(self) -> None:
        super().__init__("")

    @property
    def label(self) -> str:
        return "the server"

    def load(self, server: InstanceServer) -> tuple[dict[str, Any], str]:
        info, etag = server.server_with_etag()
        return {"config": info["config"]}, etag

    def save(self, server: InstanceServer, body: dict[str, Any], etag: str) -> None:
        server.update_server({"config": body["config"]}, etag)


class ProfileTarget(Target):
    def load(self, server: InstanceServer) -> tuple[dict[str, Any], str]:
        profile, etag = server.profile(self.name)
        return {k: profile[k] for k in WRITABLE}, etag

    def save(self, server: InstanceServer, body: dict[str, Any], etag: str) -> None:
        server.update_profile(self.name, body, etag)


TargetFactory = Callable[[str], Target]


def key_values(args: tuple[str, ...]) -> dict[str, str]:
    """``key=value ...`` or a single ``key value`` pair, as incus accepts both."""
    if len(args) == 2 and "=" not in args[0]:
        return {args[0]: args[1]}
    return parse_key_values(args, "KEY=VALUE")


def read_yaml_input(current: dict[str, Any]) -> dict[str, Any]:
    """The new body from stdin when it is not a terminal, else from $EDITOR."""
    if not sys.stdin.isatty():
        text = sys.stdin.read()
    else:
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        with tempfile.NamedTemporaryFile("w+", suffix=".yaml") as f:
            f.write(yaml.safe_dump(current, sort_keys=False))
            f.flush()
            subprocess.run([editor, f.name], check=True)
            f.seek(0)
            text = f.read()
    return parse_yaml_body(text)


def parse_yaml_body(text: str) -> dict[str, Any]:
    try:
        body = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise click.ClickException(f"Invalid YAML: {exc}") from None
    if not isinstance(body, dict):
        raise click.ClickException("The YAML must be a mapping")
    return body


Resolver = Callable[[str, tuple[str, ...]], tuple[Target, tuple[str, ...]]]
"""(verb, arguments) -> (what to edit, the arguments left for the verb)."""


def named(target: TargetFactory, noun: str) -> Resolver:
    """The first argument names the thing to edit."""

    def resolve(verb: str, args: tuple[str, ...]) -> tuple[Target, tuple[str, ...]]:
        if not args:
            raise click.UsageError(f"Missing the {noun} name")
        return target(args[0]), args[1:]

    return resolve


def add_config_commands(group: click.Group, resolve: Resolver, per_member: bool = False) -> None:
    """set, unset, get, show and edit on ``group``; ``per_member``: with ``--target MEMBER``
    (a cluster member's own values of a pool's or network's member keys)."""

    def member_option(f: Any) -> Any:
        if not per_member:
            return f
        return click.option(
            "--target", "member", default="", help="Cluster member whose own values to use"
        )(f)

    def resolved(verb: str, args: tuple[str, ...], member: str) -> tuple[Target, tuple[str, ...]]:
        target, rest = resolve(verb, args)
        target.member = member
        return target, rest

    @group.command(name="set")
    @click.argument("args", nargs=-1, required=True)
    @member_option
    def set_(args: tuple[str, ...], member: str = "") -> None:
        """Set config keys ([NAME] KEY=VALUE ... or [NAME] KEY VALUE)."""
        target, pairs = resolved("set", args, member)
        if not pairs:
            raise click.UsageError("Missing KEY=VALUE")
        values = key_values(pairs)
        target.edit(lambda body: body["config"].update(values))

    @group.command()
    @click.argument("args", nargs=-1, required=True)
    @member_option
    def unset(args: tuple[str, ...], member: str = "") -> None:
        """Remove config keys ([NAME] KEY...)."""
        target, keys = resolved("unset", args, member)
        if not keys:
            raise click.UsageError("Missing KEY")

        def change(body: dict[str, Any]) -> None:
            for key in keys:
                if key not in body["config"]:
                    raise RemoteError(f"Config key {key!r} is not set on {target.label}", 400)
                del body["config"][key]

        target.edit(change)

    @group.command()
    @click.argument("args", nargs=-1, required=True)
    @member_option
    def get(args: tuple[str, ...], member: str = "") -> None:
        """Print one config key ([NAME] KEY)."""
        target, rest = resolved("get", args, member)
        if len(rest) != 1:
            raise click.UsageError("Expected one KEY")

        def go(server: InstanceServer) -> None:
            body, _ = target.load(server)
            click.echo(body["config"].get(rest[0], ""))

        run(go)

    @group.command()
    @click.argument("args", nargs=-1)
    @member_option
    def show(args: tuple[str, ...], member: str = "") -> None:
        """Show the configuration as YAML ([NAME])."""
        target, _ = resolved("show", args, member)

        def go(server: InstanceServer) -> None:
            print_object(target.load(server)[0])

        run(go)

    @group.command()
    @click.argument("args", nargs=-1)
    @member_option
    def edit(args: tuple[str, ...], member: str = "") -> None:
        """Edit the configuration as YAML ($EDITOR, or YAML on stdin) ([NAME])."""
        target, _ = resolved("edit", args, member)

        def go(server: InstanceServer) -> None:
            body, etag = target.load(server)
            new = read_yaml_input(body)
            target.save(server, {**body, **new}, etag)

        run(go)


def device_group(target: TargetFactory) -> click.Group:
    @click.group(name="device")
    def device() -> None:
        """Manage devices."""

    @device.command()
    @click.argument("name")
    @click.argument("device_name")
    @click.argument("device_type")
    @click.argument("pairs", nargs=-1)
    def add(name: str, device_name: str, device_type: str, pairs: tuple[str, ...]) -> None:
        """Add a device: NAME DEVICE TYPE [KEY=VALUE...]."""

        def change(body: dict[str, Any]) -> None:
            if device_name in body["devices"]:
                raise RemoteError(f"Device {device_name!r} already exists", 409)
            body["devices"][device_name] = {
                "type": device_type,
                **parse_key_values(pairs, "KEY=VALUE"),
            }

        target(name).edit(change)

    def _device(body: dict[str, Any], device_name: str) -> dict[str, str]:
        found: dict[str, str] | None = body["devices"].get(device_name)
        if found is None:
            raise RemoteError(f"Device {device_name!r} doesn't exist", 404)
        return found

    @device.command()
    @click.argument("name")
    @click.argument("device_names", nargs=-1, required=True)
    def remove(name: str, device_names: tuple[str, ...]) -> None:
        """Remove devices."""

        def change(body: dict[str, Any]) -> None:
            for device_name in device_names:
                _device(body, device_name)
                del body["devices"][device_name]

        target(name).edit(change)

    @device.command(name="set")
    @click.argument("name")
    @click.argument("device_name")
    @click.argument("pairs", nargs=-1, required=True)
    def set_(name: str, device_name: str, pairs: tuple[str, ...]) -> None:
        """Set device keys."""
        values = key_values(pairs)
        target(name).edit(lambda body: _device(body, device_name).update(values))

    @device.command()
    @click.argument("name")
    @click.argument("device_name")
    @click.argument("key")
    def unset(name: str, device_name: str, key: str) -> None:
        """Remove a device key."""
        target(name).edit(lambda body: _device(body, device_name).pop(key, None))

    @device.command()
    @click.argument("name")
    @click.argument("device_name")
    @click.argument("key")
    def get(name: str, device_name: str, key: str) -> None:
        """Print one device key."""

        def go(server: InstanceServer) -> None:
            body, _ = target(name).load(server)
            click.echo(_device(body, device_name).get(key, ""))

        run(go)

    @device.command(name="list")
    @click.argument("name")
    @format_option
    def list_(name: str, fmt: str) -> None:
        """List devices."""

        def go(server: InstanceServer) -> None:
            devices = target(name).load(server)[0]["devices"]
            rows = [[d, v.get("type", "")] for d, v in sorted(devices.items())]
            print_rows(["NAME", "TYPE"], rows, devices, fmt)

        run(go)

    @device.command()
    @click.argument("name")
    def show(name: str) -> None:
        """Show devices as YAML."""

        def go(server: InstanceServer) -> None:
            print_object(target(name).load(server)[0]["devices"])

        run(go)

    return device
