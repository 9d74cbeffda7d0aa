"""Creating a private SQLite file without breaking SQLite's locks.

Closing any descriptor of a file drops every POSIX lock this process holds on it, SQLite's
included (fcntl locks belong to the process, not the descriptor). A store that opened and closed
its database file to create or chmod it, while another connection of the same process had it
open, left that connection unlocked: another process then took the file for unused and removed
its write-ahead log from under it. So: open a file only to create it (O_EXCL, nobody holds it
yet), and tighten an existing one by path.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from .errors import StateError


def create_private(path: Path) -> None:
    """Make ``path`` an empty 0600 file if it does not exist; refuse a symlink or a non-file there."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        return
    found = os.lstat(path)
    if not stat.S_ISREG(found.st_mode):
        raise StateError(f"{path} is not a regular file (a symlink or something else is there); remove it")
    if found.st_mode & 0o077:
        os.chmod(path, 0o600)  # by path: no descriptor to close
