"""The routing table: what the controller tells the gateways, through a file.

The controller writes it atomically (write, fsync, rename); gateways poll its
mtime. So traffic never waits on the controller, and a restarted gateway
process finds the current table at once.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Policy = Literal["round_robin", "least_request", "consistent_hash"]
log = logging.getLogger("steadyserve.gateway")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ReplicaRoute(_Frozen):
    id: str
    generation: int
    endpoint: str
    revision: int = 0
    credential: str | None = None  # sent as x-steady-replica-key: replicas on a network accept nothing else


class CanaryRoute(_Frozen):
    revision: int  # replicas of this revision get ...
    percent: float  # ... this share of the calls


class HandlerRoute(_Frozen):
    idempotent: bool = True


class OutlierRoute(_Frozen):
    consecutive_failures: int = 5
    base_ejection_s: float = 5.0
    max_ejection_s: float = 60.0
    max_ejected_percent: float = 100.0
    panic_threshold_percent: float = 50.0


class AdmissionRoute(_Frozen):
    """Limits as this gateway process enforces them: its share of the deployment's."""

    max_ongoing_per_replica: int = 8
    max_queued: int = 512
    queue_timeout_s: float = 2.0
    adaptive: bool = False


class ServiceRoute(_Frozen):
    policy: Policy = "least_request"
    hash_key: str | None = Field(
        default=None, description="'header:<name>' or 'json:<field>' for consistent_hash"
    )
    timeout_s: float = 30.0  # the whole call, retries included (for a stream: until its first chunk)
    stream_chunk_timeout_s: float = 30.0  # a stream's longest pause between two chunks
    stream_timeout_s: float = 600.0  # a whole stream
    admission: AdmissionRoute = AdmissionRoute()
    outlier: OutlierRoute = OutlierRoute()
    max_attempts: int = 3
    retry_budget_ratio: float = 0.2
    handlers: dict[str, HandlerRoute] = {}
    v2_handler: str | None = None  # the Open Inference Protocol entry point, if any
    chat_handler: str | None = None  # serves the OpenAI-compatible /v1/chat/completions, if any
    canary: CanaryRoute | None = None
    forward_identity: bool = False  # tell replicas the caller's token name and role (never the token)
    # Scaled to zero (or may be): with no replica, a call waits this long for the first to start.
    cold_start_timeout_s: float | None = None
    replicas: tuple[ReplicaRoute, ...] = ()


class TokenRoute(_Frozen):
    name: str
    role: str
    digest: str  # sha256 of the secret part; the token itself is never written
    # The token's whole limit: every gateway process on the machine updates one shared GCRA cell.
    rate_per_s: float | None = None
    burst: int | None = None


class RoutingTable(_Frozen):
    version: int = 0
    default_service: str | None = None
    services: dict[str, ServiceRoute] = {}
    auth_required: bool = False
    tokens: dict[str, TokenRoute] = {}  # by token id


def write_table(path: Path, table: RoutingTable) -> None:
    data = table.model_dump_json(indent=1).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".routes-")
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class TableFile:
    """Re-reads the table when the file changes; keeps the last good one otherwise."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._refused: tuple[int, int] | None = None

    def poll(self) -> RoutingTable | None:
        """The new table if the file changed since the last call, else None."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp == self._stamp:
            return None
        try:
            table = RoutingTable.model_validate_json(self.path.read_bytes())
        except (OSError, ValueError) as exc:
            # Mid-write by a non-atomic editor, or a table we cannot use: keep serving the old one,
            # and say so once per version of the file.
            if self._refused != stamp:
                self._refused = stamp
                log.error("routing table %s is unusable, keeping the previous one: %s", self.path, exc)
            return None
        self._stamp = stamp
        return table

    def close(self) -> None:
        pass
