"""The command line of sharded runs: ``run --shard i/N``, ``run --shards N``, and ``merge``.

bench/cli.py adds these options to ``run`` (:func:`add_run_arguments`), the ``merge`` command
(:func:`add_merge_parser`), and calls :func:`shard_context` / :func:`run_shards` / :func:`run_merge`;
everything about sharding is here.  Mistakes are :class:`UsageError` (bench/cli.py prints them as
``cometbench: ...`` and exits 2).
"""

from __future__ import annotations

import argparse
import calendar
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.distributed.barrier import (
    DEFAULT_BARRIER_TIMEOUT,
    DEFAULT_LEAD,
    DEFAULT_TOLERANCE,
    FixedStart,
    parse_barrier,
)
from bench.distributed.partition import ShardArgError, parse_shard
from bench.distributed.shard import ShardContext

__all__ = ["add_run_arguments", "add_merge_parser", "shard_context", "run_shards", "run_merge", "parse_instant"]

MERGE_EXAMPLES = """\
examples:
  cometbench merge reports/run/shards/shard-*               the shards into reports/<time>-seed<N>-merged/
  cometbench merge /results/run42/shard-* --report-dir /results/run42/merged --thresholds limits.toml
exit status: 0 every scenario passed; 1 a scenario failed, a shard started late, or the shards cannot be
merged (each shard named, with why: missing, partial, crashed, of another run); 2 a usage error; 3 a
threshold breached
"""


def _seconds(what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        raw = text.strip()
        scale = 1.0
        if raw.endswith("ms"):
            raw, scale = raw[:-2], 0.001
        elif raw.endswith("s"):
            raw = raw[:-1]
        try:
            value = float(raw) * scale
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}: expects seconds such as 0.5 or 500ms, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{what} cannot be negative, got {text!r}")
        return value
    return parse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expects a number of shards >= 1, got {text!r}")
    return value


def _cpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expects a positive number of CPUs (e.g. 1 or 0.5), got {text!r}")
    return value


def parse_instant(text: str, now: float | None = None) -> float:
    """``--start-at``: Unix seconds (``1767225600.5``), UTC ISO 8601 (``2026-01-01T00:00:00Z``, a fraction
    allowed), or ``+SECONDS`` from now."""
    raw = text.strip()
    if raw.startswith("+"):
        return (time.time() if now is None else now) + _seconds("--start-at")(raw[1:])
    try:
        return float(raw)
    except ValueError:
        pass
    body = raw[:-1] if raw.endswith("Z") else raw.removesuffix("+00:00")
    main, _, frac = body.partition(".")
    try:
        whole = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
        return whole + (float(f"0.{frac}") if frac else 0.0)
    except ValueError:
        raise ValueError(f"--start-at expects Unix seconds, UTC ISO 8601 (2026-01-01T10:00:00Z) or +SECONDS, "
                         f"got {text!r}") from None


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("sharded runs (README: Sharded runs)")
    group.add_argument("--shard", metavar="INDEX/N",
                       help="run only shard INDEX of N: calls floor(INDEX*R/N) .. floor((INDEX+1)*R/N)-1 "
                            "of the R calls; "
                            "INDEX may name an environment variable (JOB_COMPLETION_INDEX/N)")
    group.add_argument("--shards", type=_positive_int, metavar="N",
                       help="run the calls as N shards with --executor, synchronised, and merge them into the run "
                            "directory (shards under <dir>/shards/)")
    group.add_argument("--executor", choices=("ray", "local"), default="ray",
                       help="with --shards: Ray tasks (default; pip install 'cometbench[ray]') or local subprocesses")
    group.add_argument("--address", metavar="ADDRESS",
                       help="with --executor ray: the cluster, ray://HOST:10001 or HOST:6379 "
                            "(default: Ray on this machine)")
    group.add_argument("--cpus-per-shard", type=_cpus, default=1.0, metavar="CPUS",
                       help="with --executor ray: CPUs each shard's task asks for (default 1)")
    group.add_argument("--start-at", metavar="TIME",
                       help="with --shard: start at this instant instead of at a barrier: Unix seconds, UTC ISO 8601 "
                            "or +SECONDS (a Kubernetes Job sets it at submit time)")
    group.add_argument("--start-tolerance", type=_seconds("--start-tolerance"), default=DEFAULT_TOLERANCE,
                       metavar="SECONDS",
                       help=f"a shard starting later than this after the shared start fails the run "
                            f"(default {DEFAULT_TOLERANCE:g})")
    group.add_argument("--start-lead", type=_seconds("--start-lead"), default=DEFAULT_LEAD, metavar="SECONDS",
                       help="with --shards: the start is this long after the last shard is ready "
                            f"(default {DEFAULT_LEAD:g})")
    group.add_argument("--barrier-timeout", type=_seconds("--barrier-timeout"), default=DEFAULT_BARRIER_TIMEOUT,
                       metavar="SECONDS",
                       help="how long a shard waits at the barrier for the others "
                            f"(default {DEFAULT_BARRIER_TIMEOUT:g})")
    group.add_argument("--barrier", metavar="ADDRESS", help=argparse.SUPPRESS)   # set by --shards for its shards


