"""The summary at the end of a run (and of ``cometbench report``): a table of the stage
percentiles, the thresholds and the lines ``cometbench run`` always printed (counts, failures,
join_total, the report's path).

On a terminal the tables are drawn with ``rich``; otherwise (CI logs, pipes) as plain aligned text,
so a log stays greppable.  The plain lines of :func:`bench.scenario.progress.summary_lines` are
printed in both cases, unchanged: the first (the counts) before the tables, the rest after them.
"""

from __future__ import annotations

import sys
from typing import IO

__all__ = ["stage_table_lines", "print_summary", "MAIN_STAGES"]

#: stages shown in the terminal table (the rest are in report.html)
MAIN_STAGES = ("backend_invite", "push", "register", "call_setup", "media", "first_remote_frame", "join_total",
               "system")
COLUMNS = ("count", "min", "p50", "p90", "p95", "p99", "max")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:,.1f}"


def _rows(stages: dict) -> list[tuple[str, ...]]:
    names = [s for s in MAIN_STAGES if stages.get(s, {}).get("count")]
    return [(name, *(_cell(stages[name].get(c)) for c in COLUMNS)) for name in names]


def stage_table_lines(stages: dict) -> list[str]:
    rows = _rows(stages)
    if not rows:
        return []
    header = ("stage (ms)", *COLUMNS)
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
            for r in table]


def threshold_lines(thresholds: dict | None) -> list[str]:
    if not thresholds:
        return []
    lines = [f"thresholds ({thresholds['file']}): "
             + ("every limit held" if thresholds["passed"] else f"{thresholds['breached']} BREACHED")]
    lines += [f"  {v['message']}" for v in thresholds["limits"]]
    return lines


def print_summary(report: dict, tail: list[str], out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    thresholds = report.get("thresholds")
    if tail:  # the count line first, as the summary always began
        print(tail[0], file=out)
        tail = tail[1:]
    if out.isatty():
        try:
            _rich(report, thresholds, out)
        except ImportError:  # pragma: no cover - rich is a dependency
            _plain(report, thresholds, out)
    else:
        _plain(report, thresholds, out)
    for line in tail:
        print(line, file=out, flush=True)


def _plain(report: dict, thresholds: dict | None, out: IO[str]) -> None:
    for line in stage_table_lines(report.get("stages", {})) + threshold_lines(thresholds):
        print(line, file=out)


def _rich(report: dict, thresholds: dict | None, out: IO[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out)
    rows = _rows(report.get("stages", {}))
    if rows:
        table = Table(title="latency per stage (ms)", title_justify="left")
        table.add_column("stage")
        for c in COLUMNS:
            table.add_column(c, justify="right")
        for row in rows:
            table.add_row(*row, style="bold" if row[0] == "join_total" else None)
        console.print(table)
    if thresholds:
        table = Table(title="thresholds", title_justify="left", caption=thresholds["file"], caption_justify="left")
        table.add_column("limit")
        table.add_column("measured", justify="right")
        table.add_column("verdict")
        for v in thresholds["limits"]:
            actual = "no values" if v["actual"] is None else _cell(v["actual"])
            table.add_row(v["limit"], actual, "[green]ok[/green]" if v["passed"] else "[bold red]BREACHED[/bold red]")
        console.print(table)
