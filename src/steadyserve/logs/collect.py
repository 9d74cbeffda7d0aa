"""One pass of log collection: tail the files, mine templates, store, check rollouts, prune.

    collector = LogCollector.open(config.state_dir, config.logs_dir)
    result = await asyncio.to_thread(collector.step, time.time())     # every few seconds
    for finding in result.findings:
        ...                                                           # an event, maybe an alert

``step`` blocks (file reads, SQLite), so it runs off the event loop; one call at a time. Lines,
offsets and templates are stored in one transaction: after a crash or a restart, a line is
stored once and counted once. ``now`` is wall-clock epoch seconds, the time lines carry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import template_db
from .findings import (
    DEFAULT_FACTOR,
    DEFAULT_MIN_COUNT,
    DEFAULT_WINDOW_S,
    Finding,
    due_checks,
    new_error_templates,
    note_rollouts,
    rate_jumps,
)
from .patterns import DEFAULT_MAX_TEMPLATES, PatternMiner
from .records import LogRecord
from .store import LOGS_DB_NAME, LogStore, PruneResult
from .tail import DEFAULT_MAX_READ_BYTES, LogTailer

MIB = 1024 * 1024
IDLE_PRUNE_FACTOR = 60  # an idle store only ages: prune it every 60 intervals (an idle instance writes ~nothing)
_SETTLE_S = 10.0  # a rollout's window is checked this long after it closes: its last lines are read by then


@dataclass(frozen=True)
class LogSettings:
    max_bytes: int = 512 * MIB  # the store's size retention
    max_age_s: float = 7 * 86400.0  # the store's age retention
    prune_interval_s: float = 10.0
    max_read_bytes: int = DEFAULT_MAX_READ_BYTES  # per step
    max_templates: int = DEFAULT_MAX_TEMPLATES  # per deployment
    rate_window_s: float = DEFAULT_WINDOW_S  # before and after a rollout
    rate_factor: float = DEFAULT_FACTOR
    rate_min_count: int = DEFAULT_MIN_COUNT


@dataclass(frozen=True)
class CollectResult:
    stored: int
    findings: list[Finding] = field(default_factory=list)
    pruned: PruneResult | None = None  # None: not pruned this step


class LogCollector:
    def __init__(self, logs_dir: Path, store: LogStore, settings: LogSettings = LogSettings(),
                 revision_of: Callable[[str], int | None] | None = None,
                 redact: Callable[[LogRecord], LogRecord] | None = None) -> None:
        self.store = store
        self.redact = redact  # e.g. masks a deployment's secret values that its code printed
        self.settings = settings
        self.tailer = LogTailer(logs_dir, store, settings.max_read_bytes, revision_of)
        self.miner = PatternMiner.load(store.connection, settings.max_templates)
        self._rollouts = template_db.load_rollouts(store.connection)
        self._pruned_at = -math.inf
        self._stored_since_prune = 0

    @classmethod
    def open(cls, state_dir: Path, logs_dir: Path, settings: LogSettings = LogSettings(),
             revision_of: Callable[[str], int | None] | None = None,
             redact: Callable[[LogRecord], LogRecord] | None = None) -> LogCollector:
        """A collector writing ``<state_dir>/logs.db`` (created 0600 if new)."""
        return cls(logs_dir, LogStore(state_dir / LOGS_DB_NAME), settings, revision_of, redact)

    def close(self) -> None:
        self.store.close()

    def step(self, now: float) -> CollectResult:
        batch = self.tailer.read_new(now)
        if not (batch.records or batch.offsets or batch.gone):
            return CollectResult(0, self._check_rollouts(now), self._maybe_prune(now))
        redact = self.redact
        # In time order across the files of this pass: ids then follow time, and a template's first
        # sighting is its earliest line.
        ordered = sorted(batch.records, key=lambda r: r.ts)
        try:
            records, changes = self.miner.observe([redact(r) for r in ordered] if redact else ordered)
            new_rollouts = note_rollouts(records, self._rollouts)
            with self.store.transaction() as conn:
                self.store.insert_many(records)
                self.store.save_offsets(batch.offsets, batch.gone)
                self.miner.save(conn)
                template_db.save_rollouts(conn, new_rollouts.values())
        except BaseException:  # what the miner counted was not stored: it forgets it too
            self.miner = PatternMiner.load(self.store.connection, self.settings.max_templates)
            raise
        self._rollouts.update(new_rollouts)
        findings = new_error_templates(changes) + self._check_rollouts(now)
        return CollectResult(len(records), findings, self._maybe_prune(now, len(records)))

    def _maybe_prune(self, now: float, stored: int = 0) -> PruneResult | None:
        """Prune every ``prune_interval_s`` while lines arrive; when idle, only for age, rarely."""
        self._stored_since_prune += stored
        due_s = self.settings.prune_interval_s * (1 if self._stored_since_prune else IDLE_PRUNE_FACTOR)
        if now - self._pruned_at < due_s:
            return None
        self._pruned_at, self._stored_since_prune = now, 0
        return self.store.prune(self.settings.max_bytes, self.settings.max_age_s, now)

    def _check_rollouts(self, now: float) -> list[Finding]:
        window_s = self.settings.rate_window_s
        found: list[Finding] = []
        due = due_checks(self._rollouts, now, window_s + _SETTLE_S)
        for check in due:
            rollout = check.rollout
            if check.compare:
                before = self.store.template_counts(rollout.deployment, rollout.started - window_s, rollout.started)
                after = self.store.template_counts(rollout.deployment, rollout.started, rollout.started + window_s)
                texts = {t.id: t.text for t in self.miner.templates(rollout.deployment)}
                found += rate_jumps(before, after, window_s, self.settings.rate_factor, self.settings.rate_min_count,
                                    deployment=rollout.deployment, revision=rollout.revision, templates=texts)
        checked = [replace(check.rollout, checked=True) for check in due]
        if checked:
            with self.store.transaction() as conn:
                template_db.save_rollouts(conn, checked)
            self._rollouts.update({(r.deployment, r.revision): r for r in checked})
        return found
