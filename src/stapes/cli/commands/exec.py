"""exec: run a command in an instance, over the exec websockets, with a real tty when asked."""

from __future__ import annotations

import os
import sys

import click

from stapes.cli.exec_session import run_exec
from stapes.cli.main import parse_key_values, run
from stapes.client.instance_server import InstanceServer


@click.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--env", "env", multiple=True, help="Environment variable KEY=VALUE (repeatable)")
@click.option("-t", "force_tty", is_flag=True, help="Force a pseudo-terminal")
@click.option("-T", "no_tty", is_flag=True, help="Disable the pseudo-terminal")
@click.option("--cwd", default="", help="Directory to run the command in")
@click.option("--user", default=0, help="User ID to run the command as")
@click.option("--group", default=0, help="Group ID to run the command as")
def exec_command(
    name: str,
    command: tuple[str, ...],
    env: tuple[str, ...],
    force_tty: bool,
    no_tty: bool,
    cwd: str,
    user: int,
    group: int,
) -> None:
    """Run COMMAND in instance NAME; its exit status becomes this command's."""
    environment = parse_key_values(env, "--env")
    interactive = force_tty or (not no_tty and os.isatty(0) and os.isatty(1))

    def go(server: InstanceServer) -> int:
        return run_exec(server, name, command, environment, interactive, cwd, user, group)

    code = run(go)
    sys.stdout.flush()
    sys.exit(code)


COMMANDS = [exec_command]
