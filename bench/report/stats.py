"""Figures from HdrHistograms without resampling: the recorded values as bins, ranks, and
distribution-free confidence intervals of percentiles.

A cometbench histogram (``bench/metrics.py``) keeps every recorded value to 3 significant digits,
so its non-zero buckets *are* the sorted sample (each bucket's value repeated ``count`` times).
Everything here walks those buckets once; nothing draws random numbers, so the same run always
gives the same figures.

**Confidence interval of a percentile** (:func:`percentile_ci`) -- the order-statistic interval: for
``n`` values and the quantile ``q``, the number of values below the true quantile is Binomial(n, q),
so the values at ranks ``n q - z sqrt(n q (1-q))`` and ``n q + z sqrt(n q (1-q)) + 1`` (normal
approximation of the binomial, z = 1.96 for 95 %) bracket the true quantile with that confidence.
It needs no assumption about the shape of the distribution (latencies are skewed and multi-modal),
and it is exact from the counts.  When a bound falls outside ``1..n`` the sample is too small for
that percentile (p99 of 50 values, say): the interval is open on that side and no difference
involving that bound is called significant.  ``docs/decisions.md`` says why :mod:`bench.report.diff`
uses it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

__all__ = ["bins", "value_at_rank", "percentile_ci", "Interval", "Z95", "percentile_ms", "mean_ms"]

Z95 = 1.959963984540054


def bins(histogram: HdrHistogram) -> list[tuple[int, int]]:
    """``(value_us, count)`` of every non-zero bucket in ascending order; the value is the highest
    equivalent value of the bucket (what ``get_value_at_percentile`` reports)."""
    out: list[tuple[int, int]] = []
    limit = min(histogram.counts_len, histogram.encoder.payload.counts_len)
    counts = histogram.counts
    for index in range(limit):
        count = counts[index]
        if count:
            out.append((histogram.get_highest_equivalent_value(histogram.get_value_from_index(index)), count))
    return out


def value_at_rank(sorted_bins: list[tuple[int, int]], rank: int) -> int:
    """The value of the ``rank``-th smallest recorded value (1-based)."""
    running = 0
    for value, count in sorted_bins:
        running += count
        if running >= rank:
            return value
    raise IndexError(f"rank {rank} beyond {running} values")


def _rank(total: int, percentile: float) -> int:
    return max(1, min(total, int(min(percentile, 100.0) * total / 100 + 0.5)))


def percentile_ms(sorted_bins: list[tuple[int, int]], percentile: float) -> float | None:
    total = sum(c for _, c in sorted_bins)
    if not total:
        return None
    return value_at_rank(sorted_bins, _rank(total, percentile)) / 1000.0


def mean_ms(sorted_bins: list[tuple[int, int]]) -> float | None:
    total = sum(c for _, c in sorted_bins)
    if not total:
        return None
    return sum(v * c for v, c in sorted_bins) / total / 1000.0


@dataclass(frozen=True)
class Interval:
    """A percentile's point value and its confidence interval, in milliseconds.  ``low``/``high``
    are None when the sample is too small for that side of the interval."""

    point: float
    low: float | None
    high: float | None
    n: int

    def as_json(self) -> dict:
        return {"value": self.point, "low": self.low, "high": self.high, "n": self.n}


def percentile_ci(sorted_bins: list[tuple[int, int]], percentile: float, z: float = Z95) -> Interval | None:
    """The percentile and its order-statistic confidence interval (see the module docstring)."""
    n = sum(c for _, c in sorted_bins)
    if not n:
        return None
    q = min(max(percentile / 100.0, 0.0), 1.0)
    spread = z * math.sqrt(n * q * (1.0 - q))
    lo_rank = math.floor(n * q - spread)
    hi_rank = math.ceil(n * q + spread) + 1
    point = value_at_rank(sorted_bins, _rank(n, percentile)) / 1000.0
    low = value_at_rank(sorted_bins, lo_rank) / 1000.0 if lo_rank >= 1 else None
    high = value_at_rank(sorted_bins, hi_rank) / 1000.0 if hi_rank <= n else None
    return Interval(point, low, high, n)


def log_buckets(sorted_bins: Iterable[tuple[int, int]], count: int = 32) -> list[tuple[float, float, int]]:
    """The values regrouped into ``count`` buckets of equal width on a log scale, for a chart:
    ``(low_ms, high_ms, values)``.  Zeros (stages that took no time) go into the first bucket."""
    data = [(max(v, 1), c) for v, c in sorted_bins]
    if not data:
        return []
    lo, hi = data[0][0], data[-1][0]
    if hi <= lo:
        return [(lo / 1000.0, hi / 1000.0, sum(c for _, c in data))]
    llo, lhi = math.log(lo), math.log(hi)
    width = (lhi - llo) / count
    out = [[math.exp(llo + i * width) / 1000.0, math.exp(llo + (i + 1) * width) / 1000.0, 0] for i in range(count)]
    for value, c in data:
        i = min(count - 1, int((math.log(value) - llo) / width))
        out[i][2] += c
    return [(a, b, int(c)) for a, b, c in out]
