"""Expectations: what must (or must not) happen, scoped between named events, with timeouts.

A story declares them where it tells them, and they are judged against the whole
:class:`~bench.scenario.timeline.Timeline` when the story ends::

    away = s.between("patient.refresh", "patient.onCallStart", within=15)
    away.expect_no("doctor.onOut", note="nobody tells the doctor")
    s.after("patient.refresh", within=15).expect("patient.onCall")
    s.expect("doctor.onCallStart", count=1)

**Windows.**  ``s.expect(...)`` looks at the whole scenario; ``s.this_step()`` at the step that
declares it, from its start to the start of the next step.  ``s.after(A, within=W)`` opens at the
first ``A`` recorded since the start of the step that declared it and closes ``W`` seconds later (at
the end of the scenario without ``within``).  ``s.between(A, B, within=W)`` closes at the first
``B`` at or after that opening, which must come within ``W`` seconds (any time without it): a
``B`` that never comes is a failure of its own.  When the story ends, the runner lets time run
until every timed window that opened has closed (``s.settle()``), then judges.  Events are matched
by name and, with keyword arguments, by their data (``status="terminated"``; a callable is a predicate).

**Judgements.**  ``expect(E)``: ``E`` happens in the window at least once (``count=N`` exactly
``N`` times, ``at_least`` / ``at_most``).  ``expect_no(E)``: it does not happen in the window; if
the scenario ended before a timed window closed, that is a failure too (nothing can be said about
time that was never simulated).  Each failure names the expectation, the window and what was seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.scenario.errors import ScenarioError
from bench.scenario.timeline import Timeline

if TYPE_CHECKING:  # pragma: no cover
    from bench.scenario.story import Scenario

__all__ = ["Window", "Expectation"]


def _fmt(seconds: float) -> str:
    return f"{seconds:g} s"


@dataclass
class Window:
    """Where expectations look (see the module docstring)."""

    scenario: Scenario
    start: str | None = None
    end: str | None = None
    within: float | None = None
    start_match: dict[str, Any] = field(default_factory=dict)
    end_match: dict[str, Any] = field(default_factory=dict)
    anchor: int = 0              # seq of the start of the declaring step: the opening event comes after it
    step: str | None = None      # s.this_step(): the window is that step, from its start to the next one

    def __post_init__(self) -> None:
        if self.within is not None and (not isinstance(self.within, (int, float)) or self.within < 0):
            raise ScenarioError(f"within must be a number of seconds >= 0, not {self.within!r}")
        for name in (self.start, self.end):
            if name is not None:
                self.scenario._check_event_name(name)

    def describe(self) -> str:
        if self.step is not None:
            return f"during step {self.step!r}"
        if self.start is None:
            return "during the scenario"
        start = self.start + _match_text(self.start_match)
        if self.end is None:
            return f"within {_fmt(self.within)} after {start}" if self.within is not None else f"after {start}"
        text = f"between {start} and {self.end}{_match_text(self.end_match)}"
        return text + (f" (which must come within {_fmt(self.within)})" if self.within is not None else "")

    def expect(self, event: str, *, count: int | None = None, at_least: int | None = None,
               at_most: int | None = None, note: str = "", **match: Any) -> Expectation:
        """``event`` happens in this window (at least once, or as counted)."""
        if count is not None and (at_least is not None or at_most is not None):
            raise ScenarioError("give count, or at_least/at_most, not both")
        if count is not None:
            at_least = at_most = count
        elif at_least is None and at_most is None:
            at_least = 1
        return self.scenario._add_expectation(Expectation(self, event, match, at_least, at_most, note))

    def expect_no(self, event: str, *, note: str = "", **match: Any) -> Expectation:
        """``event`` does not happen in this window."""
        return self.scenario._add_expectation(Expectation(self, event, match, None, 0, note))

    # -- judging -----------------------------------------------------------------------------------
    def resolve(self, timeline: Timeline, end_t: float) -> tuple[float, float, int, int | None, bool, str]:
        """(open, close, since, before, complete, problem): the window's bounds on the timeline
        (``since``/``before``: the seq of the opening and closing events -- what counts in the
        window was recorded between them); ``complete``
        is False when the scenario ended before a timed window closed; ``problem`` says why the
        window itself failed (its opening or closing event missing)."""
        if self.step is not None:
            opened_step = timeline.happenings[self.anchor]
            nested = f"{self.step} / "
            following = [h for h in timeline.find("scenario.step", since=self.anchor + 1)
                         if not str(h.data.get("title", "")).startswith(nested)]
            if following:
                return opened_step.t, following[0].t, self.anchor, following[0].seq, True, ""
            return opened_step.t, end_t, self.anchor, None, True, ""
        if self.start is None:
            return 0.0, end_t, 0, None, True, ""
        opened = timeline.first(self.start, self.start_match, since=self.anchor)
        if opened is None:
            return math.nan, math.nan, 0, None, False, (f"{self.start}{_match_text(self.start_match)} never happened "
                                               f"(looked from the step that declared this on)")
        open_t = opened.t
        if self.end is not None:
            closed = timeline.first(self.end, self.end_match, start=open_t, since=opened.seq)
            limit = open_t + self.within if self.within is not None else math.inf
            if closed is None or closed.t > limit:
                late = f" (it came at t={closed.t:.3f}s)" if closed is not None else ""
                bound = f"within {_fmt(self.within)} " if self.within is not None else ""
                return open_t, min(limit, end_t), opened.seq, None, False, (
                    f"{self.end}{_match_text(self.end_match)} did not happen {bound}after {self.start} "
                    f"(t={open_t:.3f}s){late}")
            return open_t, closed.t, opened.seq, closed.seq, True, ""
        if self.within is not None:
            close_t = open_t + self.within
            return open_t, min(close_t, end_t), opened.seq, None, close_t <= end_t + 1e-9, ""
        return open_t, end_t, opened.seq, None, True, ""


@dataclass
class Expectation:
    window: Window
    event: str
    match: dict[str, Any]
    at_least: int | None
    at_most: int | None
    note: str = ""
    step: str = ""
    scenario_end: float | None = None
    result: str | None = None       # None: not judged; "" passed; else the failure

    def where(self) -> str:
        """``expectation declared in step '...': `` (nothing when declared outside every step)."""
        return f"expectation declared in step {self.step!r}: " if self.step else ""

    def describe(self) -> str:
        what = self.event + _match_text(self.match)
        if self.at_most == 0:
            verb = f"no {what}"
        elif self.at_least == self.at_most:
            verb = f"{what} exactly {self.at_least} time{'s' if self.at_least != 1 else ''}"
        elif self.at_most is None and self.at_least == 1:
            verb = what
        else:
            bounds = []
            if self.at_least is not None:
                bounds.append(f"at least {self.at_least}")
            if self.at_most is not None:
                bounds.append(f"at most {self.at_most}")
            verb = f"{what} {' and '.join(bounds)} times"
        text = f"{verb} {self.window.describe()}"
        return f"{text} ({self.note})" if self.note else text

    def judge(self, timeline: Timeline, end_t: float) -> str:
        """'' if it holds, else why not."""
        unknown = self.window.scenario._unknown_event(self.event, timeline)
        if unknown:
            return unknown
        open_t, close_t, since, before, complete, problem = self.window.resolve(timeline, end_t)
        if problem:
            return problem
        seen = timeline.find(self.event, self.match, start=open_t, end=close_t, since=since, before=before)
        n = len(seen)
        shown = "; ".join(h.describe() for h in seen[:3]) + (f"; ... {n - 3} more" if n > 3 else "")
        times = f"{n} time{'s' if n != 1 else ''}"
        if self.at_most is not None and n > self.at_most:
            return f"it happened {times}: {shown}"
        if self.at_least is not None and n < self.at_least:
            if not complete:
                return (f"seen {times} before the scenario ended at t={end_t:.3f}s, "
                        f"{close_t - open_t:.3f} s into the window")
            return f"seen {times}" + (f": {shown}" if n else "")
        if self.at_most is not None and not complete:
            return (f"the scenario ended at t={end_t:.3f}s, {close_t - open_t:.3f} s into the window: "
                    f"nothing can be said about the rest of it")
        return ""


def _match_text(match: dict[str, Any]) -> str:
    if not match:
        return ""
    parts = [f"{k}={'<predicate>' if callable(v) else v!r}" for k, v in match.items()]
    return "(" + ", ".join(parts) + ")"

