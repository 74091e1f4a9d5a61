"""config trust list|add|add-certificate|remove|show|edit|list-tokens|revoke-token: the
server's trust store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stapes import certs
from stapes.api.errors import RemoteError
from stapes.cli.commands._editing import read_yaml_input
from stapes.cli.main import run
from stapes.cli.output import format_option, print_object, print_rows
from stapes.client.instance_server import InstanceServer

WRITABLE = ("name", "type", "restricted", "projects", "description")


@click.group()
def trust() -> None:
    """Manage the clients the server trusts."""


@trust.command(name="list")
@format_option
def list_certificates(fmt: str) -> None:
    """List trusted certificates."""

    def go(server: InstanceServer) -> None:
        found = server.certificates()
        rows = [
            [
                c["name"],
                c["type"],
                "YES" if c["restricted"] else "NO",
                ",".join(c["projects"]),
                c["fingerprint"][:12],
                c["description"],
            ]
            for c in found
        ]
        columns = ["NAME", "TYPE", "RESTRICTED", "PROJECTS", "FINGERPRINT", "DESCRIPTION"]
        print_rows(columns, rows, found, fmt)

    run(go)


def _projects(value: str) -> list[str]:
    return [p for p in value.split(",") if p]


@trust.command()
@click.argument("name")
@click.option("--projects", default="", help="Restrict the client to these projects (a,b)")
@click.option("--restricted", is_flag=True, help="Restrict the client to --projects")
def add(name: str, projects: str, restricted: bool) -> None:
    """Make a trust token for a new client NAME (it runs: stapes remote add REMOTE TOKEN)."""
    body = {
        "name": name,
        "type": "client",
        "restricted": restricted or bool(projects),
        "projects": _projects(projects),
    }
    token = run(lambda s: s.create_token(body))
    click.echo(f"Client {name} certificate add token:")
    click.echo(token.encode())


@trust.command(name="add-certificate")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default="", help="The client's name (default: the certificate's CN)")
@click.option("--projects", default="", help="Restrict the client to these projects (a,b)")
@click.option("--restricted", is_flag=True, help="Restrict the client to --projects")
@click.option("--type", "kind", default="client", type=click.Choice(["client", "metrics"]))
def add_certificate(path: Path, name: str, projects: str, restricted: bool, kind: str) -> None:
    """Trust the client certificate in PATH."""
    body = {
        "name": name,
        "type": kind,
        "certificate": certs.bare(path.read_text()),
        "restricted": restricted or bool(projects),
        "projects": _projects(projects),
    }
    run(lambda s: s.add_certificate(body))


@trust.command()
@click.argument("fingerprint")
def remove(fingerprint: str) -> None:
    """Stop trusting a certificate (a unique fingerprint prefix is enough)."""
    run(lambda s: s.delete_certificate(fingerprint))


@trust.command()
@click.argument("fingerprint")
def show(fingerprint: str) -> None:
    """Show a trusted certificate."""
    run(lambda s: print_object(s.certificate(fingerprint)[0]))


@trust.command()
@click.argument("fingerprint")
def edit(fingerprint: str) -> None:
    """Edit a trusted certificate as YAML ($EDITOR, or YAML on stdin)."""

    def go(server: InstanceServer) -> None:
        current, etag = server.certificate(fingerprint)
        body: dict[str, Any] = {k: current[k] for k in WRITABLE}
        server.update_certificate(fingerprint, {**body, **read_yaml_input(body)}, etag)

    run(go)


@trust.command(name="list-tokens")
@format_option
def list_tokens(fmt: str) -> None:
    """List the trust tokens not used yet."""

    def go(server: InstanceServer) -> None:
        found = server.tokens()
        rows = [[t.client_name, t.encode(), ""] for _, t in found]
        raw = [t.model_dump() for _, t in found]
        print_rows(["NAME", "TOKEN", "EXPIRES AT"], rows, raw, fmt)

    run(go)


@trust.command(name="revoke-token")
@click.argument("name")
def revoke_token(name: str) -> None:
    """Revoke the trust token made for client NAME."""

    def go(server: InstanceServer) -> None:
        found = [op_id for op_id, t in server.tokens() if t.client_name == name]
        if not found:
            raise RemoteError(f"No trust token for {name!r}", 404)
        for op_id in found:
            server.revoke_token(op_id)

    run(go)
