"""Running scenarios: one story against one fresh stack, and a whole run to a report directory.

* :func:`tell` runs one story **inside the current trio run** (the pytest plugin uses it under
  pytest-trio's clock): a fresh in-process stack from a config (the run's seed, the fidelity
  profile, the scenario's ``CONFIG``), the in-memory network when the clock is a ``MockClock`` and
  loopback OS sockets otherwise, a :class:`~bench.scenario.story.Scenario` with a doctor and a
  patient, the story, then the judgement of its expectations.  It never raises for a story's
  failure: it returns a :class:`ScenarioResult` whose ``failure`` names the scenario, the step and
  the cause.  Only KeyboardInterrupt (and trio's own cancellation) go through.
* :func:`run_one` is :func:`tell` in a trio run of its own: ``trio.run(..., clock=MockClock(
  autojump_threshold=0))`` in virtual time (the journal's clock then starts at a fixed epoch, so
  equal seeds give equal timestamps), the real clock with OS sockets on 127.0.0.1 in real time.
* :class:`Run` runs a list of scenarios (each ``repeat`` times) to a report directory: the
  journal of every scenario in ``journal.sqlite`` (one journal run per scenario run),
  ``histograms.hlog`` and ``report.json``, rewritten after each scenario (between repetitions of
  one scenario at most once a second, unless one failed: ``--repeat 1000`` would spend its time
  rewriting) so a run that is killed still says how far it got.  Ctrl-C (KeyboardInterrupt) stops it
  after writing the report with status ``interrupted`` and the unfinished scenarios named.

**Against a target** (``target=``, ``cometbench run --target ...``): no stack is started; the actors
run on OS sockets under the real clock against the deployment, and the bench's own records (marks,
steps, callbacks) go to the run's journal under the scenario's run id.  A story whose ``NEEDS`` name a
power the target lacks (:data:`TARGET_POWERS`: server faults, link conditions, a look inside
FreeSWITCH are the in-process stack's) is **skipped** before it starts: status ``skipped``, the reason
in ``skipped``; a skip is not a failure.  An action that needs such a power in a story that did not
declare it fails that story with :class:`~bench.scenario.errors.NotAvailable`, naming what it needs.

Seeds: repetition 0 of every scenario uses the run's seed as it is (so ``--seed 7`` means 7 to the
stack and the actors); repetition ``i`` uses a seed derived from ``(seed, i)``, so repeated runs
vary the way different seeds do while staying reproducible.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
import trio.testing

from bench.metrics import Metrics
from bench.options import NetworkSpec, SetupError
from bench.scenario.errors import ScenarioError, ScenarioFailure, describe_needs
from bench.scenario.loader import ScenarioSpec
from bench.scenario.names import CallNames, run_tag
from bench.scenario.network import network_spec
from bench.scenario.story import Scenario
from emulator.ids import deterministic_scheduling
from emulator.profiles import DEFAULT_PROFILE

if TYPE_CHECKING:  # pragma: no cover
    from bench.options import TargetSpec

__all__ = ["RunSettings", "ScenarioResult", "ScenarioStatus", "RunStatus", "tell", "run_one", "Run", "scenario_seed",
           "VIRTUAL_EPOCH", "TARGET_POWERS"]

VIRTUAL_EPOCH = 1_700_000_000.0      # the Unix time virtual runs start at (2023-11-14T22:13:20Z)
#: The powers a story has against an external target (bench.scenario.errors.POWERS): none -- the
#: actors talk to the deployment, and what it does is seen through them and through CometQL.
TARGET_POWERS: frozenset[str] = frozenset()


@dataclass
class RunSettings:
    seed: int = 0
    clock: str = "virtual"               # virtual | real
    network: str = "loopback"
    profile: str = DEFAULT_PROFILE
    media: str = "model"                 # model | real (emulator/freeswitch/real_media.py; real time only)
    repeat: int = 1
    target: str = "in-process"
    target_spec: TargetSpec | None = None     # the parsed --target (None: in-process)
    browser: Any = None                  # bench.browser.participant.BrowserSettings: real browsers in the pack


class ScenarioStatus(StrEnum):
    """One scenario run in a report: not run yet, running, and how it ended."""

    NOT_RUN = "not_run"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"                  # it needs what a --target does not have (NEEDS)


class RunStatus(StrEnum):
    """A whole run (report.json ``status``)."""

    RUNNING = "running"
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"


@dataclass
class ScenarioResult:
    name: str
    passed: bool = False
    status: ScenarioStatus = ScenarioStatus.NOT_RUN
    duration_ms: float = 0.0             # wall time the scenario took to run
    simulated_ms: float = 0.0            # trio-clock time of the story (= wall in real time)
    failure: str | None = None
    failures: list[str] = field(default_factory=list)
    step: str | None = None
    seed: int = 0
    profile: str = DEFAULT_PROFILE
    network: str = "loopback"
    repetition: int = 0
    journal_run: str | None = None
    expectations: int = 0
    events: int = 0
    target: str = "in-process"
    skipped: str | None = None           # why it was not told (it needs what the target does not have)
    join_total_ms: float | None = None   # the slowest join_total of this run (None: no join finished)
    browsers: list[str] = field(default_factory=list)   # the actors a real browser played

    def as_json(self) -> dict:
        return asdict(self)


def scenario_seed(seed: int, repetition: int) -> int:
    if repetition == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}/{repetition}".encode()).digest()[:6], "big")


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def is_interrupt(exc: BaseException) -> bool:
    """KeyboardInterrupt, alone or inside trio's exception groups (with nothing but cancellations)."""
    leaves = _leaves(exc)
    return any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves) and all(
        isinstance(leaf, (KeyboardInterrupt, trio.Cancelled)) for leaf in leaves)


