"""emulator.clock.Timers: due order, cancelling, and what a cancelled timer keeps."""

from __future__ import annotations

import gc
import weakref

from emulator.clock import COMPACT_MIN, Timers


class Payload:
    """Something a timer's action would be called with (a connection, a member)."""


def make() -> tuple[Timers, dict]:
    now = {"t": 0.0}
    return Timers(lambda: now["t"]), now


def test_timers_run_in_due_order_and_a_cancelled_one_does_not_run():
    timers, now = make()
    ran: list[str] = []
    timers.at(2.0, ran.append, "b")
    dropped = timers.at(1.5, ran.append, "x")
    timers.at(1.0, ran.append, "a")
    dropped.cancel()
    dropped.cancel()   # twice is harmless
    now["t"] = 5.0
    assert timers.run_due() == 2 and ran == ["a", "b"]
    assert timers.next_due() is None


def test_a_cancelled_timer_lets_go_of_its_arguments_at_once():
    timers, _ = make()
    payload = Payload()
    ref = weakref.ref(payload)
    timer = timers.at(600.0, lambda p: None, payload)
    del payload
    timer.cancel()
    gc.collect()
    assert ref() is None          # it no longer waits for its due time to be freed
    assert timers.pending() == 0


def test_the_heap_is_compacted_when_cancelled_timers_are_most_of_it():
    timers, now = make()
    keep = [timers.at(10.0 + i, lambda: None) for i in range(10)]
    gone = [timers.at(100.0 + i, lambda: None) for i in range(COMPACT_MIN * 2)]
    for timer in gone[:COMPACT_MIN - 1]:
        timer.cancel()
    assert len(timers._heap) == 10 + 2 * COMPACT_MIN          # not yet: fewer than COMPACT_MIN
    for timer in gone[COMPACT_MIN - 1:]:
        timer.cancel()
    # compacted as soon as the cancelled ones were COMPACT_MIN and more than half of the heap
    assert len(timers._heap) < 10 + 2 * COMPACT_MIN
    assert timers.pending() == 10
    ran: list[float] = []
    for timer in keep:
        timer.fn = ran.append
        timer.args = (timer.at,)
    now["t"] = 1000.0
    assert timers.run_due() == 10 and ran == sorted(ran) and len(ran) == 10
    assert timers._heap == []


def test_cancel_group_cancels_its_own_through_a_compaction():
    timers, now = make()
    mine = [timers.at(1.0 + i, lambda: None, group="sip") for i in range(COMPACT_MIN * 3)]
    theirs = timers.at(5.0, lambda: None, group="bridge")
    assert timers.cancel_group("sip") == len(mine)
    assert all(t.cancelled for t in mine) and not theirs.cancelled
    assert timers.pending() == 1 and len(timers._heap) < len(mine)
    now["t"] = 10.0
    assert timers.run_due() == 1
