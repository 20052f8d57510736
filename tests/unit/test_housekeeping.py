"""emulator.housekeeping: when a fall of connections triggers a collection, and that it collects."""

from __future__ import annotations

import gc

import pytest
import trio

from emulator.housekeeping import Reclaimer, prune_trio_deadlines, reclaim_after_drops


def test_not_due_while_connections_rise_or_hold():
    r = Reclaimer(drop=200)
    assert [r.due(n) for n in (0, 100, 500, 1000, 1000, 990)] == [False] * 6
    assert r.peak == 1000


def test_due_after_a_fall_of_at_least_drop_and_half():
    r = Reclaimer(drop=200)
    r.due(1000)
    assert not r.due(700)          # fell by 300 but more than half is still open
    assert r.due(500)              # half gone
    r2 = Reclaimer(drop=200)
    r2.due(300)
    assert not r2.due(150)         # half gone but only 150: below drop
    assert r2.due(100)


def test_reclaim_collects_cyclic_garbage_and_restarts_from_the_level_now():
    class Node:
        pass

    r = Reclaimer(drop=10)
    r.due(50)
    gc.disable()
    try:
        for _ in range(100):
            a, b = Node(), Node()
            a.other, b.other = b, a
        del a, b
        run = r.reclaim(5)
    finally:
        gc.enable()
    assert run["collected"] >= 200 and run["from"] == 50 and run["to"] == 5
    assert r.peak == 5 and r.runs == [run]
    assert not r.due(5)


async def test_the_task_reclaims_once_after_a_fall(autojump_clock):
    counts = iter([10, 400, 400, 100, 100, 0, 0])
    r = Reclaimer(drop=200)
    with trio.move_on_after(35):
        await reclaim_after_drops(lambda: next(counts, 0), interval=5, reclaimer=r)
    assert [(run["from"], run["to"]) for run in r.runs] == [(400, 100)]


async def test_the_task_passes_again_once_the_fall_has_settled(autojump_clock):
    # a fall at 10 s (400 -> 0); the second pass 40 s later, then nothing more while it stays quiet
    counts = iter([400, 0])
    r = Reclaimer(drop=200, settle=40)
    with trio.move_on_after(120):
        await reclaim_after_drops(lambda: next(counts, 0), interval=5, reclaimer=r)
    assert [(run["from"], run["to"]) for run in r.runs] == [(400, 0), (0, 0)]


def test_no_second_pass_when_the_server_is_busy_again():
    r = Reclaimer(drop=200, settle=40)
    r.due_at(1000, 0.0)
    assert r.due_at(0, 5.0)                  # the fall
    r.reclaim(0)
    assert not r.due_at(150, 30.0)           # not yet
    assert not r.due_at(600, 45.0)           # settled time reached, but 600 new connections: skip
    assert r.followup_at is None and not r.due_at(600, 90.0)
    r2 = Reclaimer(drop=200, settle=40)
    r2.due_at(1000, 0.0)
    assert r2.due_at(100, 5.0)
    r2.reclaim(100)
    assert r2.due_at(250, 45.0)              # risen by less than drop: the second pass runs


async def test_bad_arguments():
    with pytest.raises(ValueError):
        await reclaim_after_drops(lambda: 0, interval=0)
    with pytest.raises(ValueError):
        await reclaim_after_drops(lambda: 0, drop=0)


async def test_prune_trio_deadlines_drops_exited_scopes_and_keeps_live_ones(autojump_clock):
    # 300 connection-like time-outs that ended early stay in trio's deadline heap until pruned
    for _ in range(300):
        with trio.move_on_after(60):
            await trio.lowlevel.checkpoint()
    fired = []

    async def waiter():
        with trio.move_on_after(30) as scope:
            await trio.sleep_forever()
        fired.append(scope.cancelled_caught)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(1)
        pruned = prune_trio_deadlines()
        assert pruned is not None and pruned >= 300
        assert prune_trio_deadlines() == 0          # nothing stale left; the live deadline stays
    assert fired == [True]                           # and still fires on time


def test_prune_trio_deadlines_outside_trio_does_nothing():
    assert prune_trio_deadlines() is None
