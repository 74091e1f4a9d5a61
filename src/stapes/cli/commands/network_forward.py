"""network forward list|show|create|get|set|unset|edit|delete|port add|port remove."""

from __future__ import annotations

from typing import Any

import click

from stapes.api.errors import RemoteError
from stapes.cli.commands._editing import Target, add_config_commands
from stapes.cli.main import parse_key_values, run
from stapes.cli.output import format_option, print_rows
from stapes.client.instance_server import InstanceServer


class ForwardTarget(Target):
    def __init__(self, network: str, address: str) -> None:
        super().__init__(address)
        self.network = network

    @property
    def label(self) -> str:
        return f"forward {self.name} of network {self.network}"

    def load(self, server: InstanceServer) -> tuple[dict[str, Any], str]:
        forward, etag = server.network_forward(self.network, self.name)
        return {k: forward[k] for k in ("description", "config", "ports")}, etag

    def save(self, server: InstanceServer, body: dict[str, Any], etag: str) -> None:
        server.update_network_forward(self.network, self.name, body, etag)


def _resolve(verb: str, args: tuple[str, ...]) -> tuple[Target, tuple[str, ...]]:
    if len(args) < 2:
        raise click.UsageError("Expected NETWORK LISTEN_ADDRESS")
    return ForwardTarget(args[0], args[1]), args[2:]


@click.group()
def forward() -> None:
    """Manage network forwards (a listen address sent on to instances)."""


add_config_commands(forward, _resolve)


@forward.command(name="list")
@click.argument("network")
@format_option
def list_forwards(network: str, fmt: str) -> None:
    """List a network's forwards."""

    def go(server: InstanceServer) -> None:
        found = server.network_forwards(network)
        rows = [
            [
                f["listen_address"],
                f["description"],
                f["config"].get("target_address", ""),
                str(len(f["ports"])),
            ]
            for f in found
        ]
        print_rows(
            ["LISTEN ADDRESS", "DESCRIPTION", "DEFAULT TARGET ADDRESS", "PORTS"], rows, found, fmt
        )

    run(go)


@forward.command()
@click.argument("network")
@click.argument("address")
@click.argument("pairs", nargs=-1)
@click.option("--description", default="", help="Forward description")
def create(network: str, address: str, pairs: tuple[str, ...], description: str) -> None:
    """Create a forward: NETWORK LISTEN_ADDRESS [target_address=IP] [user.KEY=VALUE...]."""
    body = {
        "listen_address": address,
        "description": description,
        "config": parse_key_values(pairs, "KEY=VALUE"),
    }
    run(lambda s: s.create_network_forward(network, body))
    click.echo(f"Network forward {address} created")


@forward.command()
@click.argument("network")
@click.argument("address")
def delete(network: str, address: str) -> None:
    """Delete a forward."""
    run(lambda s: s.delete_network_forward(network, address))
    click.echo(f"Network forward {address} deleted")


@forward.group()
def port() -> None:
    """Manage the port specifications of a forward."""


@port.command(name="add")
@click.argument("network")
@click.argument("address")
@click.argument("protocol", type=click.Choice(["tcp", "udp"]))
@click.argument("listen_ports")
@click.argument("target_address")
@click.argument("target_ports", required=False, default="")
@click.option("--description", default="", help="Port description")
@click.option(
    "--snat", is_flag=True, help="Connections the target opens leave from the listen address"
)
def port_add(
    network: str,
    address: str,
    protocol: str,
    listen_ports: str,
    target_address: str,
    target_ports: str,
    description: str,
    snat: bool,
) -> None:
    """Forward LISTEN_PORTS (80,8000-8010) to TARGET_ADDRESS [TARGET_PORTS]."""
    spec = {
        "protocol": protocol,
        "listen_port": listen_ports,
        "target_address": target_address,
        "target_port": target_ports,
        "description": description,
        "snat": snat,
    }
    ForwardTarget(network, address).edit(lambda body: body["ports"].append(spec))


@port.command(name="remove")
@click.argument("network")
@click.argument("address")
@click.argument("protocol", required=False, default="")
@click.argument("listen_ports", required=False, default="")
@click.option("--force", is_flag=True, help="Remove every matching port specification")
def port_remove(network: str, address: str, protocol: str, listen_ports: str, force: bool) -> None:
    """Remove the port specification matching [PROTOCOL] [LISTEN_PORTS]."""

    def change(body: dict[str, Any]) -> None:
        def matches(spec: dict[str, Any]) -> bool:
            return (not protocol or spec["protocol"] == protocol) and (
                not listen_ports or spec["listen_port"] == listen_ports
            )

        found = [p for p in body["ports"] if matches(p)]
        if not found:
            raise RemoteError("No matching port specification", 404)
        if len(found) > 1 and not force:
            raise RemoteError("Several port specifications match: name more or use --force", 400)
        body["ports"] = [p for p in body["ports"] if not matches(p)]

    ForwardTarget(network, address).edit(change)
