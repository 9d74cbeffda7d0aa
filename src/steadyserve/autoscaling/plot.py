"""Charts of simulation results: load, capacity and replicas over time, one chart per policy.

    html = render_html(results, title="periodic.csv", rows=[("scale events", ["208", "316"])])
    Path("sim.html").write_text(html, encoding="utf-8")     # inline SVG: no script, no network
    png = render_png(results, title="periodic.csv")          # bytes; needs matplotlib (optional)

Pure functions of the ``Result`` series (time, load, capacity, replicas): the same results give
the same bytes. Calls over capacity (load above what the ready replicas serve) are shaded red.
"""

from __future__ import annotations

import importlib.util
import io
import math
from collections.abc import Sequence
from html import escape

from ..errors import ConfigError
from .simulate import Result

WIDTH = 960
LEFT, RIGHT, TOP, GAP, BOTTOM = 64, 16, 28, 34, 34  # margins of the panels, in px
LOAD_H, REPLICAS_H = 240, 110  # panel heights, in px
COLOURS = {"load": "#3b6fb6", "capacity": "#2e9e5b", "over": "#d6453d", "replicas": "#7a4fb0"}
Point = tuple[float, float, float, int]  # Result.series: (time, load, capacity, replicas)


def png_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


# --- scales and ticks -------------------------------------------------------------------------
def nice_ticks(high: float, count: int = 6) -> list[float]:
    """0 and round steps (1, 2, 5 x 10^k) up to at least ``high``."""
    if high <= 0 or not math.isfinite(high):
        return [0.0, 1.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(high / step - 1e-9) + 1)]


def time_unit(span_s: float) -> tuple[str, float]:
    """The unit a time axis of this span reads best in: (name, seconds per unit)."""
    if span_s <= 600:
        return "s", 1.0
    if span_s <= 3 * 3600:
        return "min", 60.0
    return "h", 3600.0


def _number(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.3g}"


class _Frame:
    """Maps (time, value) to pixels within one panel."""

    def __init__(self, t0: float, t1: float, top: float, height: float, y_high: float) -> None:
        self.t0, self.span = t0, max(t1 - t0, 1e-9)
        self.top, self.height, self.y_high = top, height, max(y_high, 1e-9)

    def x(self, t: float) -> float:
        return round(LEFT + (t - self.t0) / self.span * (WIDTH - LEFT - RIGHT), 1)

    def y(self, value: float) -> float:
        return round(self.top + self.height * (1 - value / self.y_high), 1)


# --- SVG ------------------------------------------------------------------------------------------
def _step_path(frame: _Frame, times: Sequence[float], values: Sequence[float], end: float) -> str:
    """A value held until the next point (as the simulator holds it)."""
    if not times:
        return ""
    parts = [f"M{frame.x(times[0])},{frame.y(values[0])}"]
    for i in range(1, len(times)):
        parts.append(f"H{frame.x(times[i])}V{frame.y(values[i])}")
    parts.append(f"H{frame.x(end)}")
    return "".join(parts)


def _over_path(frame: _Frame, series: Sequence[Point], end: float) -> str:
    """Rectangles between capacity and load wherever the load is above it."""
    parts = []
    for i, (t, load, capacity, _) in enumerate(series):
        if load > capacity:
            right = series[i + 1][0] if i + 1 < len(series) else end
            parts.append(f"M{frame.x(t)},{frame.y(capacity)}H{frame.x(right)}V{frame.y(load)}H{frame.x(t)}Z")
    return "".join(parts)


def _axes(frame: _Frame, y_ticks: Sequence[float], label: str, x_ticks: Sequence[float], unit: tuple[str, float],
          x_labels: bool) -> list[str]:
    out = []
    left, right = LEFT, WIDTH - RIGHT
    bottom = frame.top + frame.height
    for tick in y_ticks:
        y = frame.y(tick)
        out.append(f'<line x1="{left}" y1="{y}" x2="{right}" y2="{y}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{_number(tick)}</text>')
    for tick in x_ticks:
        x = frame.x(tick)
        out.append(f'<line x1="{x}" y1="{frame.top}" x2="{x}" y2="{bottom}" stroke="#f0f0f0"/>')
        if x_labels:
            out.append(f'<text x="{x}" y="{bottom + 16}" text-anchor="middle">'
                       f'{_number((tick - frame.t0) / unit[1])}</text>')
    out.append(f'<rect x="{left}" y="{frame.top}" width="{right - left}" height="{frame.height}" fill="none"'
               ' stroke="#999"/>')
    out.append(f'<text x="{left}" y="{frame.top - 8}" font-weight="bold">{escape(label)}</text>')
    return out


def _legend(x: float, y: float, items: Sequence[tuple[str, str]]) -> list[str]:
    out = []
    for name, colour in items:
        out.append(f'<rect x="{x}" y="{y - 9}" width="14" height="10" fill="{colour}"/>')
        out.append(f'<text x="{x + 18}" y="{y}">{escape(name)}</text>')
        x += 26 + 7 * len(name)
    return out


