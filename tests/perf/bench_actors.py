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

from emulator.net.network import VirtualNetwork
from tests.actorkit import ROOM, doctor_and_patient, stack_and_target


async def one_call(seed: int, minutes: float) -> dict:
    net = VirtualNetwork()
    async with stack_and_target(net, journal=False, seed=seed) as (stack, target):
        async with doctor_and_patient(target, net, seed=seed) as (doctor, patient):
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
                result["frames"] = len(doctor.comet.sent) + len(patient.comet.sent)
                doctor.hangup()
                patient.hangup()
                await trio.sleep(3)
            return result


def timed(seed: int, minutes: float) -> tuple[float, float, dict]:
    gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = trio.run(one_call, seed, minutes, clock=trio.testing.MockClock(autojump_threshold=0))
    return time.perf_counter() - wall0, time.process_time() - cpu0, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args()
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
    wall, cpu, result = timed(99, args.minutes)
    print(f"one two-party call held {args.minutes:g} simulated minutes: wall {wall:.2f} s, CPU {cpu:.2f} s, "
          f"{result['frames']} comet frames sent by the two pages")
    print(f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
