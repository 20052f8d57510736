"""Benchmark: sharded runs on this machine -- scaling, the start skew, and the cost of the merge.

Prints:

* **scaling**: ``cometbench run two_party_call --repeat R --shards N`` for N = 1, 2, 4 as local Ray
  workers (``--executor ray``, Ray started on this machine with its CPUs; ``--cpus-per-shard`` so
  that every shard fits at once) and as local subprocesses (``--executor local``): participants per
  second from the shared start to the last shard's end (2 participants per call), and the
  efficiency rate(N) / (N * rate(1)).  Each shard runs its calls on its own in-process emulator in
  virtual time, so a shard is CPU-bound: on 2 cores the rate can at most double, whatever N;
  The CPU column is the command's CPU time with its child processes (for ``local``: the driver and
  every shard; for ``ray``: the driver only -- Ray's workers are not its children);
  From each shard's own CPU time (report.json ``shard.cpu_ms``, which the machine's other load does
  not change): participants per CPU-second, and the **projected** rate with a core per shard
  (participants / the slowest shard's CPU time) with its efficiency -- what a run with one node per
  shard can reach, which a busy shared machine's wall time cannot show;
* **start skew**: each shard's skew at the barrier (ms), from the merged report;
* **against one shared serve** (``--target-serve``): one ``cometbench serve`` process (started here,
  ``--state :memory: --no-journal``), and N = 1, 2, 4 shards of ``--target-repeat`` short calls
  driving it in real time (``--target ...``: each shard a participant pair after another, every call
  in rooms and with user ids of its own -- bench/scenario/names.py); the call is a quick one (both
  open the page, join, see each other's first frame, hang up; no 20 s of talking), so the rate is
  what the shards and the server can turn over.  Per N: participants per second from the shared
  start to the last shard's end, efficiency rate(N) / (N * rate(1)), the shards' CPU (sum / max of
  their ``shard.cpu_ms``), the serve process's CPU during the run (from /proc) and per participant,
  and join_total p50 / p99 from the merged report;
* **merge**: ``--merge-shards`` shards of one call each (made in this process with ``--shard i/M``,
  virtual time), then ``cometbench merge`` over them: wall and CPU time of the whole merge, and of
  adding the histogram logs alone.

Run: ``.venv/bin/python tests/perf/bench_shards.py [--repeat R] [--shards 1,2,4] [--executors ray,local]
[--merge-shards 100] [--target-serve [--target-repeat R]]`` (``make bench-shards``; ``--target-serve
--executors local --repeat 0 --merge-shards 0`` measures only the shared serve).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "perf"))   # emulator_process


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


#: the short call of --target-serve: nothing but the servers (NEEDS = ()), no talking time
QUICK_CALL = '''\
"""Both open the page, join room 7, see each other's first frame, and hang up."""

NEEDS = ()


async def story(s):
    await s.together(s.doctor.open_page(), s.patient.open_page())
    await s.doctor.join("7")
    await s.patient.join("7")
    await s.wait("patient.first_remote_frame", within=15)
    await s.wait("doctor.first_remote_frame", within=15)
    s.patient.hangup()
    s.doctor.hangup()
    await s.wait("doctor.onCallEnd", within=10)