def describe_exception(exc: BaseException, path: Path | None) -> str:
    """One line: what was raised, and where in the scenario file."""
    parts = []
    for leaf in _leaves(exc):
        if isinstance(leaf, ScenarioFailure):
            parts.append(leaf.cause)
            continue
        text = f"{type(leaf).__name__}: {leaf}" if not isinstance(leaf, ScenarioError) else str(leaf)
        if path is not None:
            frames = [f for f in traceback.extract_tb(leaf.__traceback__) if Path(f.filename) == Path(path)]
            if frames:
                text += f" (at {Path(path).name} line {frames[-1].lineno})"
        parts.append(text)
    return "; ".join(parts)


async def tell(spec: ScenarioSpec, *, seed: int = 0, profile: str = DEFAULT_PROFILE,
               network: str | NetworkSpec = "loopback", repetition: int = 0, metrics: Metrics | None = None,
               journal_path: str = ":memory:", certs_dir: str = "", position: int = 0,
               target: TargetSpec | None = None, browser: Any = None,
               artifacts_dir: str | Path | None = None, media: str = "model", run_tag: str = "") -> ScenarioResult:
    """Tell one story in the current trio run (see the module docstring).  ``position``: where the
    story stands in its run (a run may tell the same story twice), part of its journal run id.
    ``target``: an external deployment instead of a fresh in-process stack (real time only); there
    the call's user ids and rooms come from ``position`` and the run's ``run_tag``
    (:mod:`bench.scenario.names`).
    ``browser``: real browsers in place of some actors (``bench.browser.participant.BrowserSettings``;
    real time only); ``artifacts_dir``: where they leave screenshots and console logs; ``media``:
    ``"real"`` gives the fake FreeSWITCH a real media endpoint (real time only)."""
    from emulator.profiles import PROFILE_NAMES

    network_error: str | None
    try:
        net_spec = network_spec(network)
    except ScenarioError as exc:
        net_spec, network_error = None, str(exc)
    else:
        network_error = None
    result = ScenarioResult(spec.name, seed=seed, profile=profile, repetition=repetition,
                            network=net_spec.text if net_spec is not None else str(network),
                            target=target.describe() if target is not None else "in-process")
    wall0, t0 = time.perf_counter(), trio.current_time()

    def failed(cause: str, step: str | None = None) -> ScenarioResult:
        result.status, result.passed, result.step = ScenarioStatus.FAILED, False, step
        where = f"step {step!r}: " if step else ""
        result.failure = f"{spec.name}: {where}{cause}"
        result.failures = result.failures or [result.failure]
        return result

    def finish(r: ScenarioResult) -> ScenarioResult:
        r.duration_ms = round((time.perf_counter() - wall0) * 1000.0, 3)
        r.simulated_ms = round((trio.current_time() - t0) * 1000.0, 3)
        return r

    if spec.error or spec.story is None:
        return finish(failed(spec.error or "no story"))
    for name in (profile, *spec.profiles):
        if name not in PROFILE_NAMES:
            return finish(failed(f"unknown fidelity profile {name!r} (PROFILES of {spec.path.name}); known: "
                                 f"{', '.join(PROFILE_NAMES)}"))
    if net_spec is None:
        return finish(failed(network_error or "bad network"))
    if target is not None:
        if isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
            return finish(failed("a target runs in real time: its servers keep the wall clock"))
        missing = [need for need in spec.needs if need not in TARGET_POWERS]
        if missing:
            result.status = ScenarioStatus.SKIPPED
            result.skipped = (f"needs {describe_needs(missing)} (NEEDS of {spec.path.name}), which only the "
                              "in-process stack has")
            return finish(result)
        try:
            net_spec.check_target()
        except SetupError as exc:
            return finish(failed(str(exc)))
    if browser is not None and browser.actors:
        if isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
            return finish(failed("a real browser runs on the real clock: run with --real-time"))
        if target is not None:
            return finish(failed("real browsers play actors against the in-process stack only (the demo app's "
                                 "backend talks to it), not against --target"))
        from dataclasses import replace

        folder = Path(artifacts_dir) / f"{spec.name}-seed{seed}" if artifacts_dir is not None else None
        browser = replace(browser, artifacts_dir=folder)
    # one journal file holds every scenario of a run: each gets its own run id, derived from what
    # identifies it (seed, place in the run, scenario, repetition) so equal seeds give equal journals
    run_id = hashlib.sha256(f"{seed}:{position}:{spec.name}:{repetition}:{profile}".encode()).hexdigest()[:12]
    scenario: Scenario | None = None
    outcome: dict[str, Any] = {"error": None, "timed_out": False}
    try:
        if target is None:
            from emulator.config import Config, ConfigError
            from emulator.net.network import OSNetwork, VirtualNetwork
            from emulator.stack import open_stack

            virtual = isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
            try:
                config = Config.from_dict({"seed": seed, "profile": profile, "journal_path": journal_path,
                                           "certs_dir": certs_dir, "run_id": run_id,
                                           **({"media": media} if media != "model" else {}), **spec.config})
            except ConfigError as exc:
                return finish(failed(f"CONFIG of {spec.path.name}: {exc}"))
            config.free_ports()
            net = VirtualNetwork() if virtual else OSNetwork()
            async with open_stack(config, network=net, epoch=VIRTUAL_EPOCH if virtual else None) as stack:
                result.journal_run = stack.journal.run_id if stack.journal.stored else None
                if stack.real_media is not None:   # real media for the browsers; virtual actors send no RTP
                    stack.real_media.real_clients = set(browser.actors) if browser is not None else set()
                scenario = await _story(spec, outcome, result, seed=seed, profile=profile, net_spec=net_spec,
                                        stack=stack, network=net, target=None,
                                        clock="virtual" if virtual else "real", journal=stack.journal,
                                        browser=browser)
        else:
            scenario = await _against_target(spec, outcome, result, seed=seed, profile=profile, net_spec=net_spec,
                                             target=target, journal_path=journal_path, run_id=run_id,
                                             names=CallNames(position, run_tag))
    except Exception as exc:  # noqa: BLE001 - an actor's task or the stack failed: that scenario fails
        scenario = scenario or outcome.get("scenario")
        step = scenario.failed_step or scenario.current_step if scenario is not None else None
        return finish(failed(f"the stack or an actor's task failed: {describe_exception(exc, spec.path)}", step))
    finally:
        scenario = scenario or outcome.get("scenario")
        if scenario is not None:
            result.browsers = scenario.browser_actors
            result.events = len(scenario.timeline)
            result.expectations = len(scenario.expectations)
            result.join_total_ms = _record_metrics(metrics, scenario, spec.name, net_spec)
    if outcome["timed_out"]:
        step = scenario.failed_step or scenario.current_step if scenario is not None else None
        return finish(failed(f"timed out after {spec.timeout:g} s (TIMEOUT of {spec.path.name})", step))
    if outcome["error"] is not None:
        step = scenario.failed_step if scenario is not None else None
        return finish(failed(describe_exception(outcome["error"], spec.path), step))
    if result.failures:
        result.status, result.passed = ScenarioStatus.FAILED, False
        more = len(result.failures) - 1
        result.failure = result.failures[0] + (f" (and {more} more expectation{'s' if more > 1 else ''} failed)"
                                               if more else "")
        return finish(result)
    result.status, result.passed = ScenarioStatus.PASSED, True
    return finish(result)


