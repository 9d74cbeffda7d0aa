"""Directories only the operator can use: the state directory and the socket directory.

Replica, gateway and control sockets carry every caller's requests (and their
tokens); whoever can bind or connect to them owns the platform. They live in a
directory created 0700 by this user, checked before every use, never at a
predictable shared path: when ``<state-dir>/sock`` would make socket paths too
long for ``sun_path``, a fresh ``mkdtemp`` directory is used and its path is
recorded (0600) in the state directory, so a recovering controller finds it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from ..errors import ConfigError

_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux
_SOCKET_NAME_ROOM = 64  # "<deployment>-<id>-<generation>.sock"
_TEMP_PREFIX = "steady-"
SOCKET_DIR_RECORD = "socket-dir"  # in the state dir: where the sockets live when not in <state-dir>/sock


def check_private_dir(path: Path) -> None:
    """Refuse a directory someone else owns or can write, or that is a symlink (it could point anywhere)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} does not exist") from exc
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path} is not a plain directory; steadyserve keeps its sockets and state only in"
                          " a directory it created: remove it and start again")
    if st.st_uid != os.geteuid():
        raise ConfigError(f"{path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}); another user"
                          " could read or replace what is in it: remove it or pick another --state-dir")
    if st.st_mode & 0o077:
        raise ConfigError(f"{path} has mode {stat.S_IMODE(st.st_mode):o}: other users could use it;"
                          f" run `chmod 700 {path}` or remove it")


def ensure_private_dir(path: Path, tighten: bool = False) -> Path:
    """Create ``path`` 0700 (parents as needed), or check an existing one.

    ``tighten``: an existing directory of ours that others can read but not write is made 0700
    (state dirs made by older versions) instead of refused. One that others could write is always
    refused: what they may have put there cannot be trusted.
    """
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        if tighten:
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(path)
                if (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077
                        and not st.st_mode & 0o022):
                    os.chmod(path, 0o700)
    check_private_dir(path)
    return path


def tighten_files(state_dir: Path) -> None:
    """Files an older version left readable by others (state.db, logs) become 0600.

    A file or directory that another user owns, or that others could write, is refused instead
    (ConfigError naming it): it may have been replaced or planted, so its content is not ours.
    """
    for path in [state_dir, *state_dir.rglob("*")]:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_uid != os.geteuid():  # a symlink too: what we write through it would land where they chose
            raise ConfigError(f"{path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}); someone"
                              " else could have put it in the state directory: check it, then remove it")
        if stat.S_ISLNK(st.st_mode):  # ours: its mode means nothing, and it is followed no further
            continue
        if st.st_mode & 0o022:
            raise ConfigError(f"{path} has mode {stat.S_IMODE(st.st_mode):o}: other users could have changed it;"
                              f" check its content, run `chmod go-w {path}`, and start again")
        if st.st_mode & 0o077:
            with contextlib.suppress(OSError):
                os.chmod(path, 0o700 if stat.S_ISDIR(st.st_mode) else 0o600)


def fits(directory: Path) -> bool:
    return len(str(directory)) + _SOCKET_NAME_ROOM <= _MAX_SOCKET_PATH


def _recorded_socket_dir(recorded: Path) -> bool:
    """Whether a socket-dir record names a directory this module could have made: an absolute
    ``.../steady-*`` (in whatever temp dir was current then). Anything else is neither used nor removed."""
    return recorded.is_absolute() and recorded.name.startswith(_TEMP_PREFIX) and ".." not in recorded.parts


def socket_dir(state_dir: Path) -> Path:
    """The private socket directory of an instance (created, or found and checked)."""
    preferred = state_dir / "sock"
    if fits(preferred):
        return ensure_private_dir(preferred)
    record = state_dir / SOCKET_DIR_RECORD
    with contextlib.suppress(FileNotFoundError):
        recorded = Path(record.read_text().strip())
        if not _recorded_socket_dir(recorded):
            raise ConfigError(f"{record} names {recorded}, which steadyserve did not create (its socket"
                              f" directories are named {_TEMP_PREFIX}*); remove {record}")
        if os.path.lexists(recorded):
            check_private_dir(recorded)
            return recorded
    created = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX))  # random name, 0700, created by us
    fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{created}\n")
    return created


def remove_socket_dir(state_dir: Path, directory: Path) -> None:
    """After a clean stop: a socket directory outside the state dir leaves nothing behind.

    Removed only if it is one this module makes and still a private directory of ours."""
    if directory.parent == state_dir or not _recorded_socket_dir(directory):
        return
    try:
        check_private_dir(directory)
    except ConfigError:
        return
    shutil.rmtree(directory, ignore_errors=True)
    (state_dir / SOCKET_DIR_RECORD).unlink(missing_ok=True)
