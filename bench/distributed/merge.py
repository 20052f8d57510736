"""``cometbench merge``: the shards of one run into one run directory, exactly.

**What is added.**  Every shard's ``histograms.hlog`` holds HdrHistograms of one fixed setting
(values in microseconds, 1 us .. 1 hour, 3 significant digits: :data:`bench.metrics.SETTINGS`), so
adding them bucket by bucket gives the histogram one machine would have recorded: count, min, max
and every percentile are exact, not approximated (k6, Locust and Artillery merge approximately or
not at all; this is Gatling's route of one report over every injector's raw data, in histogram
form).  Every shard's log starts at the shared start, and so does the merged one.  The journals are
concatenated in call order into one ``journal.sqlite`` whose ``runs`` and ``entries`` tables get a
``shard`` column; entries are renumbered, run ids kept, so ``cometbench journal``, the sequence
diagrams and the journal digest work as on a single run -- and equal calls give the digest of the
unsharded run.  report.json is built by the same code as a single run's (schema-valid, with a
``shards`` block: each shard's calls, host and start skew), and report.html, junit.xml and the
thresholds verdict by the same writer as ``cometbench report``.

**What is refused** (:class:`MergeError`, which names each shard and why; nothing is written):

* a directory that is not a readable run, or not a shard (no ``shard`` block);
* a shard that did not finish: status ``running`` (still running, or killed) or ``interrupted``
  (Ctrl-C, a crash: the interruption is quoted), calls that did not run, a missing histogram log,
  a journal without the runs of its calls -- a partial shard would make a report that silently lacks
  data;
* shards of different runs: seed, clock, network, fidelity profile, target, repeat, histogram
  setting, cometbench version, the plan (scenario names, repeat and the digest of the scenario
  files), the shard count, R, the shared start or the tolerance differ;
* a partition that is not the one ``i/N`` gives, a shard given twice, shards missing.

A shard whose start skew exceeded the tolerance is merged (its data are complete), and the merged
run fails: ``shards.skew_ok`` is false, report.html says which shard, ``merge`` exits 1.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.distributed.partition import call_range
from bench.metrics import Metrics
from bench.report.rundir import RunData, RunDirError, load_run

__all__ = ["MergeError", "ShardDir", "load_shards", "check_shards", "merge_runs", "merge_journals", "MergeResult"]

#: report.json fields every shard of one run must share
SAME_FIELDS = ("seed", "clock", "network", "profiles", "target", "repeat", "histogram_settings")
SAME_SHARD_FIELDS = ("count", "total_calls", "plan", "start_at", "tolerance_ms", "barrier")
UNFINISHED = ("not_run", "running", "interrupted")


class MergeError(Exception):
    """Shards that cannot be merged; ``problems`` has one line per shard problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class ShardDir:
    path: Path
    run: RunData

    @property
    def report(self) -> dict:
        return self.run.report

    @property
    def shard(self) -> dict:
        return self.run.report["shard"]

    @property
    def label(self) -> str:
        return f"shard {self.shard['index']}/{self.shard['count']} ({self.path})"


@dataclass
class MergeResult:
    path: Path
    report: dict
    shards: list[ShardDir] = field(default_factory=list)
    written: Any = None
    skew_problems: list[str] = field(default_factory=list)
    merge_ms: float = 0.0


def load_shards(paths: Sequence[str | Path]) -> list[ShardDir]:
    """Read every shard directory and check each one on its own; every problem at once."""
    shards, problems = [], []
    for raw in paths:
        path = Path(raw)
        try:
            run = load_run(path)
        except RunDirError as exc:
            problems.append(f"{path}: {exc}")
            continue
        shard = ShardDir(run.path, run)
        why = _shard_problem(shard)
        if why:
            problems.append(why)
        else:
            shards.append(shard)
    if problems:
        raise MergeError(problems)
    return shards


