"""Metrics shared between processes through files: one shard per process, summed on read.

Each gateway, replica and controller process writes its totals to its own shard file
(``<role>-<pid>-<start>.json``, replaced atomically) a few times a second when they
changed. A reader sums every shard: counters and histograms of every process that
ever ran (a dead replica's calls still happened), live values (gauges) only of
processes still running — the same process, not a later one with its pid.

Shards of dead processes are folded into ``archive.json`` (``compact``) so a crash
loop does not leave thousands of files. The archive names the shards it holds, and a
reader skips those, so a shard is never counted twice nor missed: the archive is
replaced before a folded shard is removed, and a reader that finds a listed shard gone
reads everything again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from .catalog import BY_NAME
from .recorder import Recorder

log = logging.getLogger(__name__)
ARCHIVE = "archive.json"
MAX_SHARD_BYTES = 8 << 20
MAX_ARCHIVE_BYTES = 256 << 20  # written by the controller alone; it grows with every series ever seen
MAX_SERIES_PER_SHARD = 20_000  # a process writing more is broken (or hostile): the rest is left out
MAX_ARCHIVE_SERIES = 2_000_000
MAX_VALUE = 1e15  # counts and seconds past this are nonsense (and would sum to inf)
MAX_LABEL_CHARS = 256
_READ_ATTEMPTS = 5

Alive = Callable[[int, int], bool]


def process_start(pid: int) -> int | None:
    """The kernel's start time of a process (clock ticks since boot): tells it from a later pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rpartition(b")")[2].split()  # the command name may hold spaces and parentheses
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def process_alive(pid: int, start: int) -> bool:
    return process_start(pid) == start


def shard_name(role: str, pid: int, start: int) -> str:
    return f"{role}-{pid}-{start}.json"


def _identity(name: str) -> tuple[int, int] | None:
    parts = name.removesuffix(".json").rsplit("-", 2)
    if len(parts) != 3:
        return None
    try:
        return int(parts[1]), int(parts[2])
    except ValueError:
        return None


class ShardWriter:
    """Writes one process's ``Recorder`` to its shard when it changed."""

    def __init__(self, directory: Path, role: str, recorder: Recorder, pid: int | None = None) -> None:
        self.directory = directory
        self.recorder = recorder
        self.pid = os.getpid() if pid is None else pid
        self.start = process_start(self.pid) or 0
        self.path = directory / shard_name(role, self.pid, self.start)
        self._written = b""

    def flush(self) -> bool:
        """Write the totals if they changed; a failed write (a full disk) is logged and tried next time:
        it never stops the calls being counted."""
        data = orjson.dumps(self.recorder.to_json())
        if data == self._written:
            return False
        try:
            _write_atomically(self.path, data)
        except OSError as exc:
            log.warning("could not write metrics to %s: %s", self.path, exc)
            return False
        self._written = data
        return True


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class _Vanished(Exception):
    pass


def _load(path: Path, max_bytes: int = MAX_SHARD_BYTES) -> dict[str, Any] | None:
    """A shard's content; None if it is damaged (logged; the rest is still read)."""
    try:  # O_NONBLOCK: a FIFO planted here must not hang the reader (the gateway, the controller)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _Vanished from None
    except OSError as exc:
        log.warning("metrics shard %s unreadable: %s", path, exc)
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            log.warning("metrics shard %s is not a regular file; left out", path)
            return None
        data = f.read(max_bytes + 1)
    try:
        loaded = orjson.loads(data) if len(data) <= max_bytes else None
    except orjson.JSONDecodeError:
        loaded = None
    if not isinstance(loaded, dict):
        log.warning("metrics shard %s is damaged or too large; left out", path)
        return None
    return loaded


