"""One shard of a run: its calls, its start at the shared instant, its record in report.json.

``cometbench run ... --shard i/N`` is an ordinary run (:class:`bench.scenario.runner.Run`) that tells
only the calls of its partition (:mod:`bench.distributed.partition`) under their own call indices,
so every seed, journal run id and scheduling order is the one the unsharded run gives that call.
:class:`ShardContext` attaches to the run before it starts:

* ``run.calls`` -- the call indices;
* ``run.before_start`` -- the start: prepare (import the stack and the actors, warm trio, check a
  target), wait at the barrier (:mod:`bench.distributed.barrier`) or until ``--start-at``, sleep until
  the shared instant, measure the **start skew** (how late the first call began, against the
  barrier's clock);
* ``run.shard`` -- report.json's ``shard`` block: the partition (index, count, R, the call range), the
  plan (scenario names in order, ``repeat`` and a digest of the scenario files), the start (barrier,
  instant, when this shard began, skew, tolerance, whether it held), host and pid, and the shard's CPU
  time from its start to the end of its last call (``cpu_ms``: the machine's other load does not
  change it, so it compares shards of a busy machine, and projects a run with a core per shard).

The run's ``started`` is set to the shared instant, so the shard's histogram log (its ``StartTime``)
and ``wall_ms`` count from the same moment in every shard: the logs line up, and ``cometbench merge``
adds them (:mod:`bench.distributed.merge`).  Calls within a shard follow one another as in any run
(each call's actions have their own intended times, and latencies count from them: no coordinated
omission); what the shared start adds is that every shard's sequence begins at one instant, so
the load of N shards overlaps the way N times the load of one would.

A skew over the tolerance does not stop the shard (stopping one shard would change the others'
load too): it runs its calls, records ``skew_ok: false``, and the run fails -- the shard exits 1
saying how late it was, and ``merge`` exits 1 and names it.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bench.distributed.barrier import DEFAULT_BARRIER_TIMEOUT, DEFAULT_TOLERANCE, StartAborted, StartSignal, sleep_until
from bench.distributed.partition import ShardSpec, plan_digest, plan_names
from bench.scenario.errors import ScenarioError

if TYPE_CHECKING:  # pragma: no cover
    from bench.scenario.runner import Run

__all__ = ["ShardContext", "ShardStartError", "StartSource", "skew_message"]


class ShardStartError(ScenarioError):
    """The shard could not start with the others (the barrier's message); the run stops before its
    first call and report.json says why."""


class StartSource(Protocol):
    description: str

    def arrive(self, index: int, count: int, timeout: float) -> StartSignal: ...


@dataclass
class ShardContext:
    """What makes a :class:`~bench.scenario.runner.Run` a shard (see the module docstring)."""

    shard: ShardSpec
    start: StartSource | None = None            # a barrier, a fixed instant, or None (start at once)
    tolerance: float = DEFAULT_TOLERANCE        # seconds of skew allowed
    barrier_timeout: float = DEFAULT_BARRIER_TIMEOUT
    prepare: Any = None                         # a function run before the barrier (e.g. a target check)

    def attach(self, run: Run) -> None:
        total = len(run.planned)
        calls = self.shard.calls(total)
        run.calls = list(calls)
        run.before_start = self._begin
        run.shard = {
            "index": self.shard.index, "count": self.shard.count, "total_calls": total,
            "calls": {"first": calls.start, "end": calls.stop},
            "plan": {"scenarios": plan_names(run.specs), "repeat": run.settings.repeat,
                     "sha256": plan_digest(run.specs, run.settings.repeat)},
            "barrier": self.start.description if self.start is not None else None,
            "start_at": None, "started_at": None, "skew_ms": None,
            "tolerance_ms": round(self.tolerance * 1000.0, 3), "skew_ok": True,
            "host": socket.gethostname(), "pid": os.getpid(), "cpu_ms": None,
        }
        # the shard's CPU time from its start, updated after every call (report.json is rewritten then):
        # a figure the machine's other load does not change, unlike wall time
        chained = run.on_result

        def on_result(n: int, total: int, result: Any) -> None:
            if self._cpu0 is not None and run.shard is not None:
                run.shard["cpu_ms"] = round((time.process_time() - self._cpu0) * 1000.0, 3)
            if chained is not None:
                chained(n, total, result)

        run.on_result = on_result

    _cpu0: float | None = field(default=None, init=False, repr=False)   # process_time() at the start

    def _begin(self, run: Run) -> None:
        warm_up()
        if self.prepare is not None:
            self.prepare()
        if self.start is None:
            run.started = time.time()
            self._cpu0 = time.process_time()
            return
        try:
            signal = self.start.arrive(self.shard.index, self.shard.count, self.barrier_timeout)
        except StartAborted as exc:
            raise ShardStartError(f"shard {self.shard.label} did not start: {exc}") from None
        woke = sleep_until(signal.local_start_at)
        skew = woke - signal.local_start_at
        self._cpu0 = time.process_time()
        run.started = signal.local_start_at
        assert run.shard is not None
        run.shard.update({
            "start_at": round(signal.start_at, 6), "started_at": round(woke + signal.offset, 6),
            "skew_ms": round(skew * 1000.0, 3), "skew_ok": skew <= self.tolerance,
            "clock_offset_ms": round(signal.offset * 1000.0, 3),
            "clock_uncertainty_ms": round(signal.uncertainty * 1000.0, 3),
        })


def skew_message(shard: dict[str, Any], where: str = "") -> str | None:
    """Why a shard's start failed the tolerance, or None when it held."""
    if shard.get("skew_ok", True):
        return None
    at = f" ({where})" if where else ""
    return (f"shard {shard['index']}/{shard['count']}{at} started {shard['skew_ms']:.1f} ms after the shared "
            f"start, more than the tolerance of {shard['tolerance_ms']:g} ms (--start-tolerance): its load did "
            "not overlap the other shards' as planned")


def warm_up() -> None:
    """What a shard can do before the start: import the stack, the actors and the scenario API (the
    first call would otherwise pay for it after the start), and start and stop a trio run once."""
    import trio

    import bench.actors.participant
    import bench.scenario.story  # noqa: F401
    import emulator.stack  # noqa: F401

    trio.run(trio.sleep, 0)
