"""Reading what the processes appended to ``<logs_dir>/*.log`` since the last call.

    tailer = LogTailer(config.logs_dir, store)
    tailer.collect_once(time.time())          # -> lines stored

Only complete lines are taken; a partial last line is read again next time. How far each file
was read (its inode and offset) is saved in the store in the same transaction as its lines, so
a restarted controller neither stores a line twice nor loses one. A file that was replaced
(another inode) or truncated (shorter than the offset) is read from its start. A line longer
than ``MAX_LINE_BYTES`` is stored cut (marked "…"), and the rest of it skipped; the lines after it are kept.
One call reads at most ``max_read_bytes`` (shared out among the files), so it stays bounded
however far behind the store is.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from .records import LogRecord, parse_line
from .store import FileOffset, LogStore

MAX_LINE_BYTES = 256 * 1024  # JsonFormatter's capped msg + exc fit, even escaped; parse_line caps it further
DEFAULT_MAX_READ_BYTES = 8 * 1024 * 1024
LOG_SUFFIX = ".log"


@dataclass(frozen=True)
class Batch:
    """What one pass read: the records, and the offsets to save with them."""

    records: list[LogRecord]
    offsets: list[FileOffset]
    gone: list[str]  # files no longer there: their offsets are forgotten


@dataclass(frozen=True)
class _Chunk:
    lines: list[bytes]
    consumed: int  # bytes of the chunk taken (through the last newline, or a cut line)
    skipping: bool  # the chunk ended inside a cut line


def split_lines(data: bytes, skipping: bool, max_line_bytes: int = MAX_LINE_BYTES) -> _Chunk:
    """Complete lines of ``data``; a partial last line is left for next time (its writer may be half-way
    through it) unless it is already too long.

    ``skipping``: ``data`` starts inside a line already stored cut; its rest is dropped."""
    lines: list[bytes] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if skipping:
            if end < 0:
                return _Chunk(lines, len(data), True)
            pos, skipping = end + 1, False
            continue
        if end < 0:
            if len(data) - pos >= max_line_bytes:  # no newline in sight: store the head, skip the rest
                lines.append(data[pos:pos + max_line_bytes])
                return _Chunk(lines, len(data), True)
            break  # a partial line: read again next time
        if end - pos > max_line_bytes:
            lines.append(data[pos:pos + max_line_bytes])
        else:
            lines.append(data[pos:end])
        pos = end + 1
    return _Chunk(lines, pos, skipping)


class LogTailer:
    def __init__(self, logs_dir: Path, store: LogStore, max_read_bytes: int = DEFAULT_MAX_READ_BYTES,
                 revision_of: Callable[[str], int | None] | None = None) -> None:
        """``revision_of(label)``: the revision a process runs, for its raw lines (which do not say)."""
        self.logs_dir = logs_dir
        self.store = store
        self.max_read_bytes = max_read_bytes
        self.revision_of = revision_of

    def collect_once(self, now: float) -> int:
        """Store what was appended since the last call; the number of records stored."""
        batch = self.read_new(now)
        with self.store.transaction():
            self.store.insert_many(batch.records)
            self.store.save_offsets(batch.offsets, batch.gone)
        return len(batch.records)

    def read_new(self, now: float) -> Batch:
        """Read and parse without storing: the caller stores the batch in one transaction."""
        known = self.store.offsets()
        names = sorted(self._log_names())
        per_file = max(self.max_read_bytes // max(1, len(names)), MAX_LINE_BYTES + 1)
        records: list[LogRecord] = []
        offsets: list[FileOffset] = []
        for name in names:
            read = self._read_file(name, known.get(name), per_file, now)
            if read is not None:
                records += read[0]
                if read[1] != known.get(name):  # unchanged offsets are not written again (idle: no writes)
                    offsets.append(read[1])
        gone = [name for name in known if name not in names]
        return Batch(records, offsets, gone)

    def _log_names(self) -> Iterator[str]:
        try:
            entries = list(os.scandir(self.logs_dir))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.endswith(LOG_SUFFIX) and len(entry.name) > len(LOG_SUFFIX):
                yield entry.name

    def _read_file(self, name: str, known: FileOffset | None, max_bytes: int,
                   now: float) -> tuple[list[LogRecord], FileOffset] | None:
        try:  # O_NOFOLLOW: a symlink is not followed; O_NONBLOCK: a FIFO planted here cannot hang us
            fd = os.open(self.logs_dir / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.EACCES, errno.ENXIO):
                return None  # vanished, a symlink, not ours to read
            raise
        with contextlib.closing(_Fd(fd)):
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            position = known if known is not None and known.inode == st.st_ino else None
            if position is None or st.st_size < position.offset:  # new, replaced or truncated
                position = FileOffset(name, st.st_ino, 0)
            if st.st_size == position.offset:
                return [], position
            data = os.pread(fd, min(max_bytes, st.st_size - position.offset), position.offset)
        chunk = split_lines(data, position.skipping)
        label = name[: -len(LOG_SUFFIX)]
        revision = self.revision_of(label) if self.revision_of is not None else None
        records = []
        for line in chunk.lines:
            if not line.strip():
                continue
            record = parse_line(line, label, now)
            if revision is not None and record.revision != revision:
                # The controller knows what the process runs; a line may say anything (user code prints too),
                # and a made-up revision would count as a rollout of its own.
                record = replace(record, revision=revision)
            records.append(record)
        return records, FileOffset(name, st.st_ino, position.offset + chunk.consumed, chunk.skipping)


class _Fd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        os.close(self.fd)
