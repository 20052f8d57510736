"""Join-latency metrics: one HdrHistogram per (stage, scenario, network profile), one fixed setting.

Every latency stage an actor observes (docs/stages.md: ``backend_invite`` ... ``join_total``,
``system``) and every stage a story measures itself (``s.measure``) is recorded here, in
microseconds, into an HdrHistogram (the ``hdrhistogram`` package) keyed by stage, scenario and
network profile.

**One setting for everything** -- values in microseconds from 1 us to 1 hour, 3 significant
digits (:data:`LOWEST_US`, :data:`HIGHEST_US`, :data:`SIGNIFICANT_DIGITS`).  Histograms can only be
added exactly when they share it, so logs written on several machines (or by several runs) merge
bin for bin later (:meth:`Metrics.read_log`, :meth:`Metrics.merge`).  A value above an hour is
clamped and counted in :attr:`Metrics.clamped`; below 1 us (a stage that took no time, such as the
``decision`` of an auto-accepting page) it is recorded as 0.

**No coordinated omission** -- latencies start at the *intended* start: ``join_total`` runs from
``backend_invite_start``, which is the moment a schedule fixed for the click (``join(at=...)``) even
when the bench got to it late, so a storm or a repeated run counts its own lateness.

**The log** -- :meth:`Metrics.write_log` writes the HdrHistogram log format (the package's
``HistogramLogWriter`` interval lines, readable by ``HistogramLogReader`` and the Java/Go/JS
HdrHistogram tools), one interval per histogram with a ``Tag=`` naming it:
``stage=join_total;scenario=refresh_mid_call;network=loopback`` (tags may not hold commas or
spaces).  The interval's max column is in whole milliseconds (max_value_unit_ratio 1000).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader, HistogramLogWriter

__all__ = ["LOWEST_US", "HIGHEST_US", "SIGNIFICANT_DIGITS", "PERCENTILES", "Key", "Metrics", "new_histogram",
           "summarize", "percentile_values"]

LOWEST_US = 1
HIGHEST_US = 3_600_000_000          # one hour
SIGNIFICANT_DIGITS = 3
PERCENTILES = (50, 90, 95, 99)
LOG_FORMAT_VERSION = "1.3"          # the version that added Tag= (HdrHistogram's HistogramLogWriter)
SETTINGS = {"unit": "us", "lowest": LOWEST_US, "highest": HIGHEST_US, "significant_digits": SIGNIFICANT_DIGITS}


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


@dataclass(frozen=True, order=True)
class Key:
    stage: str
    scenario: str
    network: str

    @property
    def tag(self) -> str:
        return f"stage={self.stage};scenario={self.scenario};network={self.network}"

    @classmethod
    def from_tag(cls, tag: str) -> Key:
        fields = dict(part.split("=", 1) for part in tag.split(";") if "=" in part)
        try:
            return cls(fields["stage"], fields["scenario"], fields["network"])
        except KeyError:
            raise ValueError(f"not a cometbench histogram tag: {tag!r}") from None

    def __post_init__(self) -> None:
        for name in (self.stage, self.scenario, self.network):
            if not name or any(c in name for c in ",; \t\n="):
                raise ValueError(f"a stage, scenario or network name cannot be empty or hold , ; = or blanks: "
                                 f"{name!r}")


def percentile_values(histogram: HdrHistogram, percentiles: Iterable[float] = PERCENTILES) -> dict[float, int]:
    """Value at each percentile, as ``get_value_at_percentile`` gives it (the highest value
    equivalent to the bucket where the cumulative count reaches the percentile), in one pass over
    the counts with no per-index method calls: the package's own loop costs seconds for a report."""
    total = histogram.get_total_count()
    wanted = sorted(set(percentiles))
    if total == 0:
        return {p: 0 for p in wanted}
    targets = [max(1, int(min(p, 100.0) * total / 100 + 0.5)) for p in wanted]
    out: dict[float, int] = {}
    running, i = 0, 0
    limit = min(histogram.counts_len, histogram.encoder.payload.counts_len)
    counts = histogram.counts
    lowest = histogram.get_min_value()     # every count below it is 0: start there (a report sums dozens)
    start = histogram._counts_index_for(lowest) if 0 < lowest < histogram.highest_trackable_value else 0
    for index in range(max(0, min(start, limit)), limit):
        count = counts[index]
        if not count:
            continue
        running += count
        while i < len(wanted) and running >= targets[i]:
            out[wanted[i]] = histogram.get_highest_equivalent_value(histogram.get_value_from_index(index))
            i += 1
        if i == len(wanted):
            break
    return out


def summarize(histogram: HdrHistogram) -> dict[str, float | int]:
    """count, min, p50, p90, p95, p99, max in milliseconds (3 decimals)."""
    count = histogram.get_total_count()
    if count == 0:
        return {"count": 0}
    ms = lambda us: round(us / 1000.0, 3)  # noqa: E731
    out: dict[str, float | int] = {"count": count, "min": ms(histogram.get_min_value())}
    values = percentile_values(histogram, PERCENTILES)
    for p in PERCENTILES:
        out[f"p{p}"] = ms(values[p])
    out["max"] = ms(histogram.get_max_value())
    return out


