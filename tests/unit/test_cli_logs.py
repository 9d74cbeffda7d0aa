"""`steady logs`: reads <state-dir>/logs.db; filters, safe output, --json, --patterns, --follow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from steadyserve import cli_logs
from steadyserve.cli import main
from steadyserve.logs.patterns import PatternMiner
from steadyserve.logs.records import LogRecord
from steadyserve.logs.store import LOGS_DB_NAME, LogStore
from steadyserve.logs.timespec import parse_time

T0 = 1_700_000_000.0


def rec(message: str, level: str = "info", deployment: str | None = "digits", replica: str = "r0",
        request_id: str | None = None, ts: float = T0, source: str | None = None) -> LogRecord:
    return LogRecord(ts, level, deployment, 1, replica, source or f"{deployment}-{replica}", request_id, message,
                     "record")


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def store(state_dir: Path) -> LogStore:
    s = LogStore(state_dir / LOGS_DB_NAME)
    yield s  # type: ignore[misc]
    s.close()


def run(state_dir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["logs", *args, "--state-dir", str(state_dir)])
    return result.exit_code, result.stdout, result.stderr


def test_without_a_store_it_says_where_it_looked(tmp_path: Path):
    code, _, err = run(tmp_path)
    assert code == 1
    assert f"no logs collected yet at {tmp_path / LOGS_DB_NAME}" in " ".join(err.split())


def test_lines_are_printed_oldest_first_with_level_source_and_request_id(state_dir: Path, store: LogStore):
    store.insert_many([rec("loading model", ts=T0), rec("predict failed", level="error", ts=T0 + 1,
                                                        request_id="g0-ab-5")])
    code, out, _ = run(state_dir)
    assert code == 0
    first, second = out.splitlines()
    assert first.endswith("INFO     digits-r0 - loading model")
    assert second.endswith("ERROR    digits-r0 g0-ab-5 predict failed")


@pytest.mark.parametrize(("args", "expected"), [
    (["digits"], ["a", "b"]),
    (["--replica", "r1"], ["b"]),
    (["--level", "error"], ["b"]),
    (["--level", "ERROR"], ["b"]),
    (["--request-id", "g0-x-1"], ["a"]),
    (["--grep", "alpha"], ["a"]),
    (["--grep", 'alpha" OR "beta'], []),
    (["-n", "1"], ["c"]),
])
def test_filters(state_dir: Path, store: LogStore, args: list[str], expected: list[str]):
    store.insert_many([rec("a alpha", request_id="g0-x-1"), rec("b beta", level="error", replica="r1"),
                       rec("c gamma", deployment="other")])
    code, out, _ = run(state_dir, *args, "--json")
    assert code == 0
    assert [json.loads(line)["message"][0] for line in out.splitlines()] == expected


def test_control_characters_in_a_message_never_reach_the_terminal(state_dir: Path, store: LogStore):
    store.insert_many([rec("evil \x1b[2J\x1b]0;title\x07 [red]markup[/red] \u202e end\nnext line")])
    code, out, _ = run(state_dir)
    assert code == 0 and "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b[2J" in out and "[red]markup[/red]" in out and "\n    next line" in out


def test_json_output_is_one_ascii_object_per_line(state_dir: Path, store: LogStore):
    store.insert_many([rec("naïve \x1b line", request_id="g0-q-9")])
    code, out, _ = run(state_dir, "--json")
    [line] = out.splitlines()
    assert code == 0 and line.isascii()
    doc = json.loads(line)
    assert (doc["message"], doc["request_id"], doc["source"]) == ("naïve \x1b line", "g0-q-9", "digits-r0")


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", T0 - 30), ("10m", T0 - 600), ("2h", T0 - 7200), ("1d", T0 - 86400), ("1.5h", T0 - 5400),
    (str(T0 - 5), T0 - 5), ("2023-11-14T22:13:20+00:00", T0),
])
def test_times_people_write(text: str, expected: float):
    assert parse_time(text, T0) == expected


@pytest.mark.parametrize("since", ["10 minutes", "yesterday", "-5m"])
def test_an_unreadable_since_is_a_usage_error(state_dir: Path, store: LogStore, since: str):
    code, _, err = run(state_dir, "--since", since)
    assert code == 2 and "--since" in err


def test_since_keeps_recent_lines(state_dir: Path, store: LogStore):
    store.insert_many([rec("long ago", ts=T0), rec("just now", ts=4e9)])  # 4e9: in the future of any test run
    code, out, _ = run(state_dir, "--since", "1h", "--json")
    assert code == 0 and [json.loads(line)["message"] for line in out.splitlines()] == ["just now"]


def test_patterns_shows_templates_with_counts(state_dir: Path, store: LogStore):
    miner = PatternMiner()
    mined, _ = miner.observe([rec(f"timeout after {n} ms", level="warning") for n in (5, 10, 15)])
    with store.transaction() as conn:
        store.insert_many(mined)
        miner.save(conn)
    code, out, _ = run(state_dir, "--patterns", "--json")
    assert code == 0
    [doc] = [json.loads(line) for line in out.splitlines()]
    assert (doc["template"], doc["count"], doc["level"], doc["revisions"]) == (
        "timeout after <NUM> ms", 3, "warning", {"1": 3})
    code, table, _ = run(state_dir, "--patterns")
    assert code == 0 and "timeout after <NUM> ms" in table and "warning" in table


def test_patterns_refuses_line_filters(state_dir: Path, store: LogStore):
    code, _, err = run(state_dir, "--patterns", "--grep", "x")
    assert code == 1 and "--patterns takes" in err


def test_follow_prints_new_lines_and_ends_quietly_on_ctrl_c(state_dir: Path, store: LogStore,
                                                            monkeypatch: pytest.MonkeyPatch):
    store.insert_many([rec("before", request_id="g0-f-1")])
    polls = iter([
        lambda: store.insert_many([rec("other call", request_id="g0-f-2"), rec("during", request_id="g0-f-1")]),
        lambda: (_ for _ in ()).throw(KeyboardInterrupt()),
    ])
    monkeypatch.setattr(cli_logs, "_wait", lambda _s: next(polls)())
    code, out, err = run(state_dir, "--request-id", "g0-f-1", "--follow", "--json")
    assert code == 0 and "Traceback" not in out + err
    assert [json.loads(line)["message"] for line in out.splitlines()] == ["before", "during"]
