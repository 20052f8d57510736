"""Memory housekeeping of a long-running ``cometbench serve``: give a storm's memory back.

Why: ``cometbench serve`` tunes the cyclic garbage collector for latency (``bench.cli.tune_gc``:
start-up objects frozen, generation thresholds 100,000 / 50 / 100), so full collections are rare.
A connection leaves cyclic garbage behind (its trio tasks, TLS and wsproto objects refer to each
other), and after a drop storm -- a thousand clients' links reset at once, then their calls ended --
that garbage from thousands of connections waited for a full collection that could be hours away,
and the C allocator kept the pages it had used at the peak.  Measured with the emulator in its own
process (tests/perf/bench_calls_process.py, 500 calls): RSS 74 MB before the calls, 207 MB after
every client had gone.

What: :func:`reclaim_after_drops` watches the number of open connections every ``interval``
seconds. When it has fallen by at least ``drop`` (and by at least half) from the highest level seen
since the last reclaim, the connections that went are garbage: it prunes trio's deadline heap of
the storm's exited time-outs (:func:`prune_trio_deadlines`), runs a full ``gc.collect()`` and then
glibc's ``malloc_trim(0)``, which returns free heap pages to the system. A collection of the
objects of a thousand connections takes tens to a few hundred milliseconds and holds up everything
else for that long, so it runs only after such a fall -- never during steady load or a ramp-up --
and at most once per ``interval``. A second pass follows ``settle`` seconds (default 40) after each
such reclaim, unless connections have risen by ``drop`` since: what the protocols keep for a while
after a connection ends -- the SIP core's answers for retransmitted requests, 32 s (RFC 3261's
64*T1) -- is freed only then, and glibc gives its pages back only when asked. Without glibc the
trim is skipped (the collection still runs). The counts it acted on are kept in
:attr:`Reclaimer.runs` (the control plane and the benchmark can read them), and each run is logged
(logger ``cometbench.housekeeping``, INFO: ``cometbench serve -v`` shows it).

What it cannot do: CPython 3.11's small-object allocator (pymalloc) gives memory back only per
1 MiB arena whose pools are all empty, and a few objects made during or after the storm sit in
every arena the storm added, so RSS stays above its level before the storm (about +28 % after 100
calls, about +100 % after 500); other allocators (glibc's, jemalloc, mimalloc) keep less but still
far more than 10 %.  docs/performance.md and docs/decisions.md have the measurements.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

__all__ = ["Reclaimer", "prune_trio_deadlines", "reclaim_after_drops"]

log = logging.getLogger("cometbench.housekeeping")


def prune_trio_deadlines() -> int | None:
    """Drop the stale entries of trio's deadline heap; how many went (``None``: not possible here).

    trio keeps every cancel scope that had a deadline in a heap until that deadline passes or the
    heap holds more than ``2 * active + 1000`` entries, even after the scope has exited: a storm's
    thousand connection time-outs (handshake and idle deadlines a minute ahead) stay there, each
    with its scope, cancel reason and the text of its task -- about 5,000 small objects allocated at
    the peak, which pin that many allocator pools.  trio's own ``Deadlines._prune`` (what it runs
    when the heap gets long) keeps exactly the active entries; it is private, so a trio without it
    leaves the heap alone (``None``).  It must run inside ``trio.run``.
    """
    try:
        from trio._core._run import GLOBAL_RUN_CONTEXT

        deadlines = GLOBAL_RUN_CONTEXT.runner.deadlines
        before = len(deadlines._heap)
        deadlines._prune()
        return before - len(deadlines._heap)
    except (ImportError, AttributeError):  # another trio, or not inside trio.run
        return None


def _malloc_trim() -> Callable[[], None] | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None
    return lambda: trim(0)


@dataclass
class Reclaimer:
    """The decision of :func:`reclaim_after_drops`, separate from the clock (unit-testable)."""

    drop: int = 200
    peak: int = 0
    runs: list[dict] = field(default_factory=list)
    #: seconds from a reclaim after a fall to its second pass
    settle: float = 40.0
    #: when the second pass is due (``None``: none pending), and the connections at the first one
    followup_at: float | None = None
    level: int = 0

    def due(self, connections: int) -> bool:
        """Whether a reclaim should run now, given the current number of connections."""
        self.peak = max(self.peak, connections)
        fallen = self.peak - connections
        return fallen >= self.drop and connections <= self.peak // 2

    def due_at(self, connections: int, now: float) -> bool:
        """:meth:`due`, or the second pass ``settle`` seconds after a reclaim it made due (skipped
        when connections have risen by ``drop`` since: the server is busy again)."""
        if self.due(connections):
            self.followup_at, self.level = now + self.settle, connections
            return True
        if self.followup_at is not None and now >= self.followup_at:
            self.followup_at = None
            return connections - self.level < self.drop
        return False

    def reclaim(self, connections: int) -> dict:
        started = time.perf_counter()
        pruned = prune_trio_deadlines()
        collected = gc.collect()
        trim = _malloc_trim()
        if trim is not None:
            trim()
        run = {"from": self.peak, "to": connections, "collected": collected, "deadlines_pruned": pruned,
               "ms": round(1000 * (time.perf_counter() - started), 1)}
        self.runs.append(run)
        del self.runs[:-20]
        log.info("connections fell from %d to %d: collected %d objects, trimmed the heap in %.1f ms",
                 self.peak, connections, collected, run["ms"])
        self.peak = connections
        return run


async def reclaim_after_drops(connections: Callable[[], int], *, interval: float = 5.0, drop: int = 200,
                              reclaimer: Reclaimer | None = None) -> None:
    """Run forever (a task of the server's nursery): reclaim memory after a fall of connections,
    and once more when it has settled."""
    if interval <= 0 or drop < 1:
        raise ValueError("interval must be > 0 and drop >= 1")
    state = reclaimer or Reclaimer(drop=drop)
    while True:
        await trio.sleep(interval)
        count = connections()
        if state.due_at(count, trio.current_time()):
            state.reclaim(count)
