"""Benchmark: does polling the control plane every 100 ms move the join latency of 1,000 participants?

Issue 12 asks that polling the control plane and ``/metrics`` every 100 ms during a 1,000-participant
run not move the join-latency percentiles.  ``bench_reports.py`` measures it with the emulator and
every virtual client in one process, which saturates at 500-1,000 participants on a 2-core machine;
here the machinery of ``bench_calls_process.py`` is reused instead: the emulator is a ``cometbench
serve`` child (journal on, in a file) and the clients run in ``--workers`` other processes, ``--calls``
two-party calls (500: 1,000 participants) joining at ``--ramp`` calls a second.  Each run is one of
three modes, and the modes take turns (``--rounds`` times), so a drift of the machine's load shows:

* ``off``: ``cometbench serve --no-control`` (no control plane at all);
* ``idle``: the control plane runs (its journal tap sees every record) but nobody asks it anything;
* ``polled``: a separate process fetches ``/api/state``, ``/api/conferences`` and ``/metrics`` (with
  the control token, on one keep-alive connection) every 100 ms from before the pages open until
  the last call is up (requests made, failures and the time per request as the poller saw it).

Each run gets a fresh emulator and a warm-up call.  Per run it prints the p50 / p90 / p99 / max of
the **server residence of a join** (the emulator's share, from its journal; docs/performance.md
defines it; the robust figure on a loaded machine) and of the **client-observed** ``join_total``
and signalling stages (clients and loopback included), the emulator's CPU during the joins, and the
load average before and after; at the end a table per mode.

Run: ``.venv/bin/python tests/perf/bench_control_polling.py [--calls 500] [--workers 2] [--ramp 10]
[--rounds 2] [--modes off,idle,polled]`` (``make bench-control-polling ARGS=...``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from bench_calls_process import SIGNALLING, TOKEN, Clients, open_and_join, start_serve, warm_up
from emulator_process import POLLER, pct, stop_emulator

MODES = ("off", "idle", "polled")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    return " / ".join(f"{pct(values, p):.1f}" for p in (50, 90, 99)) + f" / {max(values):.1f}"


def one_run(mode: str, args, tmp: str, index: int) -> dict:
    load_before = load()
    proc, ready, journal = start_serve(*(["--no-control"] if mode == "off" else []))
    assert (mode == "off") == (ready.get("control") is None), ready
    poller = None
    out = pathlib.Path(tmp, f"poll-{index}.json")
    try:
        warm_up(ready)
        print(f"[{index}] mode {mode}: emulator pid {proc.pid}; load average before {load_before}", flush=True)
        clients = Clients(ready, args.workers, args.calls, args.ramp)
        if mode == "polled":
            poller = subprocess.Popen([sys.executable, "-c", POLLER, str(ready["control"]), TOKEN, str(out)])
        figures = open_and_join(clients, args.calls, proc.pid, journal)
        if poller is not None:
            poller.terminate()
            poller.wait(10)
            poller = None
            figures["poll"] = json.loads(out.read_text())
        clients.leave()
    finally:
        if poller is not None:
            poller.kill()
            poller.wait()
        stop_emulator(proc)
    figures["load"] = (load_before, load())
    figures["mode"] = mode
    return figures


def summary_line(r: dict) -> str:
    stages = r["stages"].values()
    joins = [s["join_total"] for s in stages]
    added = [sum(s[k] for k in SIGNALLING) for s in stages]
    line = (f"{r['mode']:6} | {len(r['residence'])} | {percentiles(r['residence'])} | {percentiles(joins)} | "
            f"{percentiles(added)} | {len(r['failed'])} | {r['join_wall']:.0f} s, {r['join_cpu']:.1f} s | "
            f"{r['load'][0]} -> {r['load'][1]}")
    if "poll" in r:
        ms = r["poll"]["ms"]
        line += (f" | {r['poll']['requests']} ({r['poll']['failed']} failed), "
                 f"{pct(ms, 50):.1f} / {pct(ms, 99):.1f} ms")
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="concurrent two-party calls (default 500)")
    parser.add_argument("--workers", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--ramp", type=float, default=10.0, help="calls started per second (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each mode, taking turns (default 2)")
    parser.add_argument("--modes", default=",".join(MODES), help="modes in their order (default off,idle,polled)")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes takes some of {', '.join(MODES)}")
    print(f"{args.calls} calls ({2 * args.calls} participants), {args.workers} client processes, ramp "
          f"{args.ramp:g} calls/s; modes {', '.join(modes)} taking turns, {args.rounds} rounds; "
          f"load average at start {load()}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="cometbench-bench-polling-") as tmp:
        for i in range(args.rounds * len(modes)):
            results.append(one_run(modes[i % len(modes)], args, tmp, i))
            print("  " + summary_line(results[-1]), flush=True)
    print("\nmode | participants | server residence p50 / p90 / p99 / max, ms | client join_total p50 / p90 / "
          "p99 / max, ms | client signalling stages p50 / p90 / p99 / max, ms | failed calls | joins wall, "
          "emulator CPU | load average before -> after | requests (failed), time per request p50 / p99")
    for r in results:
        print(summary_line(r))
    print(f"load average at end {load()}")


if __name__ == "__main__":
    main()
