"""cowsql, the Raft-replicated SQLite Incus keeps its cluster state in: the node this daemon
embeds (node.py, libcowsql through ctypes) and the dqlite wire protocol its clients speak to
the leader (wire.py). Written here because the PyPI clients of that protocol need Python 3.13
and this project runs on Debian 12's 3.11."""
