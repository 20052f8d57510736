"""Wall-clock time for the emulator, derived from trio's clock.

All timestamps the emulator shows (``message_send_time``, ``users_time``, history times, journal
times) come from :class:`WallClock`, which adds a fixed offset to a monotonic source, by default
``trio.current_time()``.  Under the real clock the offset makes it the Unix time; under
``trio.testing.MockClock`` it is a virtual Unix time that starts at a configured epoch, so a virtual
run is reproducible.  Synchronous core tests pass their own ``monotonic`` source.
"""

from __future__ import annotations

import time
from typing import Callable

import trio
import trio.testing


class WallClock:
    def __init__(self, epoch: float | None = None, monotonic: Callable[[], float] | None = None) -> None:
        """``epoch``: the Unix time "now" maps to (``None``: the real time of day)."""
        self._epoch = epoch
        self._monotonic = monotonic or trio.current_time
        self._offset: float | None = None

    def now(self) -> float:
        mono = self._monotonic()
        if self._offset is None:  # bind at first use, to the time of day of that moment
            self._offset = (time.time() if self._epoch is None else self._epoch) - mono
        return self._offset + mono

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
    if not (isinstance(getattr(clock, "_rate", None), float) and isinstance(getattr(clock, "_virtual_base", None), float)):
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
