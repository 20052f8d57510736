"""Benchmark: the virtual actors in virtual time (in-memory network, MockClock autojump).

Prints, for a doctor and a patient in room 101 (video profile, default device timings):

* wall and CPU time per two-party call set-up (both join, both reach the first remote frame),
  and the simulated join_total of each side;
* wall and CPU time for one two-party call held for 60 simulated minutes (the 1 Hz ping/pong
  heartbeat with its 3 copies per event, registration refreshes every 597 s, the media model's talk
  spurts) and the number of comet frames the two pages sent.

Run: ``.venv/bin/python tests/perf/bench_actors.py [--calls N] [--minutes M]``.
"""

from __future__ import annotations

import argparse
import gc
import pathlib
import resource
import statistics
import sys
import time
from typing import Any

import trio
import trio.testing

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from emulator.clock import virtual_clock
from emulator.net.network import VirtualNetwork
from tests.actorkit import ROOM, doctor_and_patient, stack_and_target


async def one_call(seed: int, minutes: float, history: int | None = None) -> dict:
    net = VirtualNetwork()
    async with stack_and_target(net, journal=False, seed=seed) as (stack, target):
        async with doctor_and_patient(target, net, seed=seed, history=history) as (doctor, patient):
            await doctor.open_page()
            await patient.open_page()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(doctor.join, ROOM)
                nursery.start_soon(patient.join, ROOM)
            await doctor.wait_mark("first_remote_frame")
            await patient.wait_mark("first_remote_frame")
            result: dict[str, Any] = {"join_total_ms": [doctor.stages()["join_total"],
                                                        patient.stages()["join_total"]]}
            if minutes:
                await trio.sleep(minutes * 60)
                assert doctor.video.is_in_call() and patient.video.is_in_call()
                result["frames"] = doctor.comet.frames_sent + patient.comet.frames_sent
                result["kept"] = sum(len(p.comet.sent) + len(p.comet.received) + len(p.comet.messages)
                                     for p in (doctor, patient))
                result["kept_bytes"] = retained_bytes(doctor) + retained_bytes(patient)
                doctor.hangup()
                patient.hangup()
                await trio.sleep(3)
            return result


def retained_bytes(participant) -> int:
    """Bytes held by a page's frame and message records (the lists, their tuples and texts)."""
    comet = participant.comet
    total = 0
    for record in (comet.sent, comet.received):
        total += sys.getsizeof(record) + sum(sys.getsizeof(item) + sys.getsizeof(item[1]) for item in record)
    total += sys.getsizeof(comet.messages) + sum(sys.getsizeof(m) for m in comet.messages)
    return total


def timed(seed: int, minutes: float, history: int | None = None) -> tuple[float, float, dict]:
    gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = trio.run(one_call, seed, minutes, history, clock=virtual_clock())
    return time.perf_counter() - wall0, time.process_time() - cpu0, result


def participant_cost(count: int = 200) -> str:
    """Memory and CPU of making ``count`` participants (their Faker name, RNGs, app and backend)."""
    import tracemalloc

    from bench.actors.participant import Participant, Target

    target = Target("127.0.0.1", 1, "127.0.0.1", 2, 15)
    net = VirtualNetwork()
    Participant(target, net, user_id=1, seed=0)   # first-use costs (imports)
    gc.collect()
    tracemalloc.start()
    cpu0 = time.process_time()
    people = [Participant(target, net, user_id=i, seed=i) for i in range(count)]
    cpu = time.process_time() - cpu0
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del people
    return f"{size / count / 1024:.1f} KB, {cpu / count * 1000:.2f} ms CPU (mean of {count})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--history", type=int, default=256,
                        help="frames each page keeps (as cometbench call; 0 = keep everything, as tests do)")
    args = parser.parse_args()
    history = args.history or None
    timed(0, 0)   # warm-up: imports, certificates, first-use costs
    walls, cpus, joins = [], [], []
    for seed in range(1, args.calls + 1):
        wall, cpu, result = timed(seed, 0)
        walls.append(wall)
        cpus.append(cpu)
        joins += result["join_total_ms"]
    print(f"two-party call set-up, {args.calls} calls: wall median {statistics.median(walls) * 1000:.0f} ms, "
          f"CPU median {statistics.median(cpus) * 1000:.0f} ms per call; simulated join_total "
          f"median {statistics.median(joins):.0f} ms [{min(joins):.0f}-{max(joins):.0f}]")
    wall, cpu, result = timed(99, args.minutes, history)
    print(f"one two-party call held {args.minutes:g} simulated minutes: wall {wall:.2f} s, CPU {cpu:.2f} s, "
          f"{result['frames']} comet frames sent by the two pages")
    print(f"  frame records the two pages still hold (history {history or 'unbounded'}): {result['kept']} "
          f"entries, {result['kept_bytes'] / 1024:.0f} KB")
    print(f"  per participant at construction: {participant_cost()}")
    print(f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
