"""stapesd's entry point."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from stapes.host.paths import Paths, stapes_dir
from stapes.server.daemon import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stapesd", description="The Stapes daemon")
    parser.add_argument("--debug", action="store_true", help="log debug messages")
    parser.add_argument("--logfile", help="also log to this file")
    args = parser.parse_args(argv)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if args.logfile:
        handlers.append(logging.FileHandler(args.logfile))
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        handlers=handlers,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pyroute2").setLevel(logging.WARNING)  # a line per netlink message
    asyncio.run(serve(Paths(stapes_dir())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
