"""Benchmark: reactive against predictive autoscaling on the shipped traces (`steady simulate`).

Runs `steady simulate --policy both --json` on examples/traces/step.csv, spike.csv and
periodic.csv (with --season-s 3600: its 'day' is an hour) with the documented defaults (a replica
serves 10 calls/s and is ready 30 s after it starts; target 0.7 x 10 calls/s per replica; 1..64
replicas; a decision every 5 s) and prints a Markdown section: requests and seconds over capacity,
replica-seconds, scale events, and for predictive the cut in requests over capacity and the extra
replica-seconds against reactive. Deterministic: the same checkout gives the same figures (only
the wall times vary). Regenerate the traces with bench/make_traces.py.
Usage: python bench/autoscaling.py [--output FILE]   (FILE: appended to, or created)
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TRACES = (("step", []), ("spike", []), ("periodic", ["--season-s", "3600"]))


def simulate(trace: str, extra: list[str]) -> tuple[list[str], dict[str, Any], float]:
    """The command as a person would type it, its JSON report, and its wall time."""
    args = ["simulate", "--trace", f"examples/traces/{trace}.csv", "--policy", "both", *extra, "--json"]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "steadyserve.cli", *args], cwd=ROOT, capture_output=True,
                          text=True)
    wall_s = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"steady {shlex.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return ["steady", *args], json.loads(done.stdout), wall_s


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f} %"


def section(command: str, runs: list[tuple[str, list[str], dict[str, Any], float]]) -> str:
    lines = [
        "## Autoscaling: reactive against predictive (simulated)",
        "",
        f"Command: `{command}`, run on {time.strftime('%Y-%m-%d')}. Each trace:"
        " `steady simulate --trace examples/traces/TRACE.csv --policy both --json` (periodic with"
        " `--season-s 3600`), the documented defaults: a replica serves 10 calls/s and is ready 30 s after"
        " it starts, target 0.7 x 10 calls/s per replica, 1..64 replicas, a decision every 5 s."
        " Cut: requests over capacity, predictive against reactive; extra cost: replica-seconds.",
        "",
        "| trace | policy | requests over capacity | seconds over capacity | replica-seconds | scale events"
        " | forecast trusted | cut | extra cost | wall s (both) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for trace, _, report, wall_s in runs:
        for policy in ("reactive", "predictive"):
            r = report[policy]
            predictive = policy == "predictive"
            cut = r.get("over_capacity_cut_percent")
            trusted = f"{r['forecast_trusted_percent']:.1f} %" if predictive else "-"
            cut_text = f"{cut:.1f} %" if predictive and cut is not None else "-"
            extra = percent(r.get("replica_seconds_extra_percent")) if predictive else "-"
            lines.append(
                f"| {trace} | {policy} | {r['over_capacity_requests']:,.0f} ({r['over_capacity_percent']:.2f} %)"
                f" | {r['over_capacity_s']:,.0f} | {r['replica_seconds']:,.0f} | {r['scale_events']}"
                f" | {trusted} | {cut_text} | {extra} | {wall_s:.1f} |")
    untrusted = [trace for trace, _, report, _ in runs if report["predictive"]["forecast_trusted_percent"] <= 0]
    if untrusted:
        lines += ["", f"{' and '.join(untrusted)}: the forecast was never trusted (a trace no longer than one"
                      " season, 86400 s by default, leaves it learning), so predictive acts as reactive."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, help="append the section to this Markdown file (created if absent)")
    args = parser.parse_args()
    command = shlex.join(["python", "bench/autoscaling.py", *sys.argv[1:]])
    runs = []
    for trace, extra in TRACES:
        typed, report, wall_s = simulate(trace, extra)
        print(f"{shlex.join(typed)}: {wall_s:.1f} s", file=sys.stderr)
        runs.append((trace, typed, report, wall_s))
    text = section(command, runs)
    print(text, end="")
    if args.output is not None:
        with open(args.output, "a", encoding="utf-8") as out:
            out.write(("\n" if args.output.stat().st_size else "") + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