def shard_context(args: argparse.Namespace, usage: type[Exception]) -> ShardContext | None:
    """The shard of ``--shard`` (None without it); mistakes raise ``usage``."""
    if getattr(args, "shards", None) and getattr(args, "shard", None):
        raise usage("give --shard i/N (this process is one shard) or --shards N (launch N), not both")
    if not getattr(args, "shard", None):
        for flag, value in (("--start-at", args.start_at), ("--barrier", args.barrier)):
            if value:
                raise usage(f"{flag} applies to a shard (--shard i/N)")
        return None
    try:
        shard = parse_shard(args.shard)
    except ShardArgError as exc:
        raise usage(str(exc)) from None
    if args.start_at and args.barrier:
        raise usage("--start-at and --barrier both fix the start: give one")
    start: Any = None
    if args.start_at:
        try:
            start = FixedStart(parse_instant(args.start_at))
        except ValueError as exc:
            raise usage(str(exc)) from None
    elif args.barrier:
        try:
            start = parse_barrier(args.barrier)
        except ValueError as exc:
            raise usage(str(exc)) from None
    return ShardContext(shard, start, tolerance=args.start_tolerance, barrier_timeout=args.barrier_timeout)


def run_shards(args: argparse.Namespace, report_dir: Path, *, thresholds: Any, baseline: Any,
               usage: type[Exception]) -> int:
    """``run --shards N``: launch, wait, merge, summarise; the exit status."""
    from bench.distributed.executors import ExecutorError, run_local, run_ray

    argv = list(getattr(args, "argv", None) or [])
    if not argv or argv[0] != "run":
        raise usage("--shards needs the command line it was given (bench.cli.main sets args.argv)")
    argv = argv[1:]
    count = args.shards
    if args.executor != "ray" and (args.address or args.cpus_per_shard != 1.0):
        raise usage("--address and --cpus-per-shard apply to --executor ray")
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise usage(f"cannot create the report directory {report_dir}: {exc.strerror or exc}") from None
    say = lambda text: print(f"cometbench: {text}", file=sys.stderr, flush=True)  # noqa: E731
    say(f"{count} shard{'s' if count != 1 else ''} on {args.executor}"
        f"{f' at {args.address}' if args.address else ''}; shards in {report_dir / 'shards'}")
    started = time.perf_counter()
    try:
        if args.executor == "ray":
            outcomes = run_ray(argv, count, report_dir, address=args.address, cpus=args.cpus_per_shard,
                               lead=args.start_lead)
        else:
            outcomes = run_local(argv, count, report_dir, lead=args.start_lead)
    except ExecutorError as exc:
        say(str(exc))
        return 1
    except KeyboardInterrupt:
        say("interrupted (Ctrl-C): the shards were stopped; no merged report")
        return 130
    failed = [o for o in outcomes if o.error is not None]
    for o in failed:
        tail = o.tail()
        say(f"shard {o.index}/{count} failed: {o.error}" + (f"; its output ends: {tail}" if tail else "")
            + (f" (log: {o.log})" if o.log else ""))
    if failed:
        say(f"no merged report: {len(failed)} of {count} shards did not finish (the others are in "
            f"{report_dir / 'shards'})")
        return 1
    say(f"every shard ended after {time.perf_counter() - started:.1f} s; merging")
    return _merge_and_summarise([o.path for o in outcomes], report_dir, thresholds=thresholds, baseline=baseline,
                                tolerance=args.tolerance, outcomes=outcomes)


