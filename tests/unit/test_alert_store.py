"""Alert states and recent alerts in SQLite: what `steady alerts` reads, what a restart resumes."""

from __future__ import annotations

import stat

import pytest

from steadyserve.alerting.evaluate import AlertState, Phase
from steadyserve.alerting.store import AlertStore
from steadyserve.errors import StateError


def alert(name: str, phase: Phase, fired_at: float | None = 10.0, resolved_at: float | None = None,
          value: float = 0.5, deployment: str = "d") -> AlertState:
    return AlertState(key=f"{deployment}/{name}", phase=phase,
                      labels=(("alertname", name), ("deployment", deployment), ("severity", "critical")),
                      annotations=(("summary", f"{name} summary"), ("value", f"{value:g}")), value=value,
                      evaluated_at=resolved_at or 20.0, active_since=5.0, fired_at=fired_at, resolved_at=resolved_at)


@pytest.fixture
def store(tmp_path):
    opened = AlertStore(tmp_path / "observability.db")
    yield opened
    opened.close()


def test_the_file_is_private(tmp_path):
    path = tmp_path / "observability.db"
    path.touch(mode=0o644)
    AlertStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_states_survive_a_reopen(tmp_path, store):
    firing, pending = alert("A", Phase.FIRING), alert("B", Phase.PENDING, fired_at=None)
    store.save({"d/A": firing, "d/B": pending}, [firing], 20.0)
    reopened = AlertStore(tmp_path / "observability.db")
    assert reopened.load_states() == {"d/A": firing, "d/B": pending}
    reopened.close()


def test_only_pending_and_firing_states_are_kept(store):
    resolved = alert("A", Phase.RESOLVED, resolved_at=30.0)
    store.save({"d/A": resolved}, [], 30.0)
    assert store.load_states() == {}


def test_an_alert_that_fired_and_resolved_is_one_recent_row(store):
    firing = alert("A", Phase.FIRING, value=0.5)
    store.save({"d/A": firing}, [firing], 20.0)
    (row,) = store.recent()
    assert (row.alertname, row.resolved_at, row.value, row.summary) == ("A", None, 0.5, "A summary")
    resolved = alert("A", Phase.RESOLVED, resolved_at=60.0, value=0.7)
    store.save({"d/A": resolved}, [resolved], 60.0)
    (row,) = store.recent()
    assert (row.fired_at, row.resolved_at, row.value) == (10.0, 60.0, 0.7)
    assert store.active() == []


def test_recent_is_newest_first_and_filters(store):
    for i, deployment in enumerate(["a", "b", "a"]):
        fired = alert(f"R{i}", Phase.FIRING, fired_at=float(i), deployment=deployment)
        store.save({fired.key: fired}, [fired], float(i))
    assert [r.alertname for r in store.recent()] == ["R2", "R1", "R0"]
    assert [r.alertname for r in store.recent(deployment="a")] == ["R2", "R0"]
    assert [r.alertname for r in store.recent(limit=1)] == ["R2"]
    assert store.recent(resolved_only=True) == []


def test_active_lists_firing_first(store):
    states = {"d/P": alert("P", Phase.PENDING, fired_at=None), "d/F": alert("F", Phase.FIRING)}
    store.save(states, [], 20.0)
    assert [s.alertname for s in store.active()] == ["F", "P"]


@pytest.mark.parametrize("keep_rows, keep_s, left", [(2, 1e9, 2), (100, 20.0, 1)])
def test_resolved_alerts_are_kept_bounded(tmp_path, keep_rows, keep_s, left):
    store = AlertStore(tmp_path / "o.db", keep_rows=keep_rows, keep_s=keep_s)
    for i in range(4):
        fired = alert(f"R{i}", Phase.FIRING, fired_at=i * 30.0)
        resolved = alert(f"R{i}", Phase.RESOLVED, fired_at=i * 30.0, resolved_at=i * 30.0 + 10)
        store.save({fired.key: fired}, [fired], i * 30.0)
        store.save({}, [resolved], i * 30.0 + 10)
    assert len(store.recent(limit=100)) == left
    store.close()


def test_an_idle_evaluation_writes_nothing(store, monkeypatch):
    store.load_states()
    writes = []
    monkeypatch.setattr(store, "_conn", _Spy(store._conn, writes))
    store.save({}, [], 10.0)
    store.save({}, [], 15.0)
    assert writes == []


class _Spy:
    def __init__(self, conn, writes):
        self._conn, self._writes = conn, writes

    def execute(self, *args):
        self._writes.append(args)
        return self._conn.execute(*args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_open_existing_is_none_where_nothing_was_written(tmp_path):
    assert AlertStore.open_existing(tmp_path / "observability.db") is None
    assert not (tmp_path / "observability.db").exists()


def test_a_file_that_is_not_sqlite_is_a_state_error(tmp_path):
    path = tmp_path / "observability.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StateError, match="cannot use the alert store"):
        AlertStore(path)
