"""How a value reads in an alert, the same in our notifications and in Prometheus's.

Each unit has a Python formatter and the Go template that renders ``$value`` the same way in
an exported rule (Prometheus's ``humanizePercentage``, ``humanizeDuration``, ``humanize1024``
and ``printf``), so ``promtool test rules`` can expect our own text.
"""

from __future__ import annotations

import math
from typing import Literal

Unit = Literal["ratio", "seconds", "bytes", "count", "burn"]


def _g4(value: float) -> str:
    return f"{value:.4g}"  # Go's %.4g writes what C's does: 4 significant digits, e+NN exponents


def humanize_percentage(value: float) -> str:
    return f"{_g4(value * 100)}%"


def humanize_duration(value: float) -> str:
    """Prometheus's ``humanizeDuration``."""
    if math.isnan(value) or math.isinf(value):
        return _g4(value)
    if value == 0:
        return "0s"
    if abs(value) >= 1:
        sign = "-" if value < 0 else ""
        value = abs(value)
        whole = int(value)
        seconds, minutes, hours, days = whole % 60, whole // 60 % 60, whole // 3600 % 24, whole // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(value)}s"
    prefix = ""
    for candidate in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = candidate
        value *= 1000
    return f"{_g4(value)}{prefix}s"


def humanize_1024(value: float) -> str:
    """Prometheus's ``humanize1024``."""
    if abs(value) <= 1 or math.isnan(value) or math.isinf(value):
        return _g4(value)
    prefix = ""
    for candidate in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(value) < 1024:
            break
        prefix = candidate
        value /= 1024
    return f"{_g4(value)}{prefix}"


def format_value(unit: Unit, value: float) -> str:
    if unit == "ratio":
        return humanize_percentage(value)
    if unit == "seconds":
        return humanize_duration(value)
    if unit == "bytes":
        return f"{humanize_1024(value)}B"
    if unit == "burn":
        return f"{_g4(value)}x"
    return _g4(value)


def value_template(unit: Unit) -> str:
    """The Go template writing ``$value`` as ``format_value(unit, $value)`` does."""
    if unit == "ratio":
        return "{{ $value | humanizePercentage }}"
    if unit == "seconds":
        return "{{ $value | humanizeDuration }}"
    if unit == "bytes":
        return "{{ $value | humanize1024 }}B"
    if unit == "burn":
        return '{{ printf "%.4g" $value }}x'
    return '{{ printf "%.4g" $value }}'
