"""Time for the emulator: wall-clock timestamps and the timers of the core, both on trio's clock.

**Wall time.**  All timestamps the emulator shows (``message_send_time``, ``users_time``, history
times, journal times, FreeSWITCH's event dates) come from :class:`WallClock`, which adds a fixed
offset to a monotonic source, by default ``trio.current_time()``.  Under the real clock the offset
makes it the Unix time; under ``trio.testing.MockClock`` it is a virtual Unix time that starts at a
configured epoch, so a virtual run is reproducible.  Synchronous core tests pass their own
``monotonic`` source (:class:`ManualClock`).

**Timers.**  The core's state machines are synchronous and I/O-free, yet things happen on their
own: a member's media starts after its modelled delay, talk spurts alternate, a vanished member
leaves at the RTP timeout, a recording is flushed, a SIP answer is retransmitted over UDP until
its ACK, a registration expires.  They all go through one :class:`Timers` per FreeSWITCH node (the
bridge and its SIP core share it): ``timers.at(when, fn, *args)`` on the same monotonic clock as
the wall clock, ``timers.run_due()`` runs everything due by now (each at its own due time, which
:attr:`Timers.firing` exposes while it runs), and :meth:`Timers.run` is the one task that sleeps
until the next one is due and never ticks through idle time, so under ``MockClock(autojump_
threshold=0)`` an hour-long call takes milliseconds.  The stack starts that task once; tests that
move a :class:`ManualClock` by hand call ``run_due()`` instead of starting it.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable
from typing import Any

import trio
import trio.testing

__all__ = ["WallClock", "ManualClock", "Timers", "Timer", "DUE_SLACK"]

#: A timer counts as due this long before its time: a due time computed in wall-clock seconds
#: (about 1.7e9, where a float's step is about 2e-7 s) and read back may come out a hair late.
DUE_SLACK = 1e-6


class WallClock:
    def __init__(self, epoch: float | None = None, monotonic: Callable[[], float] | None = None) -> None:
        """``epoch``: the Unix time "now" maps to (``None``: the real time of day)."""
        self._epoch = epoch
        self._monotonic = monotonic or trio.current_time
        self._offset: float | None = None

    @property
    def monotonic(self) -> Callable[[], float]:
        """The monotonic source this clock reads (trio's clock unless a test gave another)."""
        return self._monotonic

    def now(self) -> float:
        return self.at(self._monotonic())

    def at(self, monotonic: float) -> float:
        """The wall time of a moment on the monotonic source (a timer's due time, say)."""
        if self._offset is None:  # bind at first use, to the time of day of that moment
            self._offset = (time.time() if self._epoch is None else self._epoch) - self._monotonic()
        return self._offset + monotonic

    def seconds(self) -> int:
        """Whole Unix seconds, as the real server's ``time(0)``."""
        return int(self.now())


def virtual_clock() -> trio.testing.MockClock:
    """trio's ``MockClock(autojump_threshold=0)`` for virtual runs, with a cheaper ``current_time``.

    Everything in a virtual run reads the clock (timestamps, link arrivals, timers): an hour of call
    asks it about 600,000 times.  ``MockClock.current_time`` reads ``perf_counter`` and scales it by
    the rate even at rate 0 (virtual time stands still between jumps); the clock made here returns
    the virtual time directly while the rate is 0.  The value is the same either way (``base + 0 * x``),
    so runs are unchanged.  MockClock cannot be subclassed (trio marks it final) and trio's autojump
    works only with a MockClock, so the instance gets its own ``current_time``; it reads MockClock's
    private ``_rate`` and ``_virtual_base``, and a trio without them gets the plain clock.
    """
    clock = trio.testing.MockClock(autojump_threshold=0)
    if not (isinstance(getattr(clock, "_rate", None), float)
            and isinstance(getattr(clock, "_virtual_base", None), float)):
        return clock   # pragma: no cover - a trio whose MockClock is built differently
    slow = clock.current_time

    def current_time() -> float:
        return clock._virtual_base if clock._rate == 0.0 else slow()

    clock.current_time = current_time   # type: ignore[method-assign]
    return clock


class ManualClock(WallClock):
    """A clock that only moves when told to (synchronous tests of the core)."""

    def __init__(self, epoch: float = 1_700_000_000.0) -> None:
        self.t = 0.0
        super().__init__(epoch, monotonic=lambda: self.t)

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Timer:
    """One scheduled call; :meth:`cancel` makes it a no-op.  ``group`` names its owner, so a node's
    restart cancels its own timers only (:meth:`Timers.cancel_group`)."""

    __slots__ = ("args", "at", "cancelled", "fn", "group", "owner")

    def __init__(self, at: float, fn: Callable[..., None], args: tuple[Any, ...], group: str,
                 owner: Timers | None = None) -> None:
        self.at, self.fn, self.args, self.group, self.cancelled = at, fn, args, group, False
        self.owner = owner

    def cancel(self) -> None:
        """Make it a no-op and let go of what it would have called with: a cancelled timer waits
        in its heap until it comes to the top, and until then it should not keep a closed
        connection's objects (or a thousand of them after a drop storm) alive."""
        if self.cancelled:
            return
        self.cancelled = True
        self.fn, self.args = _noop, ()
        owner, self.owner = self.owner, None
        if owner is not None:
            owner._cancelled_one()


def _noop(*_args: Any) -> None:
    """What a cancelled timer calls (never: a cancelled timer does not run)."""


#: A heap is compacted (its cancelled timers dropped) when they are more than half of it and at
#: least this many.
COMPACT_MIN = 256


class Timers:
    """A heap of :class:`Timer` on one monotonic clock (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = trio.current_time) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._wakeup: trio.Event | None = None
        self._cancelled = 0         # cancelled timers still in the heap
        self._running = False       # inside run_due (a timer's action may call back into the core)
        self._driven = False        # a run() task drives these timers
        #: The due time of the timer whose action is running, else None: the core's "now" inside a
        #: scheduled action is the moment it was due, whatever the scheduler's lateness.
        self.firing: float | None = None

    def now(self) -> float:
        """The clock's time; inside a timer's action, the time that timer was due."""
        return self.firing if self.firing is not None else self.clock()

    def at(self, when: float, fn: Callable[..., None], *args: Any, group: str = "") -> Timer:
        """Call ``fn(*args)`` at ``when`` (the clock's time); returns the timer (cancellable)."""
        timer = Timer(when, fn, args, group, self)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        if self._wakeup is not None:
            self._wakeup.set()
        return timer

    def after(self, delay: float, fn: Callable[..., None], *args: Any, group: str = "") -> Timer:
        """Call ``fn(*args)`` ``delay`` seconds from :meth:`now`."""
        return self.at(self.now() + delay, fn, *args, group=group)

    def next_due(self) -> float | None:
        """When the next live timer is due, or None."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self._cancelled -= 1
        return heap[0][0] if heap else None

    def pending(self) -> int:
        """Live timers waiting (inspection)."""
        return sum(1 for _, _, t in self._heap if not t.cancelled)

    def run_due(self) -> int:
        """Run every timer due by now, in due order, each with :attr:`firing` at its due time;
        returns how many ran.  Re-entrant calls (from inside an action) do nothing: the outer
        call runs what the action schedules if it is due."""
        if self._running:
            return 0
        self._running = True
        ran = 0
        try:
            while True:
                due = self.next_due()
                if due is None or due > self.clock() + DUE_SLACK:
                    break
                _, _, timer = heapq.heappop(self._heap)
                timer.cancelled, timer.owner = True, None   # it ran: a late cancel() is harmless
                self.firing = timer.at
                try:
                    timer.fn(*timer.args)
                finally:
                    self.firing = None
                ran += 1
        finally:
            self._running = False
        return ran

    def _cancelled_one(self) -> None:
        """A timer of this heap was cancelled: compact the heap when cancelled timers are most of it
        (amortised: each compaction at least halves the heap)."""
        self._cancelled += 1
        if self._cancelled >= COMPACT_MIN and 2 * self._cancelled > len(self._heap):
            self.compact()

    def compact(self) -> int:
        """Drop the cancelled timers from the heap now; returns how many went."""
        before = len(self._heap)
        self._heap[:] = [entry for entry in self._heap if not entry[2].cancelled]
        heapq.heapify(self._heap)
        self._cancelled = 0
        return before - len(self._heap)

    def cancel_group(self, group: str) -> int:
        """Cancel every timer of ``group``; returns how many."""
        n = 0
        for _, _, timer in list(self._heap):   # a cancel may compact the heap
            if timer.group == group and not timer.cancelled:
                timer.cancel()
                n += 1
        if self._wakeup is not None:
            self._wakeup.set()
        return n

    @property
    def driven(self) -> bool:
        """Whether a :meth:`run` task drives these timers."""
        return self._driven

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run timers as they come due, sleeping in between (never ticking); until cancelled.  One
        task per :class:`Timers`: a second one raises RuntimeError."""
        if self._driven:
            raise RuntimeError("these timers are already driven by another task")
        self._driven = True
        task_status.started()
        try:
            while True:
                self.run_due()
                self._wakeup = trio.Event()     # no await since run_due: the heap is current
                due = self.next_due()
                if due is None:
                    deadline = math.inf
                elif self.clock is trio.current_time:
                    deadline = due
                else:  # another monotonic source: sleep for the same span on trio's clock
                    deadline = trio.current_time() + max(0.0, due - self.clock())
                with trio.move_on_at(deadline):
                    await self._wakeup.wait()
        finally:
            self._wakeup = None
            self._driven = False
