"""What an alert rule measures: its value over the history, and the same as PromQL.

Each expression is a small frozen value with ``value(history, deployment, now)`` (None: no
data; a rule never fires on None) and ``promql(deployment)``, which an exported rule compares
with its threshold. Both read the same series (``metrics/catalog.py``); where they differ, it
is as History and Prometheus differ: Prometheus extrapolates ``rate``/``increase`` to the window
edges and counts a counter from its first sample, History counts a series born inside the
window from zero. Ratios and quantiles are the same either way.

PromQL forms avoid the traps of empty vectors: a ratio's numerator is ``or vector(0)`` (no
5xx series yet is 0%, not "no data"), and no traffic at all is ``0/0`` or empty: no alert.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from ..metrics import catalog
from ..metrics.history import History
from .durations import format_duration
from .units import Unit


def promql_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def selector(name: str, **matchers: str) -> str:
    """``name{k="v",...}``; a matcher value starting with ``~`` is a regex match."""
    parts = [f"{key}=~{promql_string(value[1:])}" if value.startswith("~") else f"{key}={promql_string(value)}"
             for key, value in matchers.items()]
    return f"{name}{{{','.join(parts)}}}"


def promql_number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Expression(ABC):
    unit: ClassVar[Unit]

    @abstractmethod
    def value(self, history: History, deployment: str, now: float) -> float | None: ...

    @abstractmethod
    def promql(self, deployment: str) -> str: ...

    @abstractmethod
    def describe(self) -> str:
        """What is measured, for summaries: ``5xx ratio over 5m``."""

    def condition_promql(self, deployment: str, op: str, threshold: float) -> str:
        return f"{self.promql(deployment)} {op} {promql_number(threshold)}"


def _matchers(deployment: str, handler: str | None) -> dict[str, str]:
    return {"deployment": deployment} if handler is None else {"deployment": deployment, "handler": handler}


def _for_handler(handler: str | None) -> str:
    return "" if handler is None else f" of {handler}"


def ratio_5xx(history: History, deployment: str, window_s: float, now: float,
              handler: str | None = None) -> float | None:
    """5xx answers / all answers of the gateway over the window (None: no calls)."""
    by_code = history.increase(catalog.REQUESTS.exposed_name, _matchers(deployment, handler), window_s, now,
                               by=("code",))
    total = sum(by_code.values())
    if total <= 0:
        return None
    bad = sum(grew for labels, grew in by_code.items() if dict(labels).get("code", "").startswith("5"))
    return bad / total


def ratio_5xx_promql(deployment: str, window_s: float, handler: str | None = None) -> str:
    window = format_duration(window_s)
    every = _matchers(deployment, handler)
    bad = selector(catalog.REQUESTS.exposed_name, **every, code="~5..")
    return (f"(sum(rate({bad}[{window}])) or vector(0))"
            f" / sum(rate({selector(catalog.REQUESTS.exposed_name, **every)}[{window}]))")


@dataclass(frozen=True)
class ErrorRatio(Expression):
    window_s: float
    handler: str | None = None
    unit: ClassVar[Unit] = "ratio"

    def value(self, history: History, deployment: str, now: float) -> float | None:
        return ratio_5xx(history, deployment, self.window_s, now, self.handler)

    def promql(self, deployment: str) -> str:
        return ratio_5xx_promql(deployment, self.window_s, self.handler)

    def describe(self) -> str:
        return f"5xx ratio{_for_handler(self.handler)} over {format_duration(self.window_s)}"


@dataclass(frozen=True)
class ShedRatio(Expression):
    window_s: float
    unit: ClassVar[Unit] = "ratio"

    def value(self, history: History, deployment: str, now: float) -> float | None:
        by_decision = history.increase(catalog.ADMISSION.exposed_name, {"deployment": deployment}, self.window_s,
                                       now, by=("decision",))
        total = sum(by_decision.values())
        if total <= 0:
            return None
        return by_decision.get((("decision", "shed"),), 0.0) / total

    def promql(self, deployment: str) -> str:
        window = format_duration(self.window_s)
        name = catalog.ADMISSION.exposed_name
        return (f"(sum(rate({selector(name, deployment=deployment, decision='shed')}[{window}])) or vector(0))"
                f" / sum(rate({selector(name, deployment=deployment)}[{window}]))")

    def describe(self) -> str:
        return f"shed ratio over {format_duration(self.window_s)}"


@dataclass(frozen=True)
class LatencyQuantile(Expression):
    quantile: float
    window_s: float
    handler: str | None = None
    unit: ClassVar[Unit] = "seconds"

    def value(self, history: History, deployment: str, now: float) -> float | None:
        found = history.quantile(self.quantile, catalog.REQUEST_DURATION.name, _matchers(deployment, self.handler),
                                 self.window_s, now)
        return None if found is None or math.isnan(found) else found

    def promql(self, deployment: str) -> str:
        buckets = selector(f"{catalog.REQUEST_DURATION.name}_bucket", **_matchers(deployment, self.handler))
        return (f"histogram_quantile({promql_number(self.quantile)},"
                f" sum by (le) (rate({buckets}[{format_duration(self.window_s)}])))")

    def describe(self) -> str:
        return f"p{self.quantile * 100:g} latency{_for_handler(self.handler)} over {format_duration(self.window_s)}"


@dataclass(frozen=True)
class Inflight(Expression):
    unit: ClassVar[Unit] = "count"

    def value(self, history: History, deployment: str, now: float) -> float | None:
        readings = history.latest(catalog.INFLIGHT.exposed_name, {"deployment": deployment}, now)
        return sum(readings.values()) if readings else None

    def promql(self, deployment: str) -> str:
        return f"sum({selector(catalog.INFLIGHT.exposed_name, deployment=deployment)})"

    def describe(self) -> str:
        return "calls in flight"


@dataclass(frozen=True)
class CapacityLimited(Expression):
    """1 while the autoscaler wants more replicas than the machine's budget allows (else 0)."""

    unit: ClassVar[Unit] = "count"

    def value(self, history: History, deployment: str, now: float) -> float | None:
        readings = history.latest(catalog.CAPACITY_LIMITED.exposed_name, {"deployment": deployment}, now)
        return max(readings.values()) if readings else None

    def promql(self, deployment: str) -> str:
        return f"max({selector(catalog.CAPACITY_LIMITED.exposed_name, deployment=deployment)})"

    def describe(self) -> str:
        return "wants more replicas than the machine's budget allows"


