"""The gateway's access log: one JSON line per call (sampled above a rate), written in batches.

Lines go to standard error, which the controller collects into the log store
(logs/collect.py); a batch is written when it reaches ``MAX_BUFFERED_BYTES`` or when the
gateway's timer flushes it (``FLUSH_S``), so a call costs a formatted line, not a write.
Bodies and headers are never logged; the path is logged without its query string.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from ..logs.access import AccessEntry, AccessSampler, access_line
from .metrics import NONE, CallNote

FLUSH_S = 0.2
MAX_BUFFERED_BYTES = 64 * 1024


class AccessLog:
    def __init__(self, gateway_id: str, write: Callable[[bytes], object] | None = None,
                 sampler: AccessSampler | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.gateway_id = gateway_id
        self.clock = clock
        self._write = write if write is not None else (lambda data: os.write(2, data))
        self.sampler = sampler if sampler is not None else AccessSampler()
        self._lines: list[bytes] = []
        self._size = 0

    def call(self, method: bytes, path: bytes, note: CallNote, duration_s: float, bytes_in: int,
             bytes_out: int) -> None:
        sampled = self.sampler.sample(self.clock())
        if not sampled or not note.counted:
            return
        entry = AccessEntry(
            method.decode("latin-1"), path.decode("utf-8", "replace"), note.status, round(duration_s * 1000, 3),
            None if note.deployment == NONE else note.deployment, None if note.handler == NONE else note.handler,
            note.replica, note.request_id, bytes_in, bytes_out)
        line = access_line(entry, self.gateway_id, time.time(), sampled)
        self._lines.append(line)
        self._size += len(line)
        if self._size >= MAX_BUFFERED_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        data, self._lines, self._size = b"".join(self._lines), [], 0
        try:
            self._write(data)
        except OSError:
            pass  # a full disk or a closed stderr must not fail calls