def _sane(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= MAX_VALUE


def add(total: Recorder, shard: dict[str, Any], live: bool, max_series: int = MAX_SERIES_PER_SHARD) -> None:
    """Add one shard's values to ``total``; entries that do not fit the catalogue are left out."""
    for entry in _entries(shard.get("counters"), max_series):
        name, values, value = entry
        if _fits(name, values, "counter") and _sane(value):
            key = (name, values)
            total.counters[key] = total.counters.get(key, 0.0) + float(value)
    for entry in _entries(shard.get("histograms"), max_series):
        name, values, cells = entry
        spec = BY_NAME.get(name)
        if (not _fits(name, values, "histogram") or spec is None or not isinstance(cells, list)
                or len(cells) != len(spec.buckets) + 2
                or not all(_sane(c) for c in cells)):
            continue
        key = (name, values)
        found = total.histograms.setdefault(key, [0.0] * len(cells))
        for i, cell in enumerate(cells):
            found[i] += float(cell)
    if live:
        for entry in _entries(shard.get("live"), max_series):
            name, values, value = entry
            spec = BY_NAME.get(name)
            if spec is not None and spec.live_only and _fits(name, values, spec.kind) and _sane(value):
                key = (name, values)
                total.live[key] = total.live.get(key, 0.0) + float(value)


def _entries(raw: object, max_series: int) -> list[tuple[str, tuple[str, ...], Any]]:
    if not isinstance(raw, list):
        return []
    out = []
    for item in raw[:max_series]:
        if (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and isinstance(item[1], list)
                and all(isinstance(v, str) and len(v) <= MAX_LABEL_CHARS for v in item[1])):
            out.append((item[0], tuple(item[1]), item[2]))
    return out


def _fits(name: str, values: tuple[str, ...], kind: str) -> bool:
    spec = BY_NAME.get(name)
    return spec is not None and spec.kind == kind and len(values) == len(spec.labels)


def _listing(directory: Path) -> list[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.endswith(".json") and n != ARCHIVE and not n.startswith("."))


def _archive(directory: Path) -> dict[str, Any]:
    try:
        loaded = _load(directory / ARCHIVE, MAX_ARCHIVE_BYTES)
    except _Vanished:
        return {}
    return loaded or {}


def read_merged(directory: Path, alive: Alive = process_alive) -> Recorder:
    """Every process's metrics summed (live values of running processes only)."""
    for _ in range(_READ_ATTEMPTS):
        names = _listing(directory)  # first: a shard folded after this is in the archive read next
        archive = _archive(directory)
        folded = set(archive.get("merged", [])) if isinstance(archive.get("merged"), list) else set()
        total = Recorder()
        add(total, archive, live=False, max_series=MAX_ARCHIVE_SERIES)
        try:
            for name in names:
                if name in folded:
                    continue
                shard = _load(directory / name)
                identity = _identity(name)
                if shard is not None:
                    add(total, shard, live=identity is not None and alive(*identity))
        except _Vanished:  # folded into the archive meanwhile: read it all again
            continue
        return total
    raise RuntimeError(f"metrics shards in {directory} kept changing while read")


def compact(directory: Path, alive: Alive = process_alive) -> int:
    """Fold the shards of processes that have exited into the archive; how many were folded.

    Only one process (the controller) compacts a directory.
    """
    archive = _archive(directory)
    if not archive and (directory / ARCHIVE).exists():
        # Damaged: never overwrite it (that would lose every folded count for good); set it aside.
        aside = directory / f"{ARCHIVE}.damaged-{int(time.time())}"
        os.replace(directory / ARCHIVE, aside)
        log.error("metrics archive %s was damaged; moved to %s (totals restart from the live shards)",
                  directory / ARCHIVE, aside)
    folded = set(archive.get("merged", [])) if isinstance(archive.get("merged"), list) else set()
    names = _listing(directory)
    for name in [n for n in names if n in folded]:  # folded before a crash, not yet removed
        (directory / name).unlink(missing_ok=True)
    dead = [n for n in names if n not in folded and (_identity(n) is None or not alive(*_identity(n)))]  # type: ignore[misc]
    _remove_stale_temporaries(directory, alive)
    if not dead:
        return 0
    total = Recorder()
    add(total, archive, live=False, max_series=MAX_ARCHIVE_SERIES)
    for name in dead:
        try:
            shard = _load(directory / name)
        except _Vanished:
            continue
        if shard is not None:
            add(total, shard, live=False)
    remaining = sorted({n for n in folded if (directory / n).exists()} | set(dead))
    _write_atomically(directory / ARCHIVE, orjson.dumps({"merged": remaining, **total.to_json()}))
    for name in dead:
        (directory / name).unlink(missing_ok=True)
    return len(dead)


def _remove_stale_temporaries(directory: Path, alive: Alive) -> None:
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(directory):
            if name.startswith(".") and name.endswith(".json.tmp"):
                identity = _identity(name[1:].removesuffix(".tmp"))
                if identity is None or not alive(*identity):
                    (directory / name).unlink(missing_ok=True)
