"""Holds a container's console for stapesd, as a short-lived helper process.

    python -m stapes.host.console_holder LXCPATH NAME      (stdin: a unix socket to stapesd)

liblxc keeps a console allocated to whoever holds the command-socket connection it was asked
on, and python-lxc's ``console_getfd`` never hands that connection back: in stapesd the console
would stay taken until the daemon exits. This helper asks for the console, passes its terminal
master to stapesd over the socket on stdin, and waits: when stapesd closes the socket the helper
exits and liblxc frees the console for the next client.

Errors: exit 2 with a message on stderr."""

from __future__ import annotations

import socket
import sys


def main() -> None:
    lxcpath, name = sys.argv[1], sys.argv[2]
    channel = socket.socket(fileno=0)
    try:
        import lxc
    except ImportError:
        sys.stderr.write("The lxc Python bindings are not installed\n")
        sys.exit(2)
    container = lxc.Container(name, lxcpath)
    if not container.running:
        sys.stderr.write("Instance is not running\n")
        sys.exit(2)
    try:
        master = container.console_getfd(0)
    except ValueError:
        sys.stderr.write("The console is already in use: another client is attached to it\n")
        sys.exit(2)
    socket.send_fds(channel, [b"M"], [master])
    while channel.recv(1024):  # until stapesd closes its end
        pass


if __name__ == "__main__":
    main()
