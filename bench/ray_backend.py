"""Benchmark: echo through the gateway to Ray-actor replicas, to local replicas, and Ray Serve.

Measures, in one run on this machine, on one Ray cluster (``ray.cluster_utils.Cluster``: a
head with no CPUs and two worker nodes of one CPU, all on this machine):
  (a) `steady up`, 2 gateway processes, 2 local replicas (Unix sockets),
  (b) the same spec with ``backend: {kind: ray}``: 2 replicas as Ray actors, one per node, called
      by the gateway over TCP with their credential,
  (c) Ray Serve on the same cluster: 2 replicas of the same echo behind Ray Serve's HTTP proxy.
wrk (one thread, POST of a small JSON body) at concurrency 16 and 64; (a) and (b) alternate over
--rounds rounds and the median round is kept. Writes the section to bench/out/RAY.md (--output
FILE to choose; --results bench/RESULTS.md replaces that file's section). Ctrl-C stops everything.
Usage: python bench/ray_backend.py [--duration-s 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ECHO_BODY, ensure_tools, free_port, wait_http, wrk  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ECHO = ROOT / "examples" / "echo" / "service.py"
CONCURRENCY = (16, 64)
HEADING = "## Beyond one machine: replicas as Ray actors, and Ray Serve"
STARTED: list[subprocess.Popen[bytes]] = []

RAY_SERVE_APP = textwrap.dedent('''
    import sys, time
    import ray
    from ray import serve

    @serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 1})
    class Echo:
        async def __call__(self, request):
            body = await request.json()
            return {"message": body["message"]}

    ray.init(address=sys.argv[1], log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[2])})
    serve.run(Echo.bind(), name="echo", route_prefix="/echo")
    print("ready", flush=True)
    while True:
        time.sleep(3600)
''')


def steady_up(spec: str, state_dir: Path, port: int) -> subprocess.Popen[bytes]:
    (state_dir / "steady.yaml").write_text(spec)
    proc = subprocess.Popen([sys.executable, "-m", "steadyserve.cli", "up", "-f", str(state_dir / "steady.yaml"),
                             "--port", str(port), "--api-port", "0", "--no-auth", "--state-dir", str(state_dir / "st")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    STARTED.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def measure(url: str, path: str, duration_s: float) -> dict[int, dict[str, float]]:
    return {c: wrk(url, path, ECHO_BODY, c, duration_s) for c in CONCURRENCY}


def median_round(rounds: list[dict[int, dict[str, float]]]) -> dict[int, dict[str, float]]:
    out = {}
    for c in CONCURRENCY:
        ordered = sorted((r[c] for r in rounds), key=lambda x: x["rps"])
        out[c] = ordered[len(ordered) // 2]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "out" / "RAY.md")
    parser.add_argument("--results", type=Path, help="also replace this file's section (bench/RESULTS.md)")
    args = parser.parse_args()
    ensure_tools()
    from ray.cluster_utils import Cluster

    work = Path(tempfile.mkdtemp(prefix="steady-bench-ray-"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    results: dict[str, list[dict[int, dict[str, float]]]] = {"local": [], "ray": []}
    serve_result: dict[int, dict[str, float]] = {}
    try:
        base = f"deployments:\n  echo:\n    service: {ECHO}\n    replicas: 2\n"
        for round_ in range(args.rounds):
            for kind in ("local", "ray"):
                state = work / f"{kind}-{round_}"
                state.mkdir()
                port = free_port()
                spec = base + (f"backend: {{kind: ray, address: '{cluster.address}'}}\n" if kind == "ray" else "")
                proc = steady_up(spec, state, port)
                try:
                    wait_http(f"http://127.0.0.1:{port}", ECHO_BODY, "/echo/echo")
                    time.sleep(1.0)  # both replicas in the gateways' tables
                    results[kind].append(measure(f"http://127.0.0.1:{port}", "/echo/echo", args.duration_s))
                    print(f"round {round_ + 1} {kind}: {results[kind][-1][64]['rps']:,.0f} req/s at c=64", flush=True)
                finally:
                    stop(proc)
        port = free_port()
        app = work / "serve_app.py"
        app.write_text(RAY_SERVE_APP)
        serve = subprocess.Popen([sys.executable, str(app), cluster.address, str(port)],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        STARTED.append(serve)
        try:
            assert serve.stdout is not None and serve.stdout.readline().strip() == b"ready", "Ray Serve did not start"
            wait_http(f"http://127.0.0.1:{port}", ECHO_BODY, "/echo")
            serve_result = measure(f"http://127.0.0.1:{port}", "/echo", args.duration_s)
        finally:
            stop(serve)
    finally:
        for proc in STARTED:
            if proc.poll() is None:
                proc.kill()
        cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    import ray

    local, on_ray = median_round(results["local"]), median_round(results["ray"])
    rows = [("steady, local replicas (Unix sockets)", local), ("steady, Ray-actor replicas (TCP + credential)", on_ray),
            (f"Ray Serve {ray.__version__}, same cluster", serve_result)]
    lines = [HEADING, "",
             f"`python bench/ray_backend.py --duration-s {args.duration_s:g} --rounds {args.rounds}` on"
             f" {dt.date.today().isoformat()} ({os.cpu_count()} cores): one Ray cluster of a head with no CPUs and"
             " two worker nodes of one CPU, all on this machine; 2 echo replicas each time (examples/echo; Ray"
             " Serve: the same handler as a Serve deployment); `steady up` with 2 gateway processes; wrk,"
             f" one thread, POST of a small JSON body, {args.duration_s:g} s per point; steady's two setups"
             f" alternate over {args.rounds} rounds, the median round kept.", "",
             "| setup | req/s c=16 | p50 ms c=16 | p99 ms c=16 | req/s c=64 | p50 ms c=64 | p99 ms c=64 | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for label, r in rows:
        errors = sum(int(r[c]["non_2xx"]) for c in CONCURRENCY)
        lines.append(f"| {label} | " + " | ".join(
            f"{r[c]['rps']:,.0f} | {r[c]['p50_ms']:.2f} | {r[c]['p99_ms']:.2f}" for c in CONCURRENCY) + f" | {errors} |")
    ratio = {c: on_ray[c]["rps"] / local[c]["rps"] for c in CONCURRENCY}
    versus = {c: on_ray[c]["rps"] / serve_result[c]["rps"] for c in CONCURRENCY}
    lines += ["", f"- Ray-actor replicas vs local replicas: {ratio[16]:.2f}x (c=16), {ratio[64]:.2f}x (c=64)"
                  f" (target >= 0.8): {'met' if min(ratio.values()) >= 0.8 else 'NOT met'}",
              f"- steady on Ray vs Ray Serve on the same cluster: {versus[16]:.1f}x (c=16), {versus[64]:.1f}x (c=64)"
              " the requests/s", ""]
    text = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    if args.results is not None:
        replace_section(args.results, text)
    print(text)
    return 0


def replace_section(path: Path, text: str) -> None:
    current = path.read_text()
    start = current.find(HEADING)
    if start < 0:
        path.write_text(current.rstrip("\n") + "\n\n" + text)
        return
    end = current.find("\n## ", start + len(HEADING))
    path.write_text(current[:start] + text + (current[end + 1:] if end >= 0 else ""))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        for proc in STARTED:
            if proc.poll() is None:
                proc.kill()
        sys.exit(130)
