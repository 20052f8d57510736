"""Benchmark: real browsers in the scenarios (bench/browser) on this machine.

Prints:

* **concurrency** -- N browser actors (the demo app, one Chromium, one context each) in N/2
  two-person calls of one scenario, every pair joining at the same moment, then holding the calls
  for ``--hold`` seconds: per N, whether every actor reached ``first_remote_frame`` and kept its call
  (onCallEnd never fired), the ``join_total`` and ``system`` percentiles, the CPU seconds of the
  bench process and of the Chromium processes (sampled from /proc), Chromium's peak resident memory,
  and the load average.  "Sustained" = every join completed within 15 s and every call held;
* **the browser pack** -- ``cometbench run refresh_mid_call two_member_limit mute_propagation
  --real-time`` with a browser in each (the patient; the nurse; the doctor and the patient), as
  separate commands: wall time, CPU time of the command and everything it started (Chromium
  included: RUSAGE_CHILDREN of the waited-for process tree);
* **browser vs virtual** -- ``--rounds`` scenarios in which two patients join two rooms at the same
  moment, one a real Chromium, one virtual (each with a virtual doctor already waiting): per stage,
  the p50 of each and the difference.  The gap is what the virtual actors' device and timing model
  leaves out on loopback.

Run: ``.venv/bin/python tests/perf/bench_browsers.py [--sizes 2,4,8] [--hold 20] [--rounds 5]
[--skip-concurrency] [--skip-pack] [--skip-compare]`` (``make bench-browsers ARGS=...``).  The
machine's load average is printed with each figure: other work on a shared machine moves them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import trio

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.browser import procs  # noqa: E402
from bench.browser.participant import BrowserSettings  # noqa: E402
from bench.scenario.loader import ScenarioSpec  # noqa: E402
from bench.scenario.runner import tell  # noqa: E402

CLI = [sys.executable, "-m", "bench.cli", "run"]
TICK = os.sysconf("SC_CLK_TCK")
STAGES = ("backend_invite", "push", "subscribe", "gum1", "sip_transport", "register", "gum2", "offer",
          "call_setup", "self_media", "peer_handshake", "first_remote_frame", "system", "join_total")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}/{fifteen:.2f}"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class GroupSampler:
    """CPU seconds and peak RSS of the processes of some process groups, sampled from /proc."""

    def __init__(self) -> None:
        self.groups: set[int] = set()
        self.cpu: dict[int, float] = {}
        self.peak_rss_mb = 0.0

    def sample(self) -> None:
        rss = 0.0
        for pid, p in procs.processes().items():
            if p.pgid not in self.groups:
                continue
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                self.cpu[pid] = (int(fields[11]) + int(fields[12])) / TICK
                rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError, ValueError):
                continue
        self.peak_rss_mb = max(self.peak_rss_mb, rss / 2**20)

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())

    async def run(self, interval: float = 0.5) -> None:
        while True:
            self.sample()
            await trio.sleep(interval)


def make_spec(name: str, story) -> ScenarioSpec:
    return ScenarioSpec(name, Path(__file__), story=story, timeout=600)


# --- concurrency ---------------------------------------------------------------------------------------

async def concurrency(n: int, hold: float, folder: Path) -> dict:
    names = tuple(f"b{i}" for i in range(n))
    sampler = GroupSampler()
    out: dict = {"n": n}

    async def story(s) -> None:
        actors = [s.actor(name) for name in names]
        async with trio.open_nursery() as watch:
            await s.together(*(a.open_page() for a in actors))
            sampler.groups = set(actors[0].participant.host.stats.groups)
            watch.start_soon(sampler.run)
            pairs = [(actors[i], actors[i + 1]) for i in range(0, n, 2)]
            t0 = trio.current_time()

            async def meet(k: int, a, b) -> None:
                room = str(300 + k)
                await s.together(a.join(room, at=t0 + 0.5), b.join(room, at=t0 + 0.5))

            await s.together(*(meet(k, a, b) for k, (a, b) in enumerate(pairs)))
            with trio.move_on_after(15):
                for a in actors:
                    await a.participant.wait_mark("first_remote_frame", timeout=None)
            out["joined"] = sum("first_remote_frame" in a.marks for a in actors)
            await s.sleep(hold)
            out["held"] = sum(a.in_call for a in actors)
            out["ended"] = sum(len(a.callbacks("onCallEnd")) for a in actors)
            out["join_total"] = [a.stage("join_total") for a in actors if a.stage("join_total") is not None]
            out["system"] = [a.stage("system") for a in actors if a.stage("system") is not None]
            sampler.sample()
            watch.cancel_scope.cancel()

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    result = await tell(make_spec(f"concurrency{n}", story), seed=n, browser=BrowserSettings(actors=names),
                        artifacts_dir=folder)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    out.update(passed=result.passed, failure=result.failure, wall=time.perf_counter() - t0,
               bench_cpu=(usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime),
               chromium_cpu=sampler.cpu_seconds, chromium_rss=sampler.peak_rss_mb, load=load())
    return out


# --- the browser pack ----------------------------------------------------------------------------------

PACK = (("refresh_mid_call", ("patient",), "lenient"), ("two_member_limit", ("patient",), "cppcomet-4.09"),
        ("mute_propagation", ("doctor", "patient"), "cppcomet-4.09"))


def run_pack(folder: Path) -> list[tuple]:
    rows = []
    for name, browsers, profile in PACK:
        args = [name, "--real-time", "--profile", profile]
        for b in browsers:
            args += ["--browser", b]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run([*CLI, *args, "--report-dir", str(folder / name)], capture_output=True, text=True,
                              cwd=ROOT)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        report = json.loads((folder / name / "report.json").read_text())
        passed = report["summary"]["passed"] == report["summary"]["scenarios"] == 1
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        rows.append((name, browsers, profile, passed, wall, cpu, load(), done.returncode))
    return rows


# --- browser vs virtual ------------------------------------------------------------------------------------

async def compare_round(i: int, folder: Path) -> dict:
    out: dict = {}

    async def story(s) -> None:
        doctor, other = s.doctor, s.actor("other_doctor")
        patient, twin = s.patient, s.actor("twin")          # the patient is the browser, the twin virtual
        await s.together(doctor.open_page(), other.open_page(), patient.open_page(), twin.open_page())
        await s.together(doctor.join("401"), other.join("402"))
        await s.wait("doctor.media_self")
        await s.wait("other_doctor.media_self")
        await s.sleep(0.5)
        await s.together(patient.join("401"), twin.join("402"))   # each counts from its own click
        await s.wait("patient.first_remote_frame", within=15)
        await s.wait("twin.first_remote_frame", within=15)
        out["browser"] = patient.participant.stages()
        out["virtual"] = twin.participant.stages()
        calibration = patient.participant.page.calibration
        out["err_ms"] = calibration.error * 1000 if calibration else None

    result = await tell(make_spec("compare", story), seed=100 + i, browser=BrowserSettings(actors=("patient",)),
                        artifacts_dir=folder)
    out["passed"] = result.passed
    out["failure"] = result.failure
    return out


async def amain(args) -> None:
    folder = Path(tempfile.mkdtemp(prefix="cometbench-bench-browsers-"))
    print(f"machine: {os.cpu_count()} cores; {load()} at start; artefacts in {folder}")
    if not args.skip_concurrency:
        print("\n== concurrency: N browser actors in N/2 two-person calls of one scenario "
              f"(joins at one moment, then {args.hold:g} s held)")
        print("  N  sustained  joined  held  ended  join_total p50/p90/max ms   system p50 ms  wall s  "
              "bench CPU s  Chromium CPU s  Chromium RSS MB  load")
        for n in args.sizes:
            r = await concurrency(n, args.hold, folder / f"n{n}")
            jt = r.get("join_total", [])
            sustained = r["passed"] and r.get("joined") == n and r.get("held") == n and r.get("ended") == 0
            print(f"{n:3d}  {'yes' if sustained else 'NO':9s}  {r.get('joined', 0):6d}  {r.get('held', 0):4d}  "
                  f"{r.get('ended', 0):5d}  {pct(jt, 50):6.0f}/{pct(jt, 90):6.0f}/{max(jt or [float('nan')]):6.0f}"
                  f"           {pct(r.get('system', []), 50):6.0f}  {r['wall']:6.1f}  {r['bench_cpu']:11.1f}  "
                  f"{r['chromium_cpu']:14.1f}  {r['chromium_rss']:15.0f}  {r['load']}", flush=True)
            if not r["passed"]:
                print(f"     failure: {r['failure']}")
    if not args.skip_pack:
        print("\n== the browser pack, one `cometbench run --real-time --browser ...` each")
        total_wall = total_cpu = 0.0
        for name, browsers, profile, passed, wall, cpu, ld, code in run_pack(folder / "pack"):
            total_wall += wall
            total_cpu += cpu
            print(f"  {name:18s} browsers {','.join(browsers):15s} profile {profile:14s} "
                  f"{'passed' if passed else 'FAILED (exit ' + str(code) + ')'}  wall {wall:5.1f} s  "
                  f"CPU {cpu:5.1f} s (Chromium included)  {ld}", flush=True)
        print(f"  total: wall {total_wall:.1f} s, CPU {total_cpu:.1f} s")
    if not args.skip_compare:
        print(f"\n== browser vs virtual: {args.rounds} scenarios, a browser patient and a virtual one joining "
              "at the same moment (ms, p50 over the rounds)")
        rounds = [await compare_round(i, folder / f"compare{i}") for i in range(args.rounds)]
        good = [r for r in rounds if r["passed"]]
        for r in rounds:
            if not r["passed"]:
                print(f"  a round failed: {r['failure']}")
        print(f"  {'stage':20s} {'browser':>9s} {'virtual':>9s} {'gap':>9s}")
        for stage in STAGES:
            b = [r["browser"][stage] for r in good if stage in r["browser"]]
            v = [r["virtual"][stage] for r in good if stage in r["virtual"]]
            if b and v:
                print(f"  {stage:20s} {median(b):9.1f} {median(v):9.1f} {median(b) - median(v):+9.1f}")
        errors = [r["err_ms"] for r in good if r["err_ms"] is not None]
        if errors:
            print(f"  page-clock mapping error bound: p50 {median(errors):.2f} ms, max {max(errors):.2f} ms; {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2,4,8", help="numbers of browser actors (even), default 2,4,8")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds the calls are held (default 20)")
    parser.add_argument("--rounds", type=int, default=5, help="browser-vs-virtual rounds (default 5)")
    parser.add_argument("--skip-concurrency", action="store_true")
    parser.add_argument("--skip-pack", action="store_true")
    parser.add_argument("--skip-compare", action="store_true")
    args = parser.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",")]
    if any(n < 2 or n % 2 for n in args.sizes):
        parser.error("--sizes: even numbers of at least 2")
    trio.run(amain, args)


if __name__ == "__main__":
    main()
