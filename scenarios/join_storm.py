"""A join storm: the doctors and patients of 100 rooms all click Join at the same moment.

The top of the hour at a telemedicine clinic: 100 appointments start at once.  Every page is
already open; at one scheduled moment both sides of every room click Join: 200 ``INSERT INTO
conference`` over fresh CometQL connections, 200 pushes, 200 JsSIP user agents registering
(two directory lookups each), 200 INVITEs into 100 conferences.

Latencies count from the **scheduled** moment (``join(at=...)``), not from when the bench got round
to each click, so the time the emulator and the bench spend working through the storm shows up in
``join_total`` instead of being hidden (no coordinated omission).  In virtual time CPU costs no
simulated time, so every side joins as fast as a lone call; ``cometbench run --real-time
join_storm`` measures what the storm really costs on this machine.

A load scenario: it is not in the default pack (run it by name).
"""

from bench.scenario import Scenario

NEEDS = ("freeswitch",)   # it looks inside FreeSWITCH: in-process only
DEFAULT = False
ROOMS = 100
TIMEOUT = 300


async def story(s: Scenario) -> None:
    pairs = [(s.actor(f"doctor{i:03d}", role="doctor"), s.actor(f"patient{i:03d}", role="patient"))
             for i in range(ROOMS)]
    everyone = [actor for pair in pairs for actor in pair]

    with s.step(f"{len(everyone)} people open the video-chat page"):
        await s.together(*(actor.open_page() for actor in everyone))

    with s.step(f"at one moment both sides of {ROOMS} rooms click Join"):
        moment = s.at(s.now + 1.0)
        await s.together(*(actor.join(f"storm{i:03d}", at=moment)
                           for i, pair in enumerate(pairs) for actor in pair))
        for actor in everyone:
            await s.wait(f"{actor.name}.first_remote_frame", within=120)

    with s.step("every room holds its two, and everyone saw the other"):
        s.check(len(s.stack.bridge.conferences) == ROOMS, f"{len(s.stack.bridge.conferences)} conferences")
        s.check(all(len(conference.members) == 2 for conference in s.stack.bridge.conferences.values()),
                "two members in every conference")
        for actor in everyone:
            s.check(actor.stage("join_total") is not None, f"{actor.name} measured its join")
            s.check(len(actor.callbacks("onCallStart")) == 1, f"{actor.name} got onCallStart once")
        slowest = max(actor.stage("join_total") or 0.0 for actor in everyone)
        s.mark("storm_over", slowest_join_ms=slowest)
