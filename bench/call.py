"""One two-party call, from invitation to hang-up: what ``cometbench call`` runs.

A doctor and a patient (names from Faker with the seed) open their pages, the app invites both into
room 101 at the same moment (call.php's two INSERTs), both pages accept, both reach the first remote
frame, the call is held for ``duration`` seconds, the doctor hangs up (the patient hears ``out`` and
hangs up too) and the app deletes the invitations.  The call passes when both sides saw each other,
both ended with ``hangup`` and, on the in-process stack, nobody is left in the conference.

Where it runs:

* **virtual** (default): the whole emulator and both actors on the in-memory network under
  ``MockClock(autojump_threshold=0)``: a long call takes a fraction of a second of wall time and the
  same seed gives the same journal (:meth:`emulator.journal.Journal.sha256`);
* **real time**: the emulator on loopback sockets, the real clock;
* **a target**: a real deployment (CppComet + FreeSWITCH) at ``ws=HOST:PORT,cometql=HOST:PORT``; the
  actors are the same, media cannot be observed (``first_remote_frame`` is taken at the attach of the
  remote video, docs/stages.md).

The network profile (``fixtures/network_profiles.toml``) is applied per actor to every protocol the
actor speaks, media included (:mod:`emulator.net.links`; ``loopback`` is no conditions at all); the app
backend (``client="backend"``) sits in the data centre and gets no conditions.  ``--network`` and
``--target`` are parsed by the same code as ``cometbench run``'s (:mod:`bench.options`); a target takes
``--network loopback`` only (link conditions need both ends in this process).  The page's AJAX request
to call.php crosses the actor's link too: ``app_request_rtt`` is one round trip of it.

Stages: each side's stage durations (docs/stages.md) are in ``sides``; ``stages`` gives, per stage,
the **worse side** (the larger value): a call is as slow as its slower participant, and
``join_total`` is then "both see each other".
"""

from __future__ import annotations

import json
import math
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing

from bench.actors.participant import STAGE_NAMES, Participant, Target, open_participant
from bench.options import SetupError, TargetSpec, check_target, parse_network_spec, parse_target
from emulator.clock import virtual_clock
from emulator.ids import deterministic_scheduling
from emulator.net.links import Link, Links

__all__ = ["CallOptions", "CallResult", "TargetSpec", "parse_network", "parse_target", "run_call", "ACTORS",
           "STAGE_NAMES", "CallSetupError"]

ACTORS = ("doctor", "patient")
USER_IDS = {"doctor": 501, "patient": 502}
ROOM = "101"
#: Every stage name the result can carry (docs/stages.md), in order.
JOIN_TIMEOUT = 180.0     # seconds (simulated or real) for both sides to see each other
FRAME_HISTORY = 256      # frames each page keeps (nothing here reads them; an hour sends ~22,000 each)
END_TIMEOUT = 60.0


#: Input the call cannot start with (an unknown profile, a target that does not answer ...): the message
#: names the field or the address.  The same error as ``cometbench run``'s (bench/options.py).
CallSetupError = SetupError


def parse_network(text: str, overrides: dict[str, float] | None = None) -> dict[str, Link | None]:
    """``4g`` (both actors) or ``doctor=lan,patient=3g``; ``overrides`` (rtt_ms, loss ...) change
    every actor's link.  Each actor's link, None for no conditions (``loopback``).  The parser is
    ``cometbench run``'s (:func:`bench.options.parse_network_spec`); a :class:`CallSetupError` names the
    unknown profile, actor or field."""
    spec = parse_network_spec(text, actors=ACTORS, overrides=overrides)
    return {actor: spec.link_of(actor) for actor in ACTORS}


@dataclass
class CallOptions:
    seed: int = 1
    network: str = "loopback"
    overrides: dict[str, float] = field(default_factory=dict)
    duration: float = 10.0
    fidelity: str = "cppcomet-4.09"
    mode: str = "virtual"            # virtual | real-time | target
    target: TargetSpec | None = None
    stages: tuple[str, ...] = ()     # limit the "stages" object (empty: all)
    journal: bool = True


