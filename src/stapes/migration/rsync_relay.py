"""rsync's "remote shell" for a migration: rsync talks to it on stdin/stdout; it passes the bytes
to and from the socket the daemon gave it (fd argv[1]), which the daemon carries over the
migration websocket. Run as a script (stdlib only, ``python -S -I``); rsync appends the remote
command line (``localhost rsync --server ...``), which is ignored: the peer runs its own."""

import os
import selectors
import socket
import sys


def main() -> None:
    # rsync's stderr, inherited: the daemon reads it to its end, which must not wait for us
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    sock = socket.socket(fileno=int(sys.argv[1]))
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ)
    sel.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj == 0:
                data = os.read(0, 65536)
                if data:
                    sock.sendall(data)
                else:
                    sock.shutdown(socket.SHUT_WR)
                    sel.unregister(0)
            else:
                data = sock.recv(65536)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view) :]


if __name__ == "__main__":
    main()
