"""Times as people write them for ``--since``: ``90s``, ``10m``, ``2h``, ``1d`` ago, or an ISO time."""

from __future__ import annotations

import datetime as dt
import re

_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_MAX_AGO_S = 100 * 365 * 86400.0


def parse_time(text: str, now: float) -> float:
    """Epoch seconds: ``10m`` is ten minutes before ``now``; ``2024-05-01T12:00`` (local time unless
    it names a zone) or a number of epoch seconds is that time. ValueError with the accepted forms."""
    text = text.strip()
    ago = _AGO.fullmatch(text)
    if ago:
        seconds = float(ago.group(1)) * _UNITS_S[ago.group(2)]
        return now - min(seconds, _MAX_AGO_S)
    try:
        return float(text) if re.fullmatch(r"\d+(?:\.\d+)?", text) else dt.datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"{text!r} is not a time: use 30s, 10m, 2h, 1d, 1w (ago),"
                         " an ISO time such as 2024-05-01T12:00, or epoch seconds") from None
