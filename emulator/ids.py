"""Identifiers for virtual-time runs: UUIDs and random bytes from a seeded generator and the run's clock.

A real run uses what the real servers use (``uuid.uuid1()`` for callKeys and history ids,
``uuid.uuid4()`` for job ids, ``os.urandom`` for the MySQL scramble).  A virtual run must give the same
journal for the same seed, so :func:`emulator.stack.open_stack` hands every component an
:class:`Ids` drawn from the seed instead.  The values keep their real shapes: :meth:`Ids.uuid1` is a
version-1 UUID whose timestamp is the run's (virtual) wall-clock time and whose clock sequence and
node come from the generator, as libuuid's ``uuid_generate_time`` would give on some machine.
"""

from __future__ import annotations

import random
import uuid as _uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Ids", "deterministic_scheduling"]

_GREGORIAN_OFFSET = 0x01B21DD213814000   # 100-ns intervals from 1582-10-15 to 1970-01-01


class Ids:
    def __init__(self, rng: random.Random, now: Callable[[], float]) -> None:
        self.rng = rng
        self.now = now
        self._node = rng.getrandbits(48) | 0x010000000000   # multicast bit: not a real MAC, as RFC 4122 4.5
        self._clock_seq = rng.getrandbits(14)
        self._last = 0

    def uuid1(self) -> str:
        """A time-based UUID (version 1) at the current (virtual) wall-clock time."""
        ticks = int(self.now() * 10_000_000) + _GREGORIAN_OFFSET
        if ticks <= self._last:     # two in the same 100 ns: step on, as libuuid does
            ticks = self._last + 1
        self._last = ticks
        return str(_uuid.UUID(fields=(ticks & 0xFFFFFFFF, (ticks >> 32) & 0xFFFF, ((ticks >> 48) & 0x0FFF) | 0x1000,
                                      ((self._clock_seq >> 8) & 0x3F) | 0x80, self._clock_seq & 0xFF, self._node)))

    def uuid4(self) -> str:
        return str(_uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def hex(self, n: int) -> str:
        """``n`` random hex digits."""
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def randbytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)


@contextmanager
def deterministic_scheduling(seed: int | str) -> Iterator[None]:
    """Within the block, trio runs ready tasks in an order that depends only on ``seed``.

    trio runs the tasks that are ready at the same moment in an order of its choosing: a batch is
    reversed or not by a module-level generator, and the batch itself is collected partly from sets,
    whose order follows memory addresses.  In virtual time many tasks are ready at the same virtual
    instant, so two runs with the same seed would interleave differently and their journals would
    differ.  trio's own Hypothesis integration has the cure: sort each batch by task creation order,
    then shuffle it with a seeded generator.  This switches that mode on and seeds the generator for
    one virtual run (``trio.run`` inside the block) and puts both back afterwards.  It reaches into
    ``trio._core._run`` because trio exposes the switch only to Hypothesis.
    """
    import trio._core._run as trio_run  # the switch is private to trio

    saved_flag, saved_state = trio_run._ALLOW_DETERMINISTIC_SCHEDULING, trio_run._r.getstate()
    trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]  # trio declares it Final
    trio_run._r.seed(f"{seed}:trio-scheduler")
    try:
        yield
    finally:
        trio_run._ALLOW_DETERMINISTIC_SCHEDULING = saved_flag  # type: ignore[misc]  # ditto
        trio_run._r.setstate(saved_state)
