"""Device nodes in unpacked trees (image rootfs, imported backups) are removed: an instance's
/dev is made by liblxc at each start, so a node shipped in a tarball is never needed, and one
pointing at a host disk must not reach a container that could open it."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def remove_device_nodes(root: Path) -> int:
    """Delete every block and character device below ``root`` (symlinks are not followed);
    returns how many. Blocking: run it in a thread."""
    removed = 0
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
                os.unlink(path)
                removed += 1
    return removed
