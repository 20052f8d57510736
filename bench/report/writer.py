"""Writing every report of a run directory: report.json (completed), report.html and junit.xml.

``cometbench run`` calls :func:`write_reports` once the run ends (from
:meth:`bench.scenario.runner.Run.write`), ``cometbench report RUN_DIR`` calls it on a directory
written earlier -- with the same result, so a report can be regenerated at any time (with other
thresholds, or against a baseline).  report.json keeps every field the runner wrote and gains
``thresholds`` (the verdict of each limit, or null), ``baseline`` (the comparison with another
run, or null) and ``reports`` (the names of the other files); the stage figures are recomputed from
the histogram log (:mod:`bench.report.rundir`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.report import write_json
from bench.report.diff import DiffSettings, compare, diff_json
from bench.report.html import render_html
from bench.report.junit import write_junit
from bench.report.rundir import RunData, load_run
from bench.report.thresholds import EXIT_BREACH, Thresholds, evaluate, thresholds_json

__all__ = ["write_reports", "Written", "exit_status", "HTML_NAME", "JUNIT_NAME"]

HTML_NAME = "report.html"
JUNIT_NAME = "junit.xml"


@dataclass
class Written:
    report: dict
    html: Path
    junit: Path
    json: Path


def write_reports(run_dir: str | Path, *, thresholds: Thresholds | None = None, baseline: RunData | None = None,
                  diff_settings: DiffSettings | None = None) -> Written:
    run = load_run(run_dir)
    report = run.report
    report["stages"] = run.metrics.summary()
    for name, entry in report.get("by_scenario", {}).items():
        entry["stages"] = run.metrics.summary(scenario=name)
    verdicts = thresholds_json(thresholds, evaluate(thresholds, report, run.metrics)) if thresholds else None
    comparison = None
    if baseline is not None:
        settings = diff_settings or DiffSettings()
        comparison = diff_json(compare(baseline.metrics, run.metrics, settings), settings, str(baseline.path),
                               str(run.path))
    report["thresholds"] = verdicts
    report["baseline"] = comparison
    report["reports"] = {"html": HTML_NAME, "junit": JUNIT_NAME}
    json_path = run.path / "report.json"
    write_json(json_path, report)
    html_path = run.path / HTML_NAME
    tmp = html_path.with_name(HTML_NAME + ".tmp")
    tmp.write_text(render_html(run, thresholds=verdicts, comparison=comparison, baseline=baseline), encoding="utf-8")
    tmp.replace(html_path)
    junit_path = run.path / JUNIT_NAME
    write_junit(junit_path, report, verdicts)
    return Written(report, html_path, junit_path, json_path)


def exit_status(report: dict) -> int:
    """0 every scenario passed and every limit held; 1 a scenario failed (or did not run); 3 only
    thresholds were breached.  A scenario skipped because it needs what the ``--target`` lacks is not
    a failure, as long as another one passed."""
    summary = report["summary"]
    passed, skipped = summary["passed"], summary.get("skipped", 0)
    if not passed or passed + skipped != summary["scenarios"]:
        return 1
    thresholds = report.get("thresholds")
    if thresholds and not thresholds["passed"]:
        return EXIT_BREACH
    return 0
