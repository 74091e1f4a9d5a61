"""remote add|list|remove|rename|set-url|switch|get-default: the servers this client talks
to."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import click

from stapes.api.errors import RemoteError
from stapes.cli.output import format_option, print_rows
from stapes.client.remotes import LOCAL, Remotes

T = TypeVar("T")

if TYPE_CHECKING:  # pydantic models: imported where used (the CLI starts faster)
    pass


def _do(fn: Callable[[Remotes], T]) -> T:
    try:
        return fn(Remotes())
    except RemoteError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(1)


@click.group()
def remote() -> None:
    """Manage the remote servers this client knows."""


@remote.command()
@click.argument("name")
@click.argument("address", required=False, default="")
@click.option("--token", default="", help="A trust token from the server (config trust add)")
@click.option("--accept-certificate", is_flag=True, help="Accept the server's certificate")
@click.option(
    "--protocol",
    type=click.Choice(["incus", "simplestreams", "oci"]),
    default="incus",
    help="incus (a stapesd or Incus server), simplestreams (an image server) or oci (a registry)",
)
@click.option("--public", is_flag=True, help="A public image server: no authentication")
def add(
    name: str, address: str, token: str, accept_certificate: bool, protocol: str, public: bool
) -> None:
    """Add a remote: NAME TOKEN, NAME https://HOST[:PORT] [--token TOKEN], or an image server
    NAME https://... --protocol simplestreams (or --public)."""
    if protocol in ("simplestreams", "oci") or public:
        fingerprint = _do(
            lambda r: r.add_image_server(name, address, protocol, accept=accept_certificate)
        )
        pinned = f" (certificate fingerprint {fingerprint})" if fingerprint else ""
        click.echo(f"Image server {name} added{pinned}")
        return
    if address and not token and "://" not in address:
        try:
            from stapes.api.certificate import TrustToken

            TrustToken.decode(address)
            token, address = address, ""
        except ValueError:
            pass
    fingerprint = _do(lambda r: r.add(name, address, token=token, accept=accept_certificate))
    click.echo(f"Remote {name} added (certificate fingerprint {fingerprint})")


@remote.command(name="list")
@format_option
def list_remotes(fmt: str) -> None:
    """List the remotes (the default one marked current)."""
    remotes = Remotes()
    found = [remotes.get(n) for n in remotes.names()]
    rows = [
        [
            r.name + (" (current)" if r.name == remotes.default else ""),
            r.addr,
            r.protocol,
            "file access" if r.name == LOCAL else "tls",
            "YES" if r.public else "NO",
            "YES" if r.name == LOCAL else "NO",
        ]
        for r in found
    ]
    raw = [vars(r) for r in found]
    print_rows(["NAME", "URL", "PROTOCOL", "AUTH TYPE", "PUBLIC", "STATIC"], rows, raw, fmt)


@remote.command()
@click.argument("name")
def remove(name: str) -> None:
    """Remove a remote."""
    _do(lambda r: r.remove(name))


@remote.command()
@click.argument("name")
@click.argument("new_name")
def rename(name: str, new_name: str) -> None:
    """Rename a remote."""
    _do(lambda r: r.rename(name, new_name))


@remote.command(name="set-url")
@click.argument("name")
@click.argument("url")
def set_url(name: str, url: str) -> None:
    """Change a remote's address (the same server, moved)."""
    _do(lambda r: r.set_url(name, url))


@remote.command()
@click.argument("name")
def switch(name: str) -> None:
    """Make a remote the default one."""
    _do(lambda r: r.switch(name))


@remote.command(name="get-default")
def get_default() -> None:
    """Print the default remote."""
    click.echo(Remotes().default)


COMMANDS = [remote]