async def _story(spec: ScenarioSpec, outcome: dict, result: ScenarioResult, *, seed: int, profile: str,
                 net_spec: NetworkSpec, stack: Any, network: Any, target: Any, clock: str, journal: Any,
                 target_name: str = "in-process", browser: Any = None, names: CallNames | None = None) -> Scenario:
    """The story itself, on a stack or against a target: returns the scenario once it is told and
    judged; ``outcome`` gets the story's error and whether it timed out."""
    async with trio.open_nursery() as actors:
        scenario = Scenario(spec.name, seed=seed, stack=stack, network=network, nursery=actors, profile=profile,
                            network_profile=net_spec, clock=clock, actor_options=spec.actors, target=target,
                            target_name=target_name, browser=browser, names=names)
        outcome["scenario"] = scenario       # the caller's, even when an actor's task fails the nursery
        completed = False
        assert spec.story is not None   # tell() reports a scenario without a story before it gets here
        try:
            with trio.move_on_after(spec.timeout) as scope:
                await spec.story(scenario)
                await scenario.settle()
            outcome["timed_out"] = scope.cancelled_caught
            completed = not scope.cancelled_caught
            unknown = [a for a in net_spec.actors if a not in scenario.actors]
            if completed and unknown:
                raise ScenarioError(f"--network names actor(s) {', '.join(unknown)}, which this story does not "
                                    f"have (its actors: {', '.join(scenario.actors)})")
        except Exception as exc:  # noqa: BLE001 - a story's failure is reported, never raised
            outcome["error"] = exc
        finally:
            if completed and outcome["error"] is None:
                failures = scenario.judge()
                result.failures = [f"{spec.name}: {e.where()}{e.describe()} -- {e.result}" for e in failures]
            await scenario.finish(failed=not completed or bool(outcome["error"] or result.failures))
            scenario.close()
            actors.cancel_scope.cancel()
    scenario._journal("scenario", {"event": "end", "timed_out": outcome["timed_out"],
                                   "failed": bool(outcome["error"] or result.failures)})
    return scenario


