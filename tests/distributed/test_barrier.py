"""The synchronised start: the barrier's bookkeeping, the TCP barrier, --start-at, the skew."""

from __future__ import annotations

import threading
import time

import pytest

from bench.distributed.barrier import (
    BarrierState,
    FixedStart,
    StartAborted,
    TcpBarrier,
    TcpBarrierServer,
    estimate_offset,
    parse_barrier,
    sleep_until,
)
from bench.distributed.cli import parse_instant
from bench.distributed.shard import skew_message


def test_the_start_is_the_last_arrival_plus_the_lead():
    state = BarrierState(3, lead=2.0)
    assert state.arrive(0, 3, 10.0) is None and state.outcome() == {"waiting": [1, 2]}
    state.arrive(2, 3, 11.0)
    state.arrive(1, 3, 12.5)
    assert state.outcome() == {"start_at": 14.5}


def test_a_shard_of_another_count_calls_the_start_off():
    state = BarrierState(3)
    state.arrive(0, 3, 1.0)
    state.arrive(1, 4, 1.0)
    assert "started as one of 4 shards, but the run has 3" in state.outcome()["abort"]


def test_a_duplicate_before_the_start_calls_it_off_and_a_retry_after_it_is_refused():
    state = BarrierState(2)
    state.arrive(0, 2, 1.0)
    state.arrive(0, 2, 1.5)
    assert "arrived twice" in state.outcome()["abort"]
    started = BarrierState(1)
    started.arrive(0, 1, 1.0)
    assert "start_at" in started.outcome()
    refusal = started.arrive(0, 1, 5.0)          # a retried shard after the start was fixed
    assert "arrived again after the start was fixed" in refusal["abort"]
    assert "start_at" in started.outcome()       # the others keep their start


def test_out_of_range_index_and_abort_after_the_start_changes_nothing():
    state = BarrierState(2)
    state.arrive(5, 2, 1.0)
    assert "not in 0..1" in state.outcome()["abort"]
    done = BarrierState(1)
    done.arrive(0, 1, 1.0)
    done.abort("too late")
    assert done.outcome() == {"start_at": 2.0}


def test_tcp_barrier_gives_every_shard_one_instant_and_a_small_skew():
    server = TcpBarrierServer(3, lead=0.3)
    signals, errors = {}, []

    def shard(i):
        try:
            signal = TcpBarrier(server.host, server.port).arrive(i, 3, timeout=20)
            woke = sleep_until(signal.local_start_at)
            signals[i] = (signal, woke - signal.local_start_at)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=shard, args=(i,)) for i in range(3)]
    try:
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join(30)
    finally:
        server.close()
    assert not errors
    assert len({s.start_at for s, _ in signals.values()}) == 1
    start_at = signals[0][0].start_at
    assert start_at - max(server.state.arrived.values()) == pytest.approx(0.3)
    for signal, skew in signals.values():
        assert signal.barrier == "tcp"
        assert abs(signal.offset) < 0.05 and signal.uncertainty < 0.05     # one machine: one clock
        assert 0.0 <= skew < 0.25                                           # woke at the instant, not before


def test_tcp_barrier_called_off_tells_the_waiting_shards_why():
    server = TcpBarrierServer(2, lead=0.1)
    outcome = {}

    def shard():
        try:
            TcpBarrier(server.host, server.port).arrive(0, 2, timeout=20)
        except StartAborted as exc:
            outcome["error"] = str(exc)

    t = threading.Thread(target=shard)
    t.start()
    deadline = time.monotonic() + 10
    while 0 not in server.state.arrived and time.monotonic() < deadline:
        time.sleep(0.01)
    server.abort("shard 1 ended before the start (status 2)")
    t.join(10)
    server.close()
    assert "called off: shard 1 ended before the start (status 2)" in outcome["error"]


def test_a_barrier_that_is_gone_or_too_slow_is_a_clear_error():
    server = TcpBarrierServer(2)
    host, port = server.host, server.port
    with pytest.raises(StartAborted, match=r"waited 0\.3 s at the barrier"):
        TcpBarrier(host, port).arrive(0, 2, timeout=0.3)
    server.close()
    with pytest.raises(StartAborted, match="does not answer"):
        TcpBarrier(host, port).arrive(0, 2, timeout=1)


def test_offset_estimate_takes_the_shortest_round_trip():
    remote = iter([100.0, 200.0, 300.0])
    offset, uncertainty = estimate_offset(lambda: next(remote), rounds=3)
    assert uncertainty < 0.01
    assert offset == pytest.approx(100.0 - time.time(), abs=250)   # one of the three answers


def test_fixed_start_and_start_at_forms():
    assert FixedStart(123.5).arrive(0, 4, 1).start_at == 123.5
    assert parse_instant("1767225600.25") == 1767225600.25
    assert parse_instant("2026-01-01T00:00:00Z") == 1767225600.0
    assert parse_instant("2026-01-01T00:00:00.5Z") == 1767225600.5
    assert parse_instant("+30", now=1000.0) == 1030.0
    assert parse_instant("+500ms", now=1000.0) == 1000.5
    with pytest.raises(ValueError, match="--start-at expects"):
        parse_instant("tomorrow")


def test_parse_barrier_and_skew_message():
    assert isinstance(parse_barrier("tcp:127.0.0.1:4000"), TcpBarrier)
    for bad in ("tcp:4000", "udp:1:2", "ray:"):
        with pytest.raises(ValueError):
            parse_barrier(bad)
    assert skew_message({"skew_ok": True}) is None
    late = skew_message({"index": 1, "count": 3, "skew_ms": 812.4, "tolerance_ms": 500.0, "skew_ok": False})
    assert "shard 1/3" in late and "812.4 ms" in late and "500 ms" in late