class Metrics:
    """The histograms of one run (or of several merged logs)."""

    def __init__(self) -> None:
        self.histograms: dict[Key, HdrHistogram] = {}
        self.clamped = 0
        # summaries are cached until a histogram they cover changes: a run rewrites its report after
        # every scenario, and only that scenario's histograms (and the totals) change
        self._changes = 0
        self._scenario_changes: dict[str, int] = {}
        self._summaries: dict[tuple[str | None, str | None], tuple[int, dict]] = {}

    def _changed(self, scenario: str) -> None:
        self._changes += 1
        self._scenario_changes[scenario] = self._changes

    def add(self, stage: str, ms: float, *, scenario: str, network: str) -> None:
        key = Key(stage, scenario, network)
        histogram = self.histograms.get(key)
        if histogram is None:
            histogram = self.histograms[key] = new_histogram()
        us = round(ms * 1000.0)
        if us < 0:
            us = 0
        if us > HIGHEST_US:
            us = HIGHEST_US
            self.clamped += 1
        histogram.record_value(us)
        self._changed(scenario)

    def add_stages(self, stages: Mapping[str, float], *, scenario: str, network: str) -> None:
        for stage, ms in stages.items():
            self.add(stage, ms, scenario=scenario, network=network)

    def stages(self) -> list[str]:
        return sorted({key.stage for key in self.histograms})

    def merged(self, *, stage: str | None = None, scenario: str | None = None, network: str | None = None
               ) -> HdrHistogram:
        """The sum of the histograms matching the given names."""
        total = new_histogram()
        for key, histogram in self.histograms.items():
            if ((stage is None or key.stage == stage) and (scenario is None or key.scenario == scenario)
                    and (network is None or key.network == network)):
                total.add(histogram)
        return total

    def summary(self, *, scenario: str | None = None, network: str | None = None) -> dict[str, dict]:
        """Stage -> :func:`summarize` over the histograms matching ``scenario`` / ``network``."""
        stamp = self._changes if scenario is None else self._scenario_changes.get(scenario, 0)
        cached = self._summaries.get((scenario, network))
        if cached is not None and cached[0] == stamp:
            return {stage: dict(values) for stage, values in cached[1].items()}
        stages = sorted({k.stage for k in self.histograms if (scenario is None or k.scenario == scenario)
                         and (network is None or k.network == network)})
        result = {stage: summarize(self.merged(stage=stage, scenario=scenario, network=network)) for stage in stages}
        self._summaries[(scenario, network)] = (stamp, result)
        return {stage: dict(values) for stage, values in result.items()}

    def merge(self, other: Metrics) -> None:
        for key, histogram in other.histograms.items():
            mine = self.histograms.get(key)
            if mine is None:
                mine = self.histograms[key] = new_histogram()
            mine.add(histogram)
            self._changed(key.scenario)
        self.clamped += other.clamped

    # -- the HdrHistogram log --------------------------------------------------------------------------
    def write_log(self, path: str | Path, *, start: float | None = None, end: float | None = None,
                  comment: str = "") -> None:
        """Every histogram as one tagged interval (``start``/``end``: Unix seconds of the run)."""
        end = time.time() if end is None else end
        start = end if start is None else start
        with open(path, "w", encoding="utf-8") as out:
            out.write(self.log_text(start=start, end=end, comment=comment))

    def log_text(self, *, start: float, end: float, comment: str = "") -> str:
        buffer = io.StringIO()
        writer = HistogramLogWriter(buffer)
        writer.output_comment(f"[Histogram log format version {LOG_FORMAT_VERSION}]")
        # the StartTime is rounded *down* to the millisecond: a reader skips intervals that start
        # before it (rounded up, half the logs read back empty)
        writer.output_comment(f"[StartTime: {math.floor(start * 1000) / 1000:.3f} (seconds since epoch), "
                              f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(start))}]")
        writer.output_comment(f"[cometbench: values in microseconds, {LOWEST_US}..{HIGHEST_US}, "
                              f"{SIGNIFICANT_DIGITS} significant digits; Tag = stage;scenario;network]")
        if comment:
            writer.output_comment(f"[{comment}]")
        writer.output_legend()
        for key in sorted(self.histograms):
            histogram = self.histograms[key]
            histogram.set_start_time_stamp(int(start * 1000))
            histogram.set_end_time_stamp(int(end * 1000))
            buffer.write(f"Tag={key.tag},")
            writer.output_interval_histogram(histogram, start_time_stamp_sec=start, end_time_stamp_sec=end,
                                             max_value_unit_ratio=1000.0)
        return buffer.getvalue()

    @classmethod
    def read_log(cls, paths: str | Path | Iterable[str | Path]) -> Metrics:
        """The histograms of one or more logs, added together by tag (several machines, one run)."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        metrics = cls()
        for path in paths:
            reader = HistogramLogReader(str(path), new_histogram())
            while True:
                # every interval, whatever its start relative to the log's StartTime (logs written
                # before the StartTime was rounded down can start a fraction of a millisecond before it)
                histogram = reader.get_next_interval_histogram(range_start_time_sec=-1e12)
                if histogram is None:
                    break
                tag = histogram.get_tag()
                if not tag:
                    raise ValueError(f"{path}: an interval without a Tag= (not written by cometbench)")
                key = Key.from_tag(tag)
                mine = metrics.histograms.get(key)
                if mine is None:
                    mine = metrics.histograms[key] = new_histogram()
                mine.add(histogram)
                metrics._changed(key.scenario)
            reader.close()
        return metrics