async def _against_target(spec: ScenarioSpec, outcome: dict, result: ScenarioResult, *, seed: int, profile: str,
                          net_spec: NetworkSpec, target: TargetSpec, journal_path: str, run_id: str,
                          names: CallNames) -> Scenario:
    """The story against an external deployment: the actors on OS sockets, the bench's own records in
    the run's journal (the deployment keeps its own)."""
    from emulator.journal import Journal
    from emulator.net.links import Links
    from emulator.net.network import OSNetwork

    network = OSNetwork()
    network.links = Links(seed=seed)    # resets and half-open hangs still work on our ends
    journal = Journal(journal_path, seed=seed, profile=f"target:{profile}", clock="real", run_id=run_id)
    result.journal_run = journal.run_id if journal.stored else None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run_flusher)
            await nursery.start(network.links.run)
            scenario = await _story(spec, outcome, result, seed=seed, profile=profile, net_spec=net_spec, stack=None,
                                    network=network, target=target.participant_target(journal), clock="real",
                                    journal=journal, target_name=target.describe(), names=names)
            await trio.sleep(0.5)     # the pages' last frames and closes reach the journal
            nursery.cancel_scope.cancel()
    finally:
        journal.close()
    return scenario


def _record_metrics(metrics: Metrics | None, scenario: Scenario, name: str, spec: NetworkSpec) -> float | None:
    """Every join's stages into ``metrics`` (when given) under the profile of the actor who joined, the
    story's own measures under the run's network label; the slowest join_total of the story."""
    from bench.actors.participant import stage_values

    slowest: float | None = None
    for actor in scenario.actors.values():
        network = spec.profile_of(actor.name)
        for join in actor.participant.joins:
            stages = stage_values(join.marks)
            if "join_total" in stages:
                slowest = max(slowest or 0.0, stages["join_total"])
            if metrics is not None:
                metrics.add_stages(stages, scenario=name, network=network)
    if metrics is not None:
        for stage, ms in scenario.measures:
            metrics.add(stage, ms, scenario=name, network=spec.label)
    return None if slowest is None else round(slowest, 3)


