"""report.html: one self-contained page a person opens to see how a run went.

Everything is inside the file: the style sheet, the charts (inline SVG from :mod:`bench.report.svg`),
no script, no web font, no link to anything outside -- it opens from a CI artefact with no network
(the test opens it in Chromium with every request aborted).  The template is
``bench/report/templates/report.html.j2`` (Jinja2, shipped as package data, autoescaped).

What the page shows, top to bottom: a banner when thresholds were breached, scenarios failed or the
run did not finish; the run's facts (seed, clock, fidelity profiles, network profiles, versions,
journal digest); the thresholds and the baseline comparison when given; the latency of every stage
(an overview chart, a percentile table with a small distribution per stage); the cumulative chart of
``join_total``; the scenarios; failures grouped by cause with their step and failed expectation;
the sequence diagrams of a few calls; the list of scenario runs.

**Keeping it small** with many calls: the sequence diagrams are drawn for the first
:data:`FIRST_CALLS` calls, the :data:`SLOWEST_CALLS` slowest (by their slowest ``join_total``) and
up to :data:`FAILED_CALLS` failed ones, each at most ``sequence.MAX_ROWS`` rows, and the list of
scenario runs stops at :data:`MAX_RUN_ROWS` rows (failed ones first); the page says what it left
out.  A run of 10,000 calls gives a page of a few hundred kilobytes (docs/performance.md).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import jinja2

from bench.report import stats, svg
from bench.report.rundir import RunData
from bench.report.sequence import Diagram, read_diagram

__all__ = ["render_html", "select_calls", "failure_groups", "FIRST_CALLS", "SLOWEST_CALLS", "FAILED_CALLS",
           "MAX_RUN_ROWS"]

FIRST_CALLS = 3
SLOWEST_CALLS = 3
FAILED_CALLS = 4
MAX_RUN_ROWS = 200
STAT_COLUMNS = ("count", "min", "p50", "p90", "p95", "p99", "max")


def _environment() -> jinja2.Environment:
    def load(name: str) -> str:
        return files("bench.report").joinpath("templates", name).read_text(encoding="utf-8")

    env = jinja2.Environment(loader=jinja2.FunctionLoader(load), autoescape=True, trim_blocks=True,
                             lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["ms"] = _ms
    return env


def _ms(value: Any) -> str:
    if value is None:
        return "–"
    if not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,.1f}" if value < 100_000 else f"{value:,.0f}"


@dataclass
class Call:
    index: int
    scenario: dict
    why: str
    diagram: Diagram | None = None


def select_calls(scenarios: list[dict]) -> tuple[list[Call], str]:
    """The scenario runs whose sequence diagram is drawn, and a sentence saying which."""
    ran = [(i, s) for i, s in enumerate(scenarios) if s.get("journal_run")]
    chosen: dict[int, Call] = {}
    for i, s in ran[:FIRST_CALLS]:
        chosen[i] = Call(i, s, "first")
    slow = sorted((x for x in ran if x[1].get("join_total_ms") is not None),
                  key=lambda x: (-x[1]["join_total_ms"], x[0]))[:SLOWEST_CALLS]
    for i, s in slow:
        chosen.setdefault(i, Call(i, s, "slowest"))
        if chosen[i].why == "first":
            chosen[i].why = "first, slowest"
    failed = [(i, s) for i, s in ran if s.get("status") in ("failed", "interrupted")]
    for i, s in failed[:FAILED_CALLS]:
        if i in chosen:
            chosen[i].why += ", failed"
        else:
            chosen[i] = Call(i, s, "failed")
    calls = sorted(chosen.values(), key=lambda c: c.index)
    total = len(ran)
    if total <= len(calls):
        note = f"every call of the run ({total})"
    else:
        note = (f"{len(calls)} of {total} calls: the first {min(FIRST_CALLS, total)}, the {len(slow)} slowest "
                f"(by their slowest join_total) and {min(len(failed), FAILED_CALLS)} of {len(failed)} failed; "
                "`cometbench journal DIR/journal.sqlite --run RUN_ID` lists any call's messages")
    return calls, note


_NUMBER = re.compile(r"\d+(\.\d+)?")


def failure_groups(scenarios: list[dict]) -> list[dict]:
    """Failed scenario runs grouped by cause: the step and the failed expectation (numbers
    normalised, so "waited 5 s" in two repetitions is one cause)."""
    groups: dict[tuple[str, str, str], dict] = {}
    for s in scenarios:
        if s.get("status") not in ("failed", "interrupted"):
            continue
        messages = s.get("failures") or ([s["failure"]] if s.get("failure") else ["(no message)"])
        for message in messages:
            name = s.get("name", "")
            text = message[len(name) + 2:] if message.startswith(f"{name}: ") else message
            step = s.get("step") or ""
            m = re.match(r"(?:expectation declared in )?step '((?:[^'\\]|\\.)*)': (.*)", text, re.S)
            if m:
                step, text = m.group(1), m.group(2)
            expectation, _, result = text.partition(" -- ")
            key = (name, step, _NUMBER.sub("N", expectation))
            group = groups.get(key)
            if group is None:
                group = groups[key] = {"scenario": name, "step": step, "expectation": expectation,
                                       "result": result, "count": 0, "runs": [], "status": s.get("status")}
            group["count"] += 1
            if len(group["runs"]) < 5:
                group["runs"].append(s.get("journal_run") or f"#{s.get('repetition', 0)}")
    return sorted(groups.values(), key=lambda g: (-g["count"], g["scenario"], g["step"]))


def _network_profiles(report: dict) -> list[str]:
    names = {s.get("network") for s in report["scenarios"] if s.get("network")}
    names.add(report.get("network", "loopback"))
    return sorted(n for n in names if n)


def _shard_facts(report: dict) -> list[tuple[str, Any]]:
    """A shard's partition and start, or the shards a merged run came from (bench/distributed)."""
    facts: list[tuple[str, Any]] = []
    shard = report.get("shard")
    if shard:
        calls = shard["calls"]
        skew = "–" if shard.get("skew_ms") is None else f"{shard['skew_ms']:.1f} ms"
        facts.append(("shard", f"{shard['index']}/{shard['count']}: calls {calls['first']}..{calls['end'] - 1} "
                               f"of {shard['total_calls']}, start skew {skew} "
                               f"(tolerance {shard['tolerance_ms']:g} ms)"))
    shards = report.get("shards")
    if shards:
        skew = "–" if shards.get("max_skew_ms") is None else f"{shards['max_skew_ms']:.1f} ms"
        facts.append(("shards", f"merged from {shards['count']} shards of {shards['total_calls']} calls; largest "
                                f"start skew {skew} (tolerance {shards['tolerance_ms']:g} ms)"))
    return facts


