"""State the gateway processes of one machine share: small mmap'd files in the state directory.

Each file is created 0600 and mapped shared; a cell is read and written only while
holding an ``fcntl.lockf`` lock on its own byte range. Python offers no atomic
compare-and-swap on shared memory, and a kernel byte-range lock is released when
its holder dies, even by SIGKILL, so a killed gateway never leaves a cell locked.
Held for a few microseconds per call, and only by calls that need the cell.

Two files:

* rate-limit cells (``SharedLimiter``): a set-associative table, a token's cell
  found by a stable hash of its id, the id's key stored in the cell; so cells stay
  put when other tokens are added or revoked.
* refusal counters (``SharedCounters``), one file per gateway slot: how many
  calls that slot refused, by status. They outlive a killed gateway process, so
  the controller can account for refusals its successor never saw.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from .ratelimit import gcra, pick_way

_HEADER = struct.Struct("<8sII")  # magic, buckets, ways
_HEADER_BYTES = 64
_CELL = struct.Struct("<16sd8x")  # token key (16 bytes), TAT (monotonic seconds)
_COUNTER = struct.Struct("<Q")


class SharedFile:
    """One 0600 file, mapped read-write and shared; the only place that touches it."""

    def __init__(self, path: Path, size: int, header: bytes) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(self._fd, 0o600)  # an existing file keeps no wider mode
            with self.locked(0, _HEADER_BYTES):  # two processes starting at once: one initialises
                if os.fstat(self._fd).st_size < size:
                    os.ftruncate(self._fd, size)  # grows with zeros; never shrinks under a reader
                current = os.pread(self._fd, len(header), 0)
                if current != header:
                    # New, or left by another layout: zeros are "nothing owed, nothing counted".
                    os.pwrite(self._fd, bytes(size), 0)
                    os.pwrite(self._fd, header, 0)
            self.map = mmap.mmap(self._fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self._fd)
            raise

    @contextmanager
    def locked(self, offset: int, length: int) -> Iterator[None]:
        fcntl.lockf(self._fd, fcntl.LOCK_EX, length, offset, os.SEEK_SET)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, length, offset, os.SEEK_SET)

    def close(self) -> None:
        self.map.close()
        os.close(self._fd)


def token_key(token_id: str) -> bytes:
    """16 bytes that stand for a token id in its cell; stable across processes (unlike hash())."""
    return hashlib.blake2b(token_id.encode(), digest_size=16).digest()


class SharedLimiter:
    """GCRA cells shared by every gateway process: a token's rate holds across them all.

    ``buckets`` x ``ways`` cells; a token may use any of the ``ways`` cells of its
    bucket, and the bucket's byte range is the lock. Only tokens in mid-burst occupy
    a cell (see ``ratelimit.pick_way``), so 8192 cells fit far more tokens.
    """

    MAGIC = b"STDYRL01"

    def __init__(self, path: Path, buckets: int = 1024, ways: int = 8) -> None:
        self.buckets, self.ways = buckets, ways
        self._bucket_bytes = ways * _CELL.size
        self._file = SharedFile(path, _HEADER_BYTES + buckets * self._bucket_bytes,
                                _HEADER.pack(self.MAGIC, buckets, ways))
        self._keys: dict[str, bytes] = {}

    def take(self, token_id: str, rate_per_s: float, burst: int, now: float) -> float:
        key = self._keys.get(token_id)
        if key is None:
            key = self._keys[token_id] = token_key(token_id)
        offset = _HEADER_BYTES + int.from_bytes(key[:4], "little") % self.buckets * self._bucket_bytes
        m = self._file.map
        with self._file.locked(offset, self._bucket_bytes):
            cells = [_CELL.unpack_from(m, offset + i * _CELL.size) for i in range(self.ways)]
            way, tat = pick_way([c[0] for c in cells], [c[1] for c in cells], key, now)
            decision = gcra(now, tat, rate_per_s, burst)
            if decision.allowed:
                _CELL.pack_into(m, offset + way * _CELL.size, key, decision.tat)
        return decision.retry_after_s

    def forget(self, keep: set[str]) -> None:
        self._keys = {i: k for i, k in self._keys.items() if i in keep}

    def close(self) -> None:
        self._file.close()


class Counters(Protocol):
    def add(self, name: str, n: int = 1) -> None: ...

    def read(self) -> dict[str, int]: ...


class SharedCounters:
    """Counters by name (e.g. refusals by status) that outlive the process that counts them."""

    MAGIC = b"STDYCT01"

    def __init__(self, path: Path, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self._index = {n: i for i, n in enumerate(self.names)}
        names_bytes = ",".join(self.names).encode()[:_HEADER_BYTES - _HEADER.size]
        header = _HEADER.pack(self.MAGIC, len(self.names), 0) + names_bytes
        self._file = SharedFile(path, _HEADER_BYTES + len(self.names) * _COUNTER.size, header)

    def add(self, name: str, n: int = 1) -> None:
        offset = _HEADER_BYTES + self._index[name] * _COUNTER.size
        m = self._file.map
        with self._file.locked(offset, _COUNTER.size):
            _COUNTER.pack_into(m, offset, _COUNTER.unpack_from(m, offset)[0] + n)

    def read(self) -> dict[str, int]:
        m = self._file.map
        with self._file.locked(_HEADER_BYTES, len(self.names) * _COUNTER.size):
            return {n: _COUNTER.unpack_from(m, _HEADER_BYTES + i * _COUNTER.size)[0]
                    for i, n in enumerate(self.names)}

    def close(self) -> None:
        self._file.close()


class LocalCounters:
    """The same counters in this process's memory (no file: lost with the process)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self._counts = dict.fromkeys(self.names, 0)

    def add(self, name: str, n: int = 1) -> None:
        self._counts[name] += n

    def read(self) -> dict[str, int]:
        return dict(self._counts)