@dataclass(frozen=True)
class MemoryRatio(Expression):
    unit: ClassVar[Unit] = "ratio"

    def value(self, history: History, deployment: str, now: float) -> float | None:
        resident = history.latest(catalog.REPLICA_MEMORY.exposed_name, {"deployment": deployment}, now)
        limits = history.latest(catalog.REPLICA_MEMORY_LIMIT.exposed_name, {"deployment": deployment}, now)
        if not resident or not limits or max(limits.values()) <= 0:
            return None  # no replica, or no limit set (resources.memory_mb)
        return max(resident.values()) / max(limits.values())

    def promql(self, deployment: str) -> str:
        return (f"max({selector(catalog.REPLICA_MEMORY.exposed_name, deployment=deployment)})"
                f" / max({selector(catalog.REPLICA_MEMORY_LIMIT.exposed_name, deployment=deployment)})")

    def describe(self) -> str:
        return "largest replica memory / limit"


@dataclass(frozen=True)
class MemoryBytes(Expression):
    unit: ClassVar[Unit] = "bytes"

    def value(self, history: History, deployment: str, now: float) -> float | None:
        resident = history.latest(catalog.REPLICA_MEMORY.exposed_name, {"deployment": deployment}, now)
        return max(resident.values()) if resident else None

    def promql(self, deployment: str) -> str:
        return f"max({selector(catalog.REPLICA_MEMORY.exposed_name, deployment=deployment)})"

    def describe(self) -> str:
        return "largest replica memory"


@dataclass(frozen=True)
class Restarts(Expression):
    window_s: float
    unit: ClassVar[Unit] = "count"

    def value(self, history: History, deployment: str, now: float) -> float | None:
        grew = history.increase(catalog.RESTARTS.exposed_name, {"deployment": deployment}, self.window_s, now)
        return sum(grew.values()) if grew else None

    def promql(self, deployment: str) -> str:
        series = selector(catalog.RESTARTS.exposed_name, deployment=deployment)
        return f"sum(increase({series}[{format_duration(self.window_s)}]))"

    def describe(self) -> str:
        return f"replica restarts over {format_duration(self.window_s)}"


@dataclass(frozen=True)
class LogFindings(Expression):
    """New error templates and rate jumps that log analysis found (logs/findings.py)."""

    window_s: float
    unit: ClassVar[Unit] = "count"

    def value(self, history: History, deployment: str, now: float) -> float | None:
        grew = history.increase(catalog.LOG_FINDINGS.exposed_name, {"deployment": deployment}, self.window_s, now)
        return sum(grew.values()) if grew else 0.0  # no finding recorded yet: none

    def promql(self, deployment: str) -> str:
        series = selector(catalog.LOG_FINDINGS.exposed_name, deployment=deployment)
        # Parenthesised: `or` binds looser than the rule's comparison appended after it.
        return f"(sum(increase({series}[{format_duration(self.window_s)}])) or vector(0))"

    def describe(self) -> str:
        return f"log analysis findings over {format_duration(self.window_s)}"


_QUANTILES = {"latency_p50": 0.5, "latency_p90": 0.9, "latency_p99": 0.99}


def expression_of(expr: str, window_s: float, quantile: float | None = None,
                  handler: str | None = None) -> Expression:
    """The expression an ``AlertRuleSpec.expr`` names (already validated)."""
    if expr == "error_ratio":
        return ErrorRatio(window_s, handler)
    if expr == "shed_ratio":
        return ShedRatio(window_s)
    if expr in _QUANTILES:
        return LatencyQuantile(_QUANTILES[expr], window_s, handler)
    if expr == "latency_quantile":
        assert quantile is not None  # the spec's validation requires it
        return LatencyQuantile(quantile, window_s, handler)
    if expr == "inflight":
        return Inflight()
    if expr == "capacity_limited":
        return CapacityLimited()
    if expr == "memory_ratio":
        return MemoryRatio()
    if expr == "memory_bytes":
        return MemoryBytes()
    if expr == "restarts":
        return Restarts(window_s)
    if expr == "log_findings":
        return LogFindings(window_s)
    raise ValueError(f"unknown expr {expr!r}")
