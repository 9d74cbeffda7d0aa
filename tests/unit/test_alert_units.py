"""Values read the same in our notifications as Prometheus's templates write them.

The expected texts are what promtool 2.42 rendered for these values with
humanizeDuration, humanize1024, humanizePercentage and printf "%.4g"."""

from __future__ import annotations

import pytest

from steadyserve.alerting.units import format_value, humanize_1024, humanize_duration, humanize_percentage


@pytest.mark.parametrize("value, duration, binary, percent", [
    (0.995, "995ms", "0.995", "99.5%"),
    (3725.5, "1h 2m 5s", "3.638ki", "3.726e+05%"),
    (943718400, "10922d 16h 0m 0s", "900Mi", "9.437e+10%"),
    (0.0004567, "456.7us", "0.0004567", "0.04567%"),
    (1234567, "14d 6h 56m 7s", "1.177Mi", "1.235e+08%"),
])
def test_humanizers_match_prometheus(value, duration, binary, percent):
    assert (humanize_duration(value), humanize_1024(value), humanize_percentage(value)) == (duration, binary, percent)


@pytest.mark.parametrize("unit, value, text", [
    ("ratio", 0.125, "12.5%"), ("seconds", 2.5, "2.5s"), ("seconds", 0, "0s"), ("bytes", 2 * 1024 ** 3, "2GiB"),
    ("count", 4.0, "4"), ("count", 6.000000000000001, "6"), ("burn", 28.8, "28.8x"),
])
def test_format_value_by_unit(unit, value, text):
    assert format_value(unit, value) == text
