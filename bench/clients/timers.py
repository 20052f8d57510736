"""A page's ``setTimeout``: one heap of timers run by one trio task, in the order a browser runs them.

The virtual page's timers (the comet client's 50 ms subscription debounce, the three copies of every
callPipe event, the 1 s ping heartbeat, getUserMedia, the 300 ms attach poll ...) used to be a trio
task each.  A call hour fires tens of thousands of them; spawning a task per timer was most of what
a long call cost in virtual time.  :class:`Timers` keeps them in one heap instead: a timer is an
entry, cancelling it marks it, and one task sleeps until the earliest is due.

Order: timers run by due time, and timers due at the same moment in the order they were set --
what a browser's event loop does (trio would run same-moment tasks in an order of its own).  Each
callback runs to completion before the next (JavaScript's run-to-completion).  A callback that raises
ends the page's nursery, as a task would: the bench fails loudly on its own bugs.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any

import trio

__all__ = ["Timer", "Timers"]


class Timer:
    """One pending ``setTimeout``; :meth:`cancel` is ``clearTimeout``."""

    __slots__ = ("args", "cancelled", "due", "fn")

    def __init__(self, due: float, fn: Callable[..., Any], args: tuple) -> None:
        self.due, self.fn, self.args, self.cancelled = due, fn, args, False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    """The timers of one page; the task runs in the page's nursery from the first timer on."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._wakeup: trio.Event | None = None
        self._running = False
        self._scope: trio.CancelScope | None = None
        self.closed = False
        self.fired = 0

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        """``setTimeout(fn, delay * 1000, ...args)``."""
        timer = Timer(trio.current_time() + max(0.0, delay), fn, args)
        if self.closed:
            timer.cancelled = True
            return timer
        heapq.heappush(self._heap, (timer.due, next(self._seq), timer))
        if not self._running:
            self._running = True
            self._nursery.start_soon(self._run)
        elif self._wakeup is not None and self._heap[0][2] is timer:
            self._wakeup.set()
        return timer

    def close(self) -> None:
        """The page is gone: no timer fires any more."""
        self.closed = True
        self._heap.clear()
        if self._scope is not None:
            self._scope.cancel()

    async def _run(self) -> None:
        heap = self._heap
        with trio.CancelScope() as scope:
            self._scope = scope
            while not self.closed:
                while heap and heap[0][2].cancelled:
                    heapq.heappop(heap)
                now = trio.current_time()
                if heap and heap[0][0] <= now:
                    _, _, timer = heapq.heappop(heap)
                    self.fired += 1
                    timer.fn(*timer.args)
                    if heap and heap[0][0] <= now:
                        continue
                    await trio.lowlevel.checkpoint()   # let others run between due moments
                    continue
                self._wakeup = trio.Event()
                with trio.move_on_at(heap[0][0] if heap else math.inf):
                    await self._wakeup.wait()
                self._wakeup = None
