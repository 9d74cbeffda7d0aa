"""Benchmark: streamed answers through the gateway versus the replica called directly (and LitServe).

Measures, in one run on this machine, for the same generator (bench/stream_service.py:
``n`` items of 16 characters):
  - time to first chunk (TTFC): median and p99 of sequential streams of 10 items, each on a
    fresh connection (curl's time_starttransfer), replica direct vs gateway + replica;
  - chunk throughput: items/s of one stream of 200,000 items and of 4 concurrent ones;
  - LitServe's ``stream=True`` server on the same generator, if ``litserve`` is installed.
Prints a table and writes it to bench/out/STREAMING.md (--output FILE to choose). Ctrl-C stops
every process it started. Usage: python bench/streaming.py [--runs 300] [--items 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "bench" / "stream_service.py"
STARTED: list[subprocess.Popen[bytes]] = []
TEMP_DIRS: list[Path] = []

LITSERVE_APP = textwrap.dedent('''
    import sys
    import litserve as ls

    class Stream(ls.LitAPI):
        def setup(self, device):
            pass

        def decode_request(self, request):
            return int(request.get("n", 10)), int(request.get("size", 16))

        def predict(self, x):
            n, size = x
            piece = "x" * size
            for _ in range(n):
                yield piece

        def encode_response(self, output):
            for piece in output:
                yield piece

    if __name__ == "__main__":
        ls.LitServer(Stream(), accelerator="cpu", stream=True, workers_per_device=1).run(port=int(sys.argv[1]),
                                                                                         generate_client_file=False)
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], **kw: object) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            **kw)  # type: ignore[call-overload]
    STARTED.append(proc)
    return proc


def wait_stream(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, data=b'{"n": 1}', headers={"content-type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200 and response.read():
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout_s}s")


def curl(url: str, n: int) -> tuple[float, float, int]:
    """(time to first byte of the body, total time, bytes) of one stream, as curl measures it."""
    out = subprocess.run(["curl", "-sN", "-o", "/dev/null", "-w", "%{time_starttransfer} %{time_total} %{size_download}",
                          "-H", "content-type: application/json", "-d", json.dumps({"n": n, "size": 16}), url],
                         capture_output=True, text=True, timeout=600, check=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def ttfc_ms(url: str, runs: int) -> tuple[float, float]:
    samples = sorted(curl(url, 10)[0] * 1000 for _ in range(runs))
    return statistics.median(samples), samples[int(0.99 * (len(samples) - 1))]


def throughput(url: str, items: int, streams: int) -> float:
    """Items per second over ``streams`` concurrent streams of ``items`` each (best of 3)."""
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        with ThreadPoolExecutor(streams) as pool:
            sizes = list(pool.map(lambda _: curl(url, items)[2], range(streams)))
        elapsed = time.perf_counter() - started
        assert all(size >= items * 16 for size in sizes), sizes  # every item arrived
        best = max(best, streams * items / elapsed)
    return best


def measure(label: str, url: str, args: argparse.Namespace, results: dict[str, dict[str, float]]) -> None:
    wait_stream(url)
    median_ms, p99_ms = ttfc_ms(url, args.runs)
    one = throughput(url, args.items, 1)
    four = throughput(url, args.items // 4, 4)
    results[label] = {"ttfc_p50_ms": median_ms, "ttfc_p99_ms": p99_ms, "items_s_1": one, "items_s_4": four}
    print(f"{label:<28} TTFC p50 {median_ms:6.2f} ms  p99 {p99_ms:6.2f} ms   {one:9.0f} items/s (1 stream)"
          f"  {four:9.0f} items/s (4 streams)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="streams timed for TTFC")
    parser.add_argument("--items", type=int, default=200_000, help="items of the throughput stream")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "out" / "STREAMING.md")
    args = parser.parse_args()
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed: apt-get install curl")
    results: dict[str, dict[str, float]] = {}

    port = free_port()
    start([sys.executable, "-m", "steadyserve.replica.main", "--target", str(SERVICE), "--id", "d0",
           "--endpoint", f"tcp:127.0.0.1:{port}"])
    measure("replica direct", f"http://127.0.0.1:{port}/count", args, results)
    STARTED.pop().send_signal(signal.SIGTERM)

    state_dir = Path(tempfile.mkdtemp(prefix="steady-bench-"))
    TEMP_DIRS.append(state_dir)
    gateway_port = free_port()
    start([sys.executable, "-m", "steadyserve.cli", "serve", str(SERVICE), "--replicas", "1", "--gateways", "1",
           "--port", str(gateway_port), "--api-port", "0", "--state-dir", str(state_dir)])
    measure("gateway + replica", f"http://127.0.0.1:{gateway_port}/count", args, results)
    STARTED.pop().send_signal(signal.SIGINT)

    try:
        import litserve  # noqa: F401
    except ImportError:
        print("litserve is not installed (pip install litserve): no LitServe comparison")
    else:
        workdir = Path(tempfile.mkdtemp(prefix="steady-litserve-"))
        TEMP_DIRS.append(workdir)
        (workdir / "app.py").write_text(LITSERVE_APP)
        lit_port = free_port()
        start([sys.executable, str(workdir / "app.py"), str(lit_port)], cwd=workdir)
        measure("LitServe stream=True", f"http://127.0.0.1:{lit_port}/predict", args, results)
    write(results, args)
    return 0


def write(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    direct, gateway = results["replica direct"], results["gateway + replica"]
    lines = ["| setup | TTFC p50 ms | TTFC p99 ms | items/s, 1 stream | items/s, 4 streams |", "|---|---|---|---|---|"]
    for label, r in results.items():
        lines.append(f"| {label} | {r['ttfc_p50_ms']:.2f} | {r['ttfc_p99_ms']:.2f} | {r['items_s_1']:,.0f} |"
                     f" {r['items_s_4']:,.0f} |")
    added_ms = gateway["ttfc_p50_ms"] - direct["ttfc_p50_ms"]
    lines += ["", f"- gateway adds {added_ms:.2f} ms to TTFC p50 (target <= 1 ms):"
                  f" {'met' if added_ms <= 1.0 else 'NOT met'}"]
    for key, what in (("items_s_1", "1 stream"), ("items_s_4", "4 streams")):
        cost = 1 - gateway[key] / direct[key]
        lines.append(f"- gateway costs {cost:.1%} of chunk throughput, {what} (target <= 10 %):"
                     f" {'met' if cost <= 0.10 else 'NOT met'}")
    if "LitServe stream=True" in results:
        lit = results["LitServe stream=True"]
        lines.append(f"- gateway + replica vs LitServe: {gateway['items_s_1'] / lit['items_s_1']:.1f}x items/s"
                     f" (1 stream), {gateway['items_s_4'] / lit['items_s_4']:.1f}x (4 streams),"
                     f" TTFC p50 {gateway['ttfc_p50_ms']:.2f} vs {lit['ttfc_p50_ms']:.2f} ms")
    lines.append(f"\n`python bench/streaming.py --runs {args.runs} --items {args.items}`, {time.strftime('%Y-%m-%d')},"
                 f" {os.cpu_count()} CPUs")
    table = "\n".join(lines)
    print("\n" + table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table + "\n")


def cleanup() -> None:
    for proc in STARTED:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGINT)
                proc.wait(20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    for directory in TEMP_DIRS:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        cleanup()