@dataclass
class CallResult:
    passed: bool
    seed: int
    network: str
    simulated_s: float
    wall_s: float
    journal_sha256: str
    stages: dict[str, float]
    failure: str | None
    sides: dict[str, dict[str, float]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    mode: str = "virtual"

    def json_line(self) -> str:
        return json.dumps({"passed": self.passed, "seed": self.seed, "network": self.network,
                           "simulated_s": round(self.simulated_s, 3), "wall_s": round(self.wall_s, 3),
                           "journal_sha256": self.journal_sha256, "stages": self.stages, "failure": self.failure,
                           "mode": self.mode, "sides": self.sides, "names": self.names},
                          separators=(", ", ": "))


def worse_side(sides: dict[str, dict[str, float]], only: tuple[str, ...] = ()) -> dict[str, float]:
    """Per stage, the larger of the two sides' values (stages only one side has are kept)."""
    out: dict[str, float] = {}
    for name in STAGE_NAMES:
        values = [side[name] for side in sides.values() if name in side]
        if values and (not only or name in only):
            out[name] = round(max(values), 3)
    return out


# --- the story --------------------------------------------------------------------------------------


async def _story(target: Target, network: Any, links: Links | None, options: CallOptions,
                 actor_links: dict[str, Link | None], stack: Any = None) -> tuple[dict, str | None, dict[str, str]]:
    """The call itself; returns (per-side stages, failure or None, display names)."""
    if links is not None:
        for actor, link in actor_links.items():
            if link is not None:
                links.set(link, client=actor)
    failure: str | None = None
    async with AsyncExitStack() as exits:
        people: dict[str, Participant] = {}
        for actor in ACTORS:
            link = actor_links[actor]
            rtt = link.rtt_ms / 1000.0 if link is not None else 0.0
            people[actor] = await exits.enter_async_context(open_participant(
                target, network, user_id=USER_IDS[actor], role=actor, actor=actor, seed=options.seed,
                app_request_rtt=rtt, history=FRAME_HISTORY))
        doctor, patient = people["doctor"], people["patient"]
        names = {actor: p.display_name for actor, p in people.items()}
        try:
            with trio.fail_after(JOIN_TIMEOUT):
                await doctor.open_page()
                await patient.open_page()
        except trio.TooSlowError:
            return {}, f"the pages did not log in within {JOIN_TIMEOUT:g} s", names
        async with trio.open_nursery() as nursery:   # the app invites both at the same moment
            nursery.start_soon(doctor.join, ROOM)
            nursery.start_soon(patient.join, ROOM)
        for actor in ACTORS:
            person, other = people[actor], people["patient" if actor == "doctor" else "doctor"]
            try:
                await person.wait_mark("first_remote_frame", timeout=JOIN_TIMEOUT)
            except trio.TooSlowError:
                reached = sorted(person.marks.items(), key=lambda kv: kv[1])
                last = f"{reached[-1][0]}" if reached else "nothing"
                failure = (f"the {actor} never saw the {other.actor}: no first remote frame within "
                           f"{JOIN_TIMEOUT:g} s of the invitation (last mark: {last})")
                break
        if failure is None:
            await trio.sleep(options.duration)
            for actor in ACTORS:
                if not people[actor].video.is_in_call() or "call_end" in people[actor].marks:
                    status = people[actor].marks.get("call_end")
                    failure = f"the {actor}'s call ended during the call (onCallEnd at {status})"
                    break
        if failure is None:
            doctor.hangup()
            try:
                await patient.video.wait_callback("on_out", timeout=END_TIMEOUT)
            except trio.TooSlowError:
                failure = f"the patient never heard the doctor hang up (no onOut within {END_TIMEOUT:g} s)"
            patient.hangup()
            for actor in ACTORS:
                ends = [arg for page in people[actor].pages for _, cb, arg in page.video.callbacks
                        if cb == "on_call_end"]
                if failure is None and (not ends or ends[-1].get("status") != "hangup"):
                    failure = f"the {actor}'s call did not end with hangup ({ends[-1] if ends else 'no onCallEnd'})"
            for actor in ACTORS:
                await people[actor].app.leave(ROOM, people[actor].user_id)
            if failure is None and stack is not None and stack.bridge is not None:
                conference = stack.bridge.conference_name(target.dev_id, ROOM)
                with trio.move_on_after(END_TIMEOUT):
                    while stack.bridge.members(conference):
                        await trio.sleep(0.05)
                left = stack.bridge.members(conference)
                if left:
                    failure = f"{len(left)} member(s) still in {conference} after the hang-up"
        sides = {actor: people[actor].stages() for actor in ACTORS}
    return sides, failure, names


async def _virtual_or_real(options: CallOptions, actor_links: dict[str, Link | None]) -> dict:
    from emulator.config import Config
    from emulator.net.network import OSNetwork, VirtualNetwork
    from emulator.stack import open_stack

    config = Config(seed=options.seed, profile=options.fidelity, journal=options.journal)
    config.free_ports()
    network = VirtualNetwork() if options.mode == "virtual" else OSNetwork()
    start = trio.current_time()
    async with open_stack(config, network=network) as stack:
        target = Target.from_stack(stack, dev_id=15)
        sides, failure, names = await _story(target, network, stack.links, options, actor_links, stack=stack)
        await trio.sleep(1.0)   # the closes of both pages reach the journal
        simulated = trio.current_time() - start
        sha = stack.journal.sha256()
    return {"sides": sides, "failure": failure, "names": names, "simulated": simulated, "sha": sha}


async def _against_target(options: CallOptions, actor_links: dict[str, Link | None]) -> dict:
    from emulator.journal import Journal
    from emulator.net.network import OSNetwork

    spec = options.target
    assert spec is not None
    network = OSNetwork()
    network.links = Links(seed=options.seed)
    await check_target(network, spec)
    journal = Journal(enabled=options.journal, seed=options.seed, profile="target", clock="real")
    target = spec.participant_target(journal)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(network.links.run)
        sides, failure, names = await _story(target, network, network.links, options, actor_links)
        nursery.cancel_scope.cancel()
    simulated = trio.current_time() - start
    sha = journal.sha256()
    journal.close()
    return {"sides": sides, "failure": failure, "names": names, "simulated": simulated, "sha": sha}


def run_call(options: CallOptions) -> CallResult:
    """Run one call (blocking: it runs trio itself) and return its result."""
    if options.duration < 0 or math.isnan(options.duration):
        raise CallSetupError(f"--duration must be >= 0 seconds, got {options.duration!r}")
    unknown = [s for s in options.stages if s not in STAGE_NAMES]
    if unknown:
        raise CallSetupError(f"unknown stage {unknown[0]!r}; known: {', '.join(STAGE_NAMES)}")
    actor_links = parse_network(options.network, options.overrides)
    if options.mode == "target":
        parse_network_spec(options.network, actors=ACTORS, overrides=options.overrides).check_target()
    wall0 = time.perf_counter()
    if options.mode == "target":
        outcome = trio.run(_against_target, options, actor_links)
    elif options.mode == "virtual":
        with deterministic_scheduling(options.seed):
            outcome = trio.run(_virtual_or_real, options, actor_links,
                               clock=virtual_clock())
    elif options.mode == "real-time":
        outcome = trio.run(_virtual_or_real, options, actor_links)
    else:
        raise CallSetupError(f"unknown mode {options.mode!r}")
    wall = time.perf_counter() - wall0
    sides = outcome["sides"]
    failure = outcome["failure"]
    if failure is None and not all("join_total" in s for s in sides.values()):
        failure = "a side has no join_total"
    return CallResult(passed=failure is None, seed=options.seed, network=options.network,
                      simulated_s=outcome["simulated"], wall_s=wall, journal_sha256=outcome["sha"],
                      stages=worse_side(sides, options.stages), failure=failure, sides=sides,
                      names=outcome["names"], mode=options.mode)
