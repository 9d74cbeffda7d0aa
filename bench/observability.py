"""What metrics and log collection cost: the same echo load with and without them, in one run.

"Without" is the platform as it was before metrics and log collection (``--base``, default the
last commit before them): checked out into a temporary git worktree and run by the same Python.
Both serve examples/echo with 2 replicas behind 2 gateway processes; wrk (c=64, keep-alive) runs
against each in turn, alternating, ``--rounds`` times; the medians are compared. Also the
controller's CPU (share of one core) while idle and while the load runs.

Usage: python bench/observability.py [--duration-s 8] [--rounds 3] [--base REV] [--output FILE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py: wrk, Serve, free_port)

ROOT = Path(__file__).resolve().parent.parent
BASE = "c4a61f5"  # the last commit before metrics and log collection (issue 9)
DEFAULT_OUTPUT = ROOT / "bench" / "out" / "RESULTS.md"


class Instance(bench.Serve):
    def __init__(self, src: Path | None) -> None:
        self._env_src = src
        super().__init__("examples/echo", 2, "--max-ongoing", "64")

    def controller_cpu_s(self) -> float:
        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system


def _serve_from(src: Path | None) -> Instance:
    """`steady serve` importing steadyserve from ``src`` (None: this checkout)."""
    previous = os.environ.get("PYTHONPATH")
    if src is not None:
        os.environ["PYTHONPATH"] = str(src)
    try:
        inst = Instance(src)
    finally:
        if src is not None:
            if previous is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = previous
    inst.wait_ready(2, "/echo", bench.ECHO_BODY)
    return inst


def _imports_from(src: Path) -> str:
    code = "import steadyserve, sys; print(steadyserve.__file__)"
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(src)},
                          capture_output=True, text=True, check=True).stdout.strip()


def _cpu_share(inst: Instance, seconds: float, during: object = None) -> float:
    before, started = inst.controller_cpu_s(), time.monotonic()
    if callable(during):
        during()
    else:
        time.sleep(seconds)
    return (inst.controller_cpu_s() - before) / (time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration-s", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", default=BASE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    bench.ensure_tools()
    os.chdir(ROOT)
    worktree = Path(tempfile.mkdtemp(prefix="steady-base-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.base], check=True,
                   capture_output=True)
    try:
        src = worktree / "src"
        assert _imports_from(src).startswith(str(src)), "the base checkout must shadow the installed package"
        rps: dict[str, list[float]] = {"without": [], "with": []}
        p50: dict[str, list[float]] = {"without": [], "with": []}
        cpu: dict[str, float] = {}
        for round_ in range(args.rounds):
            for label, source in (("without", src), ("with", None)):
                inst = _serve_from(source)
                try:
                    if round_ == 0:
                        cpu[f"{label} idle"] = _cpu_share(inst, 10.0)
                    result: dict[str, float] = {}

                    def load(inst: Instance = inst, result: dict[str, float] = result) -> None:
                        result.update(bench.wrk(inst.url, "/echo", bench.ECHO_BODY, 64, args.duration_s))

                    share = _cpu_share(inst, 0, load)
                    if round_ == 0:
                        cpu[f"{label} under load"] = share
                    rps[label].append(result["rps"])
                    p50[label].append(result["p50_ms"])
                    print(f"round {round_ + 1} {label:<8} {result['rps']:>8.0f} req/s  p50 {result['p50_ms']:.2f} ms"
                          f"  controller CPU {share * 100:.1f}%", flush=True)
                finally:
                    inst.stop()
        write(args, rps, p50, cpu)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], capture_output=True)
        shutil.rmtree(worktree, ignore_errors=True)
    return 0


def write(args: argparse.Namespace, rps: dict[str, list[float]], p50: dict[str, list[float]],
          cpu: dict[str, float]) -> None:
    with_rps, without_rps = statistics.median(rps["with"]), statistics.median(rps["without"])
    loss = 1 - with_rps / without_rps
    section = [
        "## Cost of metrics and log collection",
        "",
        f"Command: `python bench/observability.py --duration-s {args.duration_s} --rounds {args.rounds}"
        f" --base {args.base}`, run on {time.strftime('%Y-%m-%d')} on this project's dev machine (2 cores; wrk -t1"
        " c=64 keep-alive on the same machine). examples/echo, 2 replicas, 2 gateway processes; \"without\" is"
        f" commit {args.base} (before metrics and log collection), \"with\" this checkout; alternating runs, medians.",
        "",
        "| | req/s (median) | p50 ms (median) | runs req/s |",
        "|---|---:|---:|---|",
        f"| without | {without_rps:.0f} | {statistics.median(p50['without']):.2f} |"
        f" {', '.join(f'{v:.0f}' for v in rps['without'])} |",
        f"| with | {with_rps:.0f} | {statistics.median(p50['with']):.2f} | {', '.join(f'{v:.0f}' for v in rps['with'])} |",
        "",
        f"Throughput loss: **{loss * 100:.1f} %** (target <= 5 %: {'met' if loss <= 0.05 else 'NOT met'});"
        f" p50 {statistics.median(p50['with']) - statistics.median(p50['without']):+.2f} ms.",
        "",
        "Controller CPU (share of one core): " + ", ".join(f"{k} {v * 100:.1f}%" for k, v in cpu.items()) + ".",
        "",
    ]
    _replace_section(args.output, "## Cost of metrics and log collection", "\n".join(section))
    print("\n".join(section))


def _replace_section(path: Path, heading: str, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    start = old.find(heading)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(heading))
        new = old[:start] + text.rstrip("\n") + ("\n" + old[end:] if end >= 0 else "\n")
    path.write_text(new)


if __name__ == "__main__":
    sys.exit(main())
