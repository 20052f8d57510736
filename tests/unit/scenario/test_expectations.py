"""The timeline and the expectation windows, on hand-made timelines (no stack).

A stand-in scenario gives the names an expectation checks; every judgement below is what a story
would get from ``s.after``, ``s.between``, ``s.this_step`` and ``s.expect``.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio

from bench.scenario.errors import ScenarioError
from bench.scenario.expect import Window
from bench.scenario.timeline import Timeline


class Story:
    """The three things a Window needs from a Scenario."""

    actors = {"doctor", "patient"}

    def __init__(self) -> None:
        self.timeline = Timeline()
        self.expectations: list[Any] = []

    def _check_event_name(self, name: str) -> None:
        who = name.split(".", 1)[0]
        if who not in self.actors | {"freeswitch", "scenario", "fault"}:
            raise ScenarioError(f"unknown actor {who!r}")

    def _unknown_event(self, name: str, timeline: Timeline) -> str:
        known = name.split(".", 1)[1] in KNOWN or any(h.name == name for h in timeline)
        return "" if known else f"unknown event {name!r}"

    def _add_expectation(self, expectation):
        self.expectations.append(expectation)
        return expectation

    def after(self, event, within=None, anchor=0):
        return Window(self, event, None, within, {}, {}, anchor)

    def between(self, start, end, within=None, anchor=0):
        return Window(self, start, end, within, {}, {}, anchor)

    def whole(self):
        return Window(self, None, None, None, {}, {}, 0)

    def add(self, name: str, t: float, **data):
        who, what = name.split(".", 1)
        return self.timeline.add(who, what, data, at=self.timeline.t0 + t)


KNOWN = {"refresh", "onOut", "onCallStart", "onCallEnd", "onCall", "join", "step", "del-member"}


def judge(expectation, story, end_t):
    return expectation.judge(story.timeline, end_t)


async def test_after_window_with_within():
    s = Story()
    s.add("patient.refresh", 10)
    s.add("patient.onCallStart", 14)
    s.add("doctor.onOut", 40)
    assert judge(s.after("patient.refresh", within=5).expect("patient.onCallStart"), s, 60) == ""
    late = judge(s.after("patient.refresh", within=3).expect("patient.onCallStart"), s, 60)
    assert late == "seen 0 times"
    assert judge(s.after("patient.refresh", within=20).expect_no("doctor.onOut"), s, 60) == ""
    seen = judge(s.after("patient.refresh", within=40).expect_no("doctor.onOut"), s, 60)
    assert seen.startswith("it happened 1 time: t=40.000s doctor.onOut")


async def test_a_window_the_scenario_did_not_finish_is_a_failure_for_expect_no():
    s = Story()
    s.add("patient.refresh", 10)
    unfinished = judge(s.after("patient.refresh", within=20).expect_no("doctor.onOut"), s, 15)
    assert "5.000 s into the window" in unfinished and "nothing can be said" in unfinished
    # a positive expectation already met does not need the rest of the window
    s.add("patient.onCallStart", 12)
    assert judge(s.after("patient.refresh", within=20).expect("patient.onCallStart"), s, 15) == ""
    missing = judge(s.after("patient.refresh", within=20).expect("doctor.onOut"), s, 15)
    assert missing.startswith("seen 0 times before the scenario ended at t=15.000s")


async def test_between_needs_its_closing_event_in_time():
    s = Story()
    s.add("patient.refresh", 10)
    s.add("doctor.onOut", 11)
    s.add("patient.onCallStart", 30)
    ok = s.between("patient.refresh", "patient.onCallStart").expect("doctor.onOut", count=1)
    assert judge(ok, s, 60) == ""
    late = judge(s.between("patient.refresh", "patient.onCallStart", within=15).expect_no("doctor.onCall"), s, 60)
    assert late == ("patient.onCallStart did not happen within 15 s after patient.refresh (t=10.000s) "
                    "(it came at t=30.000s)")
    never = judge(s.between("patient.refresh", "doctor.onCallEnd").expect("doctor.onOut"), s, 60)
    assert never.startswith("doctor.onCallEnd did not happen after patient.refresh")


async def test_a_window_whose_opening_event_never_came():
    s = Story()
    s.add("doctor.onOut", 3)
    result = judge(s.after("patient.refresh", within=5).expect_no("doctor.onOut"), s, 60)
    assert result.startswith("patient.refresh never happened")


async def test_counts_and_data_matching():
    s = Story()
    for t, status in ((1, "hangup"), (2, "terminated"), (3, "hangup")):
        s.add("patient.onCallEnd", t, status=status)
    w = s.whole()
    assert judge(w.expect("patient.onCallEnd", count=2, status="hangup"), s, 10) == ""
    assert judge(w.expect("patient.onCallEnd", count=1, status="hangup"), s, 10).startswith("it happened 2 times")
    assert judge(w.expect("patient.onCallEnd", at_least=4), s, 10).startswith("seen 3 times")
    assert judge(w.expect("patient.onCallEnd", at_most=3), s, 10) == ""
    assert judge(w.expect_no("patient.onCallEnd", status="busy"), s, 10) == ""
    assert judge(w.expect("patient.onCallEnd", status=lambda v: v.startswith("term")), s, 10) == ""
    with pytest.raises(ScenarioError):
        w.expect("patient.onCallEnd", count=1, at_most=2)


async def test_the_window_opens_at_the_first_opening_event_recorded_after_the_anchor():
    s = Story()
    s.add("patient.refresh", 5)                     # an earlier refresh, before the step
    step = s.add("scenario.step", 20, title="now")
    s.add("patient.refresh", 20)                    # same instant as the step, recorded after it
    s.add("doctor.onOut", 21)
    window = s.after("patient.refresh", within=5, anchor=step.seq)
    assert judge(window.expect("doctor.onOut"), s, 30) == ""
    assert judge(s.after("patient.refresh", within=5).expect_no("doctor.onOut"), s, 30) == ""   # from t=5


async def test_events_at_the_same_instant_count_by_arrival():
    """An event recorded before the window's opening event, at the same virtual instant, is not in it."""
    s = Story()
    s.add("doctor.onOut", 10)
    s.add("patient.refresh", 10)
    s.add("doctor.onOut", 10)
    assert judge(s.after("patient.refresh", within=5).expect("doctor.onOut", count=1), s, 20) == ""
    s2 = Story()
    s2.add("patient.refresh", 10)
    s2.add("freeswitch.del-member", 10)
    s2.add("fault.esl", 10)
    s2.add("freeswitch.del-member", 10)
    assert judge(s2.between("patient.refresh", "fault.esl").expect("freeswitch.del-member", count=1), s2, 20) == ""