'''


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far, from /proc."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sharded_run(base: pathlib.Path, repeat: int, shards: int, executor: str, *, scenario: str = "two_party_call",
                extra: tuple[str, ...] = ()) -> dict:
    out = base / f"{executor}-{shards}"
    command = [sys.executable, "-m", "bench.cli", "run", scenario, "--repeat", str(repeat),
               "--shards", str(shards), "--executor", executor, "--report-dir", str(out), *extra]
    if executor == "ray":
        command += ["--cpus-per-shard", f"{min(1.0, (os.cpu_count() or 1) / shards):g}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL)
    total = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU of the driver and, for --executor local, of every shard (its children); Ray's workers are not ours
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    parts = report["shards"]["parts"]
    span = max(p["wall_ms"] for p in parts) / 1000.0     # from the shared start to the last shard's end
    participants = 2 * report["summary"]["passed"]
    if report["summary"]["passed"] != report["summary"]["scenarios"]:
        raise SystemExit(f"{out}: not every call passed: {report['summary']}")
    shard_cpu = [p["cpu_ms"] / 1000.0 for p in parts]
    return {"shards": shards, "executor": executor, "span_s": span, "shard_cpu": shard_cpu, "total_s": total,
            "participants": participants, "rate": participants / span, "cpu_s": cpu,
            "skews": [p["skew_ms"] for p in parts], "merge_ms": report["shards"]["merge_ms"],
            "join_total": report["stages"].get("join_total", {})}


def scaling(repeat: int, counts: list[int], executors: list[str]) -> None:
    print(f"scaling: two_party_call --repeat {repeat} (virtual time, one in-process emulator per shard); "
          f"load before: {load()}")
    print(f"{'executor':9} {'N':>2} {'participants':>12} {'span s':>7} {'part/s':>7} {'efficiency':>10} "
          f"{'shard CPU s (sum/max)':>21} {'part/CPU-s':>10} {'projected':>9} {'proj.eff':>8} "
          f"{'command s':>9} {'CPU s':>6}  start skew per shard (ms)")
    with tempfile.TemporaryDirectory(prefix="cometbench-bench-shards-") as tmp:
        for executor in executors:
            base_rate = base_projected = None
            for n in counts:
                r = sharded_run(pathlib.Path(tmp), repeat, n, executor)
                # projected: the rate if every shard had a core of its own (a node each), from the
                # slowest shard's CPU time -- what a multi-node run can reach, this machine's load aside
                projected = r["participants"] / max(r["shard_cpu"])
                if base_rate is None:
                    base_rate, base_projected = r["rate"] / n, projected / n
                assert base_rate is not None and base_projected is not None
                eff = r["rate"] / (n * base_rate)
                skews = ", ".join(f"{s:.2f}" for s in r["skews"])
                cpu = f"{sum(r['shard_cpu']):.2f}/{max(r['shard_cpu']):.2f}"
                print(f"{executor:9} {n:>2} {r['participants']:>12} {r['span_s']:>7.2f} {r['rate']:>7.1f} {eff:>10.2f} "
                      f"{cpu:>21} {r['participants'] / sum(r['shard_cpu']):>10.1f} {projected:>9.1f} "
                      f"{projected / (n * base_projected):>8.2f} {r['total_s']:>9.1f} {r['cpu_s']:>6.1f}  {skews}",
                      flush=True)
    print(f"load after: {load()}")


def target_scaling(repeat: int, counts: list[int], executors: list[str]) -> None:
    from emulator_process import start_emulator, stop_emulator

    print(f"against one shared serve: a quick call --repeat {repeat} (real time, --target); load before: {load()}")
    print(f"{'executor':9} {'N':>2} {'participants':>12} {'span s':>7} {'part/s':>7} {'efficiency':>10} "
          f"{'shard CPU s (sum/max)':>21} {'serve CPU s':>11} {'serve ms/part':>13} "
          f"{'join p50':>8} {'join p99':>8}  start skew per shard (ms)")
    with tempfile.TemporaryDirectory(prefix="cometbench-bench-shards-serve-") as tmp:
        story = pathlib.Path(tmp) / "quick_call.py"
        story.write_text(QUICK_CALL, encoding="utf-8")
        for executor in executors:
            base_rate = None
            for n in counts:
                # a fresh server per run: no run sees another's tables
                proc, ready = start_emulator(stderr=subprocess.DEVNULL)
                try:
                    target = f"ws=127.0.0.1:{ready['ws']},cometql=127.0.0.1:{ready['cometql']},ca={ready['ca_cert']}"
                    extra = ("--target", target) + (("--cpus-per-shard", f"{min(1.0, (os.cpu_count() or 1) / n):g}")
                                                     if executor == "ray" else ())
                    cpu0 = proc_cpu(proc.pid)
                    r = sharded_run(pathlib.Path(tmp) / "runs", repeat, n, executor,
                                    scenario=str(story), extra=extra)
                    serve_cpu = proc_cpu(proc.pid) - cpu0
                finally:
                    stop_emulator(proc)
                shutil.rmtree(pathlib.Path(tmp) / "runs", ignore_errors=True)
                if base_rate is None:
                    base_rate = r["rate"] / n
                eff = r["rate"] / (n * base_rate)
                skews = ", ".join(f"{s:.2f}" for s in r["skews"])
                cpu = f"{sum(r['shard_cpu']):.2f}/{max(r['shard_cpu']):.2f}"
                join = r["join_total"]
                print(f"{executor:9} {n:>2} {r['participants']:>12} {r['span_s']:>7.2f} {r['rate']:>7.1f} {eff:>10.2f} "
                      f"{cpu:>21} {serve_cpu:>11.2f} {serve_cpu * 1000 / r['participants']:>13.1f} "
                      f"{join.get('p50', float('nan')):>8.0f} {join.get('p99', float('nan')):>8.0f}  {skews}",
                      flush=True)
    print(f"load after: {load()}")


def merge_cost(count: int) -> None:
    from bench.cli import main
    from bench.distributed.merge import merge_runs
    from bench.metrics import Metrics

    print(f"merge: {count} shards of one two_party_call each (virtual time); load before: {load()}")
    with tempfile.TemporaryDirectory(prefix="cometbench-bench-merge-") as tmp:
        dirs = []
        t0 = time.perf_counter()
        for i in range(count):
            path = pathlib.Path(tmp) / f"shard-{i}"
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                status = main(["run", "two_party_call", "--repeat", str(count), "--shard", f"{i}/{count}",
                               "--report-dir", str(path)])
            if status != 0:
                raise SystemExit(f"shard {i}/{count} exited {status}")
            dirs.append(path)
        print(f"  made {count} shards in {time.perf_counter() - t0:.1f} s")
        logs = [d / "histograms.hlog" for d in dirs]
        w0, c0 = time.perf_counter(), time.process_time()
        metrics = Metrics.read_log(logs)
        w1, c1 = time.perf_counter(), time.process_time()
        print(f"  histogram logs added: {(w1 - w0) * 1000:.0f} ms wall, {(c1 - c0) * 1000:.0f} ms CPU "
              f"({len(metrics.histograms)} histograms, {sum(h.get_total_count() for h in metrics.histograms.values())} "
              "values)")
        w0, c0 = time.perf_counter(), time.process_time()
        result = merge_runs(dirs, pathlib.Path(tmp) / "merged")
        w1, c1 = time.perf_counter(), time.process_time()
        size = (pathlib.Path(tmp) / "merged" / "journal.sqlite").stat().st_size
        print(f"  cometbench merge (checks, logs, journals, report.json/html, junit): {(w1 - w0):.2f} s wall, "
              f"{(c1 - c0):.2f} s CPU; merged journal {size / 1e6:.1f} MB; "
              f"{result.report['summary']['passed']} of {count} calls passed")
    print(f"load after: {load()}")


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=40, help="calls per run (default 40)")
    parser.add_argument("--shards", default="1,2,4", help="shard counts (default 1,2,4)")
    parser.add_argument("--executors", default="ray,local", help="ray and/or local (default both)")
    parser.add_argument("--merge-shards", type=int, default=100, help="shards for the merge cost (0: skip)")
    parser.add_argument("--target-serve", action="store_true",
                        help="also: the shards against one shared cometbench serve (real time)")
    parser.add_argument("--target-repeat", type=int, default=24, help="calls per run against the serve (default 24)")
    args = parser.parse_args()
    counts = [int(x) for x in args.shards.split(",")]
    executors = [x for x in args.executors.split(",") if x]
    print(f"cometbench sharded runs; {os.cpu_count()} CPUs")
    if executors and counts and args.repeat > 0:
        scaling(args.repeat, counts, executors)
    if args.target_serve and executors and counts:
        target_scaling(args.target_repeat, counts, executors)
    if args.merge_shards:
        merge_cost(args.merge_shards)


if __name__ == "__main__":
    main_()
