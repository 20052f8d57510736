"""The scenario's timeline: everything every side saw, in one list the expectations query.

A :class:`Happening` is one thing that happened, named ``<who>.<what>``:

* an actor's app callbacks under cometVideoApi's JavaScript names -- ``patient.onCall``,
  ``patient.onCallAccept``, ``patient.onCallStart``, ``patient.onCallEnd`` (data ``status``),
  ``doctor.onOut`` (``user_id``, ``status``), ``onIn``, ``toggleMute`` / ``onToggleMute``
  (``isMute``), ``toggleHold``;
* an actor's latency marks (docs/stages.md): ``patient.push_received`` ... ``patient.call_start``,
  ``patient.first_remote_frame``, ``patient.call_end``, ``patient.hangup``;
* what the page did or met: ``patient.received.<event>`` for each callPipe event its handler
  took (``doctor.received.toggleMute``), ``patient.session_ended``, ``patient.session_failed``,
  ``patient.rejoin_ignored``, ``patient.out_sent``, ``patient.call_accept``;
* page actions: ``patient.join`` (the click; data ``room``), ``patient.refresh``,
  ``patient.close_tab``, ``patient.go_offline``, ``patient.go_online``;
* FreeSWITCH's conference events (``conference::maintenance``): ``freeswitch.add-member``,
  ``freeswitch.del-member``, ``freeswitch.floor-change``, ``freeswitch.video-floor-change``,
  ``freeswitch.mute-member``, ``freeswitch.kick-member`` ... with ``member``, ``actor`` (whose
  member it is, when known), ``conference`` and the event's own fields;
* the story's own: ``scenario.step`` (each step's start), ``fault.<action>`` (``fault.esl_kick``),
  and metric marks ``scenario.<name>`` / ``<actor>.<name>`` from ``s.mark()``.

``t`` is seconds since the scenario started on trio's clock (virtual seconds under a MockClock).
A mark may be stamped with an earlier time than its arrival (``first_remote_frame`` is
``max(video_attached, media_flowing)``; ``backend_invite_start`` is the intended click), so
windows compare ``t``, and ``seq`` is the order of arrival: "since this step began" means
recorded after the step's own ``scenario.step`` happening, whatever its ``t``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

__all__ = ["Happening", "Timeline", "SERVICE_WHO"]

#: ``who`` values that are not actors.
SERVICE_WHO = frozenset({"freeswitch", "scenario", "fault", "link"})


@dataclass(frozen=True)
class Happening:
    seq: int
    t: float                     # seconds since the scenario started
    who: str                     # an actor name, or freeswitch / scenario / fault / link
    what: str                    # onCallStart, refresh, first_remote_frame, received.toggleMute, add-member ...
    data: Mapping[str, Any] = field(default_factory=dict)
    step: str = ""               # the step that was running

    @property
    def name(self) -> str:
        return f"{self.who}.{self.what}"

    def matches(self, match: Mapping[str, Any]) -> bool:
        """Every key of ``match`` equals the data's value (a callable is a predicate on it)."""
        for key, wanted in match.items():
            value = self.data.get(key)
            if callable(wanted):
                if not wanted(value):
                    return False
            elif value != wanted and not (isinstance(value, (int, float)) and isinstance(wanted, str)
                                          and str(value) == wanted):
                return False
        return True

    def describe(self) -> str:
        shown = {k: v for k, v in self.data.items() if k not in ("call",) and v not in (None, "")}
        extra = " " + " ".join(f"{k}={v}" for k, v in shown.items()) if shown else ""
        return f"t={self.t:.3f}s {self.name}{extra}"

    def as_json(self) -> dict:
        data = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.data.items()}
        return {"seq": self.seq, "t": round(self.t, 6), "name": self.name, "step": self.step, "data": data}


class Timeline:
    """An append-only list of :class:`Happening` with waiting and windowed queries (an index by name
    keeps a query as cheap as the happenings of that name: a long call has thousands of heartbeat
    events, and every wait looks again at each change)."""

    def __init__(self, t0: float | None = None) -> None:
        self.t0 = trio.current_time() if t0 is None else t0
        self.happenings: list[Happening] = []
        self._by_name: dict[str, list[Happening]] = {}
        self.step = ""
        self._changed: trio.Event | None = None   # made when someone waits
        self.listeners: list[Callable[[Happening], Any]] = []

    def now(self) -> float:
        return trio.current_time() - self.t0

    def add(self, who: str, what: str, data: Mapping[str, Any] | None = None, *, at: float | None = None
            ) -> Happening:
        """Record; ``at`` is trio time (default now)."""
        t = (trio.current_time() if at is None else at) - self.t0
        happening = Happening(len(self.happenings), t, who, what, dict(data or {}), self.step)
        self.happenings.append(happening)
        self._by_name.setdefault(f"{who}.{what}", []).append(happening)
        for listener in self.listeners:
            listener(happening)
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()
        return happening

    def named(self, name: str) -> list[Happening]:
        return list(self._by_name.get(name, ()))

    def find(self, name: str, match: Mapping[str, Any] | None = None, *, start: float = -math.inf,
             end: float = math.inf, since: int = 0, before: int | None = None) -> list[Happening]:
        """Happenings called ``name`` with ``start <= t <= end``, recorded at or after position
        ``since`` and before position ``before`` (``seq`` values), whose data match, in time order."""
        named = self._by_name.get(name)
        if not named:
            return []
        lo = bisect_left(named, since, key=_seq) if since else 0
        hi = bisect_left(named, before, key=_seq) if before is not None else len(named)
        found = [h for h in named[lo:hi] if start <= h.t <= end and (not match or h.matches(match))]
        return sorted(found, key=lambda h: (h.t, h.seq))

    def first(self, name: str, match: Mapping[str, Any] | None = None, **window: Any) -> Happening | None:
        found = self.find(name, match, **window)
        return found[0] if found else None

    def last(self, name: str, match: Mapping[str, Any] | None = None) -> Happening | None:
        """The most recently recorded one (by arrival, whatever its ``t``)."""
        for happening in reversed(self._by_name.get(name, ())):
            if not match or happening.matches(match):
                return happening
        return None

    async def wait(self, predicate: Callable[[], Happening | None], deadline: float) -> Happening | None:
        """Wait until ``predicate()`` returns a happening or trio time reaches ``deadline``."""
        with trio.move_on_at(deadline):
            while True:
                found = predicate()
                if found is not None:
                    return found
                if self._changed is None:
                    self._changed = trio.Event()
                await self._changed.wait()
        return predicate()

    def names(self) -> set[str]:
        return set(self._by_name)

    def whats(self, who: str) -> set[str]:
        return {h.what for h in self.happenings if h.who == who}

    def __iter__(self) -> Iterator[Happening]:
        return iter(self.happenings)

    def __len__(self) -> int:
        return len(self.happenings)


def _seq(happening: Happening) -> int:
    return happening.seq
