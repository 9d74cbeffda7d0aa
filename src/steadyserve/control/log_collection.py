"""The controller's log collection loop: every few seconds, off the event loop.

Tails every process's log file into the log store (logs/collect.py), and turns what
log analysis finds (a new error template, a template's rate jumping after a rollout)
into events. Runs apart from the supervision tick, so a backlog of lines never
delays a probe; a failure is logged and the next pass tries again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from ..logs.collect import LogCollector
from ..logs.records import LogRecord
from ..metrics.catalog import LOG_FINDINGS
from .controller import Controller
from .secrets import redact as masked_text

log = logging.getLogger(__name__)
COLLECT_EVERY_S = 1.0
MAX_FINDING_EVENTS = 10  # per pass (each second)


async def collect_logs(controller: Controller, stop: asyncio.Event, interval_s: float = COLLECT_EVERY_S) -> None:
    """Collect until ``stop`` is set, then once more (the stopped processes' last lines) and close."""
    revisions: dict[str, int] = {}
    secrets: dict[str, list[str]] = {}

    def revision_of(label: str) -> int | None:
        return revisions.get(label)

    def redact(record: LogRecord) -> LogRecord:
        """A deployment's secret values, printed by its code, are masked before viewers can read them."""
        values = secrets.get(record.deployment or "")
        if not values:
            return record
        masked = masked_text(record.message, values)
        return record if masked == record.message else dataclasses.replace(record, message=masked)

    config = controller.config
    try:
        collector = await asyncio.to_thread(LogCollector.open, config.state_dir, config.logs_dir,
                                            revision_of=revision_of, redact=redact)
    except Exception:
        log.exception("log collection could not start; processes still log to %s", config.logs_dir)
        return
    try:
        while True:
            stopping = stop.is_set()
            # Replaced, not changed in place: the collector's thread reads the previous dict meanwhile.
            revisions = {m.label: m.revision for m in controller.managed.values() if m.revision}
            secrets = {name: controller.db.all_secret_values(name) for name in controller.deployments}
            try:
                result = await asyncio.to_thread(collector.step, time.time())
            except Exception:
                log.exception("log collection failed; the next pass tries again")
            else:
                shown, rest = result.findings[:MAX_FINDING_EVENTS], result.findings[MAX_FINDING_EVENTS:]
                if rest:  # a flood of new shapes (a service printing noise) is one event, not thousands
                    controller.record("controller", "logs", "findings_capped",
                                      f"{len(rest)} more log findings in this pass were not recorded as events"
                                      " (`steady logs --patterns` lists the templates)")
                for finding in shown:
                    if controller.observer is not None:  # a metric too: alert rules can use it (log_findings)
                        controller.observer.recorder.inc(LOG_FINDINGS, (finding.deployment or "none", finding.kind))
                    controller.record("deployment" if finding.deployment else "gateway",
                                      finding.deployment or "gateways", finding.kind, finding.message,
                                      finding.deployment)
            if stopping:
                return
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                pass
    finally:
        await asyncio.to_thread(collector.close)
