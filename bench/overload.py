"""Benchmark: a deployment offered 3x what it can serve.

A 50 ms sync handler, 2 replicas of 1 worker each: capacity ~40 calls/s. In
one run, per admission setting:
  1. unloaded: calls one at a time -> unloaded p50/p99;
  2. capacity: closed loop at 2x the replicas' concurrency, no shedding -> calls/s;
  3. overload: open loop at 3x capacity for --duration-s -> admitted p50/p99,
     share shed, time to answer a shed call (p50/p99), goodput (2xx within
     5x the unloaded p99, per second) as a share of capacity;
  4. right after: calls one at a time -> latency once the overload stops.
Latency in the open loop counts from when a call was due, not when it could be
sent (no coordinated omission). Writes a section of bench/RESULTS.md.
Usage: python bench/overload.py [--duration-s 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import STARTED, Serve  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVICE = str(ROOT / "bench" / "sleep_service.py")
BODY = {"ms": 50}
SETTINGS = {
    "defaults": [],
    "adaptive, queue 4": ["--adaptive", "--max-queued", "4"],
    "adaptive, no queue": ["--adaptive", "--max-queued", "0"],
}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one_at_a_time(client: httpx.AsyncClient, n: int) -> list[float]:
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        resp = await client.post("/nap", json=BODY)
        assert resp.status_code == 200, resp.text
        latencies.append(time.perf_counter() - started)
    return latencies


async def closed_loop(client: httpx.AsyncClient, concurrency: int, duration_s: float) -> float:
    done = 0
    end = time.perf_counter() + duration_s

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            resp = await client.post("/nap", json=BODY)
            if resp.status_code == 200:
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def open_loop(client: httpx.AsyncClient, rate_per_s: float, duration_s: float) -> list[tuple[float, int, float]]:
    """(due time, status, latency from due time) of every call."""
    results: list[tuple[float, int, float]] = []

    async def fire(due: float) -> None:
        try:
            resp = await client.post("/nap", json=BODY)
            status = resp.status_code
        except httpx.HTTPError:
            status = 0
        results.append((due, status, time.perf_counter() - due))

    tasks = []
    start = time.perf_counter()
    n = int(rate_per_s * duration_s)
    for i in range(n):
        due = start + i / rate_per_s
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(due)))
    await asyncio.gather(*tasks)
    return [(due - start, status, latency) for due, status, latency in results]


async def scenario(url: str, duration_s: float) -> dict[str, float]:
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        await one_at_a_time(client, 10)  # warm-up
        unloaded = await one_at_a_time(client, 60)
        capacity = await closed_loop(client, 4, 5.0)
        calls = await open_loop(client, 3 * capacity, duration_s)
        after = await one_at_a_time(client, 20)
    unloaded_p99 = pct(unloaded, 0.99)
    admitted = [lat for _, status, lat in calls if status == 200]
    shed = [lat for _, status, lat in calls if status in (503, 429)]
    good = [lat for lat in admitted if lat <= 5 * unloaded_p99]
    return {
        "capacity_rps": capacity, "offered_rps": 3 * capacity, "calls": len(calls),
        "unloaded_p50_ms": 1000 * statistics.median(unloaded), "unloaded_p99_ms": 1000 * unloaded_p99,
        "admitted_p50_ms": 1000 * pct(admitted, 0.5), "admitted_p99_ms": 1000 * pct(admitted, 0.99),
        "shed_share": len(shed) / len(calls), "shed_p50_ms": 1000 * pct(shed, 0.5),
        "shed_p99_ms": 1000 * pct(shed, 0.99),
        "other": sum(1 for _, status, _ in calls if status not in (200, 503, 429)),
        "goodput_share": len(good) / duration_s / capacity,
        "after_p50_ms": 1000 * statistics.median(after), "after_p99_ms": 1000 * pct(after, 0.99),
    }


def write_results(results: dict[str, dict[str, float]], duration_s: float) -> None:
    lines = [
        "## Overload: offered 3x capacity",
        "",
        f"Command: `python bench/overload.py --duration-s {duration_s:g}`, run on"
        f" {time.strftime('%Y-%m-%d')} on this project's dev machine (2 cores). `bench/sleep_service.py`:"
        " a 50 ms sync handler, 2 replicas x 1 worker, 2 gateway processes; open-loop load at 3x the"
        " measured closed-loop capacity, latency counted from each call's due time.",
        "",
        "| admission | capacity/s | offered/s | unloaded p99 ms | admitted p50 ms | admitted p99 ms"
        " | shed | shed p50 ms | shed p99 ms | goodput | after p50 ms | other |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['capacity_rps']:.1f} | {r['offered_rps']:.1f} | {r['unloaded_p99_ms']:.1f}"
            f" | {r['admitted_p50_ms']:.1f} | {r['admitted_p99_ms']:.1f} | {r['shed_share']:.0%}"
            f" | {r['shed_p50_ms']:.2f} | {r['shed_p99_ms']:.2f} | {r['goodput_share']:.0%}"
            f" | {r['after_p50_ms']:.1f} | {r['other']:.0f} |")
    lines += ["", "Targets: admitted p99 <= 5x unloaded p99; shed answered in <= 10 ms p99;"
              " goodput (2xx within 5x unloaded p99) >= 90 % of capacity.", ""]
    for name, r in results.items():
        checks = [
            ("admitted p99 / unloaded p99", r["admitted_p99_ms"] / r["unloaded_p99_ms"], "<= 5",
             r["admitted_p99_ms"] <= 5 * r["unloaded_p99_ms"]),
            ("shed p99 ms", r["shed_p99_ms"], "<= 10", r["shed_p99_ms"] <= 10),
            ("goodput / capacity", r["goodput_share"], ">= 0.9", r["goodput_share"] >= 0.9),
        ]
        lines.append(f"- {name}: " + "; ".join(
            f"{label} {value:.2f} ({target}: {'met' if ok else 'NOT met'})" for label, value, target, ok in checks))
    section = "\n".join(lines) + "\n"
    results_file = ROOT / "bench" / "RESULTS.md"
    text = results_file.read_text() if results_file.exists() else "# Benchmark results\n"
    marker = "## Overload: offered 3x capacity"
    if marker in text:
        before, _, rest = text.partition(marker)
        following = rest.find("\n## ")
        text = before + section + (rest[following + 1:] if following >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    results_file.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=20.0)
    args = parser.parse_args()
    results = {}
    try:
        for name, extra in SETTINGS.items():
            serve = Serve(SERVICE, 2, "--timeout-s", "30", *extra)
            try:
                serve.wait_ready(2, "/nap", '{"ms": 1}')
                results[name] = asyncio.run(scenario(serve.url, args.duration_s))
                print(name, {k: round(v, 3) for k, v in results[name].items()}, flush=True)
            finally:
                serve.stop()
    finally:
        for proc in STARTED:
            if proc.poll() is None:
                proc.kill()
    write_results(results, args.duration_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
