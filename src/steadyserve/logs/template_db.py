"""The pattern miner's tables in the log store: templates, their counts per revision, rollouts seen.

Saved in the transaction that stores the lines they were mined from, so after a restart the
templates and the lines agree (store.py creates the tables).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

from .findings import Rollout


@dataclass
class Template:
    """A log template of a deployment, as the miner keeps it."""

    id: int
    deployment: str  # "" for the gateways' own lines
    text: str
    count: int
    first_seen: float
    last_seen: float
    level_no: int  # the highest seen
    revisions: dict[int, int] = field(default_factory=dict)  # revision (0: not known) -> lines


def load_templates(conn: sqlite3.Connection, deployment: str | None = None,
                   limit: int | None = None) -> list[Template]:
    """Templates, most seen first (all of them, or of one deployment)."""
    sql = "SELECT id, deployment, template, count, first_seen, last_seen, level_no FROM log_templates"
    args: list[object] = []
    if deployment is not None:
        sql += " WHERE deployment = ?"
        args.append(deployment)
    sql += " ORDER BY count DESC, id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    templates = {row[0]: Template(*row) for row in conn.execute(sql, args)}
    if templates:
        wanted = ",".join(str(t) for t in templates)  # integers from the table: safe to inline
        for template_id, revision, count in conn.execute(
                f"SELECT template_id, revision, count FROM log_template_revisions WHERE template_id IN ({wanted})"):
            templates[template_id].revisions[revision] = count
    return list(templates.values())


def save_templates(conn: sqlite3.Connection, templates: Iterable[Template], dropped: Iterable[int]) -> None:
    changed = list(templates)
    conn.executemany(
        "INSERT OR REPLACE INTO log_templates(id, deployment, template, count, first_seen, last_seen, level_no)"
        " VALUES (?,?,?,?,?,?,?)",
        [(t.id, t.deployment, t.text, t.count, t.first_seen, t.last_seen, t.level_no) for t in changed])
    conn.executemany(
        "INSERT OR REPLACE INTO log_template_revisions(template_id, revision, count) VALUES (?,?,?)",
        [(t.id, revision, count) for t in changed for revision, count in t.revisions.items()])
    gone = [(template_id,) for template_id in dropped]
    conn.executemany("DELETE FROM log_templates WHERE id = ?", gone)
    conn.executemany("DELETE FROM log_template_revisions WHERE template_id = ?", gone)


def load_rollouts(conn: sqlite3.Connection) -> dict[tuple[str, int], Rollout]:
    return {(d, r): Rollout(d, r, started, bool(checked)) for d, r, started, checked in conn.execute(
        "SELECT deployment, revision, started, checked FROM log_rollouts")}


def save_rollouts(conn: sqlite3.Connection, rollouts: Iterable[Rollout]) -> None:
    conn.executemany("INSERT OR REPLACE INTO log_rollouts(deployment, revision, started, checked) VALUES (?,?,?,?)",
                     [(r.deployment, r.revision, r.started, int(r.checked)) for r in rollouts])
