"""Comparing two runs stage by stage: ``cometbench diff RUN_A RUN_B`` and ``report --baseline``.

RUN_A is the baseline, RUN_B the candidate.  For every stage both runs measured and every compared
percentile (p50, p90, p99 by default) the verdict is one of:

* ``regression`` -- B is slower than A by more than the tolerance (``--tolerance``, 10 % by default,
  and at least ``--min-delta`` ms, 1 ms by default, so that a stage of 0.2 ms moving to 0.3 ms is not
  news) **and** the difference is beyond noise;
* ``improvement`` -- the same the other way;
* ``noise`` -- the point values differ by more than the tolerance but the confidence intervals of the
  two percentiles overlap: the runs are too small (or too variable) to tell;
* ``same`` -- within the tolerance;
* ``insufficient`` -- one side has no values of that stage.

**Noise** is judged from the histograms themselves, not from resampling: each percentile gets its
95 % distribution-free confidence interval from the order statistics of its run's recorded values
(:func:`bench.report.stats.percentile_ci`), and a difference counts only when the two intervals do
not overlap.  Non-overlap of two 95 % intervals is a stricter test than a 5 % two-sample test
(about 0.5 % for equal spreads), so a flagged regression is a real one; the price is that a small
shift in a small run stays "noise" -- run more repetitions (``--repeat``) to resolve it.  A side
whose sample is too small for an interval (p99 of fewer than ~100 values) cannot show a
significant difference at that percentile.  The reasons are in docs/decisions.md.

Both runs' histograms are compared as a whole (every scenario of the run merged), or one
scenario's with ``--scenario``.  ``cometbench diff`` exits 1 when there is a regression, 0 when
not, and 2 for a usage error (a run directory that cannot be read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.metrics import Metrics
from bench.report import stats

__all__ = ["DiffSettings", "StageDiff", "compare", "diff_json", "diff_lines", "DEFAULT_PERCENTILES"]

DEFAULT_PERCENTILES = (50.0, 90.0, 99.0)


@dataclass
class DiffSettings:
    tolerance: float = 10.0              # percent
    min_delta_ms: float = 1.0
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES
    scenario: str | None = None


@dataclass
class StageDiff:
    stage: str
    percentile: float
    a: stats.Interval | None
    b: stats.Interval | None
    verdict: str
    delta_ms: float | None = None
    delta_pct: float | None = None
    why: str = ""

    @property
    def label(self) -> str:
        return f"p{self.percentile:g}"

    def as_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "percentile": self.percentile, "verdict": self.verdict,
                "a": self.a.as_json() if self.a else None, "b": self.b.as_json() if self.b else None,
                "delta_ms": self.delta_ms, "delta_pct": self.delta_pct, "why": self.why}


def _judge(stage: str, p: float, a: stats.Interval | None, b: stats.Interval | None,
           settings: DiffSettings) -> StageDiff:
    if a is None or b is None:
        return StageDiff(stage, p, a, b, "insufficient", why=f"no values in run {'A' if a is None else 'B'}")
    delta = b.point - a.point
    pct = (100.0 * delta / a.point) if a.point else (0.0 if delta == 0 else float("inf"))
    out = StageDiff(stage, p, a, b, "same", round(delta, 3), round(pct, 2) if pct != float("inf") else None)
    if abs(delta) <= settings.min_delta_ms or abs(pct) <= settings.tolerance:
        out.why = f"within the tolerance ({settings.tolerance:g} %, {settings.min_delta_ms:g} ms)"
        return out
    slower = delta > 0
    # beyond noise only when the intervals are known on the facing sides and do not overlap
    if slower:
        separated = a.high is not None and b.low is not None and b.low > a.high
    else:
        separated = a.low is not None and b.high is not None and b.high < a.low
    if not separated:
        out.verdict = "noise"
        small = (a.high is None or b.low is None) if slower else (a.low is None or b.high is None)
        out.why = ("too few values for a confidence interval at this percentile" if small else
                   "the 95 % confidence intervals overlap")
        return out
    out.verdict = "regression" if slower else "improvement"
    out.why = "the 95 % confidence intervals do not overlap"
    return out


def compare(a: Metrics, b: Metrics, settings: DiffSettings | None = None) -> list[StageDiff]:
    """Every stage either run measured, at every compared percentile (see the module docstring)."""
    settings = settings or DiffSettings()
    stages = sorted({k.stage for k in a.histograms} | {k.stage for k in b.histograms}, key=_stage_order)
    out: list[StageDiff] = []
    for stage in stages:
        bins_a = stats.bins(a.merged(stage=stage, scenario=settings.scenario))
        bins_b = stats.bins(b.merged(stage=stage, scenario=settings.scenario))
        for p in settings.percentiles:
            out.append(_judge(stage, p, stats.percentile_ci(bins_a, p), stats.percentile_ci(bins_b, p), settings))
    return out


def _stage_order(stage: str) -> tuple[int, str]:
    from bench.report.thresholds import KNOWN_STAGES

    return (KNOWN_STAGES.index(stage), stage) if stage in KNOWN_STAGES else (len(KNOWN_STAGES), stage)


def diff_json(diffs: list[StageDiff], settings: DiffSettings, a_name: str, b_name: str) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for d in diffs:
        counts[d.verdict] = counts.get(d.verdict, 0) + 1
    return {"a": a_name, "b": b_name, "tolerance_pct": settings.tolerance, "min_delta_ms": settings.min_delta_ms,
            "percentiles": list(settings.percentiles), "scenario": settings.scenario,
            "regressions": counts.get("regression", 0), "improvements": counts.get("improvement", 0),
            "verdicts": counts, "stages": [d.as_json() for d in diffs]}


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _ci(i: stats.Interval | None) -> str:
    if i is None:
        return "-"
    return f"[{_ms(i.low) if i.low is not None else '?'}, {_ms(i.high) if i.high is not None else '?'}]"


def diff_lines(diffs: list[StageDiff], settings: DiffSettings, a_name: str, b_name: str,
               show_all: bool = False) -> list[str]:
    """A plain-text table (stage, percentile, A, B, change, verdict) and a verdict line."""
    rows = [d for d in diffs if show_all or d.verdict != "same"]
    lines = [f"A (baseline) {a_name}", f"B (candidate) {b_name}",
             f"tolerance {settings.tolerance:g} % and {settings.min_delta_ms:g} ms; noise: 95 % confidence "
             f"intervals of each percentile (order statistics of the recorded values)"]
    header = ("stage", "pct", "A ms", "A 95% CI", "B ms", "B 95% CI", "change", "verdict")
    table = [header]
    for d in rows:
        change = "-" if d.delta_ms is None else (f"{d.delta_ms:+.1f} ms" + (f" ({d.delta_pct:+.1f} %)"
                                                                          if d.delta_pct is not None else ""))
        table.append((d.stage, d.label, _ms(d.a.point if d.a else None), _ci(d.a), _ms(d.b.point if d.b else None),
                      _ci(d.b), change, d.verdict.upper() if d.verdict == "regression" else d.verdict))
    if len(table) > 1:
        widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
        for r in table:
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    same = sum(1 for d in diffs if d.verdict == "same")
    if not show_all and same:
        lines.append(f"({same} stage percentiles within the tolerance not shown; --all shows them)")
    regressions = [d for d in diffs if d.verdict == "regression"]
    if regressions:
        lines.append(f"{len(regressions)} regression{'s' if len(regressions) != 1 else ''}: "
                     + ", ".join(f"{d.label}({d.stage})" for d in regressions))
    else:
        noise = sum(1 for d in diffs if d.verdict == "noise")
        lines.append("no regression" + (f" ({noise} difference{'s' if noise != 1 else ''} within noise)"
                                         if noise else ""))
    return lines
