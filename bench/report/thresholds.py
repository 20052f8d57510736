"""Thresholds: limits a run must keep, from a small TOML file (``--thresholds FILE``).

The file holds a list of limits, one sentence each, and may add limits for single scenarios::

    # thresholds.toml
    limits = [
        "p99(join_total) < 8 s",
        "p50(call_setup) <= 300 ms",
        "max(push) < 1 s",
        "failure_rate < 1 %",
    ]

    [scenario.two_party_call]
    limits = ["p90(join_total) < 2 s"]

    measures = ["restore"]        # stages of your own (s.measure) that limits may name

A limit is ``STATISTIC(STAGE) OPERATOR NUMBER UNIT``:

* ``STATISTIC`` -- ``min``, ``max``, ``mean``, ``count`` or a percentile ``pNN`` (``p50``, ``p99``,
  ``p99.9``: any number from 0 to 100), computed from the run's HdrHistograms;
* ``STAGE`` -- a stage of docs/stages.md (``join_total``, ``system``, ``call_setup``, ...) or one
  named in ``measures``; a name that is neither is an error (with a suggestion), so a typo cannot
  make a limit that never fires;
* ``OPERATOR`` -- ``<``, ``<=``, ``>`` or ``>=``;
* ``UNIT`` -- ``us``, ``ms``, ``s`` or ``min`` for latencies; none for ``count``.

Two run-level limits need no stage: ``failure_rate OP NUMBER %`` (failed or interrupted scenario
runs out of those that ran, in percent) and ``failures OP NUMBER`` (their count).

A limit on a stage that has no values in the run (no join finished) is **breached**, with the
reason "no values": a gate must not pass because nothing was measured.

A breach makes ``cometbench run`` and ``cometbench report`` exit with status 3 (1 wins when a
scenario failed as well); every report shows it: a banner in report.html, ``thresholds`` in
report.json, one JUnit test case per limit.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.metrics import Metrics
from bench.report import stats

__all__ = ["Limit", "Thresholds", "ThresholdError", "load_thresholds", "parse_limit", "evaluate", "KNOWN_STAGES",
           "EXIT_BREACH"]

EXIT_BREACH = 3

UNITS_MS = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0, "sec": 1000.0, "min": 60_000.0}
OPERATORS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
             ">=": lambda a, b: a >= b}


def _known_stages() -> tuple[str, ...]:
    from bench.actors.participant import ALL_STAGE_NAMES as STAGE_NAMES

    return STAGE_NAMES


KNOWN_STAGES = _known_stages()

_STAGE_LIMIT = re.compile(
    r"^\s*(?P<stat>min|max|mean|count|p(?P<pct>\d+(?:\.\d+)?))\s*\(\s*(?P<stage>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*"
    r"(?P<op><=|>=|<|>)\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[a-zµ%]*)\s*$")
_RUN_LIMIT = re.compile(r"^\s*(?P<what>failure_rate|failures)\s*(?P<op><=|>=|<|>)\s*(?P<num>\d+(?:\.\d+)?)\s*"
                        r"(?P<unit>%?)\s*$")


class ThresholdError(ValueError):
    """A thresholds file that cannot be used; the message names the file, the limit and the fix."""


@dataclass(frozen=True)
class Limit:
    text: str                     # as written (normalised spacing)
    statistic: str                # min, max, mean, count, p99 ..., failure_rate, failures
    stage: str | None             # None for run-level limits
    op: str
    value: float                  # ms for latencies, percent for failure_rate, a count otherwise
    scenario: str | None = None   # None: the whole run

    @property
    def name(self) -> str:
        return self.text if self.scenario is None else f"{self.scenario}: {self.text}"


@dataclass
class Thresholds:
    limits: list[Limit]
    path: str = ""
    measures: tuple[str, ...] = ()


@dataclass
class Verdict:
    limit: Limit
    passed: bool
    actual: float | None
    message: str
    extra: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"limit": self.limit.name, "statistic": self.limit.statistic, "stage": self.limit.stage,
                "scenario": self.limit.scenario, "operator": self.limit.op, "value": self.limit.value,
                "actual": self.actual, "passed": self.passed, "message": self.message}


def parse_limit(text: str, *, stages: tuple[str, ...] = KNOWN_STAGES, scenario: str | None = None,
                where: str = "") -> Limit:
    """One limit sentence; a :class:`ThresholdError` that says what is wrong with it."""
    if not isinstance(text, str):
        raise ThresholdError(f"{where}a limit must be a string like \"p99(join_total) < 8 s\", got {text!r}")
    m = _RUN_LIMIT.match(text)
    if m:
        what, op, num, unit = m["what"], m["op"], float(m["num"]), m["unit"]
        if what == "failure_rate" and unit != "%":
            raise ThresholdError(f"{where}{text!r}: failure_rate is in percent: write e.g. \"failure_rate < 1 %\"")
        if what == "failures" and unit:
            raise ThresholdError(f"{where}{text!r}: failures is a count: write e.g. \"failures <= 0\"")
        return Limit(f"{what} {op} {num:g}{' %' if unit else ''}", what, None, op, num, scenario)
    m = _STAGE_LIMIT.match(text)
    if not m:
        hint = ""
        if re.match(r"^\s*[A-Za-z_]\w*\s*\(", text) and not re.match(r"^\s*(min|max|mean|count|p\d)", text):
            hint = " (the statistic must be min, max, mean, count or a percentile such as p99)"
        raise ThresholdError(f"{where}cannot read the limit {text!r}{hint}: write STATISTIC(STAGE) OPERATOR NUMBER "
                             "UNIT, e.g. \"p99(join_total) < 8 s\", or \"failure_rate < 1 %\"")
    stat, stage, op, num, unit = m["stat"], m["stage"], m["op"], float(m["num"]), m["unit"]
    if m["pct"] is not None and not 0 <= float(m["pct"]) <= 100:
        raise ThresholdError(f"{where}{text!r}: a percentile is between p0 and p100")
    if stage not in stages:
        close = difflib.get_close_matches(stage, stages, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ThresholdError(f"{where}{text!r}: unknown stage {stage!r}{hint} Stages: {', '.join(stages)} "
                             "(docs/stages.md; stages of your own go into `measures = [...]`)")
    if stat == "count":
        if unit:
            raise ThresholdError(f"{where}{text!r}: count(...) is a number of values, without a unit")
        value = num
    else:
        if unit not in UNITS_MS:
            raise ThresholdError(f"{where}{text!r}: a latency needs a unit: us, ms, s or min "
                                 f"(got {unit or 'none'!r})")
        value = num * UNITS_MS[unit]
    return Limit(f"{stat}({stage}) {op} {num:g}{' ' + unit if unit else ''}", stat, stage, op, value, scenario)


def load_thresholds(path: str | Path) -> Thresholds:
    """Read and check a thresholds file (see the module docstring)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ThresholdError(f"thresholds file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ThresholdError(f"cannot read the thresholds file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ThresholdError(f"thresholds file {path} is not valid TOML: {exc}") from None
    known_keys = {"limits", "measures", "scenario"}
    for key in data:
        if key not in known_keys:
            raise ThresholdError(f"thresholds file {path}: unknown key {key!r}; known: limits, measures, "
                                 "[scenario.NAME]")
    measures = data.get("measures", [])
    if not isinstance(measures, list) or not all(isinstance(m, str) and re.fullmatch(r"[A-Za-z_]\w*", m)
                                                 for m in measures):
        raise ThresholdError(f"thresholds file {path}: measures must be a list of stage names, got {measures!r}")
    stages = KNOWN_STAGES + tuple(measures)
    limits: list[Limit] = []

    def take(table: dict, scenario: str | None, where: str) -> None:
        items = table.get("limits", [])
        if not isinstance(items, list):
            raise ThresholdError(f"{where}limits must be a list of strings, got {items!r}")
        for item in items:
            limits.append(parse_limit(item, stages=stages, scenario=scenario, where=where))

    take(data, None, f"thresholds file {path}: ")
    scenarios = data.get("scenario", {})
    if not isinstance(scenarios, dict):
        raise ThresholdError(f"thresholds file {path}: [scenario.NAME] tables expected, got {scenarios!r}")
    for name, table in scenarios.items():
        where = f"thresholds file {path}, [scenario.{name}]: "
        if not isinstance(table, dict) or set(table) - {"limits"}:
            raise ThresholdError(f"{where}a scenario table holds only `limits = [...]`")
        take(table, name, where)
    if not limits:
        raise ThresholdError(f"thresholds file {path} has no limits: add e.g. limits = [\"p99(join_total) < 8 s\"]")
    return Thresholds(limits, str(path), tuple(measures))


def _statistic_ms(metrics: Metrics, limit: Limit) -> float | None:
    histogram = metrics.merged(stage=limit.stage, scenario=limit.scenario)
    n = histogram.get_total_count()
    if limit.statistic == "count":
        return float(n)
    if not n:
        return None
    if limit.statistic == "min":
        return histogram.get_min_value() / 1000.0
    if limit.statistic == "max":
        return histogram.get_max_value() / 1000.0
    sorted_bins = stats.bins(histogram)
    if limit.statistic == "mean":
        return stats.mean_ms(sorted_bins)
    return stats.percentile_ms(sorted_bins, float(limit.statistic[1:]))


def _format(limit: Limit, value: float) -> str:
    if limit.statistic == "failure_rate":
        return f"{value:.3g} %"
    if limit.statistic in ("failures", "count"):
        return f"{value:g}"
    return f"{value:.1f} ms" if value < 10_000 else f"{value / 1000:.2f} s"


def evaluate(thresholds: Thresholds, report: dict, metrics: Metrics) -> list[Verdict]:
    """Judge every limit against a run (its report.json and its histograms)."""
    verdicts: list[Verdict] = []
    for limit in thresholds.limits:
        if limit.stage is None:
            rows = [s for s in report["scenarios"] if limit.scenario is None or s.get("name") == limit.scenario]
            ran = [s for s in rows if s.get("status") in ("passed", "failed", "interrupted")]
            failed = sum(1 for s in ran if s.get("status") in ("failed", "interrupted"))
            if limit.statistic == "failures":
                actual: float | None = float(failed)
            else:
                actual = 100.0 * failed / len(ran) if ran else None
            if actual is None:
                verdicts.append(Verdict(limit, False, None, f"{limit.name}: breached: no scenario ran"))
                continue
            extra = {"failed": failed, "ran": len(ran)}
        else:
            actual = _statistic_ms(metrics, limit)
            extra = {}
            if actual is None or (limit.statistic != "count" and math.isnan(actual)):
                scope = f" of {limit.scenario}" if limit.scenario else ""
                verdicts.append(Verdict(limit, False, None,
                                        f"{limit.name}: breached: no values of {limit.stage}{scope} in this run"))
                continue
        ok = OPERATORS[limit.op](actual, limit.value)
        message = f"{limit.name}: {'ok' if ok else 'BREACHED'}, measured {_format(limit, actual)}"
        if limit.stage is None:
            message += f" ({extra['failed']} of {extra['ran']} scenario runs failed)"
        verdicts.append(Verdict(limit, ok, round(actual, 3), message, extra))
    return verdicts


def thresholds_json(thresholds: Thresholds, verdicts: list[Verdict]) -> dict[str, Any]:
    return {"file": thresholds.path, "passed": all(v.passed for v in verdicts),
            "breached": sum(1 for v in verdicts if not v.passed),
            "limits": [v.as_json() for v in verdicts]}
