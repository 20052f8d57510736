"""Run reports: ``report.json`` (this package's ``report.schema.json`` describes every field).

A run directory (``cometbench run --report-dir DIR``, by default ``reports/<UTC time>-seed<N>/``)
holds:

* ``journal.sqlite`` -- the journal of every scenario run (one journal run each; ``cometbench
  journal DIR/journal.sqlite --run all``), with the bench's own records (service ``bench``: marks,
  scenario starts and ends, steps, app callbacks, faults, expectations);
* ``histograms.hlog`` -- the HdrHistogram log of every stage per scenario and network profile
  (``bench/metrics.py``);
* ``report.json`` -- what ran and how it went: the seed, the journal's SHA-256
  (``bench/report/digest.py``), one object per scenario run (name, passed, duration_ms, failure,
  ...), the stage percentiles in milliseconds, the status (``running`` while it runs, then
  ``complete`` or ``interrupted``), versions, profiles, network.

The report is rewritten as scenarios finish (atomically: a temporary file renamed over it; between
repetitions of one scenario at most once a second unless one failed), so a run killed at any point
leaves one that says which scenarios finished.  At the end of the run (and on ``cometbench report``)
:mod:`bench.report.writer` completes it (``thresholds``, ``baseline``, ``reports``) and writes
``report.html`` (:mod:`bench.report.html`) and ``junit.xml`` (:mod:`bench.report.junit`) beside it.
Thresholds are :mod:`bench.report.thresholds`, run comparisons :mod:`bench.report.diff`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.metrics import SETTINGS
from bench.report.digest import journal_sha256

if TYPE_CHECKING:  # pragma: no cover
    from bench.scenario.runner import Run

__all__ = ["build_report", "write_json", "schema", "versions", "SCHEMA_ID", "journal_sha256"]

SCHEMA_ID = "cometbench-report/1"


def schema() -> dict:
    """The JSON Schema of report.json."""
    return json.loads(files("bench.report").joinpath("report.schema.json").read_text(encoding="utf-8"))


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": f"{sys.platform}-{platform.machine()}"}
    for name in ("cometbench", "trio", "hdrhistogram"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def _utc(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def build_report(run: Run, *, final: bool) -> dict[str, Any]:
    settings = run.settings
    results = run.results
    counts = {status: sum(1 for r in results if r.status == status)
              for status in ("passed", "failed", "interrupted", "not_run", "running", "skipped")}
    journal = run.journal_path
    by_scenario: dict[str, Any] = {}
    for result in results:
        entry = by_scenario.setdefault(result.name, {"runs": 0, "passed": 0, "failed": 0, "skipped": 0})
        entry["runs"] += 1 if result.status not in ("not_run", "running", "skipped") else 0
        entry["passed"] += result.passed
        entry["failed"] += result.status in ("failed", "interrupted")
        entry["skipped"] += result.status == "skipped"
    for name, entry in by_scenario.items():
        entry["stages"] = run.metrics.summary(scenario=name)
    return {
        "schema": SCHEMA_ID,
        "status": run.status if final else "running",
        "interruption": run.interruption,
        "seed": settings.seed,
        "clock": settings.clock,
        "network": settings.network,
        "profiles": sorted({r.profile for r in results} or {settings.profile}),
        "target": settings.target,
        "repeat": settings.repeat,
        "started": _utc(run.started),
        "finished": _utc(run.finished) if final else None,
        "wall_ms": round(((run.finished or time.time()) - run.started) * 1000.0, 3),
        "journal": journal.name,
        "journal_sha256": journal_sha256(journal) if final and journal.exists() else None,
        "histograms": run.histograms_path.name,
        "histogram_settings": dict(SETTINGS),
        "versions": versions(),
        "summary": {"scenarios": len(results), **counts},
        "scenarios": [{**r.as_json(), "call": call} for r, call in zip(results, _call_indices(run, results))],
        "by_scenario": by_scenario,
        "stages": run.metrics.summary(),
        "media": media_source(settings),
        "emulator_log": _log(run),
        **({"shard": shard} if (shard := getattr(run, "shard", None)) else {}),
        **({"shards": shards} if (shards := getattr(run, "shards", None)) else {}),
    }


def media_source(settings: Any) -> dict[str, Any]:
    """Where L12-L14 come from: ``measured`` when the fake FreeSWITCH had a real media endpoint and real
    browsers played actors (ice_connected, dtls_connected, first_remote_frame are the pages' own),
    ``modelled`` otherwise (the media model, emulator/freeswitch/media.py)."""
    mode = getattr(settings, "media", "model")
    browsers = list(getattr(getattr(settings, "browser", None), "actors", ()) or ())
    measured = mode == "real" and bool(browsers)
    return {"mode": mode, "l12_l14": "measured" if measured else "modelled",
            "measured_by": browsers if measured else []}


def _call_indices(run: Run, results: list) -> list[int]:
    """Each result's call index (its place in the run's plan): a shard tells only some calls."""
    indices = getattr(run, "call_indices", None)
    return list(indices) if indices is not None and len(indices) == len(results) else list(range(len(results)))


def _log(run: Run) -> dict | None:
    path = getattr(run, "log_file", None)
    counter = getattr(run, "log_records", None)
    if path is None:
        return None
    return {"path": Path(path).name, "errors": getattr(counter, "error_count", 0)}


def write_json(path: str | Path, data: dict) -> None:
    """Write atomically (a temporary file renamed over the old one)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