def _shard_problem(s: ShardDir) -> str | None:
    report = s.report
    block = report.get("shard")
    if not isinstance(block, dict):
        return (f"{s.path} is not a shard: its report.json has no 'shard' (a run made with --shard i/N, or by "
                "run --shards N)")
    label = s.label
    status = report.get("status")
    if status != "complete":
        why = report.get("interruption") or ("still running, or killed before it could say so" if status == "running"
                                             else "no reason recorded")
        return f"{label} did not finish (status {status}: {why}); rerun it, the merged report would lack its calls"
    try:
        expected = call_range(block["index"], block["count"], block["total_calls"])
    except (KeyError, TypeError, ValueError) as exc:
        return f"{label}: its shard block is not usable ({exc})"
    calls = block.get("calls", {})
    if (calls.get("first"), calls.get("end")) != (expected.start, expected.stop):
        return (f"{label} ran calls {calls.get('first')}..{(calls.get('end') or 0) - 1}, but shard {block['index']} of "
                f"{block['count']} of {block['total_calls']} calls is {expected.start}..{expected.stop - 1}")
    scenarios = report["scenarios"]
    got = [entry.get("call") for entry in scenarios]
    if got != list(expected):
        return (f"{label} is partial: it holds {len(scenarios)} call results, its partition has {len(expected)} "
                f"({expected.start}..{expected.stop - 1})")
    unfinished = [entry["call"] for entry in scenarios if entry.get("status") in UNFINISHED]
    if unfinished:
        return f"{label} is partial: call(s) {_ranges(unfinished)} did not finish"
    if not (s.path / str(report.get("histograms") or "histograms.hlog")).is_file():
        return f"{label} has no histograms.hlog: its latencies are lost"
    if s.run.journal is None:
        return f"{label}: {s.run.journal_problem or 'no journal'}"
    wanted = {entry["journal_run"] for entry in scenarios if entry.get("journal_run")}
    if wanted:
        try:
            conn = sqlite3.connect(f"file:{s.run.journal}?mode=ro", uri=True)
            try:
                present = {row[0] for row in conn.execute("SELECT run_id FROM runs")}
            finally:
                conn.close()
        except sqlite3.Error as exc:
            return f"{label}: its journal cannot be read ({exc})"
        lost = sorted(wanted - present)
        if lost:
            return f"{label}: its journal lacks the runs of {len(lost)} call(s) (e.g. {lost[0]}): it is cut short"
    return None


def check_shards(shards: list[ShardDir]) -> list[ShardDir]:
    """Shards of one run, one of each index, none missing: sorted by index."""
    if not shards:
        raise MergeError(["no shard directories given"])
    problems = []
    ref = shards[0]
    for s in shards[1:]:
        for key in SAME_FIELDS:
            if s.report.get(key) != ref.report.get(key):
                problems.append(f"{s.label} differs from {ref.label} in {key}: {s.report.get(key)!r} against "
                                f"{ref.report.get(key)!r}")
        for key in SAME_SHARD_FIELDS:
            if s.shard.get(key) != ref.shard.get(key):
                what = "the plan (scenarios, repeat or scenario files)" if key == "plan" else key
                problems.append(f"{s.label} differs from {ref.label} in {what}: {s.shard.get(key)!r} against "
                                f"{ref.shard.get(key)!r}")
        mine, theirs = s.report.get("versions", {}).get("cometbench"), ref.report.get("versions", {}).get("cometbench")
        if mine != theirs:
            problems.append(f"{s.label} ran cometbench {mine}, {ref.label} cometbench {theirs}")
    if problems:
        raise MergeError(problems)
    by_index: dict[int, ShardDir] = {}
    for s in shards:
        index = s.shard["index"]
        if index in by_index:
            problems.append(f"shard {index}/{s.shard['count']} is given twice: {by_index[index].path} and {s.path} "
                            "(their calls would count twice)")
        else:
            by_index[index] = s
    count, total = ref.shard["count"], ref.shard["total_calls"]
    missing = [i for i in range(count) if i not in by_index]
    for i in missing:
        calls = call_range(i, count, total)
        problems.append(f"shard {i}/{count} is missing: the merged report would lack calls "
                        f"{calls.start}..{calls.stop - 1}" if calls else f"shard {i}/{count} is missing")
    if problems:
        raise MergeError(problems)
    return [by_index[i] for i in range(count)]


