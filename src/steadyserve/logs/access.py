"""The gateway's access log: one JSON line per call, sampled only above a rate.

Every call is logged while a gateway process logs at most ``full_rate_per_s`` calls in the
current second; past that, one call in ``sample_one_in`` is, and its line says so
(``"sampled": 100``: it stands for about 100 calls). At 200 lines a second a gateway writes
about 50 KB/s: enough to find any call of a normal load by its request id, and bounded under
a flood. What is logged: method, path without its query string (a query may carry a token),
status, duration, deployment, handler, replica, request id and body sizes; never a body or
a header.

    sampler = AccessSampler()
    ...
    sampled = sampler.sample(time.monotonic())
    if sampled:
        os.write(2, access_line(entry, gateway="g0", ts=time.time(), sampled=sampled))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import orjson

DEFAULT_FULL_RATE_PER_S = 200
DEFAULT_SAMPLE_ONE_IN = 100


@dataclass(frozen=True, slots=True)
class AccessEntry:
    method: str
    path: str  # without the query string
    status: int
    duration_ms: float
    deployment: str | None
    handler: str | None
    replica: str | None  # the replica that answered, if any
    request_id: str
    bytes_in: int
    bytes_out: int


def access_line(entry: AccessEntry, gateway: str, ts: float, sampled: int = 1) -> bytes:
    """The line ``records.parse_line`` reads back as an ``access`` record (newline included)."""
    doc = asdict(entry)
    doc["path"] = entry.path.split("?", 1)[0]
    doc.update(kind="access", ts=ts, gateway=gateway)
    if sampled != 1:
        doc["sampled"] = sampled
    return orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)


class AccessSampler:
    """Whether to log this call: all of them up to ``full_rate_per_s`` a second, then one in N.

    Decides from a monotonic ``now`` given by the caller; not thread-safe (one per event loop)."""

    def __init__(self, full_rate_per_s: int = DEFAULT_FULL_RATE_PER_S,
                 sample_one_in: int = DEFAULT_SAMPLE_ONE_IN) -> None:
        if full_rate_per_s < 0 or sample_one_in < 1:
            raise ValueError("full_rate_per_s must be >= 0 and sample_one_in >= 1")
        self.full_rate_per_s = full_rate_per_s
        self.sample_one_in = sample_one_in
        self._second = -math.inf
        self._logged = 0
        self._skipped = 0

    def sample(self, now: float) -> int:
        """0: do not log this call; else the number of calls its line stands for (1: just itself)."""
        second = math.floor(now)
        if second != self._second:
            self._second, self._logged, self._skipped = second, 0, 0
        if self._logged < self.full_rate_per_s:
            self._logged += 1
            return 1
        self._skipped += 1
        if self._skipped % self.sample_one_in == 0:
            return self.sample_one_in
        return 0
