"""Reading a run directory back: ``report.json``, ``histograms.hlog`` and ``journal.sqlite``.

``cometbench report``, ``cometbench diff`` and the report writers at the end of ``cometbench run``
all start here.  Whatever is wrong with a directory -- missing, not a run, a report cut short,
a histogram log or a journal that is not what cometbench writes -- is a :class:`RunDirError` whose
message names the file and says what is wrong, never a traceback.  A run that did not finish
(``status`` ``running`` or ``interrupted``) is readable: the reports say it did not finish.

The stage figures are recomputed from the histogram log, not copied from report.json, so a report
regenerated later (or from histogram logs merged from several machines) shows what the histograms
hold.  When report.json and the log disagree about a stage's count (report.json is rewritten at
most once a second among repetitions, so a killed run can be a little behind its log), the log wins.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bench.metrics import Metrics

__all__ = ["RunDirError", "RunData", "load_run", "REQUIRED_KEYS"]

#: keys every report.json of schema cometbench-report/1 has (the schema's "required")
REQUIRED_KEYS = ("schema", "status", "seed", "clock", "network", "profiles", "summary", "scenarios", "stages",
                 "versions")


class RunDirError(Exception):
    """A run directory that cannot be read; the message says which file and why."""


@dataclass
class RunData:
    path: Path
    report: dict
    metrics: Metrics
    journal: Path | None          # None when the run kept no journal file
    journal_problem: str | None = None   # why the journal cannot be read (the reports then say so)

    @property
    def name(self) -> str:
        return self.path.name

    def stages(self, scenario: str | None = None) -> dict[str, dict]:
        return self.metrics.summary(scenario=scenario)


def load_run(path: str | Path) -> RunData:
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"no run directory at {path}")
    if not path.is_dir():
        if path.name == "report.json" and path.parent.is_dir():
            path = path.parent          # `cometbench report reports/X/report.json` means the folder
        else:
            raise RunDirError(f"{path} is a file, not a run directory (the folder `cometbench run` wrote)")
    report_file = path / "report.json"
    if not report_file.is_file():
        raise RunDirError(f"{path} is not a run directory: it has no report.json "
                          "(give the folder that `cometbench run` wrote, e.g. reports/<time>-seed0)")
    try:
        text = report_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"cannot read {report_file}: {exc}") from None
    try:
        report = json.loads(text)
    except json.JSONDecodeError as exc:
        cut = exc.pos >= len(text.rstrip()) - 1 or not text.rstrip().endswith("}") or "Unterminated" in exc.msg
        hint = " (it ends early: written by a run that was killed while writing it?)" if cut else ""
        raise RunDirError(f"{report_file} is not valid JSON{hint}: {exc.msg} at line {exc.lineno} "
                          f"column {exc.colno}") from None
    if not isinstance(report, dict) or report.get("schema") != "cometbench-report/1":
        found = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise RunDirError(f"{report_file} is not a cometbench run report (schema {found!r}, expected "
                          "'cometbench-report/1')")
    missing = [key for key in REQUIRED_KEYS if key not in report]
    if missing:
        raise RunDirError(f"{report_file} lacks {', '.join(missing)}: not a complete cometbench run report")
    if not isinstance(report["scenarios"], list) or not isinstance(report["summary"], dict):
        raise RunDirError(f"{report_file}: 'scenarios' must be a list and 'summary' an object")
    hlog = path / str(report.get("histograms") or "histograms.hlog")
    if hlog.is_file():
        try:
            metrics = Metrics.read_log(hlog)
        except Exception as exc:  # noqa: BLE001 - hdrh raises many kinds for a damaged log
            raise RunDirError(f"{hlog} is not a readable HdrHistogram log ({type(exc).__name__}: {exc}); "
                              "it may be cut short or edited") from None
    elif any(stage.get("count") for stage in report["stages"].values() if isinstance(stage, dict)):
        raise RunDirError(f"{hlog} is missing, but report.json has latency figures: the histograms are "
                          "needed to draw them")
    else:
        metrics = Metrics()
    journal_file = path / str(report.get("journal") or "journal.sqlite")
    journal: Path | None = journal_file
    problem = None
    if not journal_file.is_file():
        journal, problem = None, "the run directory has no journal.sqlite"
    else:
        problem = _check_journal(journal_file)
        if problem:
            journal = None
    return RunData(path, report, metrics, journal, problem)


def _check_journal(path: Path) -> str | None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            conn.execute("SELECT seq, run_id, t, service, kind, direction, dev_id, user_id, conn_id, data "
                         "FROM entries LIMIT 1").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"{path.name} cannot be read as a cometbench journal ({exc})"
    return None