def render_svg(result: Result, t_range: tuple[float, float], load_high: float, replicas_high: int) -> str:
    """One policy's chart: calls/s (load, capacity, over capacity) above replicas; shared scales
    (``t_range``, ``load_high``, ``replicas_high``) make the policies' charts comparable."""
    t0, t1 = t_range
    series = result.series
    times = [p[0] for p in series]
    unit = time_unit(t1 - t0)
    x_ticks = [t0 + tick * unit[1] for tick in nice_ticks((t1 - t0) / unit[1], 10) if tick * unit[1] <= t1 - t0]
    load_ticks = nice_ticks(load_high)
    replica_ticks = [t for t in nice_ticks(replicas_high, 4) if t == int(t)]
    top = _Frame(t0, t1, TOP, LOAD_H, load_ticks[-1])
    low = _Frame(t0, t1, TOP + LOAD_H + GAP, REPLICAS_H, replica_ticks[-1])
    height = TOP + LOAD_H + GAP + REPLICAS_H + BOTTOM
    body = [*_axes(top, load_ticks, f"{result.policy}: calls/s", x_ticks, unit, x_labels=False),
            *_axes(low, replica_ticks, "replicas (asked for)", x_ticks, unit, x_labels=True)]
    body.append(f'<path d="{_over_path(top, series, t1)}" fill="{COLOURS["over"]}" fill-opacity="0.55"/>')
    body.append(f'<path d="{_step_path(top, times, [p[1] for p in series], t1)}" fill="none"'
                f' stroke="{COLOURS["load"]}" stroke-width="1"/>')
    body.append(f'<path d="{_step_path(top, times, [p[2] for p in series], t1)}" fill="none"'
                f' stroke="{COLOURS["capacity"]}" stroke-width="1.5"/>')
    body.append(f'<path d="{_step_path(low, times, [float(p[3]) for p in series], t1)}" fill="none"'
                f' stroke="{COLOURS["replicas"]}" stroke-width="1.5"/>')
    body += _legend(LEFT + 220, TOP - 8, [("load", COLOURS["load"]), ("capacity (ready replicas)",
                                                                     COLOURS["capacity"]),
                                          ("over capacity", COLOURS["over"])])
    body.append(f'<text x="{WIDTH - RIGHT}" y="{height - 4}" text-anchor="end">time ({unit[0]})</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}"'
            f' viewBox="0 0 {WIDTH} {height}" font-family="system-ui, sans-serif" font-size="12"'
            f' role="img" aria-label="{escape(result.policy)}: load, capacity and replicas over time">'
            + "".join(body) + "</svg>")


def shared_scales(results: Sequence[Result]) -> tuple[tuple[float, float], float, int]:
    """Time range, highest calls/s and most replicas over all the results' series."""
    points = [p for r in results for p in r.series]
    if not points:
        return (0.0, 1.0), 1.0, 1
    t0 = min(p[0] for p in points)
    t1 = max(max(p[0] for p in points), max((t0 + r.duration_s for r in results), default=t0))
    load_high = max(max(p[1], p[2]) for p in points)
    replicas_high = max(max(p[3] for p in points), max(r.peak_replicas for r in results))
    return (t0, t1), load_high, max(1, replicas_high)


def render_html(results: Sequence[Result], title: str,
                rows: Sequence[tuple[str, Sequence[str]]] = ()) -> str:
    """A self-contained page: the comparison table (``rows``: label, one text per result) and one
    chart per result."""
    t_range, load_high, replicas_high = shared_scales(results)
    head = "".join(f"<th>{escape(r.policy)}</th>" for r in results)
    table_rows = "".join(f"<tr><th>{escape(label)}</th>" + "".join(f"<td>{escape(v)}</td>" for v in values)
                         + "</tr>" for label, values in rows)
    table = f"<table><tr><th></th>{head}</tr>{table_rows}</table>" if rows else ""
    charts = "".join(f"<h2>{escape(r.policy)}</h2>{render_svg(r, t_range, load_high, replicas_high)}"
                     for r in results)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>steady simulate: {escape(title)}</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }}
th:first-child {{ text-align: left; }} svg {{ max-width: 100%; height: auto; }}</style></head>
<body><h1>steady simulate: {escape(title)}</h1>{table}{charts}
</body></html>
"""


# --- PNG (matplotlib, optional) ---------------------------------------------------------------------
def render_png(results: Sequence[Result], title: str) -> bytes:
    """The same charts as one PNG; matplotlib is not a dependency of steadyserve."""
    if not png_available():
        raise ConfigError("a .png plot needs matplotlib (pip install matplotlib); or write an .html file")
    import matplotlib  # type: ignore[import-not-found,unused-ignore]

    matplotlib.use("Agg")  # no display needed
    from matplotlib import pyplot as plt  # type: ignore[import-not-found,unused-ignore]

    t_range, load_high, replicas_high = shared_scales(results)
    unit = time_unit(t_range[1] - t_range[0])
    fig, axes = plt.subplots(2 * len(results), 1, figsize=(12, 4.2 * len(results)), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [2.2, 1] * len(results)})
    try:
        for i, result in enumerate(results):
            load_ax, replicas_ax = axes[2 * i][0], axes[2 * i + 1][0]
            times = [(p[0] - t_range[0]) / unit[1] for p in result.series]
            load = [p[1] for p in result.series]
            capacity = [p[2] for p in result.series]
            load_ax.step(times, load, where="post", color=COLOURS["load"], linewidth=0.8, label="load")
            load_ax.step(times, capacity, where="post", color=COLOURS["capacity"], linewidth=1.2,
                         label="capacity (ready replicas)")
            load_ax.fill_between(times, capacity, load, where=[a > c for a, c in zip(load, capacity, strict=True)],
                                 step="post", color=COLOURS["over"], alpha=0.55, label="over capacity")
            load_ax.set_ylim(0, load_high * 1.05)
            load_ax.set_ylabel("calls/s")
            load_ax.set_title(result.policy, loc="left", fontweight="bold")
            load_ax.legend(loc="upper right", fontsize="small")
            replicas_ax.step(times, [p[3] for p in result.series], where="post", color=COLOURS["replicas"])
            replicas_ax.set_ylim(0, replicas_high * 1.1)
            replicas_ax.set_ylabel("replicas")
        axes[-1][0].set_xlabel(f"time ({unit[0]})")
        fig.suptitle(f"steady simulate: {title}")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()
    finally:
        plt.close(fig)