def merge_journals(sources: list[tuple[int, Path]], out: Path) -> None:
    """Concatenate journals in the order given into ``out``, with a ``shard`` column."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, seed INTEGER, profile TEXT, started FLOAT, "
                     "clock TEXT, shard INTEGER)")
        conn.execute("CREATE TABLE entries (seq INTEGER PRIMARY KEY, run_id TEXT, t FLOAT, service TEXT, kind TEXT, "
                     "direction TEXT, dev_id INTEGER, user_id INTEGER, conn_id INTEGER, data TEXT, shard INTEGER)")
        columns = "run_id, t, service, kind, direction, dev_id, user_id, conn_id, data"
        for shard, path in sources:
            conn.execute("ATTACH DATABASE ? AS part", (str(path),))
            try:
                with conn:
                    conn.execute("INSERT INTO runs (run_id, seed, profile, started, clock, shard) "
                                 "SELECT run_id, seed, profile, started, clock, ? FROM part.runs ORDER BY rowid",
                                 (shard,))
                    conn.execute(f"INSERT INTO entries ({columns}, shard) SELECT {columns}, ? FROM part.entries "
                                 "ORDER BY seq", (shard,))
            except sqlite3.IntegrityError as exc:
                raise MergeError(
                    [f"shard {shard} ({path}): its journal repeats a run of another shard ({exc})"]) from None
            finally:
                conn.execute("DETACH DATABASE part")
        conn.execute("CREATE INDEX idx_entries_run_id_seq ON entries (run_id, seq)")
        conn.commit()
    finally:
        conn.close()
    tmp.replace(out)


class _Result:
    """A scenario result of report.json, as :func:`bench.report.build_report` reads one."""

    def __init__(self, data: dict) -> None:
        self._data = {k: v for k, v in data.items() if k != "call"}
        self.name = data["name"]
        self.status = data["status"]
        self.passed = bool(data["passed"])
        self.profile = data.get("profile", "")

    def as_json(self) -> dict:
        return dict(self._data)


class _Errors:
    def __init__(self, count: int) -> None:
        self.error_count = count


def merge_runs(paths: Sequence[str | Path], out_dir: str | Path, *, thresholds: Any = None, baseline: Any = None,
               diff_settings: Any = None) -> MergeResult:
    """Check the shards, write the merged run directory, and its reports; see the module docstring."""
    from bench.distributed.shard import skew_message
    from bench.report import build_report, write_json
    from bench.report.writer import write_reports
    from bench.scenario.runner import RunSettings

    t0 = time.perf_counter()
    shards = check_shards(load_shards(paths))
    out = Path(out_dir)
    if (out / "report.json").exists() or (out / "journal.sqlite").exists():
        raise MergeError([f"{out} already holds a run (report.json / journal.sqlite); choose another --report-dir"])
    out.mkdir(parents=True, exist_ok=True)
    ref = shards[0].report
    metrics = Metrics()
    for s in shards:
        metrics.merge(s.run.metrics)
    start_at = shards[0].shard.get("start_at")
    started = [_unix(s.report.get("started")) for s in shards]
    finished = [_unix(s.report.get("finished")) for s in shards]
    start = start_at if start_at is not None else min((t for t in started if t is not None), default=time.time())
    end = max((t for t in finished if t is not None), default=time.time())

    journal_path = out / "journal.sqlite"
    merge_journals([(s.shard["index"], s.run.journal) for s in shards if s.run.journal is not None], journal_path)
    log_path = out / "emulator.log"
    errors = 0
    with open(log_path, "w", encoding="utf-8") as log:
        for s in shards:
            entry = s.report.get("emulator_log") or {}
            errors += int(entry.get("errors") or 0)
            source = s.path / str(entry.get("path") or "emulator.log")
            if source.is_file():
                log.write(f"# shard {s.shard['index']}/{s.shard['count']} ({s.path})\n")
                log.write(source.read_text(encoding="utf-8", errors="replace"))

    skews = [s.shard.get("skew_ms") for s in shards]
    parts = []
    for s in shards:
        summary = s.report["summary"]
        parts.append({"index": s.shard["index"], "calls": s.shard["calls"], "path": str(s.path),
                      "host": s.shard.get("host"), "skew_ms": s.shard.get("skew_ms"),
                      "skew_ok": bool(s.shard.get("skew_ok", True)), "wall_ms": s.report.get("wall_ms"),
                      "cpu_ms": s.shard.get("cpu_ms"),
                      "journal_sha256": s.report.get("journal_sha256"), "passed": summary.get("passed", 0),
                      "failed": summary.get("failed", 0) + summary.get("interrupted", 0)})

    class Merged:
        pass

    run: Any = Merged()
    run.settings = RunSettings(seed=ref["seed"], clock=ref["clock"], network=ref["network"],
                               profile=(ref.get("profiles") or ["cppcomet-4.09"])[0], repeat=ref.get("repeat", 1),
                               target=ref.get("target", "in-process"))
    run.results = [_Result(entry) for s in shards for entry in s.report["scenarios"]]
    run.call_indices = [entry["call"] for s in shards for entry in s.report["scenarios"]]
    run.status, run.interruption = "complete", None
    run.started, run.finished = start, end
    run.journal_path, run.histograms_path = journal_path, out / "histograms.hlog"
    run.metrics = metrics
    run.log_file, run.log_records = log_path, _Errors(errors)
    run.shard = None
    run.shards = {"count": ref["shard"]["count"], "total_calls": ref["shard"]["total_calls"], "start_at": start_at,
                  "tolerance_ms": ref["shard"]["tolerance_ms"],
                  "max_skew_ms": max((k for k in skews if k is not None), default=None),
                  "skew_ok": all(p["skew_ok"] for p in parts), "parts": parts}
    metrics.write_log(run.histograms_path, start=start, end=end,
                      comment=f"cometbench merge: {len(shards)} shards of {ref['shard']['total_calls']} calls")
    report = build_report(run, final=True)
    report["versions"] = ref.get("versions", report["versions"])
    run.shards["merge_ms"] = round((time.perf_counter() - t0) * 1000.0, 3)
    write_json(out / "report.json", report)
    written = write_reports(out, thresholds=thresholds, baseline=baseline, diff_settings=diff_settings)
    problems = [m for s in shards if (m := skew_message(s.shard, str(s.path)))]
    return MergeResult(out, written.report, shards, written, problems, run.shards["merge_ms"])


def _unix(text: Any) -> float | None:
    """report.json's UTC time (``2026-12-07T10:15:00.123Z``) as Unix seconds."""
    if not isinstance(text, str):
        return None
    import calendar

    try:
        main, _, frac = text.rstrip("Z").partition(".")
        return calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S")) + (int(frac) / 1000.0 if frac else 0.0)
    except ValueError:
        return None


def _ranges(values: list[int]) -> str:
    """1, 2, 3, 7 -> '1..3, 7'."""
    out, start, prev = [], None, None
    for v in sorted(values):
        if start is None:
            start = prev = v
        elif prev is not None and v == prev + 1:
            prev = v
        else:
            out.append(f"{start}..{prev}" if start != prev else str(start))
            start = prev = v
    if start is not None:
        out.append(f"{start}..{prev}" if start != prev else str(start))
    return ", ".join(out)
