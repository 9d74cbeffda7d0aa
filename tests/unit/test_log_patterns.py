"""Log templates: mined per deployment, kept across restarts; new error templates and rate jumps found."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from steadyserve.logs.collect import LogCollector, LogSettings
from steadyserve.logs.findings import (
    Rollout,
    TemplateChange,
    due_checks,
    new_error_templates,
    rate_jumps,
)
from steadyserve.logs.patterns import PatternMiner
from steadyserve.logs.records import LEVELS, LogRecord
from steadyserve.logs.store import LOGS_DB_NAME, LogStore

T0 = 1_700_000_000.0


def rec(message: str, level: str = "info", deployment: str | None = "digits", revision: int | None = 1,
        request_id: str | None = None, ts: float = T0, kind: str = "record") -> LogRecord:
    return LogRecord(ts, level, deployment, revision, "r0", f"{deployment}-r0", request_id, message,
                     kind)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    s = LogStore(tmp_path / LOGS_DB_NAME)
    yield s  # type: ignore[misc]
    s.close()


def mine(miner: PatternMiner, store: LogStore, records: list[LogRecord]) -> list[TemplateChange]:
    mined, changes = miner.observe(records)
    with store.transaction() as conn:
        store.insert_many(mined)
        miner.save(conn)
    return changes


def test_lines_that_differ_in_numbers_and_ids_share_a_template(store: LogStore):
    miner = PatternMiner()
    mine(miner, store, [
        rec("loaded 12 rows in 3.5 ms from 10.0.0.7:5432", request_id="g0-a-1"),
        rec("loaded 7 rows in 0.25 ms from 10.0.0.9:5432", request_id="g0-a-2"),
        rec("call g0-a-3 took 0xdeadbeef cycles for 550e8400-e29b-41d4-a716-446655440000", request_id="g0-a-3"),
    ])
    texts = sorted(t.text for t in miner.templates("digits"))
    assert texts == ["call <RID> took <HEX> cycles for <UUID>", "loaded <NUM> rows in <NUM> ms from <IP>"]


def test_a_template_counts_lines_per_revision_and_keeps_its_highest_level(store: LogStore):
    miner = PatternMiner()
    mine(miner, store, [rec("retry 1 of 3", revision=1), rec("retry 2 of 3", revision=2, level="warning"),
                        rec("retry 3 of 3", revision=2)])
    [template] = miner.templates("digits")
    assert (template.count, template.revisions, template.level_no) == (3, {1: 1, 2: 2}, LEVELS["warning"])


def test_stored_lines_carry_their_template(store: LogStore):
    miner = PatternMiner()
    mine(miner, store, [rec("hello 1"), rec("hello 2"), rec("GET /x 200 1.0ms", kind="access")])
    ids = [r.record.template_id for r in store.query()]
    assert ids[0] == ids[1] is not None and ids[2] is None  # access lines are not mined


def test_deployments_have_their_own_templates(store: LogStore):
    miner = PatternMiner()
    changes = mine(miner, store, [rec("model not found", level="error", deployment="a"),
                                  rec("model not found", level="error", deployment="b")])
    assert sorted(f.deployment for f in new_error_templates(changes)) == ["a", "b"]


def test_a_new_error_template_is_found_once_and_not_again_after_a_restart(store: LogStore):
    miner = PatternMiner()
    first = new_error_templates(mine(miner, store, [rec("cuda out of memory on device 0", level="error")]))
    again = new_error_templates(mine(miner, store, [rec("cuda out of memory on device 1", level="error")]))
    restarted = PatternMiner.load(store.connection)
    after_restart = new_error_templates(mine(restarted, store, [rec("cuda out of memory on device 2",
                                                                    level="error")]))
    other = new_error_templates(mine(restarted, store, [rec("weights file is corrupt", level="critical")]))
    assert [f.kind for f in first] == ["new_error_template"] and "cuda out of memory" in first[0].message
    assert again == [] and after_restart == []
    assert [f.template for f in other] == ["weights file is corrupt"]


def test_a_known_line_first_logged_as_an_error_is_found(store: LogStore):
    miner = PatternMiner()
    mine(miner, store, [rec("cache miss for key 1")])
    [finding] = new_error_templates(mine(miner, store, [rec("cache miss for key 2", level="error")]))
    assert finding.message.startswith("log pattern now logged as an error in deployment digits")


def test_a_traceback_is_mined_by_its_message_and_exception(store: LogStore):
    miner = PatternMiner()
    tb = "handler failed\nTraceback (most recent call last):\n  File \"svc.py\", line {n}, in f\nKeyError: 'id'"
    mine(miner, store, [rec(tb.format(n=10), level="error"), rec(tb.format(n=99), level="error")])
    assert [t.text for t in miner.templates()] == ["handler failed | KeyError: 'id'"]


def test_templates_per_deployment_are_capped(store: LogStore):
    miner = PatternMiner(max_templates=5)
    mine(miner, store, [rec(" ".join(["tick"] * (i + 1)), ts=T0 + i) for i in range(12)])  # lengths differ
    assert len(miner.templates("digits")) == 5
    assert len(PatternMiner.load(store.connection).templates("digits")) == 5


@pytest.mark.parametrize(("before", "after", "jumped"), [
    ({1: 10}, {1: 50}, [1]),  # 5x
    ({1: 10}, {1: 49}, []),  # just under 5x
    ({1: 10}, {1: 12}, []),  # steady
    ({}, {1: 20}, [1]),  # absent before, enough after
    ({}, {1: 19}, []),  # one line, or a few, is no jump
    ({1: 0, 2: 100}, {1: 25, 2: 100}, [1]),
])
def test_rate_jumps_after_a_rollout(before: dict[int, int], after: dict[int, int], jumped: list[int]):
    found = rate_jumps(before, after, window_s=300, factor=5, min_count=20, deployment="digits", revision=4,
                       templates={1: "timeout calling <*>"})
    assert [f.template_id for f in found] == jumped


def test_a_rate_jump_says_what_rose_and_after_which_rollout():
    [finding] = rate_jumps({1: 10}, {1: 60}, window_s=600, factor=5, min_count=20, deployment="digits",
                           revision=4, templates={1: "timeout calling <*>"})
    assert finding.message == ("log pattern 1 of deployment digits rose from 1.0/min to 6.0/min after the"
                               " rollout of revision 4 (over 600s): timeout calling <*>")


def test_a_rollout_is_checked_once_its_window_has_passed():
    rollouts = {("d", 1): Rollout("d", 1, T0 - 1000, checked=True), ("d", 2): Rollout("d", 2, T0)}
    assert due_checks(rollouts, T0 + 299, 300) == []
    [check] = due_checks(rollouts, T0 + 300, 300)
    assert (check.rollout.revision, check.compare) == (2, True)


def test_the_first_revision_seen_has_nothing_to_compare_with():
    [check] = due_checks({("d", 1): Rollout("d", 1, T0)}, T0 + 1000, 300)
    assert check.compare is False


def _line(ts: float, msg: str, revision: int, level: str = "info") -> bytes:
    return orjson.dumps({"ts": ts, "level": level, "msg": msg, "revision": revision}) + b"\n"


@pytest.mark.parametrize(("timeouts_after", "expect_jump"), [(60, True), (10, False)])
def test_the_collector_finds_a_rate_jump_after_a_rollout_and_not_a_steady_rate(
        tmp_path: Path, timeouts_after: int, expect_jump: bool):
    logs = tmp_path / "logs"
    logs.mkdir()
    window = 100.0
    lines = [_line(T0 + i * 10, f"timeout calling upstream {i}", 1) for i in range(10)]  # 10 per window
    lines += [_line(T0 + 100 + i * window / timeouts_after, f"timeout calling upstream {i}", 2)
              for i in range(timeouts_after)]
    (logs / "digits-r0.log").write_bytes(b"".join(lines))
    collector = LogCollector.open(tmp_path, logs, LogSettings(rate_window_s=window, rate_factor=5, rate_min_count=20))
    try:
        assert collector.step(T0 + 150).findings == []  # the window after the rollout is not over yet
        found = collector.step(T0 + 300).findings
        assert [f.kind for f in found] == (["rate_jump"] if expect_jump else [])
        assert collector.step(T0 + 400).findings == []  # checked once
    finally:
        collector.close()


def test_the_collector_reports_a_new_error_template_once_across_restarts(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "digits-r0.log"
    path.write_bytes(_line(T0, "disk quota exceeded for /models/a", 1, "error"))
    first = LogCollector.open(tmp_path, logs)
    assert [f.kind for f in first.step(T0 + 1).findings] == ["new_error_template"]
    first.close()
    with open(path, "ab") as f:
        f.write(_line(T0 + 2, "disk quota exceeded for /models/b", 1, "error"))
    second = LogCollector.open(tmp_path, logs)
    try:
        result = second.step(T0 + 3)
        assert (result.stored, result.findings) == (1, [])
    finally:
        second.close()


def test_a_generalised_template_still_matches_after_a_restart(store: LogStore):
    miner = PatternMiner()
    mine(miner, store, [rec("user alice logged in"), rec("user bob logged in")])
    [before] = miner.templates()
    restarted = PatternMiner.load(store.connection)
    mine(restarted, store, [rec("user carol logged in")])
    [after] = restarted.templates()
    assert (before.text, after.id, after.count) == ("user <*> logged in", before.id, 3)
