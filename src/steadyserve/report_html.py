"""The availability report as one self-contained HTML page: data, charting library and script inlined."""

from __future__ import annotations

import json
import time
from html import escape
from importlib import resources
from typing import Any


def _static(name: str) -> str:
    return resources.files("steadyserve").joinpath("static", name).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    """Script text that cannot end the <script> element it sits in."""
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _json_in_script(value: object) -> str:
    """JSON for a <script type="application/json"> element: every '<' as \\u003c (still valid JSON)."""
    return json.dumps(value).replace("<", "\\u003c")


def _maybe(value: float | None, scale: float, spec: str, unit: str) -> str:
    return "-" if value is None else format(value * scale, spec) + unit


def render_page(reports: list[dict[str, Any]]) -> str:
    period = ""
    if reports:
        start, end = (time.strftime("%Y-%m-%d %H:%M", time.localtime(reports[0][k])) for k in ("since", "until"))
        period = f"{start} .. {end}"
    rows = "".join(
        f"<tr><td>{escape(r['deployment'])}</td><td>{r['calls']:.0f}</td><td>{r['failed_calls']:.0f}</td>"
        f"<td>{_maybe(r['availability'], 100, '.3f', '%')}</td><td>{len(r['incidents'])}</td>"
        f"<td>{_maybe(r['mttr_s'], 1, '.1f', ' s')}</td><td>{_maybe(r['mtbf_s'], 1, '.0f', ' s')}</td>"
        f"<td>{r['expected_downtime_s_per_h']:.2f} s</td></tr>" for r in reports)
    incidents = "".join(
        f"<tr><td>{escape(r['deployment'])}</td><td>{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(i['start']))}"
        f"</td><td>{i['duration_s']:.0f} s</td><td>{i['failed_calls']:.0f}</td>"
        f"<td>{escape('; '.join(i['causes']) or 'no event recorded')}</td></tr>"
        for r in reports for i in r["incidents"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>steadyserve availability report {escape(period)}</title>
<style>{_static("vendor/uplot/uPlot.min.css")}
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ padding: 4px 10px; border-bottom: 1px solid #ddd; }}
.chart {{ margin: 1em 0; }}</style></head>
<body><h1>Availability report</h1><p>{escape(period)}</p>
<table><tr><th>deployment</th><th>calls</th><th>failed</th><th>availability</th><th>incidents</th><th>MTTR</th>
<th>MTBF</th><th>expected downtime per hour (D = p·E)</th></tr>{rows}</table>
<h2>Incidents</h2><table><tr><th>deployment</th><th>start</th><th>duration</th><th>failed calls</th><th>cause</th></tr>
{incidents or '<tr><td colspan="5">none</td></tr>'}</table>
<div id="reports"></div>
<script id="report-data" type="application/json">{_json_in_script(reports)}</script>
<script>{_script_safe(_static("vendor/uplot/uPlot.iife.min.js"))}</script>
<script>{_script_safe(_static("report.js"))}</script>
</body></html>
"""
