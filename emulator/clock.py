"""Wall-clock time for the emulator, derived from trio's clock.

All timestamps the emulator shows (``message_send_time``, ``users_time``, history times, journal
times) come from :class:`WallClock`, which adds a fixed offset to ``trio.current_time()``.  Under the
real clock the offset makes it the Unix time; under ``trio.testing.MockClock`` it is a virtual Unix
time that starts at a configured epoch, so a virtual run is reproducible.
"""

from __future__ import annotations

import time

import trio


class WallClock:
    def __init__(self, epoch: float | None = None) -> None:
        """``epoch``: the Unix time at which trio's clock reads 0 is derived from it.

        ``None`` means "now" (real runs); a number pins the virtual start time.
        """
        start = time.time() if epoch is None else epoch
        try:
            self._offset = start - trio.current_time()
        except RuntimeError:  # created outside trio: bind on first use
            self._offset = None
            self._start = start

    def now(self) -> float:
        if self._offset is None:
            self._offset = self._start - trio.current_time()
        return self._offset + trio.current_time()

    def seconds(self) -> int:
        """Whole Unix seconds, as the real server's ``time(0)``."""
        return int(self.now())
