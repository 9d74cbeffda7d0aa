"""What one replica counts of its handler calls (written to its shard for the gateway's ``/metrics``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..metrics import catalog
from ..metrics.exposition import render
from ..metrics.recorder import Recorder
from ..metrics.shards import ShardWriter


class ReplicaMetrics:
    def __init__(self, deployment: str, revision: str = "0", directory: Path | None = None) -> None:
        self.deployment = deployment
        self.revision = revision
        self.recorder = Recorder()
        self.writer = ShardWriter(directory, "replica", self.recorder) if directory is not None else None
        self._keys: dict[tuple[str, int], tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def observe(self, handler: str, code: int, duration_s: float) -> None:
        keys = self._keys.get((handler, code))
        if keys is None:  # label tuples built once per (handler, code)
            keys = self._keys[(handler, code)] = (
                (self.deployment, self.revision, handler, str(code)), (self.deployment, self.revision, handler))
        self.recorder.inc(catalog.HANDLER_CALLS, keys[0])
        self.recorder.observe(catalog.HANDLER_DURATION, keys[1], duration_s)

    def observe_batch(self, handler: str, size: int) -> None:
        self.recorder.observe(catalog.BATCH_SIZE, (self.deployment, handler), float(size))

    def batch_observer(self, handler: str) -> Callable[[int], None]:
        return lambda size: self.observe_batch(handler, size)

    def set_inflight(self, calls: int) -> None:
        self.recorder.set(catalog.HANDLER_INFLIGHT, (self.deployment,), float(calls))

    def flush(self, inflight: int) -> None:
        self.set_inflight(inflight)
        if self.writer is not None:
            self.writer.flush()

    def exposition(self) -> bytes:
        """This replica's own metrics (the gateway's ``/metrics`` has every process's)."""
        return render(self.recorder)
