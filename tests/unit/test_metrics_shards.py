"""Metrics shared through shard files: summed exactly, live values only of running processes,
dead processes folded into the archive without a total ever changing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest

from steadyserve.metrics import catalog
from steadyserve.metrics.exposition import flatten, render
from steadyserve.metrics.recorder import Recorder
from steadyserve.metrics.shards import ARCHIVE, ShardWriter, compact, process_start, read_merged, shard_name

WRITE_ONE = """
import sys
from pathlib import Path
from steadyserve.metrics import catalog
from steadyserve.metrics.recorder import Recorder
from steadyserve.metrics.shards import ShardWriter
r = Recorder()
r.inc(catalog.REQUESTS, ("d", "1", "h", "200"), float(sys.argv[2]))
r.observe(catalog.REQUEST_DURATION, ("d", "h"), 0.003)
r.set(catalog.INFLIGHT, ("d",), 5.0)
ShardWriter(Path(sys.argv[1]), "gateway", r).flush()
print("written", flush=True)
if sys.argv[3] == "stay":
    sys.stdin.read()
"""


def _process(directory: Path, calls: int, stay: bool) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", WRITE_ONE, str(directory), str(calls), "stay" if stay else "go"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    if not stay:
        proc.wait(30)
    return proc


def _requests(total: Recorder) -> float:
    return sum(v for (name, _), v in total.counters.items() if name == "steady_requests")


def _inflight(total: Recorder) -> float:
    return sum(v for (name, _), v in total.live.items() if name == "steady_inflight_requests")


def test_counters_of_every_process_add_up_and_live_values_only_of_running_ones(tmp_path):
    running = _process(tmp_path, 3, stay=True)
    try:
        _process(tmp_path, 4, stay=False)
        total = read_merged(tmp_path)
        assert _requests(total) == 7
        assert _inflight(total) == 5  # the exited process's in-flight calls are gone with it
        assert sum(c[-2] for (n, _), c in total.histograms.items()) == 0  # 3 ms is not in +Inf ...
        assert sum(sum(c[:-1]) for (n, _), c in total.histograms.items()) == 2  # ... but counted: 2 observations
    finally:
        running.communicate("")


def test_a_later_process_with_the_same_pid_does_not_make_a_dead_shard_live(tmp_path):
    recorder = Recorder()
    recorder.set(catalog.INFLIGHT, ("d",), 9.0)
    writer = ShardWriter(tmp_path, "gateway", recorder)
    writer.path = tmp_path / shard_name("gateway", os.getpid(), (process_start(os.getpid()) or 0) + 1)
    writer.flush()
    assert _inflight(read_merged(tmp_path)) == 0


def test_folding_dead_shards_keeps_every_total_and_removes_their_files(tmp_path):
    for calls in (1, 2, 3):
        _process(tmp_path, calls, stay=False)
    running = _process(tmp_path, 10, stay=True)
    try:
        before = flatten(read_merged(tmp_path))
        assert compact(tmp_path) == 3
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ARCHIVE, *(
            p.name for p in tmp_path.glob("gateway-*.json"))])
        assert len(list(tmp_path.glob("gateway-*.json"))) == 1  # the running one
        assert flatten(read_merged(tmp_path)) == before
        _process(tmp_path, 5, stay=False)
        assert compact(tmp_path) == 1
        assert _requests(read_merged(tmp_path)) == 21
    finally:
        running.communicate("")


def test_a_shard_folded_just_before_a_crash_is_counted_once(tmp_path):
    _process(tmp_path, 4, stay=False)
    [shard] = tmp_path.glob("gateway-*.json")
    # What a compaction killed between replacing the archive and removing the shard leaves.
    content = orjson.loads(shard.read_bytes())
    (tmp_path / ARCHIVE).write_bytes(orjson.dumps({"merged": [shard.name], **content}))
    assert _requests(read_merged(tmp_path)) == 4
    compact(tmp_path)
    assert not shard.exists() and _requests(read_merged(tmp_path)) == 4


def test_readers_never_see_a_total_change_while_shards_are_folded(tmp_path):
    for calls in range(1, 21):
        _process(tmp_path, calls, stay=False)
    expected = sum(range(1, 21))
    seen: list[float] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append(_requests(read_merged(tmp_path)))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(20):  # fold one new dead process at a time, as the controller does each minute
            _process(tmp_path, 0, stay=False)
            compact(tmp_path)
    finally:
        done.set()
        reader.join()
    assert seen and set(seen) == {expected}


@pytest.mark.parametrize("content", [b"not json", b"[]", orjson.dumps({"counters": [["steady_requests", ["x"], 1]]}),
                                     orjson.dumps({"counters": [["unknown_metric", [], 1]]}),
                                     orjson.dumps({"histograms": [["steady_request_duration_seconds", ["d", "h"], [1]]]}),
                                     orjson.dumps({"counters": [["steady_requests", ["d", "1", "h", "200"], "NaN"]]})])
def test_a_damaged_or_foreign_shard_is_left_out_and_the_rest_is_read(tmp_path, content):
    _process(tmp_path, 2, stay=False)
    (tmp_path / "gateway-1-1.json").write_bytes(content)
    assert _requests(read_merged(tmp_path)) == 2


def test_the_exposition_has_one_family_per_metric_with_cumulative_buckets():
    recorder = Recorder()
    for seconds in (0.0004, 0.003, 0.003, 100.0):
        recorder.observe(catalog.REQUEST_DURATION, ("d", "h"), seconds)
    text = render(recorder).decode()
    assert 'steady_request_duration_seconds_bucket{deployment="d",handler="h",le="0.0005"} 1.0' in text
    assert 'steady_request_duration_seconds_bucket{deployment="d",handler="h",le="0.005"} 3.0' in text
    assert 'steady_request_duration_seconds_bucket{deployment="d",handler="h",le="60.0"} 3.0' in text
    assert 'steady_request_duration_seconds_bucket{deployment="d",handler="h",le="+Inf"} 4.0' in text
    assert 'steady_request_duration_seconds_count{deployment="d",handler="h"} 4.0' in text
    assert text.count("# TYPE steady_request_duration_seconds histogram") == 1


@pytest.mark.parametrize("value", [0.0005, 0.001, 60.0])
def test_an_observation_on_a_bound_falls_in_that_bucket(value):
    recorder = Recorder()
    recorder.observe(catalog.REQUEST_DURATION, ("d", "h"), value)
    flat = flatten(recorder)
    le = repr(value)
    assert flat[("steady_request_duration_seconds_bucket", (("deployment", "d"), ("handler", "h"), ("le", le)))] == 1


def test_a_fifo_among_the_shards_is_left_out_and_hangs_no_reader(tmp_path):
    _process(tmp_path, 2, stay=False)
    os.mkfifo(tmp_path / "replica-999999-1.json")
    assert _requests(read_merged(tmp_path)) == 2  # returns: the FIFO is not opened for reading blocking
    compact(tmp_path)
    assert _requests(read_merged(tmp_path)) == 2


@pytest.mark.parametrize("value", [-5, 1e300, True])
def test_absurd_numbers_in_a_shard_are_left_out(tmp_path, value):
    _process(tmp_path, 2, stay=False)
    (tmp_path / "gateway-1-1.json").write_bytes(orjson.dumps(
        {"counters": [["steady_requests", ["d", "1", "h", "200"], value]]}))
    assert _requests(read_merged(tmp_path)) == 2


def test_a_damaged_archive_is_set_aside_never_overwritten(tmp_path):
    (tmp_path / ARCHIVE).write_bytes(b"{damaged")
    _process(tmp_path, 3, stay=False)
    compact(tmp_path)
    aside = list(tmp_path.glob(f"{ARCHIVE}.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"{damaged"
    assert _requests(read_merged(tmp_path)) == 3


def test_an_archive_past_the_shard_size_limit_is_still_read(tmp_path):
    from steadyserve.metrics.shards import MAX_SHARD_BYTES

    many = [["steady_requests", [f"d{i}", "1", "h", "200"], 1] for i in range(MAX_SHARD_BYTES // 40)]
    (tmp_path / ARCHIVE).write_bytes(orjson.dumps({"merged": [], "counters": many}))
    assert (tmp_path / ARCHIVE).stat().st_size > MAX_SHARD_BYTES
    assert _requests(read_merged(tmp_path)) == len(many)
