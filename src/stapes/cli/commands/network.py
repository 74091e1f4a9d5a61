"""network list|show|create|set|unset|get|edit|delete|rename|info|list-leases|attach|detach,
and the forward, acl and zone groups."""

from __future__ import annotations

from typing import Any

import click

from stapes.cli.commands._editing import InstanceTarget, Target, add_config_commands, named
from stapes.cli.commands.network_acl import acl
from stapes.cli.commands.network_forward import forward
from stapes.cli.commands.network_zone import zone
from stapes.cli.main import parse_key_values, run
from stapes.cli.output import format_option, print_object, print_rows
from stapes.client.instance_server import InstanceServer


class NetworkTarget(Target):
    def load(self, server: InstanceServer) -> tuple[dict[str, Any], str]:
        net, etag = server.network(self.name, self.member)
        return {"config": net["config"], "description": net["description"]}, etag

    def save(self, server: InstanceServer, body: dict[str, Any], etag: str) -> None:
        server.update_network(self.name, body, etag, self.member)


@click.group()
def network() -> None:
    """Manage networks."""


add_config_commands(network, named(NetworkTarget, "network"), per_member=True)
network.add_command(forward)
network.add_command(acl)
network.add_command(zone)


@network.command(name="list")
@format_option
def list_networks(fmt: str) -> None:
    """List networks."""

    def go(server: InstanceServer) -> None:
        nets = server.networks()
        rows = [
            [
                n["name"],
                n["type"],
                "YES" if n["managed"] else "NO",
                n["config"].get("ipv4.address", ""),
                n["config"].get("ipv6.address", ""),
                n["description"],
                str(len(n["used_by"])),
                n["status"].upper(),
            ]
            for n in nets
        ]
        columns = ["NAME", "TYPE", "MANAGED", "IPV4", "IPV6", "DESCRIPTION", "USED BY", "STATE"]
        print_rows(columns, rows, nets, fmt)

    run(go)


@network.command()
@click.argument("name")
@click.argument("pairs", nargs=-1)
@click.option("--type", "-t", "kind", default="bridge", help="Network type (bridge)")
@click.option("--description", default="", help="Network description")
@click.option(
    "--target", default="", help="Cluster member whose own values (parent, uplinks) these are"
)
def create(name: str, pairs: tuple[str, ...], kind: str, description: str, target: str) -> None:
    """Create a network: NAME [KEY=VALUE...] (ipv4.address=auto|none|CIDR, ipv4.nat...). In a
    cluster, give each member's bridge.external_interfaces/parent with --target first, then
    create it without --target."""
    config = parse_key_values(pairs, "KEY=VALUE")
    body = {"name": name, "type": kind, "config": config, "description": description}
    run(lambda s: s.create_network(body, target=target))
    click.echo(f"Network {name} {'pending on ' + target if target else 'created'}")


@network.command()
@click.argument("name")
def delete(name: str) -> None:
    """Delete a network (nothing may use it)."""
    run(lambda s: s.delete_network(name))
    click.echo(f"Network {name} deleted")


@network.command()
@click.argument("name")
@click.argument("new_name")
def rename(name: str, new_name: str) -> None:
    """Rename a network (nothing may use it)."""
    run(lambda s: s.rename_network(name, new_name))
    click.echo(f"Network {name} renamed to {new_name}")


@network.command()
@click.argument("name")
def info(name: str) -> None:
    """Show a network's interface state: addresses, MTU, counters."""

    def go(server: InstanceServer) -> None:
        net, _ = server.network(name)
        state = server.network_state(name)
        url = f"/1.0/networks/{name}"
        problems = [
            w["last_message"]
            for w in server.warnings()
            if w["entity_url"] == url and w["status"] != "resolved"
        ]
        print_object(
            {
                "name": name,
                "status": net["status"],
                **({"errors": problems} if problems else {}),
                "state": state.get("state", ""),
                "mtu": state.get("mtu", 0),
                "hwaddr": state.get("hwaddr", ""),
                "addresses": [
                    f"{a['family']} {a['address']}/{a['netmask']} ({a['scope']})"
                    for a in state.get("addresses", [])
                ],
                "counters": state.get("counters", {}),
            }
        )

    run(go)


@network.command(name="list-leases")
@click.argument("name")
@format_option
def list_leases(name: str, fmt: str) -> None:
    """List the DHCP leases of a network."""

    def go(server: InstanceServer) -> None:
        leases = server.network_leases(name)
        rows = [[x["hostname"], x["hwaddr"], x["address"], x["type"].upper()] for x in leases]
        print_rows(["HOSTNAME", "MAC ADDRESS", "IP ADDRESS", "TYPE"], rows, leases, fmt)

    run(go)


@network.command()
@click.argument("name")
@click.argument("instance")
@click.argument("device", required=False, default="")
@click.argument("interface", required=False, default="")
def attach(name: str, instance: str, device: str, interface: str) -> None:
    """Give an instance a NIC on the network (DEVICE defaults to the network's name)."""

    def change(body: dict[str, Any]) -> None:
        nic = {"type": "nic", "network": name, "name": interface or device or name}
        body["devices"][device or name] = nic

    InstanceTarget(instance).edit(change)


@network.command()
@click.argument("name")
@click.argument("instance")
@click.argument("device", required=False, default="")
def detach(name: str, instance: str, device: str) -> None:
    """Remove an instance's NIC on the network (all of them unless DEVICE is given)."""

    def change(body: dict[str, Any]) -> None:
        devices = body["devices"]
        names = [device] if device else [n for n, d in devices.items() if d.get("network") == name]
        if not names or any(devices.get(n, {}).get("network") != name for n in names):
            raise click.UsageError(f"{instance} has no NIC on network {name}")
        for n in names:
            del devices[n]

    InstanceTarget(instance).edit(change)


COMMANDS = [network]
