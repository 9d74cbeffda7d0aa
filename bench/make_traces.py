"""Writes the call-rate traces of examples/traces/ (for `steady simulate`), the same bytes every run.

  step.csv      2 h at 1 s: 20 calls/s, 4x (80/s) from 30 min to 90 min, back to 20/s.
  spike.csv     1 h at 1 s: 20 calls/s, 10x (200/s) for one minute at 30 min.
  periodic.csv  5 'days' of 3600 s (simulate with --season-s 3600), one row per 5 s: a base of
                10 calls/s and two peaks a day (~100/s and ~75/s), each day's amplitude varied
                (~15 %) and its peaks shifted a little (~36 s), times AR(1) noise (~10 %).

Step and spike are Poisson counts per second around their rate (integers); periodic's rates
have two decimals. A numpy Generator with a fixed seed makes each file deterministic.
Usage: python bench/make_traces.py [--out-dir examples/traces]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261124

DAY_S = 3600  # one compressed 'day'
DAYS = 5
PERIODIC_STEP_S = 5
BASE_RPS = 10.0
PEAKS = ((0.375, 1.0, 0.06), (0.79, 0.72, 0.05))  # (time of day, height, width as sd), in days
PEAK_RPS = 100.0
AMPLITUDE_SD = 0.15  # day-to-day
PHASE_SD = 0.01  # of a day
NOISE_SD = 0.10  # stationary sd of the log-noise
NOISE_PHI = 0.9  # AR(1) coefficient per row


def step_trace(rng: np.random.Generator) -> list[tuple[int, float]]:
    times = np.arange(0, 2 * 3600 + 1)
    rate = np.where((times >= 1800) & (times < 5400), 80.0, 20.0)
    return list(zip(times.tolist(), rng.poisson(rate).astype(float).tolist(), strict=True))


def spike_trace(rng: np.random.Generator) -> list[tuple[int, float]]:
    times = np.arange(0, 3600 + 1)
    rate = np.where((times >= 1800) & (times < 1860), 200.0, 20.0)
    return list(zip(times.tolist(), rng.poisson(rate).astype(float).tolist(), strict=True))


def periodic_trace(rng: np.random.Generator) -> list[tuple[int, float]]:
    times = np.arange(0, DAYS * DAY_S + 1, PERIODIC_STEP_S)
    amplitude = np.clip(1.0 + AMPLITUDE_SD * rng.standard_normal(DAYS + 1), 0.6, 1.4)
    shift = PHASE_SD * rng.standard_normal(DAYS + 1)
    day = times // DAY_S
    phase = (times % DAY_S) / DAY_S - shift[day]
    shape = np.zeros(len(times))
    for centre, height, width in PEAKS:
        distance = (phase - centre + 0.5) % 1.0 - 0.5  # wraps around midnight
        shape += height * np.exp(-0.5 * (distance / width) ** 2)
    innovation = NOISE_SD * np.sqrt(1 - NOISE_PHI ** 2) * rng.standard_normal(len(times))
    noise = np.zeros(len(times))
    noise[0] = NOISE_SD * rng.standard_normal()
    for i in range(1, len(times)):
        noise[i] = NOISE_PHI * noise[i - 1] + innovation[i]
    rate = (BASE_RPS + (PEAK_RPS - BASE_RPS) * amplitude[day] * shape) * np.exp(noise - NOISE_SD ** 2 / 2)
    return list(zip(times.tolist(), np.round(rate, 2).tolist(), strict=True))


def csv_text(rows: Iterable[tuple[int, float]]) -> str:
    return "time,rate\n" + "".join(f"{t},{rate:g}\n" for t, rate in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "examples" / "traces")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    # One generator per trace: changing one trace leaves the others' bytes as they are.
    for offset, (name, make) in enumerate((("step", step_trace), ("spike", spike_trace),
                                           ("periodic", periodic_trace))):
        path = args.out_dir / f"{name}.csv"
        path.write_text(csv_text(make(np.random.default_rng(SEED + offset))), encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
