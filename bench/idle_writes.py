"""Bytes an idle instance writes: `steady serve examples/echo` (2 replicas, 2 gateways) left alone.

Counts the controller's write() bytes (/proc/<pid>/io wchar: the state DB, its WAL, logs)
over --duration-s once everything is ready. Usage: python bench/idle_writes.py [--duration-s 60]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEADY = [sys.executable, "-m", "steadyserve.cli"]


def wchar(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/PID/io")


def all_ready(state_dir: Path) -> bool:
    result = subprocess.run([*STEADY, "status", "--json", "--state-dir", str(state_dir)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return False
    rows = json.loads(result.stdout)
    return bool(rows) and all(r["state"] == "ready" for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration-s", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="steady-bench-") as tmp:
        state_dir = Path(tmp) / "state"
        proc = subprocess.Popen([*STEADY, "serve", str(ROOT / "examples" / "echo"), "--replicas", "2",
                                 "--gateways", "2", "--port", "0", "--state-dir", str(state_dir)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while not all_ready(state_dir):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the instance did not become ready")
                time.sleep(0.5)
            time.sleep(3.0)  # the first snapshot and routes settle
            before = wchar(proc.pid)
            time.sleep(args.duration_s)
            written = wchar(proc.pid) - before
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
    print(f"idle controller wrote {written} bytes in {args.duration_s:g} s"
          f" = {written / args.duration_s / 1024:.2f} KB/s")


if __name__ == "__main__":
    main()
