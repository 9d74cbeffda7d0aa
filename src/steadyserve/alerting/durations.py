"""Durations as the spec writes them (``"5m"``, ``"1h30m"``, ``"3d"``) and as Prometheus reads them.

The spec accepts Prometheus's duration syntax (units ``w d h m s ms``, largest first, each at
most once) or a plain number of seconds; the rule export writes seconds back in that syntax.
"""

from __future__ import annotations

import math
import re

_UNITS_S = (("w", 7 * 86400.0), ("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 0.001))
_DURATION = re.compile("".join(rf"(?:(\d+){unit})?" for unit, _ in _UNITS_S))
MAX_DURATION_S = 400 * 86400.0  # past a year: a typo, not a window


def parse_duration_s(value: object) -> float:
    """Seconds of ``"1h30m"``-style text or a number of seconds; ValueError saying what is accepted."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like '30s', '5m', '1h30m' or '3d', or a number of seconds")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        match = _DURATION.fullmatch(text)
        if not text or match is None:
            raise ValueError(f"{value!r} is not a duration; write it like '30s', '5m', '1h30m' or '3d'"
                             " (units w, d, h, m, s, ms, largest first)")
        seconds = sum(int(count) * unit_s for count, (_, unit_s) in zip(match.groups(), _UNITS_S, strict=True)
                      if count is not None)
    else:
        raise ValueError("must be a duration like '30s', '5m', '1h30m' or '3d', or a number of seconds")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} must be a duration of zero or more seconds")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r} is longer than {format_duration(MAX_DURATION_S)}")
    return seconds


def format_duration(seconds: float) -> str:
    """Prometheus duration text; rounded to whole milliseconds (the finest unit it has)."""
    remaining_ms = round(seconds * 1000)
    if remaining_ms <= 0:
        return "0s"
    parts = []
    for unit, unit_s in _UNITS_S:
        unit_ms = round(unit_s * 1000)
        count, remaining_ms = divmod(remaining_ms, unit_ms)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
