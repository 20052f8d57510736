"""``s``: what a scenario file's ``async def story(s)`` is handed.

A story is told in the seed's order -- the actors, the steps, what every side sees::

    async def story(s: Scenario) -> None:
        doctor, patient = s.doctor, s.patient          # names from faker, seeded with the run's seed

        with s.step("the doctor and the patient open the page and join room 101"):
            await s.together(doctor.open_page(), patient.open_page())
            await doctor.join("101")
            await patient.join("101")
            await s.wait("patient.onCallStart")

        with s.step("the patient reloads the page"):
            away = s.between("patient.refresh", "patient.onCallStart", within=15)
            away.expect_no("doctor.onOut", note="nobody tells the doctor")
            await patient.refresh()

What it offers (each method's docstring has the details):

* **actors** -- :attr:`doctor`, :attr:`patient` and :meth:`actor` for more (a nurse, the same user
  on a second device); one shared :attr:`app` (the application backend, ``app.restore`` switches
  the app-level call restore of spec 6.2/6.4);
* **steps** -- :meth:`step` (a ``with`` block naming what the story does; failures name it);
* **waiting and expectations** -- :meth:`wait`, :meth:`expect`, :meth:`expect_no`, :meth:`after`,
  :meth:`between`, :meth:`this_step` (``bench/scenario/expect.py``), :meth:`check` for a state that must hold now;
* **faults and links** -- :attr:`faults` and :meth:`link` (``bench/scenario/faults.py``): server
  restarts, a slow CometQL, ESL commands, link profiles, partitions, resets, a lost network;
* **metrics** -- :meth:`mark` (a named moment on the timeline) and :meth:`measure` (the time
  between two moments, recorded as a stage of this scenario in the run's histograms);
* **the servers' view** -- :meth:`conference_members` (what the app reads over CometQL),
  :meth:`fs_members` (FreeSWITCH's members), :attr:`stack`, :attr:`profile`, :attr:`faithful`.

Everything happens on trio's clock: virtual seconds under the runner's MockClock.

**Where it runs** -- on an in-process stack (``stack``; the runner's default, the pytest plugin's
fixtures) every power is there.  Against an external target (``cometbench run --target``; ``stack``
is None) the actors talk to a real deployment, and what needs the in-process stack -- server faults,
link conditions, a look inside FreeSWITCH (:data:`bench.scenario.errors.POWERS`) -- raises
:class:`~bench.scenario.errors.NotAvailable` naming it; :meth:`require` is that check and
:attr:`powers` what the run has.  There the deployment is shared (by the calls of a run, by the
shards of a sharded run at once, by earlier runs), so the runner gives each call its own user ids and
rooms (``names``: :mod:`bench.scenario.names`); the story keeps naming its room ``101``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any

import trio

from bench.actors.backend import App, Backend
from bench.actors.participant import MARKS, Participant, Target
from bench.options import NetworkSpec
from bench.scenario.actors import PAGE_EVENTS, STAGE_NAMES, Actor
from bench.scenario.errors import POWERS, NotAvailable, ScenarioError, ScenarioFailure
from bench.scenario.expect import Expectation, Window
from bench.scenario.faults import FAULT_EVENTS, LINK_EVENTS, Faults, Link
from bench.scenario.names import CallNames
from bench.scenario.network import apply_to_actor, network_spec
from bench.scenario.timeline import SERVICE_WHO, Happening, Timeline

__all__ = ["Scenario", "ACTOR_EVENTS", "FREESWITCH_EVENTS"]

DEFAULT_DEV_ID = 15          # the demo's dev_id (video-call-flow.md section 2)

#: What an actor's timeline events can be called (besides ``received.<event>`` and metric marks).
ACTOR_EVENTS = frozenset({
    *MARKS, "onCall", "onCallAccept", "onCallStart", "onCallEnd", "onOut", "onIn", "toggleMute", "onToggleMute",
    "toggleHold", *PAGE_EVENTS.values(), "open_page", "join", "leave", "accept", "mute_audio", "mute_video",
    "hold", "resume", "talk", "out_sent", "rejoin_ignored", "call_accept", "session_failed", "session_ended",
    "comet_open", "comet_close", "sip_disconnected",
})
#: The conference::maintenance actions the fake FreeSWITCH fires.
FREESWITCH_EVENTS = frozenset({
    "conference-create", "conference-destroy", "add-member", "del-member", "start-talking", "stop-talking",
    "floor-change", "video-floor-change", "mute-member", "unmute-member", "deaf-member", "undeaf-member",
    "vmute-member", "unvmute-member", "kick-member", "hup-member", "energy-level-member", "volume-in-member",
    "volume-out-member", "start-recording", "stop-recording",
})
RESERVED_NAMES = SERVICE_WHO | {"backend", "ops"}

# one literal call per kind, so the documented list of journal kinds can be checked against the code
_RECORDERS = {
    "scenario": lambda j, dev, text: j.record("bench", "scenario", dev_id=dev, data=text),
    "step": lambda j, dev, text: j.record("bench", "step", dev_id=dev, data=text),
    "callback": lambda j, dev, text: j.record("bench", "callback", dev_id=dev, data=text),
    "fault": lambda j, dev, text: j.record("bench", "fault", dev_id=dev, data=text),
    "expectation": lambda j, dev, text: j.record("bench", "expectation", dev_id=dev, data=text),
    "measure": lambda j, dev, text: j.record("bench", "measure", dev_id=dev, data=text),
}


class Scenario:
    """One story being told against one stack (see the module docstring)."""

    def __init__(self, name: str, *, seed: int, stack: Any, network: Any, nursery: trio.Nursery,
                 profile: str = "cppcomet-4.09", network_profile: str | NetworkSpec = "loopback",
                 clock: str = "virtual", dev_id: int = DEFAULT_DEV_ID, restore: bool = False,
                 target: Target | None = None, actor_options: dict[str, dict[str, Any]] | None = None,
                 target_name: str = "in-process", browser: Any = None, names: CallNames | None = None) -> None:
        self.name = name
        self.seed = seed
        self.stack = stack
        self.network = network
        self.profile = profile
        self.network_spec = network_spec(network_profile)
        self.network_profile = self.network_spec.text
        self.clock = clock
        self.rng = random.Random(f"{seed}:scenario:{name}")
        if stack is None and target is None:
            raise ScenarioError("a scenario needs a stack or a target")
        self.target = target or Target.from_stack(stack, dev_id=dev_id)
        self.dev_id = self.target.dev_id
        self.target_name = target_name
        #: what this run can do beyond talking to the servers (bench.scenario.errors.POWERS)
        self.powers = frozenset(POWERS) if stack is not None else frozenset()
        self.links = getattr(stack, "links", None)
        self.timeline = Timeline()
        self.t0 = self.timeline.t0
        self.faults = Faults(self)
        self.expectations: list[Expectation] = []
        self.measures: list[tuple[str, float]] = []      # (stage name, ms) of measure()
        self.user_marks: set[str] = set()
        self.failed_step: str | None = None
        self._nursery = nursery
        self._actors: dict[str, Actor] = {}
        self._user_ids: set[int] = set()
        self._step_start = 0          # seq of the current step's scenario.step happening
        self._member_actor: dict[int, str] = {}
        self.actor_options = {name: dict(options) for name, options in (actor_options or {}).items()}
        # real browsers in place of some actors (bench/browser: BrowserSettings; cometbench run --browser)
        self.browser = browser
        self._browser_env: Any = None
        # against a shared deployment: this call's own user ids and rooms (bench/scenario/names.py)
        self.names = names
        self._new_users = 0
        self.app = App(Backend(network, self.target.cometql_host, self.target.cometql_port, dev_id=self.dev_id,
                               password=self.target.password, name="backend",
                               rng=random.Random(self.rng.getrandbits(64))), restore=restore)
        if names is not None:
            self.app.backend.room_name = names.room
        self._unsubscribe = None
        self._unwatch_links = None
        bridge = self.target.bridge
        if bridge is not None:
            self._unsubscribe = bridge.subscribe(self._freeswitch_event)
        if self.links is not None:
            self._unwatch_links = self.links.watch(self._link_changed)
        self.doctor = self.actor("doctor", role="doctor")
        self.patient = self.actor("patient", role="patient")
        self._journal("scenario", {"scenario": name, "event": "start", "seed": seed, "profile": profile,
                                   "network": self.network_profile,
                                   **({"call": names.call, "rooms": f"<room>{names.suffix}",
                                       "user_ids": names.user_id(0)} if names is not None else {})})

    # =============================================================================================
    # actors
    # =============================================================================================
    def actor(self, name: str, *, role: str | None = None, same_user_as: Actor | None = None,
              user_id: int | None = None, **options: Any) -> Actor:
        """The actor called ``name``, created on first use: a new user (a seeded random id), or the
        same user as ``same_user_as`` on another device.  ``options`` (over the scenario file's
        ``ACTORS[name]``) go to the :class:`~bench.actors.participant.Participant`
        (``accept="manual"``, ``decision_delay``, ``call_type``, ``quirks``, ``timings``,
        ``callbacks`` ...)."""
        if name in self._actors:
            if role is not None or same_user_as is not None or user_id is not None or options:
                raise ScenarioError(f"actor {name!r} exists already; options apply only when it is created")
            return self._actors[name]
        if not name.isidentifier() or name in RESERVED_NAMES:
            raise ScenarioError(f"actor name {name!r} must be an identifier other than "
                                f"{', '.join(sorted(RESERVED_NAMES))}")
        if same_user_as is not None:
            if user_id is not None:
                raise ScenarioError("give same_user_as or user_id, not both")
            user_id = same_user_as.user_id
        elif user_id is None and self.names is not None:   # a shared deployment: the call's own ids
            user_id = self.names.user_id(self._new_users)
            self._new_users += 1
        elif user_id is None:
            user_id = self.rng.randrange(100_000, 1_000_000)     # the demo keeps a random id in localStorage
            while user_id in self._user_ids:
                user_id = self.rng.randrange(100_000, 1_000_000)
        self._user_ids.add(int(user_id))
        options = {**self.actor_options.get(name, {}), **options}
        rtt = apply_to_actor(self.links, self.network_spec, name)   # the run's --network, for this actor
        if rtt and "app_request_rtt" not in options:
            options["app_request_rtt"] = rtt
        kind: Any = Participant
        if self.browser is not None and name in self.browser.actors:   # a real Chromium plays this actor
            from bench.browser.participant import BrowserParticipant

            kind, options["env"] = BrowserParticipant, self._browser()
        participant = kind(self.target, self.network, nursery=self._nursery, user_id=int(user_id),
                           role=role or (same_user_as.role if same_user_as is not None else name),
                           actor=name, seed=self.seed, app=self.app, **options)
        if same_user_as is not None:
            participant.user_key = same_user_as.participant.user_key
        actor = Actor(self, participant)
        self._actors[name] = actor
        return actor

    @property
    def actors(self) -> dict[str, Actor]:
        return dict(self._actors)

    @property
    def browser_actors(self) -> list[str]:
        """The actors a real browser played (``cometbench run --browser``; those that opened a page),
        in order of creation."""
        return [name for name, a in self._actors.items()
                if getattr(a.participant, "kind", "") == "browser" and a.participant.pages]

    def _browser(self) -> Any:
        if self._browser_env is None:
            from bench.browser.participant import BrowserEnvironment

            self._browser_env = BrowserEnvironment(self.browser, scenario=self.name, nursery=self._nursery,
                                                   network=self.network, stack=self.stack, app=self.app)
        return self._browser_env

    async def finish(self, *, failed: bool) -> None:
        """The story is over (the runner calls it before :meth:`close`): real browsers save their
        console logs, and a screenshot each when the scenario failed."""
        if self._browser_env is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(30):
                await self._browser_env.finish(failed=failed)

    def _actor(self, name: str) -> Actor:
        try:
            return self._actors[name]
        except KeyError:
            raise ScenarioError(f"unknown actor {name!r}; actors: {', '.join(self._actors)}") from None

    # =============================================================================================
    # steps, time
    # =============================================================================================
    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        """A step of the story; a failure inside it names it."""
        outer = self.timeline.step
        full = f"{outer} / {title}" if outer else title
        self.timeline.step = full
        previous_start = self._step_start
        self._step_start = self.timeline.add("scenario", "step", {"title": full}).seq
        self._journal("step", {"step": full, "t": round(self.now, 6)})
        try:
            yield
        except BaseException:
            if self.failed_step is None:
                self.failed_step = full
            raise
        finally:
            self.timeline.step = outer
            if outer:
                self._step_start = previous_start

    @property
    def current_step(self) -> str:
        return self.timeline.step

    @property
    def now(self) -> float:
        """Seconds since the scenario started."""
        return self.timeline.now()

    def at(self, t: float) -> float:
        """The trio time of scenario second ``t`` (for ``join(..., at=...)`` schedules)."""
        return self.t0 + t

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    async def together(self, *awaitables: Awaitable[Any]) -> list[Any]:
        """Run the awaitables at the same time (both click Join at once); their results in order."""
        results: list[Any] = [None] * len(awaitables)

        async def run(i: int, awaitable: Awaitable[Any]) -> None:
            results[i] = await awaitable

        async with trio.open_nursery() as nursery:
            for i, awaitable in enumerate(awaitables):
                nursery.start_soon(run, i, awaitable)
        return results

    async def meet(self, room: str, *actors: Actor, profile: str = "video", within: float = 30.0) -> None:
        """The actors (default: the doctor, then the patient) open their pages if needed and join
        ``room`` one after the other -- each joins once the one before has its media up -- until
        every one of them sees the others (``first_remote_frame``)."""
        actors = actors or (self.doctor, self.patient)
        await self.together(*(a.open_page() for a in actors if a.participant.page is None))
        for actor in actors:
            await actor.join(room, profile=profile)
            await self.wait(f"{actor.name}.media_self", within=within)
        for actor in actors:
            await self.wait(f"{actor.name}.first_remote_frame", within=within)

    @property
    def faithful(self) -> bool:
        """The fidelity profile reproduces the real servers' quirks (not ``lenient``)."""
        return self.profile != "lenient"

    # =============================================================================================
    # waiting, expectations, checks
    # =============================================================================================
    async def wait(self, event: str, *, after: str | None = None, within: float = 30.0, **match: Any) -> Happening:
        """Wait until ``event`` happens (data matching ``match``) and return it: its first occurrence
        recorded since this step began, or since the last ``after`` event.  Fails the step after
        ``within`` seconds."""
        self._check_event_name(event)
        since, where = self._step_start, "since the step began"
        if after is not None:
            self._check_event_name(after)
            last = self.timeline.last(after)
            if last is None:
                raise ScenarioFailure(f"waits for {event} after {after}, but {after} has not happened")
            since, where = last.seq, f"after {after} (t={last.t:.3f}s)"
        deadline = trio.current_time() + within
        found = await self.timeline.wait(lambda: self.timeline.first(event, match, since=since), deadline)
        if found is None:
            what = event + (f" with {match}" if match else "")
            seen = self.timeline.find(event, since=since)
            hint = f"; seen instead: {'; '.join(h.describe() for h in seen[:3])}" if seen and match else ""
            raise ScenarioFailure(f"waited {within:g} s for {what} {where}: it did not happen{hint}")
        return found

    def expect(self, event: str, *, count: int | None = None, at_least: int | None = None,
               at_most: int | None = None, note: str = "", **match: Any) -> Expectation:
        """``event`` happens during the scenario (judged at the end)."""
        return self._window().expect(event, count=count, at_least=at_least, at_most=at_most, note=note, **match)

    def expect_no(self, event: str, *, note: str = "", **match: Any) -> Expectation:
        """``event`` never happens during the scenario."""
        return self._window().expect_no(event, note=note, **match)

    def after(self, event: str, *, within: float | None = None, **match: Any) -> Window:
        """The window from ``event`` (its first occurrence since this step began) for ``within`` seconds."""
        return Window(self, event, None, within, dict(match), {}, self._step_start)

    def between(self, start: str, end: str, *, within: float | None = None) -> Window:
        """The window from ``start`` (its first occurrence since this step began) to the next
        ``end``, which must come within ``within`` seconds."""
        return Window(self, start, end, within, {}, {}, self._step_start)

    def this_step(self) -> Window:
        """The window of the current step: from its start to the start of the next step."""
        if not self.current_step:
            raise ScenarioError("this_step() is used inside a `with s.step(...)` block")
        return Window(self, None, None, None, {}, {}, self._step_start, step=self.current_step)

    def _window(self) -> Window:
        return Window(self, None, None, None, {}, {}, 0)

    def check(self, condition: Any, what: str) -> None:
        """A state that must hold now (``s.check(patient.in_call, "the patient's page shows the call")``)."""
        if not condition:
            raise ScenarioFailure(f"expected {what}")

    def _add_expectation(self, expectation: Expectation) -> Expectation:
        self._check_event_name(expectation.event)
        expectation.step = self.current_step
        self.expectations.append(expectation)
        return expectation

    def judge(self) -> list[Expectation]:
        """Judge every expectation against the timeline; the failed ones."""
        end_t = self.now
        failed = []
        for expectation in self.expectations:
            expectation.result = expectation.judge(self.timeline, end_t)
            self._journal("expectation", {"expectation": expectation.describe(), "step": expectation.step,
                                          "passed": not expectation.result, "why": expectation.result})
            if expectation.result:
                failed.append(expectation)
        return failed

    async def settle(self) -> None:
        """Let time run until every timed window that has opened has closed (the runner calls it when
        the story ends, before judging): "no onOut within 5 s after the hangup" needs those 5 s."""
        if self._browser_env is not None:      # what real pages reported is on the timeline first
            await self._browser_env.flush()
        until = self.now
        for expectation in self.expectations:
            window = expectation.window
            if expectation.result is not None or window.start is None or window.within is None:
                continue
            opened = self.timeline.first(window.start, window.start_match, since=window.anchor)
            if opened is None:
                continue
            if window.end is not None and self.timeline.first(window.end, window.end_match, start=opened.t,
                                                              since=opened.seq):
                continue
            until = max(until, opened.t + window.within)
        if until > self.now:
            await trio.sleep_until(self.at(until) + 1e-6)
            if self._browser_env is not None:
                await self._browser_env.flush()

    def verify(self) -> None:
        """Judge the expectations not judged yet; :class:`ScenarioFailure` listing the failed ones."""
        pending = [e for e in self.expectations if e.result is None]
        end_t = self.now
        failed = []
        for expectation in pending:
            expectation.result = expectation.judge(self.timeline, end_t)
            if expectation.result:
                failed.append(f"{expectation.where()}{expectation.describe()} -- {expectation.result}")
        if failed:
            raise ScenarioFailure(f"{self.name}: " + "; ".join(failed))

    # -- names ------------------------------------------------------------------------------------------
    def _check_event_name(self, name: str) -> None:
        """``who.what`` with a known ``who`` (an actor, freeswitch, scenario, fault, link)."""
        if not isinstance(name, str) or "." not in name:
            raise ScenarioError(f"an event is named <who>.<what> (e.g. 'patient.onCallStart'), not {name!r}")
        who = name.split(".", 1)[0]
        if who == "freeswitch":
            self.require("freeswitch", f"an expectation or wait on {name}")
        if who not in self._actors and who not in SERVICE_WHO:
            raise ScenarioError(f"unknown actor {who!r} in {name!r}; actors: {', '.join(self._actors)} "
                                f"(others: {', '.join(sorted(SERVICE_WHO))})")

    def _unknown_event(self, name: str, timeline: Timeline) -> str:
        """'' when ``name`` is a known event or happened; else why it is unknown."""
        if any(h.name == name for h in timeline):
            return ""
        who, what = name.split(".", 1)
        if who in self._actors:
            known = what in ACTOR_EVENTS or what.startswith("received.") or what in self.user_marks
        elif who == "freeswitch":
            known = what in FREESWITCH_EVENTS
        elif who == "fault":
            known = what in FAULT_EVENTS
        elif who == "link":
            known = what in LINK_EVENTS
        else:
            known = what in self.user_marks or (who == "scenario" and what == "step")
        if known:
            return ""
        return (f"unknown event {name!r}: not a callback, mark, page event or action of "
                f"{'actor ' + who if who in self._actors else who}, and no s.mark({what!r}) happened")

    # =============================================================================================
    # metrics
    # =============================================================================================
    def mark(self, name: str, actor: Actor | None = None, **data: Any) -> Happening:
        """A named moment on the timeline (``scenario.<name>``, or ``<actor>.<name>``)."""
        if not name.isidentifier():
            raise ScenarioError(f"a mark is named like an identifier, not {name!r}")
        self.user_marks.add(name)
        who = actor.name if actor is not None else "scenario"
        return self.timeline.add(who, name, data)

    def measure(self, stage: str, start: str, end: str) -> float:
        """Milliseconds from the last ``start`` to the first ``end`` after it, recorded as stage
        ``stage`` of this scenario in the run's histograms."""
        if not stage.isidentifier():
            raise ScenarioError(f"a stage is named like an identifier, not {stage!r}")
        if stage in STAGE_NAMES:
            raise ScenarioError(f"stage {stage!r} is one the actors measure themselves; choose another name")
        for name in (start, end):
            self._check_event_name(name)
        first = self.timeline.last(start)
        if first is None:
            raise ScenarioFailure(f"measures {stage} from {start}, which has not happened")
        second = self.timeline.first(end, start=first.t, since=first.seq)
        if second is None:
            raise ScenarioFailure(f"measures {stage} from {start} (t={first.t:.3f}s) to {end}, which has not "
                                  f"happened since")
        ms = round((second.t - first.t) * 1000.0, 3)
        self.measures.append((stage, ms))
        self._journal("measure", {"stage": stage, "ms": ms, "from": start, "to": end})
        return ms

    # =============================================================================================
    # faults, links, the servers' view
    # =============================================================================================
    def can(self, power: str) -> bool:
        """Whether this run has ``power`` (:data:`bench.scenario.errors.POWERS`): a story that runs
        against any deployment (``NEEDS = ()``) looks inside FreeSWITCH only ``if s.can("freeswitch")``."""
        if power not in POWERS:
            raise ScenarioError(f"unknown power {power!r}; powers: {', '.join(POWERS)}")
        return power in self.powers

    def require(self, power: str, action: str) -> None:
        """:class:`NotAvailable` unless this run has ``power`` (one of
        :data:`bench.scenario.errors.POWERS`); ``action`` names what asked for it."""
        if power not in POWERS:
            raise ScenarioError(f"unknown power {power!r}; powers: {', '.join(POWERS)}")
        if power not in self.powers:
            raise NotAvailable(f"{action} needs {POWERS[power]}, which only the in-process stack has; the "
                               f"target {self.target_name} is an external deployment")

    def link(self, actor: Actor, protocol: str = "*") -> Link:
        """The actor's links (latency, loss, partition, reset, half-open, profile, a lost network),
        all protocols or one."""
        if not isinstance(actor, Actor) or self._actors.get(actor.name) is not actor:
            raise ScenarioError(f"{actor!r} is not an actor of this scenario")
        return Link(self, actor, protocol)

    async def conference_members(self, room: str) -> list[str]:
        """``SELECT * FROM conference_members WHERE name = <room>`` as the app reads it: one actor
        name per row (ghosts included), or the user id when no actor has it."""
        rows = (await self.app.backend.members(str(room))).rows
        return [self._name_of_user(int(row[1] or 0)) for row in rows]

    def fs_members(self, room: str) -> list:
        """FreeSWITCH's members of the room's conference (newest first)."""
        self.require("freeswitch", "s.fs_members()")
        bridge = self.target.bridge
        if bridge is None:
            return []
        return bridge.members(bridge.conference_name(self.dev_id, str(room)))

    def who(self, member: Any) -> str:
        """The actor whose member this is (``a|b`` when two devices of one user cannot be told apart)."""
        name = self._member_actor.get(member.id)
        return name if name is not None else self._resolve_member(member)

    def _name_of_user(self, user_id: int) -> str:
        names = [a.name for a in self._actors.values() if a.user_id == user_id]
        return "|".join(names) if names else str(user_id)

    def _resolve_member(self, member: Any) -> str:
        channel = member.channel
        if channel.network_addr in self._actors:   # the in-memory network names the client
            return channel.network_addr
        sip = channel.caller_id_name
        names = [a.name for a in self._actors.values() if a.participant.sip_user == sip]
        return "|".join(names) if names else sip

    def _members_of(self, actor: Actor, room: str | None) -> list:
        self.require("freeswitch", f"{actor.name}.member()")
        if room is None:
            raise ScenarioError(f"{actor.name} has not joined a room: name the room")
        return [m for m in self.fs_members(room) if m.channel.caller_id_name == actor.participant.sip_user
                and actor.name in self.who(m).split("|")]

    def _member_of(self, actor: Actor, room: str | None) -> Any:
        members = self._members_of(actor, room)
        live = [m for m in members if m.media != "dead"]
        return (live or members or [None])[0]

    def _freeswitch_event(self, event: Any) -> None:
        if event.name != "CUSTOM" or event.subclass != "conference::maintenance":
            return
        action = event.get("Action") or ""
        data: dict[str, Any] = {"conference": event.get("Conference-Name", "")}
        size = event.get("Conference-Size")
        if size is not None and size.isdigit():
            data["size"] = int(size)
        member_id = event.get("Member-ID")
        if member_id is not None and member_id.isdigit():
            mid = int(member_id)
            data["member"] = mid
            actor = self._member_actor.get(mid)
            if actor is None and self.target.bridge is not None:
                member = self.target.bridge.member(mid)
                if member is not None:
                    actor = self._member_actor[mid] = self._resolve_member(member)
            if actor is not None:
                data["actor"] = actor
        for header, key in (("Old-ID", "old"), ("New-ID", "new")):
            value = event.get(header)
            if value is not None:
                data[key] = self._member_actor.get(int(value), value) if value.isdigit() else value
        self.timeline.add("freeswitch", action, data)

    def _link_changed(self, change: Any) -> None:
        """A change of the link table -> ``link.<kind>`` when it concerns an actor (or everyone)."""
        if change.kind not in LINK_EVENTS:
            return
        if change.client != "*" and change.client not in self._actors:
            return
        data: dict[str, Any] = {"protocol": change.protocol}
        if change.client != "*":
            data["actor"] = change.client
        if change.count:
            data["connections"] = change.count
        self.timeline.add("link", change.kind, data)

    # =============================================================================================
    # the app's JWT login (jwt_revoked) and the journal
    # =============================================================================================
    def issue_jwt(self, actor: Actor, *, ttl: float = 3600.0) -> str:
        """The app signs a JWT for the actor (HS256, secret = password + dev_id, claims ``user_id`` and
        ``exp``) and the page will log in with it instead of a users_auth hash."""
        import jwt

        from emulator.comet.auth import jwt_secret

        if actor.participant.page is not None:
            raise ScenarioError(f"{actor.name}'s page is open already: issue the JWT before open_page()")
        exp = int((self.stack.clock.now() if self.stack is not None else time.time()) + ttl)
        token = jwt.encode({"user_id": actor.user_id, "exp": exp}, jwt_secret(self.target.password, self.dev_id),
                           algorithm="HS256")
        actor.participant.user_key = token
        return token

    async def revoke_jwt(self, token: str) -> None:
        """The app blacklists the token: ``INSERT INTO revoked_tokens (token) VALUES (...)``."""
        from bench.actors.backend import sql_quote

        self.timeline.add("scenario", "revoke_jwt")
        self.user_marks.add("revoke_jwt")
        await self.app.backend.execute(f"INSERT INTO revoked_tokens (token) VALUES ({sql_quote(token)})")

    def _journal(self, kind: str, data: dict) -> None:
        """A bench record of this scenario (README's journal table lists the kinds)."""
        journal = self.target.journal
        if journal is None or not journal.enabled:
            return
        text = json.dumps({"scenario": self.name, **data}, separators=(",", ":"), sort_keys=True, default=str)
        _RECORDERS[kind](journal, self.dev_id, text)

    def close(self) -> None:
        """The end of the story: every page closes (no goodbye), FreeSWITCH events stop."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._unwatch_links is not None:
            self._unwatch_links()
            self._unwatch_links = None
        for actor in self._actors.values():
            actor.participant.close()