async def test_unknown_names():
    s = Story()
    with pytest.raises(ScenarioError, match="unknown actor 'nurse'"):
        s.after("nurse.refresh", within=1)
    assert judge(s.whole().expect("doctor.onCallStrat"), s, 1) == "unknown event 'doctor.onCallStrat'"
    with pytest.raises(ScenarioError, match="within"):
        s.after("patient.refresh", within=-1)


async def test_descriptions_name_the_window():
    s = Story()
    assert s.after("patient.refresh", within=15).expect_no("doctor.onOut", note="nobody tells").describe() == (
        "no doctor.onOut within 15 s after patient.refresh (nobody tells)")
    assert s.between("patient.refresh", "patient.onCallStart", within=10).expect(
        "patient.onCall", count=1).describe() == ("patient.onCall exactly 1 time between patient.refresh and "
                                                  "patient.onCallStart (which must come within 10 s)")
    assert s.whole().expect("patient.onCallEnd", status="hangup").describe() == (
        "patient.onCallEnd(status='hangup') during the scenario")


async def test_timeline_wait_and_queries(autojump_clock):
    timeline = Timeline()

    async def later():
        await trio.sleep(3)
        timeline.add("patient", "onCallStart", {"room": "101"})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        found = await timeline.wait(lambda: timeline.first("patient.onCallStart"), trio.current_time() + 10)
    assert found.t == pytest.approx(3) and found.name == "patient.onCallStart" and found.data == {"room": "101"}
    assert await timeline.wait(lambda: timeline.first("doctor.onOut"), trio.current_time() + 1) is None
    assert timeline.last("patient.onCallStart") is found and timeline.whats("patient") == {"onCallStart"}
    assert found.as_json() == {"seq": 0, "t": 3.0, "name": "patient.onCallStart", "step": "", "data": {"room": "101"}}
    nan = timeline.add("patient", "onCallEnd", {"time": math.nan})
    assert nan.as_json()["data"] == {"time": None}
