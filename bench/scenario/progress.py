"""What ``cometbench run`` shows while it runs, and the summary at the end.

On a terminal a ``rich`` progress bar with one line per finished scenario; otherwise (CI logs,
pipes) plain lines.  With many repetitions only failures and every tenth of the way are printed, so
``--repeat 1000`` does not print a thousand lines.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from bench.scenario.runner import ScenarioResult

__all__ = ["PlainProgress", "RichProgress", "make_progress", "summary_lines", "seconds"]


def seconds(ms: float) -> str:
    s = ms / 1000.0
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min"


def _result_line(index: int, total: int, result: ScenarioResult) -> str:
    mark = {"passed": "passed", "failed": "FAILED", "interrupted": "interrupted"}.get(result.status, result.status)
    rep = f" #{result.repetition + 1}" if result.repetition else ""
    if result.status == "skipped":
        return f"[{index + 1}/{total}] {result.name}{rep}: skipped: {result.skipped}"
    return (f"[{index + 1}/{total}] {result.name}{rep}: {mark} in {seconds(result.duration_ms)} "
            f"(simulated {seconds(result.simulated_ms)})")


class PlainProgress:
    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self._step = 1

    def begin(self, total: int) -> None:
        self._step = 1 if total <= 20 else max(1, total // 10)

    def on_start(self, index: int, total: int, spec: Any, repetition: int) -> None:
        pass

    def on_result(self, index: int, total: int, result: ScenarioResult) -> None:
        if result.status != "passed" or (index + 1) % self._step == 0 or index + 1 == total:
            print(_result_line(index, total, result), file=self.out, flush=True)
            if result.failure:
                print(f"    {result.failure}", file=self.out, flush=True)

    def close(self) -> None:
        pass


class RichProgress:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console()
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=True)
        self.task: Any = None
        self._many = False

    def begin(self, total: int) -> None:
        self._many = total > 20
        self.progress.start()
        self.task = self.progress.add_task("starting", total=total)

    def on_start(self, index: int, total: int, spec: Any, repetition: int) -> None:
        rep = f" #{repetition + 1}" if repetition else ""
        self.progress.update(self.task, description=f"{spec.name}{rep}")

    def on_result(self, index: int, total: int, result: ScenarioResult) -> None:
        self.progress.advance(self.task)
        if self._many and result.status == "passed":
            return
        style = "green" if result.passed else ("yellow" if result.status == "skipped" else "red")
        self.progress.console.print(f"[{style}]{_result_line(index, total, result)}[/{style}]", highlight=False)
        if result.failure:
            self.progress.console.print(f"    {result.failure}", highlight=False, markup=False)

    def close(self) -> None:
        self.progress.stop()


def make_progress(out: IO[str] | None = None) -> PlainProgress | RichProgress:
    stream = out or sys.stdout
    if stream.isatty():
        try:
            return RichProgress()
        except ImportError:  # pragma: no cover - rich is a dependency
            pass
    return PlainProgress(stream)


def summary_lines(report: dict, report_path: str, log: tuple[str, int] | None = None) -> list[str]:
    """The short summary printed at the end."""
    counts = report["summary"]
    parts = [f"{counts['passed']} passed"]
    for key, word in (("failed", "failed"), ("skipped", "skipped"), ("interrupted", "interrupted"),
                      ("not_run", "not run")):
        if counts.get(key):
            parts.append(f"{counts[key]} {word}")
    clock = "virtual time" if report["clock"] == "virtual" else "real time"
    target = "" if report.get("target", "in-process") == "in-process" else f", target {report['target']}"
    lines = [f"{counts['scenarios']} scenario run{'s' if counts['scenarios'] != 1 else ''}: {', '.join(parts)} "
             f"({seconds(report['wall_ms'])}; seed {report['seed']}, {clock}, network {report['network']}, "
             f"profile {', '.join(report['profiles'])}{target})"]
    if report["status"] == "interrupted":
        lines.append(f"interrupted: {report['interruption']}")
    skipped: dict[str, list[str]] = {}
    for scenario in report["scenarios"]:
        if scenario["status"] in ("failed", "interrupted"):
            lines.append(f"  {scenario['failure']}")
        elif scenario["status"] == "skipped" and scenario["name"] not in skipped.get(scenario.get("skipped"), []):
            skipped.setdefault(scenario.get("skipped"), []).append(scenario["name"])
    for reason, names in skipped.items():
        lines.append(f"  skipped {', '.join(names)}: {reason}")
    if skipped and not counts["passed"]:
        lines.append(f"no scenario could run against the target {report.get('target')}: name one that can "
                     "(`cometbench run --list` marks them)")
    stages = report["stages"]
    for name in ("join_total", "system"):
        stage = stages.get(name)
        if stage and stage.get("count"):
            lines.append(f"{name}: p50 {stage['p50']:.0f} ms, p90 {stage['p90']:.0f} ms, p99 {stage['p99']:.0f} ms, "
                         f"max {stage['max']:.0f} ms ({stage['count']} joins)")
    if log is not None and log[1]:
        lines.append(f"the emulator logged {log[1]} error{'s' if log[1] != 1 else ''}: see {log[0]}")
    if report.get("journal_sha256"):
        lines.append(f"journal sha256 {report['journal_sha256']}")
    lines.append(f"report: {report_path}")
    return lines
