"""The machine's budget for replicas and how deployments share it (pure).

    grants = allocate(Budget(cpus=1.5, memory_mb=7000), claims)
    grants["digits"].replicas, grants["digits"].reason

The rule, in order:

1. Every deployment keeps its minimum (``replicas.min``, or its fixed count) and never loses a
   replica it runs to make room: the budget only stops growth, so a full machine never thrashes.
2. What is left goes to higher ``priority`` first; within one priority, one replica at a time
   to the deployment that has the fewest, while the next one fits in both CPU and memory.

A replica costs what its deployment declares (``autoscaling.replica_cpus``,
``resources.memory_mb``) or, failing that, what its running replicas were measured to use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_EPSILON = 1e-9


@dataclass(frozen=True)
class Budget:
    cpus: float  # cores replicas may use, the reserve taken off
    memory_mb: float

    def describe(self) -> str:
        return f"{self.cpus:.3g} cores, {self.memory_mb:.0f} MiB"


@dataclass(frozen=True)
class Claim:
    deployment: str
    priority: int
    running: int  # replicas it has now (starting ones too)
    minimum: int  # kept whatever the budget
    wanted: int  # what its autoscaler decided (a fixed deployment: its count)
    cpus: float  # per replica
    memory_mb: float  # per replica


@dataclass(frozen=True)
class Grant:
    replicas: int
    limited: bool  # it wanted more than the budget allows
    reason: str = ""


def allocate(budget: Budget, claims: list[Claim]) -> dict[str, Grant]:
    granted = {c.deployment: min(max(c.minimum, min(c.running, c.wanted)), max(c.wanted, c.minimum))
               for c in claims}
    cpus = budget.cpus - sum(granted[c.deployment] * c.cpus for c in claims)
    memory = budget.memory_mb - sum(granted[c.deployment] * c.memory_mb for c in claims)
    blocked: dict[str, str] = {}
    for priority in sorted({c.priority for c in claims}, reverse=True):
        tier = [c for c in claims if c.priority == priority]
        while True:
            hungry = [c for c in tier if granted[c.deployment] < c.wanted and c.deployment not in blocked]
            if not hungry:
                break
            claim = min(hungry, key=lambda c: (granted[c.deployment], c.deployment))
            short = _shortage(claim, cpus, memory)
            if short:
                blocked[claim.deployment] = short
                continue
            granted[claim.deployment] += 1
            cpus -= claim.cpus
            memory -= claim.memory_mb
    grants = {}
    for c in claims:
        count = granted[c.deployment]
        if count < c.wanted:
            grants[c.deployment] = Grant(count, True, (
                f"wants {c.wanted} replicas, the machine's budget ({budget.describe()} for replicas) allows {count}:"
                f" {blocked.get(c.deployment, 'taken by other deployments')}"))
        else:
            grants[c.deployment] = Grant(count, False)
    return grants


def _shortage(claim: Claim, cpus: float, memory_mb: float) -> str:
    if claim.cpus > cpus + _EPSILON:
        return f"one more needs {claim.cpus:.2g} cores, {max(0.0, cpus):.2g} are free"
    if claim.memory_mb > memory_mb + _EPSILON:
        return f"one more needs {claim.memory_mb:.0f} MiB, {max(0.0, memory_mb):.0f} MiB are free"
    return ""


def machine_cpus() -> float:
    """Cores this process may run on (its CPU affinity), or a cgroup quota if lower."""
    try:
        cores = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = float(os.cpu_count() or 1)
    quota = _cgroup_cpu_quota()
    return min(cores, quota) if quota else cores


def machine_memory_mb() -> float:
    """Physical memory, or the cgroup's limit if lower."""
    import psutil  # type: ignore[import-untyped,unused-ignore]

    total = float(psutil.virtual_memory().total) / (1024 * 1024)
    limit = _read_number(Path("/sys/fs/cgroup/memory.max"))
    return min(total, limit / (1024 * 1024)) if limit else total


def _cgroup_cpu_quota() -> float | None:
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return float(quota) / float(period)
    except (ValueError, ZeroDivisionError):
        return None


def _read_number(path: Path) -> float | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        return float(text)
    except ValueError:
        return None  # "max"
