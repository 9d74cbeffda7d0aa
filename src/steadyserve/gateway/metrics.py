"""What one gateway process counts of its calls, and its ``/metrics`` answer for all processes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from ..metrics import catalog
from ..metrics.exposition import render
from ..metrics.recorder import Recorder
from ..metrics.shards import ShardWriter, read_merged
from .runtime import ServiceRuntime

NONE = "none"  # label value where a call reached no deployment, handler or replica
CLIENT_GONE = 499  # nginx's code for a call whose client left before the answer


class CallNote:
    """Filled in by the request path as it learns who a call was for and how it ended."""

    __slots__ = ("attempts", "counted", "deployment", "handler", "replica", "request_id", "revision", "shed",
                 "status")

    def __init__(self) -> None:
        self.deployment = NONE
        self.handler = NONE
        self.revision = NONE
        self.status = CLIENT_GONE
        self.attempts = 0
        self.shed = False
        self.counted = True  # scrapes of /metrics are not calls
        self.replica: str | None = None  # the replica that answered
        self.request_id = ""


class GatewayMetrics:
    def __init__(self, directory: Path | None = None, role: str = "gateway") -> None:
        self.recorder = Recorder()
        self.directory = directory
        self.writer = ShardWriter(directory, role, self.recorder) if directory is not None else None
        self._requests: dict[tuple[str, str, str, int], list[float]] = {}

    def call(self, note: CallNote, duration_s: float) -> None:
        if not note.counted:
            return
        r = self.recorder
        r.inc(catalog.REQUESTS, (note.deployment, note.revision, note.handler, str(note.status)))
        r.observe(catalog.REQUEST_DURATION, (note.deployment, note.handler), duration_s)
        if note.shed:
            r.inc(catalog.ADMISSION, (note.deployment, "shed"))
        elif note.attempts:
            r.inc(catalog.ADMISSION, (note.deployment, "admitted"))
        if note.attempts > 1:
            r.inc(catalog.RETRIES, (note.deployment,), note.attempts - 1)

    def stream(self, note: CallNote, outcome: str, first_chunk_s: float, chunks: int, duration_s: float) -> None:
        r = self.recorder
        labels = (note.deployment, note.handler)
        r.inc(catalog.STREAMS, (note.deployment, note.handler, outcome))
        r.observe(catalog.STREAM_FIRST_CHUNK, labels, first_chunk_s)
        if chunks:
            r.inc(catalog.STREAM_CHUNKS, labels, chunks)
        r.observe(catalog.STREAM_DURATION, labels, duration_s)

    def know(self, deployments: Iterable[str]) -> None:
        """The per-deployment counters at zero for the deployments in the routing table."""
        for name in deployments:
            for spec, values in ((catalog.RETRIES, (name,)), (catalog.EJECTIONS, (name,)),
                                 (catalog.ADMISSION, (name, "admitted")), (catalog.ADMISSION, (name, "shed"))):
                self.recorder.ensure(spec, values)

    def ejected(self, deployment: str) -> None:
        self.recorder.inc(catalog.EJECTIONS, (deployment,))

    def observe_now(self, services: Mapping[str, ServiceRuntime]) -> None:
        """In-flight and queued calls per deployment, read off the runtime (nothing on the data path)."""
        self.recorder.replace_live(catalog.INFLIGHT, {
            (name, ): float(sum(r.inflight for r in rt.replicas) + len(rt.waiters)) for name, rt in services.items()})
        self.recorder.replace_live(catalog.QUEUED, {(name, ): float(len(rt.waiters)) for name, rt in services.items()})

    def flush(self, services: Mapping[str, ServiceRuntime]) -> None:
        self.observe_now(services)
        if self.writer is not None:
            self.writer.flush()

    def exposition(self, services: Mapping[str, ServiceRuntime]) -> bytes:
        """Every gateway's, replica's and the controller's metrics (this process's alone without a directory)."""
        self.flush(services)
        if self.directory is None:
            return render(self.recorder)
        return render(read_merged(self.directory))
