"""A replica host's leftovers on a node: directories of hosts that died are swept, live ones kept."""

from __future__ import annotations

import os
import subprocess
import sys

from steadyserve.control.backends.ray_host import DIR_PREFIX, sweep_stale_dirs


def test_directories_of_dead_hosts_are_removed_and_live_or_foreign_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, live, foreign, other = (tmp_path / f"{DIR_PREFIX}{n}" for n in ("stale", "live", "foreign", "x"))
    for directory, pid in ((stale, dead.pid), (live, os.getpid())):
        (directory / "secrets").mkdir(parents=True)
        (directory / "secrets" / "API_KEY").write_text("v")
        (directory / "host.pid").write_text(str(pid))
    foreign.mkdir()  # no host.pid: not ours to judge
    (tmp_path / "unrelated").mkdir()
    other.symlink_to(tmp_path / "unrelated")
    sweep_stale_dirs(tmp_path)
    assert not stale.exists() and live.exists() and foreign.exists() and (tmp_path / "unrelated").exists()