def add_merge_parser(sub: Any, formatter: Any, report_options: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "merge", help="merge the shards of a run (run --shard i/N) into one run directory with its reports",
        formatter_class=formatter, epilog=MERGE_EXAMPLES,
        description="Add the shards' HdrHistogram logs (exactly: one histogram setting everywhere), concatenate\n"
                    "their journals with a shard column, and write report.json, report.html and junit.xml as for a\n"
                    "single run.  Refuses shards that are missing, partial or crashed, or of another run.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="the shards' run directories")
    p.add_argument("--report-dir", metavar="DIR",
                   help="where the merged run goes (default: a new reports/<UTC time>-seed<N>-merged/)")
    report_options(p)


def run_merge(args: argparse.Namespace, *, thresholds: Any, baseline: Any, default_dir: Callable[[int], Path],
              usage: type[Exception]) -> int:
    if args.report_dir:
        out = Path(args.report_dir)
    else:
        seed = _first_seed(args.run_dirs)
        out = default_dir(seed)
        out = out.with_name(out.name + "-merged")
    return _merge_and_summarise(args.run_dirs, out, thresholds=thresholds, baseline=baseline, tolerance=args.tolerance)


def _first_seed(paths: list[str]) -> int:
    for path in paths:
        try:
            return int(json.loads((Path(path) / "report.json").read_text(encoding="utf-8"))["seed"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return 0


def _merge_and_summarise(paths: list, out: Path, *, thresholds: Any, baseline: Any, tolerance: float,
                         outcomes: list | None = None) -> int:
    from bench.distributed.merge import MergeError, merge_runs
    from bench.report.diff import DiffSettings
    from bench.report.terminal import print_summary
    from bench.report.writer import exit_status
    from bench.scenario.progress import summary_lines

    try:
        result = merge_runs(paths, out, thresholds=thresholds, baseline=baseline,
                            diff_settings=DiffSettings(tolerance=tolerance))
    except MergeError as exc:
        for problem in exc.problems:
            print(f"cometbench: {problem}", file=sys.stderr)
        tails = {str(o.path): o.tail() for o in outcomes or [] if o.tail()}
        for path, tail in tails.items():
            if any(path in problem for problem in exc.problems):
                print(f"cometbench: {path}: its output ends: {tail}", file=sys.stderr)
        print("cometbench: no merged report was written", file=sys.stderr)
        return 1
    report = result.report
    log = report.get("emulator_log")
    tail = summary_lines(report, str(result.path / "report.json"),
                         (str(result.path / log["path"]), log["errors"]) if log else None)
    tail.insert(-1, f"html: {result.written.html}  junit: {result.written.junit}")
    shards = report["shards"]
    skew = shards.get("max_skew_ms")
    tail.insert(0, f"merged {shards['count']} shards of {shards['total_calls']} calls "
                   f"in {result.merge_ms / 1000:.2f} s; "
                   f"largest start skew {'–' if skew is None else f'{skew:.1f} ms'} "
                   f"(tolerance {shards['tolerance_ms']:g} ms)")
    print_summary(report, tail)
    for problem in result.skew_problems:
        print(f"cometbench: {problem}", file=sys.stderr)
    status = exit_status(report)
    if result.skew_problems and status in (0, 3):
        return 1
    return status
