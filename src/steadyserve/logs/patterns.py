"""Log templates mined online with Drain (drain3), one miner per deployment.

    miner = PatternMiner.load(store.connection)         # templates known before a restart stay known
    records, changes = miner.observe(records)           # records get their template_id
    with store.transaction() as conn:
        store.insert_many(records)
        miner.save(conn)

What is mined of a record: its first line, plus the last line of a traceback under it (the
exception and its message), with the call's request id, uuids, IP addresses, hex and numbers
masked (``<RID>``, ``<UUID>``, ``<IP>``, ``<HEX>``, ``<NUM>``). Access lines are not mined: they
are structured already, and at the gateway's rate mining them would cost the most.

Each template keeps a count, first and last time seen, the highest level seen and a count per
revision. A deployment keeps at most ``max_templates`` of them (Drain's ``max_clusters``); past
that the one seen longest ago is forgotten (if it comes back it is new again).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace

from drain3.drain import Drain, LogCluster  # type: ignore[import-untyped]
from drain3.masking import LogMasker, MaskingInstruction  # type: ignore[import-untyped]

from . import template_db
from .findings import TemplateChange
from .records import LogRecord
from .template_db import Template

DEFAULT_MAX_TEMPLATES = 1000  # per deployment
GATEWAY_KEY = ""  # the deployment key of lines that belong to none (the gateways' own)
_MAX_MINED_CHARS = 1000
_MINED_KINDS = frozenset({"record", "raw"})
_MASKS = [  # order matters: a uuid or an address is not masked as numbers
    MaskingInstruction(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "UUID"),
    MaskingInstruction(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?(?![\w.])", "IP"),
    MaskingInstruction(r"\b0x[0-9a-fA-F]+\b", "HEX"),
    MaskingInstruction(r"(?<![A-Za-z0-9])(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}(?![A-Za-z0-9])",
                       "HEX"),
    MaskingInstruction(r"(?<![A-Za-z0-9_])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", "NUM"),
]


def mining_text(record: LogRecord, masker: LogMasker) -> str:
    lines = record.message.splitlines() or [""]
    text = lines[0]
    last = next((line.strip() for line in reversed(lines[1:]) if line.strip()), None)
    if last is not None:
        text = f"{text} | {last}"
    text = text[:_MAX_MINED_CHARS]
    if record.request_id:
        text = text.replace(record.request_id, "<RID>")
    return str(masker.mask(text))


class PatternMiner:
    def __init__(self, max_templates: int = DEFAULT_MAX_TEMPLATES, sim_th: float = 0.4, depth: int = 4,
                 next_id: int = 1) -> None:
        self.max_templates = max_templates
        self._sim_th, self._depth = sim_th, depth
        self._masker = LogMasker(_MASKS, "<", ">")
        self._drains: dict[str, Drain] = {}
        self._templates: dict[int, Template] = {}
        self._by_cluster: dict[tuple[str, int], int] = {}  # (deployment, Drain cluster id) -> template id
        self._by_text: dict[tuple[str, str], int] = {}  # (deployment, text) -> template id
        self._next_id = next_id
        self._dirty: set[int] = set()
        self._dropped: set[int] = set()

    @classmethod
    def load(cls, conn: sqlite3.Connection, max_templates: int = DEFAULT_MAX_TEMPLATES) -> PatternMiner:
        """A miner that knows the templates saved in ``conn`` (in Drain too, so lines match them again)."""
        templates = template_db.load_templates(conn)
        miner = cls(max_templates, next_id=max((t.id for t in templates), default=0) + 1)
        for template in templates:
            miner._templates[template.id] = template
            miner._by_text[(template.deployment, template.text)] = template.id
            drain = miner._drain(template.deployment)
            drain.clusters_counter += 1
            cluster = LogCluster(template.text.split(), drain.clusters_counter)
            drain.id_to_cluster[cluster.cluster_id] = cluster
            drain.add_seq_to_prefix_tree(drain.root_node, cluster)
            miner._by_cluster[(template.deployment, cluster.cluster_id)] = template.id
        return miner

    def templates(self, deployment: str | None = None) -> list[Template]:
        return [t for t in self._templates.values() if deployment is None or t.deployment == deployment]

    def observe(self, records: Sequence[LogRecord]) -> tuple[list[LogRecord], list[TemplateChange]]:
        """Mine ``records``: the same records with ``template_id`` set, and the templates they changed."""
        before: dict[int, int | None] = {}
        out: list[LogRecord] = []
        for record in records:
            if record.kind not in _MINED_KINDS:
                out.append(record)
                continue
            key = record.deployment if record.deployment is not None else GATEWAY_KEY
            cluster, _ = self._drain(key).add_log_message(mining_text(record, self._masker))
            template = self._template_of(key, cluster, record.ts)
            if template.id not in before:
                before[template.id] = None if template.count == 0 else template.level_no
            template.count += 1
            template.last_seen = max(template.last_seen, record.ts)
            template.level_no = max(template.level_no, record.level_no)
            revision = record.revision or 0
            template.revisions[revision] = template.revisions.get(revision, 0) + 1
            self._dirty.add(template.id)
            out.append(replace(record, template_id=template.id))
        self._forget_beyond_cap({self._templates[t].deployment for t in before if t in self._templates})
        changes = [TemplateChange(t.id, t.deployment, t.text, before[t.id], t.level_no, t.count)
                   for t in (self._templates.get(tid) for tid in before) if t is not None]
        return out, changes

    def save(self, conn: sqlite3.Connection) -> None:
        """Write the templates changed since the last save (inside the caller's transaction)."""
        template_db.save_templates(conn, [self._templates[t] for t in self._dirty if t in self._templates],
                                   self._dropped)
        self._dirty.clear()
        self._dropped.clear()

    def _drain(self, deployment: str) -> Drain:
        drain = self._drains.get(deployment)
        if drain is None:
            drain = self._drains[deployment] = Drain(depth=self._depth, sim_th=self._sim_th,
                                                     max_clusters=self.max_templates)
        return drain

    def _template_of(self, deployment: str, cluster: LogCluster, ts: float) -> Template:
        text = str(cluster.get_template())
        tid = self._by_cluster.get((deployment, cluster.cluster_id))
        if tid is None or tid not in self._templates:
            # A cluster Drain made anew may stand for a template known before (evicted, or restored).
            tid = self._by_text.get((deployment, text))
            if tid is None or tid not in self._templates:
                tid, self._next_id = self._next_id, self._next_id + 1
                self._templates[tid] = Template(tid, deployment, text, 0, ts, ts, 0)
            self._by_cluster[(deployment, cluster.cluster_id)] = tid
        template = self._templates[tid]
        if template.text != text:  # Drain generalised it (a word became <*>)
            self._by_text.pop((deployment, template.text), None)
            template.text = text
            self._dirty.add(tid)
        self._by_text[(deployment, text)] = tid
        return template

    def _forget_beyond_cap(self, deployments: set[str]) -> None:
        if len(self._by_cluster) > 2 * len(self._templates) + 100:  # clusters Drain evicted and made again
            self._by_cluster = {(dep, cid): tid for (dep, cid), tid in self._by_cluster.items()
                                if tid in self._templates and self._drain(dep).id_to_cluster.get(cid) is not None}
        for deployment in deployments:
            mine = self.templates(deployment)
            excess = len(mine) - self.max_templates
            if excess <= 0:
                continue
            for template in sorted(mine, key=lambda t: t.last_seen)[:excess]:
                del self._templates[template.id]
                self._by_text.pop((deployment, template.text), None)
                self._dirty.discard(template.id)
                self._dropped.add(template.id)
