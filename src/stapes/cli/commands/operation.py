"""operation list|show."""

from __future__ import annotations

import click

from stapes.cli.main import run
from stapes.cli.output import format_option, print_object, print_rows
from stapes.client.instance_server import InstanceServer


@click.group()
def operation() -> None:
    """List and show background operations."""


@operation.command(name="list")
@format_option
def list_operations(fmt: str) -> None:
    """List background operations."""

    def go(server: InstanceServer) -> None:
        grouped = server.operations()
        ops = [op for group in grouped.values() for op in group]
        rows = [
            [
                op["id"],
                op["class"].upper(),
                op["description"],
                op["status"].upper(),
                "YES" if op["may_cancel"] else "NO",
                op["created_at"],
            ]
            for op in ops
        ]
        print_rows(["ID", "TYPE", "DESCRIPTION", "STATUS", "CANCELABLE", "CREATED"], rows, ops, fmt)

    run(go)


@operation.command()
@click.argument("op_id")
def show(op_id: str) -> None:
    """Show one operation."""

    def go(server: InstanceServer) -> None:
        print_object(server.operation(op_id))

    run(go)


COMMANDS = [operation]
