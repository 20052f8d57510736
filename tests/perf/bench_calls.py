"""Benchmark: many concurrent two-party calls in real time on loopback, in one process, and a drop storm.

The whole emulator (``open_stack`` on OS sockets, journal off) and the virtual actors (comet client,
cometVideoApi, JsSIP-like UA over TLS, CometQL backend) run in this process under the real clock.
What it prints:

1. **Join latency the emulator adds**, with no link conditions: per participant the *signalling*
   stages only (docs/stages.md) -- ``backend_invite`` (CometQL connect, login, INSERT), ``push``,
   ``sip_transport`` (TCP, TLS, WebSocket upgrade), ``register`` (REGISTER, 401, REGISTER, the
   directory lookup), ``call_setup`` (INVITE, 407, INVITE, 100, 200) -- summed.  Every other stage is a
   modelled delay (getUserMedia 90 + 15 ms, ICE gathering 145 ms, setRemoteDescription, the 50 ms
   subscription debounce, the 300 ms attach poll, the media model) or waits for the other side, so this
   sum is exactly what the emulator and the network add.  p50/p99/max over all participants, and the
   p99 of each stage.  Target: p99 <= 50 ms.
2. CPU (this process, user+system) during the joins and while the calls are held, and RSS.
3. **A drop storm**: every participant's connections reset at once (``links.reset()``).  The comet
   clients reconnect, the JsSIP agents reconnect with their back-off and register again (and, quirk
   rejoin_on_reregister, dial again).  Then every call is hung up and every page closed, and the
   script checks that nothing is left: no comet connection or pipe subscription, no conference member,
   no SIP registration or dialog, no link connection, no task beyond those of the idle stack -- and that
   RSS came back within 10 % of the level before the calls.

Run: ``.venv/bin/python tests/perf/bench_calls.py [--calls 500] [--ramp 25] [--hold 10]``.
The machine matters: say how loaded it was (``uptime``) next to the figures.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import pathlib
import resource
import sys
import time

import trio

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from bench.actors.participant import Participant, Target
from emulator.config import Config
from emulator.net.network import OSNetwork
from emulator.stack import open_stack

DEV = 15
SIGNALLING = ("backend_invite", "push", "sip_transport", "register", "call_setup")


def rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def trim() -> None:
    """Give freed memory back to the OS (glibc's malloc_trim), as a long-running server's RSS would
    show after its allocator's housekeeping."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # pragma: no cover - not glibc
        pass


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def task_count() -> int:
    def count(task) -> int:
        return 1 + sum(count(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

    return count(trio.lowlevel.current_root_task())


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def warm_up(target: Target, network) -> None:
    async with trio.open_nursery() as nursery:
        pair = [Participant(target, network, user_id=900 + i, role=r, actor=f"warm-{r}", seed=1, nursery=nursery)
                for i, r in enumerate(("doctor", "patient"))]
        for p in pair:
            await p.open_page()
        for p in pair:
            await p.join("warm-up")
        for p in pair:
            await p.wait_mark("first_remote_frame", timeout=60)
        for p in pair:
            p.hangup()
        await trio.sleep(1)
        for p in pair:
            await p.app.leave("warm-up", p.user_id)
            p.close()
        nursery.cancel_scope.cancel()
    await trio.sleep(7)   # the members' RTP timeout (5 s) passes


async def one_round(stack, target: Target, network, calls: int, ramp: float, hold: float, number: int) -> dict:
    """One round: the calls, the drop storm, everybody leaves; what is left."""
    config = stack.config
    async with trio.open_nursery() as nursery:
        people: list[Participant] = []
        for i in range(calls * 2):
            role = "doctor" if i % 2 == 0 else "patient"
            people.append(Participant(target, network, user_id=100_000 * number + i, role=role,
                                      actor=f"{role}{number}-{i // 2}", seed=number, nursery=nursery,
                                      history=32))
        cpu0, wall0 = cpu(), time.perf_counter()
        async with trio.open_nursery() as opening:
            for person in people:
                opening.start_soon(person.open_page)
        print(f"round {number}: {len(people)} pages logged in: {time.perf_counter() - wall0:.1f} s, "
              f"CPU {cpu() - cpu0:.1f} s")
        cpu0, wall0 = cpu(), time.perf_counter()
        failed: list[str] = []

        async def one_call(n: int) -> None:
            doctor, patient = people[2 * n], people[2 * n + 1]  # noqa: F821 - runs before the round's `del`
            try:
                async with trio.open_nursery() as both:
                    both.start_soon(doctor.join, f"{number}-{n}")
                    both.start_soon(patient.join, f"{number}-{n}")
                await doctor.wait_mark("first_remote_frame", timeout=180)
                await patient.wait_mark("first_remote_frame", timeout=180)
            except Exception as exc:   # noqa: BLE001 - a call that did not come up is a figure, not a crash
                failed.append(f"{type(exc).__name__}: {exc}"[:160])

        async with trio.open_nursery() as joining:
            for n in range(calls):
                joining.start_soon(one_call, n)
                await trio.sleep(1 / ramp)
        join_wall, join_cpu = time.perf_counter() - wall0, cpu() - cpu0
        up = [p for p in people if "first_remote_frame" in p.marks]
        added = [sum(p.stages()[s] for s in SIGNALLING) for p in up]
        members = sum(len(c.members) for c in stack.bridge.conferences.values())
        print(f"  {calls - len(failed)} of {calls} calls up ({members} members) in {join_wall:.1f} s, "
              f"CPU {join_cpu:.1f} s ({100 * join_cpu / join_wall:.0f} % of a core)"
              + (f"; failed: {failed[0]}" if failed else ""))
        if added:
            print(f"  join latency the emulator adds (signalling stages {'+'.join(SIGNALLING)}), ms: "
                  f"p50 {pct(added, 50):.1f}, p99 {pct(added, 99):.1f}, max {max(added):.1f}  (target p99 <= 50)")
            print("    per stage p99, ms: " + ", ".join(
                f"{s} {pct([p.stages()[s] for p in up], 99):.1f}" for s in SIGNALLING))
            joins = [p.stages()["join_total"] for p in up]
            print(f"    join_total (with the modelled device/ICE/media delays), ms: p50 {pct(joins, 50):.0f}, "
                  f"p99 {pct(joins, 99):.0f}")
        cpu0 = cpu()
        frames0 = stack.hub.stats["frames_in"] + stack.hub.stats["frames_out"]
        await trio.sleep(hold)
        held_cpu = cpu() - cpu0
        frames = stack.hub.stats["frames_in"] + stack.hub.stats["frames_out"] - frames0
        print(f"  held {hold:g} s: CPU {held_cpu:.1f} s ({100 * held_cpu / hold:.0f} % of a core), "
              f"{frames / hold:.0f} comet frames/s, RSS {rss_kb() / 1024:.0f} MB")

        # --- the drop storm -------------------------------------------------------------------
        cpu0, wall0 = cpu(), time.perf_counter()
        opens = {id(p): len(p.comet.opens) for p in people}
        reset = stack.links.reset()
        with trio.move_on_after(180):
            while not all(len(p.comet.opens) > opens[id(p)] and p.video.phone is not None
                          and p.video.phone.is_registered for p in people):
                await trio.sleep(0.2)
        back = sum(1 for p in people if len(p.comet.opens) > opens[id(p)])
        registered = sum(1 for p in people if p.video.phone is not None and p.video.phone.is_registered)
        print(f"  drop storm: {reset} connections reset at once; after {time.perf_counter() - wall0:.1f} s "
              f"{back}/{len(people)} comet clients back, {registered}/{len(people)} SIP agents registered again, "
              f"CPU {cpu() - cpu0:.1f} s, {sum(len(c.members) for c in stack.bridge.conferences.values())} members")

        # --- everybody leaves; nothing may be left ----------------------------------------------
        for person in people:
            person.hangup()
        await trio.sleep(3)
        for person in people:
            person.close()
        nursery.cancel_scope.cancel()
    del people, person
    with trio.move_on_after(config.rtp_timeout + 60):
        while stack.bridge.conferences or stack.hub.connections or stack.sip.registrations() \
                or stack.sip.dialogs or stack.links.connections():
            await trio.sleep(0.2)
    await trio.sleep(1)
    return {
        "comet connections": len(stack.hub.connections),
        "pipe subscriptions": sum(len(m) for t in stack.hub.tenants.values() for m in t.pipes.values()),
        "conference members": sum(len(c.members) for c in stack.bridge.conferences.values()),
        "SIP registrations": len(stack.sip.registrations()),
        "SIP dialogs": len(stack.sip.dialogs),
        "link connections": len(stack.links.connections()),
    }


async def run(calls: int, ramp: float, hold: float, rounds: int) -> None:
    config = Config(journal=False, seed=1, rtp_timeout=5.0, handshake_timeout=60.0)
    config.free_ports()
    network = OSNetwork()
    async with open_stack(config, network=network) as stack:
        target = Target.from_stack(stack, dev_id=DEV)
        await warm_up(target, network)   # one whole call first: imports and first-use costs
        await trio.sleep(0.5)
        trim()
        idle_tasks, rss_before = task_count(), rss_kb()
        print(f"stack up after a warm-up call: {idle_tasks} tasks, RSS {rss_before / 1024:.0f} MB")
        after: list[int] = []
        ok = True
        for number in range(1, rounds + 1):
            left = await one_round(stack, target, network, calls, ramp, hold, number)
            left["tasks beyond the idle stack"] = task_count() - idle_tasks
            trim()
            after.append(rss_kb())
            print("  left over: " + ", ".join(f"{k} {v}" for k, v in left.items()))
            print(f"  RSS after round {number}: {after[-1] / 1024:.0f} MB "
                  f"({100 * (after[-1] - rss_before) / rss_before:+.1f} % of the level before any call)")
            ok = ok and all(v == 0 for v in left.values())
        print(f"RSS: before the calls {rss_before / 1024:.0f} MB; after each round "
              + ", ".join(f"{a / 1024:.0f}" for a in after) + f" MB; max "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        if len(after) > 1:
            growth = 100 * (after[-1] - after[0]) / after[0]
            print(f"  growth from round 1 to round {len(after)}: {growth:+.1f} % (a leak grows every round; "
                  "the allocator's high-water mark does not)")
        back = after[-1] <= rss_before * 1.10
        print("drop storm check: nothing left over: " + ("yes" if ok else "NO") +
              f"; RSS back within 10 % of the level before the calls: {'yes' if back else 'no'}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500, help="concurrent two-party calls (default 500)")
    parser.add_argument("--ramp", type=float, default=10.0, help="calls started per second (default 10)")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds the calls are held (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of calls, storm and cleanup (default 2)")
    args = parser.parse_args()
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)   # as `cometbench serve` (bench/cli.py: tune_gc)
    trio.run(run, args.calls, args.ramp, args.hold, args.rounds)


if __name__ == "__main__":
    main()