def run_one(spec: ScenarioSpec, *, clock: str = "virtual", **kwargs: Any) -> ScenarioResult:
    """:func:`tell` in a trio run of its own (virtual: a MockClock that jumps whenever all tasks
    sleep, and a scheduling order fixed by the seed)."""
    if clock not in ("virtual", "real"):
        raise ValueError(f"clock must be 'virtual' or 'real', not {clock!r}")
    if kwargs.get("target") is not None:
        clock = "real"                   # a deployment keeps the wall clock
    if clock == "virtual":
        from emulator.clock import virtual_clock

        with deterministic_scheduling(kwargs.get("seed", 0)):
            return trio.run(lambda: tell(spec, **kwargs), clock=virtual_clock())
    return trio.run(lambda: tell(spec, **kwargs))


class Run:
    """A run of scenarios to a report directory (see the module docstring)."""

    def __init__(self, specs: list[ScenarioSpec], settings: RunSettings, report_dir: str | Path, *,
                 on_start: Callable[[int, int, ScenarioSpec, int], Any] | None = None,
                 on_result: Callable[[int, int, ScenarioResult], Any] | None = None) -> None:
        self.specs = specs
        self.settings = settings
        self.report_dir = Path(report_dir)
        self.on_start = on_start
        self.on_result = on_result
        self.metrics = Metrics()
        self.results: list[ScenarioResult] = []
        self.status = RunStatus.RUNNING
        self.interruption: str | None = None
        self.log_file: Path | None = None      # the emulator's log during the run (cometbench run sets it)
        self.log_records: Any = None            # its record counter (bench/cli.py _LogCounter)
        self.started = time.time()
        self.finished: float | None = None
        self.journal_path = self.report_dir / "journal.sqlite"
        self.histograms_path = self.report_dir / "histograms.hlog"
        self.report_path = self.report_dir / "report.json"
        self.write_interval = 1.0       # seconds between rewrites among repetitions of one scenario
        self._written = 0.0
        # the final write also writes report.html and junit.xml (bench/report/writer.py)
        self.thresholds: Any = None     # bench.report.thresholds.Thresholds
        self.baseline: Any = None       # bench.report.rundir.RunData to compare with
        self.diff_settings: Any = None  # bench.report.diff.DiffSettings for that comparison
        self.written: Any = None        # what the final write wrote (bench.report.writer.Written)
        self.report_error: str | None = None   # why report.html / junit.xml could not be written
        # sharded runs (bench/distributed): the plan indices this run tells (None: every call), a hook
        # run once before the first call (the shared start), and report.json's "shard" block
        self.calls: list[int] | None = None
        self.before_start: Callable[[Run], Any] | None = None
        self.shard: dict[str, Any] | None = None

    @property
    def planned(self) -> list[tuple[ScenarioSpec, int]]:
        return [(spec, i) for spec in self.specs for i in range(self.settings.repeat)]

    @property
    def call_indices(self) -> list[int]:
        """The plan indices (call indices) this run tells, in order: all of them, or a shard's."""
        return list(range(len(self.planned))) if self.calls is None else list(self.calls)

    def execute(self) -> RunStatus:
        """Run everything; the final status (``complete`` or ``interrupted``).  KeyboardInterrupt is
        turned into status ``interrupted``; any other exception also writes the report, then goes on."""
        self.report_dir.mkdir(parents=True, exist_ok=True)
        plan = self.planned
        indices = self.call_indices
        self.results = [ScenarioResult(spec.name, seed=scenario_seed(self.settings.seed, i), repetition=i,
                                       profile=self.settings.profile, network=self.settings.network,
                                       target=self.settings.target)
                        for spec, i in (plan[index] for index in indices)]
        self.write()
        try:
            if self.before_start is not None:
                self.before_start(self)
            # against a target: the run's tag in its rooms' names, from its start -- a sharded run's
            # shared start, so every shard of it has the same tag (bench/scenario/names.py)
            start_at = (self.shard or {}).get("start_at")
            tag = run_tag(start_at if start_at is not None else self.started)
            with tempfile.TemporaryDirectory(prefix="cometbench-run-certs-") as certs:
                for n, index in enumerate(indices):
                    spec, repetition = plan[index]
                    if self.on_start is not None:
                        self.on_start(n, len(indices), spec, repetition)
                    self.results[n].status = ScenarioStatus.RUNNING
                    seed = scenario_seed(self.settings.seed, repetition)
                    result = run_one(spec, clock=self.settings.clock, seed=seed,
                                     profile=self.settings.profile, network=self.settings.network,
                                     repetition=repetition, metrics=self.metrics,
                                     journal_path=str(self.journal_path), certs_dir=certs, position=index,
                                     **({"media": self.settings.media} if self.settings.media != "model" else {}),
                                     target=self.settings.target_spec,
                                     **({"run_tag": tag} if self.settings.target_spec is not None else {}),
                                     **({"browser": self.settings.browser, "artifacts_dir": self.report_dir / "browser"}
                                        if self.settings.browser is not None else {}))
                    self.results[n] = result
                    if self.on_result is not None:
                        self.on_result(n, len(indices), result)
                    following = plan[indices[n + 1]][0] if n + 1 < len(indices) else None
                    if (not result.passed or following is not spec
                            or time.monotonic() - self._written >= self.write_interval):
                        self.write()
            self.status = RunStatus.COMPLETE
        except BaseException as exc:
            if is_interrupt(exc):
                self.status, self.interruption = RunStatus.INTERRUPTED, "SIGINT (Ctrl-C)"
                self._mark_unfinished("interrupted by SIGINT (Ctrl-C) before it finished")
                raise KeyboardInterrupt from None
            what = describe_exception(exc, None)
            self.status, self.interruption = RunStatus.INTERRUPTED, f"crash: {what}"
            self._mark_unfinished(f"not finished: the run crashed ({what})")
            raise
        finally:
            self.finished = time.time()
            self.write(final=True)
        return self.status

    def _mark_unfinished(self, why: str) -> None:
        for result in self.results:
            if result.status == ScenarioStatus.RUNNING:
                result.status, result.passed = ScenarioStatus.INTERRUPTED, False
                result.failure = f"{result.name}: {why}"
            elif result.status == ScenarioStatus.NOT_RUN:
                result.failure = f"{result.name}: not run: {why}"

    def write(self, *, final: bool = False) -> None:
        """report.json (and the histograms, and on the final write the journal's digest)."""
        from bench.report import build_report, write_json

        self.metrics.write_log(self.histograms_path, start=self.started, end=self.finished or time.time())
        report = build_report(self, final=final)
        write_json(self.report_path, report)
        self._written = time.monotonic()
        if final:
            from bench.report.writer import write_reports

            try:
                self.written = write_reports(self.report_dir, thresholds=self.thresholds, baseline=self.baseline,
                                             diff_settings=self.diff_settings)
            except Exception as exc:  # noqa: BLE001 - report.json is written; say why the others are not
                self.report_error = f"{type(exc).__name__}: {exc}"
