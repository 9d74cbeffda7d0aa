"""What the mined templates say about faults: pure decisions, each finding with a message to show.

- ``new_error_templates``: a template reached error level for the first time in its deployment
  (a new kind of error line, or a known line now logged as an error).
- ``rate_jumps``: after a rollout, a template's rate over ``window_s`` is at least ``factor``
  times its rate over the ``window_s`` before (at least ``min_count`` lines after: one line is
  no jump; a template absent before counts as a jump once it reaches ``min_count``).
- ``note_rollouts`` / ``due_checks``: a rollout is the first line of a revision not seen before
  in a deployment that already had another; it is checked once, ``window_s`` after it began.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .records import LEVELS, LogRecord

FindingKind = Literal["new_error_template", "rate_jump"]
_ERROR = LEVELS["error"]
_SHOWN_TEMPLATE_CHARS = 300
DEFAULT_WINDOW_S = 300.0
DEFAULT_FACTOR = 5.0
DEFAULT_MIN_COUNT = 20


@dataclass(frozen=True)
class TemplateChange:
    """What one batch of lines did to a template."""

    template_id: int
    deployment: str  # "" for the gateways' own lines
    text: str
    level_before: int | None  # None: the template is new
    level_after: int
    count: int


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    deployment: str  # "" for the gateways' own lines
    template_id: int
    template: str
    message: str


@dataclass(frozen=True)
class Rollout:
    deployment: str
    revision: int
    started: float  # epoch seconds of its first line
    checked: bool = False


def _where(deployment: str) -> str:
    return f"deployment {deployment}" if deployment else "the gateways"


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_TEMPLATE_CHARS else text[: _SHOWN_TEMPLATE_CHARS - 1] + "…"


def new_error_templates(changes: Iterable[TemplateChange]) -> list[Finding]:
    found = []
    for change in changes:
        was = change.level_before if change.level_before is not None else 0
        if was < _ERROR <= change.level_after:
            what = "new error log pattern" if change.level_before is None else "log pattern now logged as an error"
            found.append(Finding("new_error_template", change.deployment, change.template_id, change.text,
                                 f"{what} in {_where(change.deployment)} (pattern {change.template_id},"
                                 f" {change.count} so far): {_shown(change.text)}"))
    return found


def rate_jumps(counts_before: Mapping[int, int], counts_after: Mapping[int, int], window_s: float, factor: float,
               min_count: int, *, deployment: str = "", revision: int | None = None,
               templates: Mapping[int, str] | None = None) -> list[Finding]:
    """Templates whose count in the window after a rollout is >= ``factor`` x the count before."""
    if window_s <= 0 or factor <= 0:
        raise ValueError("window_s and factor must be positive")
    per_min = 60.0 / window_s
    found = []
    for template_id, after in sorted(counts_after.items(), key=lambda item: (-item[1], item[0])):
        before = counts_before.get(template_id, 0)
        if after < min_count or after < factor * before:
            continue
        text = (templates or {}).get(template_id, f"pattern {template_id}")
        rollout = f"the rollout of revision {revision}" if revision is not None else "the rollout"
        rise = (f"rose from {before * per_min:.1f}/min to {after * per_min:.1f}/min" if before
                else f"appeared ({after * per_min:.1f}/min)")
        found.append(Finding("rate_jump", deployment, template_id, text,
                             f"log pattern {template_id} of {_where(deployment)} {rise} after {rollout}"
                             f" (over {window_s:g}s): {_shown(text)}"))
    return found


def note_rollouts(records: Sequence[LogRecord],
                  known: Mapping[tuple[str, int], Rollout]) -> dict[tuple[str, int], Rollout]:
    """Revisions first seen in ``records`` (deployment lines with a revision), by their first line."""
    new: dict[tuple[str, int], Rollout] = {}
    for record in records:
        if record.deployment is None or record.revision is None:
            continue
        key = (record.deployment, record.revision)
        if key in known:
            continue
        seen = new.get(key)
        if seen is None or record.ts < seen.started:
            new[key] = Rollout(record.deployment, record.revision, record.ts)
    return new


@dataclass(frozen=True)
class DueCheck:
    rollout: Rollout
    compare: bool  # False: the first revision seen of its deployment; nothing came before to compare with


def due_checks(rollouts: Mapping[tuple[str, int], Rollout], now: float, window_s: float) -> list[DueCheck]:
    """Rollouts to settle now: unchecked and ``window_s`` old. Each is then marked checked."""
    due = []
    for rollout in rollouts.values():
        if rollout.checked or now < rollout.started + window_s:
            continue
        earlier = any(other.deployment == rollout.deployment and other.started < rollout.started
                      for other in rollouts.values())
        due.append(DueCheck(rollout, compare=earlier))
    return due
