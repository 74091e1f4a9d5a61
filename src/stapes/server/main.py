"""stapesd's entry point: the daemon, and the commands incusd has beside it (version,
shutdown, waitready, activateifneeded)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import stapes
from stapes.host.paths import Paths, stapes_dir
from stapes.server import control


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stapesd", description="The Stapes daemon")
    parser.add_argument("-d", "--debug", action="store_true", help="log debug messages")
    parser.add_argument("-v", "--verbose", action="store_true", help="log information messages")
    parser.add_argument("--logfile", help="also log to this file")
    parser.add_argument("--group", help="the group of users that may use the unix socket")
    parser.add_argument("--version", action="version", version=stapes.__version__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("version", help="print the version")
    stop = commands.add_parser(
        "shutdown", help="stop every instance, then the daemon (they start again with it)"
    )
    stop.add_argument("-t", "--timeout", type=int, default=0, help="seconds to wait (0: ever)")
    stop.add_argument("-f", "--force", action="store_true", help="kill the instances")
    ready = commands.add_parser("waitready", help="wait until the daemon answers requests")
    ready.add_argument("-t", "--timeout", type=int, default=0, help="seconds to wait (0: ever)")
    commands.add_parser(
        "activateifneeded",
        help="start the daemon if something needs it (an HTTPS address, instances to start)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    paths = Paths(stapes_dir())
    if args.command == "version":
        print(stapes.__version__)
        return 0
    if args.command == "shutdown":
        return control.shutdown(paths, args.timeout, args.force)
    if args.command == "waitready":
        return control.wait_ready(paths, args.timeout)
    if args.command == "activateifneeded":
        return control.activate_if_needed(paths)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if args.logfile:
        handlers.append(logging.FileHandler(args.logfile))
    for handler in handlers:  # the log's level; event listeners get debug records too
        handler.setLevel(logging.DEBUG if args.debug else logging.INFO)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        handlers=handlers,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("stapes").setLevel(logging.DEBUG)
    logging.getLogger("pyroute2").setLevel(logging.WARNING)  # a line per netlink message
    try:
        from stapes.server.daemon import serve  # the daemon's whole import tree, only to serve
    except ImportError as exc:  # a client-only install (pip install stapes)
        sys.stderr.write(
            f"stapesd needs the daemon's dependencies (missing: {exc.name or exc}): "
            "pip install 'stapes[daemon]'\n"
        )
        return 1

    asyncio.run(serve(paths, group=args.group))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