def _start_problems(report: dict) -> list[str]:
    """Shards that started later than the tolerance allows: the run fails."""
    parts = [report["shard"]] if report.get("shard") else []
    parts += (report.get("shards") or {}).get("parts", [])
    tolerance = (report.get("shard") or report.get("shards") or {}).get("tolerance_ms", 0)
    return [f"shard {part['index']} started {part['skew_ms']:.1f} ms after the shared start (tolerance "
            f"{tolerance:g} ms)" for part in parts if not part.get("skew_ok", True)]


def render_html(run: RunData, *, thresholds: dict | None = None, comparison: dict | None = None,
                baseline: RunData | None = None) -> str:
    """The page for a run (thresholds and comparison as report.json holds them)."""
    from bench.report.diff import _stage_order

    report = run.report
    stages = run.stages()
    order = sorted(stages, key=_stage_order)
    stage_rows = []
    for name in order:
        figures = stages[name]
        histogram = run.metrics.merged(stage=name)
        stage_rows.append({"name": name, "figures": figures,
                           "chart": svg.distribution(stats.log_buckets(stats.bins(histogram), 28), height=30)})
    join_series = []
    join_bins = stats.bins(run.metrics.merged(stage="join_total"))
    if join_bins:
        join_series.append((f"this run: {run.name}", join_bins, "#2563eb"))
    if baseline is not None:
        base_bins = stats.bins(baseline.metrics.merged(stage="join_total"))
        if base_bins:
            join_series.append((f"baseline: {baseline.name}", base_bins, "#94a3b8"))
    calls, calls_note = select_calls(report["scenarios"])
    diagram_problem = run.journal_problem
    if run.journal is not None and calls:
        try:
            conn = sqlite3.connect(f"file:{run.journal}?mode=ro", uri=True)
            try:
                for call in calls:
                    call.diagram = read_diagram(conn, call.scenario["journal_run"])
            finally:
                conn.close()
        except sqlite3.Error as exc:
            diagram_problem = f"the journal could not be read ({exc})"
    runs = report["scenarios"]
    failed_first = sorted(range(len(runs)), key=lambda i: (runs[i].get("status") == "passed", i))[:MAX_RUN_ROWS]
    run_rows = [runs[i] for i in sorted(failed_first)]
    by_scenario = []
    for name, entry in sorted(report.get("by_scenario", {}).items()):
        figures = run.stages(scenario=name).get("join_total", {"count": 0})
        by_scenario.append({"name": name, **entry, "join": figures})
    summary = report["summary"]
    banners = []
    if thresholds and not thresholds.get("passed", True):
        banners.append(("breach", f"{thresholds['breached']} threshold{'s' if thresholds['breached'] != 1 else ''} "
                                  f"breached ({thresholds['file']})"))
    if summary.get("failed") or summary.get("interrupted"):
        banners.append(("failed", f"{summary.get('failed', 0) + summary.get('interrupted', 0)} of "
                                  f"{summary['scenarios']} scenario runs failed or were interrupted"))
    if report["status"] != "complete":
        why = report.get("interruption") or "the run was still running, or was killed, when this was written"
        banners.append(("unfinished", f"the run did not finish (status {report['status']}: {why})"))
    for problem in _start_problems(report):
        banners.append(("breach", problem))
    if comparison and comparison.get("regressions"):
        banners.append(("breach", f"{comparison['regressions']} regression"
                                  f"{'s' if comparison['regressions'] != 1 else ''} against the baseline "
                                  f"{comparison['a']}"))
    facts = [("status", report["status"]), ("seed", report["seed"]), ("clock", report["clock"]),
             ("fidelity profiles", ", ".join(report["profiles"])),
             ("network profiles", ", ".join(_network_profiles(report))),
             ("target", report.get("target", "")), ("repeat", report.get("repeat", 1)),
             ("started", report.get("started")), ("finished", report.get("finished") or "–"),
             ("wall time", f"{report.get('wall_ms', 0) / 1000:.1f} s"),
             ("journal", report.get("journal", "")), ("journal sha256", report.get("journal_sha256") or "–"),
             ("histograms", report.get("histograms", ""))]
    facts += _shard_facts(report)
    versions = sorted(report.get("versions", {}).items())
    template = _environment().get_template("report.html.j2")
    return template.render(
        run=run, report=report, title=f"cometbench run {run.name}", banners=banners, facts=facts, versions=versions,
        summary=summary, thresholds=thresholds, comparison=comparison, stage_rows=stage_rows,
        stat_columns=STAT_COLUMNS, overview=svg.stage_overview(stages, order),
        cdf=svg.cdf(join_series), join_figures=stages.get("join_total"), by_scenario=by_scenario,
        failure_groups=failure_groups(runs), calls=[(c, svg.sequence(c.diagram) if c.diagram else None)
                                                   for c in calls],
        calls_note=calls_note, diagram_problem=diagram_problem, run_rows=run_rows,
        run_rows_omitted=len(runs) - len(run_rows), emulator_log=report.get("emulator_log"))
