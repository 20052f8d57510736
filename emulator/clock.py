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


class ManualClock(WallClock):
    """A clock that only moves when told to (synchronous tests of the core)."""

    def __init__(self, epoch: float = 1_700_000_000.0) -> None:
        self.t = 0.0
        super().__init__(epoch, monotonic=lambda: self.t)

    def advance(self, seconds: float) -> None:
        self.t += seconds
