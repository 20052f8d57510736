"""Benchmark: the scenario runner (``cometbench run``), as a user runs it (each measurement is a
``cometbench run`` process; CPU and RSS are that process's).

Prints:

* the default pack in virtual time: wall and CPU time of the whole command, each scenario's share
  (target: under 10 s on a 2-core machine);
* ``--repeat N`` of ``two_party_call`` in virtual time on a network profile (default 4g, every actor):
  wall and CPU time, and the ``join_total`` percentiles of the report (both sides of every call);
* ``join_storm`` (100 rooms, 200 participants clicking Join at one moment) in real time on loopback
  sockets, with CPU time and max RSS:

  - **the join latency the emulator adds**, defined as in ``bench_calls.py``: per participant the sum
    of the *signalling* stages -- ``backend_invite`` (CometQL connect, login, INSERT), ``push``,
    ``sip_transport`` (TCP, TLS, WebSocket upgrade), ``register`` (REGISTER, 401, REGISTER, the
    directory lookup) and ``call_setup`` (INVITE, 407, INVITE, 100, 200).  Every other stage is a
    modelled delay (devices, ICE gathering, the subscription debounce, the attach poll, the media
    model) or a wait for the other side.  On loopback with no link conditions those stages take no
    virtual time at all (the same storm in virtual time is printed to show it), so in real time they
    are exactly the server side's share -- the emulator's work and the in-process clients' handling
    of those same messages, on one core -- plus the queueing of 200 joins at once.  Computed from the
    run's journal (every participant's marks), p50/p90/p99/max over the 200 participants;
  - the ``join_total`` percentiles in real and in virtual time, and their difference.

Run: ``.venv/bin/python tests/perf/bench_scenarios.py [--repeat N] [--network PROFILE] [--skip-pack]
[--skip-repeat] [--skip-storm]`` (``make bench-scenarios ARGS=...``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "bench.cli", "run"]
SIGNALLING = ("backend_invite", "push", "sip_transport", "register", "call_setup")
sys.path.insert(0, str(ROOT))


def command(args: list[str], report_dir: Path) -> tuple[dict, float, float, float]:
    """Run ``cometbench run ARGS --report-dir DIR``; (report, wall s, CPU s, max RSS MB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([*CLI, *args, "--report-dir", str(report_dir)], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        sys.exit(f"cometbench run {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    report = json.loads((report_dir / "report.json").read_text())
    if report["summary"]["passed"] != report["summary"]["scenarios"]:
        print(f"  warning: not every scenario passed:\n{done.stdout}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return report, wall, cpu, after.ru_maxrss / 1024


def percentiles(stage: dict) -> str:
    return (f"p50 {stage['p50']:.0f} ms, p90 {stage['p90']:.0f} ms, p99 {stage['p99']:.0f} ms, "
            f"max {stage['max']:.0f} ms (n={stage['count']})")


def signalling_sums(report_dir: Path) -> list[float]:
    """Per participant of the run, the sum of its signalling stages (ms), from the journal's marks."""
    from bench.actors.participant import stage_values

    conn = sqlite3.connect(report_dir / "journal.sqlite")
    marks: dict[str, dict[str, float]] = {}
    for (data,) in conn.execute("SELECT data FROM entries WHERE service = 'bench' AND kind = 'mark' ORDER BY seq"):
        record = json.loads(data)
        if "mark" in record and "actor" in record:
            marks.setdefault(record["actor"], {}).setdefault(record["mark"], record["t"])
    conn.close()
    sums = []
    for actor_marks in marks.values():
        stages = stage_values(actor_marks)
        if all(name in stages for name in SIGNALLING):
            sums.append(sum(stages[name] for name in SIGNALLING))
    return sums


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1000, help="repetitions of two_party_call (default 1000)")
    parser.add_argument("--network", default="4g", help="network profile of the repeated call (default 4g)")
    parser.add_argument("--skip-pack", action="store_true")
    parser.add_argument("--skip-repeat", action="store_true")
    parser.add_argument("--skip-storm", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}, "
          f"{os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="cometbench-bench-") as tmp:
        tmp_path = Path(tmp)
        if not args.skip_pack:
            report, wall, cpu, rss = command([], tmp_path / "pack")
            simulated = sum(s["simulated_ms"] for s in report["scenarios"]) / 1000
            print(f"default pack, virtual time: {report['summary']['passed']}/{report['summary']['scenarios']} passed, "
                  f"wall {wall:.2f} s (command), CPU {cpu:.2f} s, max RSS {rss:.0f} MB; "
                  f"{simulated / 60:.1f} simulated minutes")
            for scenario in sorted(report["scenarios"], key=lambda s: -s["duration_ms"]):
                print(f"  {scenario['name']:<18} {scenario['duration_ms'] / 1000:5.2f} s "
                      f"(simulated {scenario['simulated_ms'] / 1000:6.1f} s)")
        if not args.skip_repeat:
            report, wall, cpu, rss = command(
                ["two_party_call", "--repeat", str(args.repeat), "--network", args.network], tmp_path / "repeat")
            per = wall / args.repeat * 1000
            print(f"two_party_call --repeat {args.repeat}, virtual time, network {args.network}: wall {wall:.1f} s "
                  f"({per:.0f} ms per call), CPU {cpu:.1f} s ({cpu / args.repeat * 1000:.0f} ms per call), "
                  f"max RSS {rss:.0f} MB")
            print(f"  join_total {percentiles(report['stages']['join_total'])}")
            print(f"  system     {percentiles(report['stages']['system'])}")
        if not args.skip_storm:
            virtual, vwall, vcpu, vrss = command(["join_storm"], tmp_path / "storm-virtual")
            real, rwall, rcpu, rrss = command(["join_storm", "--real-time"], tmp_path / "storm-real")
            v, r = virtual["stages"]["join_total"], real["stages"]["join_total"]
            print(f"join_storm, virtual time: wall {vwall:.1f} s, CPU {vcpu:.1f} s, max RSS {vrss:.0f} MB; "
                  f"join_total {percentiles(v)}")
            print(f"join_storm, real time on loopback: wall {rwall:.1f} s, CPU {rcpu:.1f} s "
                  f"({rcpu / rwall * 100:.0f} % of one core), max RSS {rrss:.0f} MB; join_total {percentiles(r)}")
            print("  join_total added (real - virtual): " + ", ".join(
                f"{key} {r[key] - v[key]:.0f} ms" for key in ("p50", "p90", "p99", "max")))
            for label, folder in (("real time", "storm-real"), ("virtual time", "storm-virtual")):
                sums = signalling_sums(tmp_path / folder)
                print(f"  the join latency the emulator adds (signalling stages summed per participant, {label}, "
                      f"n={len(sums)}): " + ", ".join(f"p{p} {pct(sums, p):.0f} ms" for p in (50, 90, 99))
                      + f", max {max(sums, default=float('nan')):.0f} ms")
            for name in ("backend_invite", "push", "register", "call_setup", "peer_handshake", "media"):
                print(f"  {name:<15} real {percentiles(real['stages'][name])}")


if __name__ == "__main__":
    main()
