"""An actor of a story: a :class:`~bench.actors.participant.Participant` with the story's vocabulary.

``s.doctor``, ``s.patient`` and ``s.actor("nurse")`` are :class:`Actor` objects.  Each action a
story takes through them goes on the timeline under the name the story uses (``patient.join``,
``patient.refresh``, ``patient.close_tab``, ``patient.go_offline`` ...), and everything the
actor's page sees arrives there too (callbacks, marks, callPipe events; ``bench/scenario/timeline.py``).
Anything not defined here is the participant's (``patient.video``, ``patient.comet``,
``patient.marks``, ``patient.joins`` ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.actors.participant import ALL_STAGE_NAMES as STAGE_NAMES
from bench.actors.participant import Participant, stage_values
from bench.scenario.errors import ScenarioError

if TYPE_CHECKING:  # pragma: no cover
    from bench.scenario.story import Scenario

__all__ = ["Actor", "PAGE_EVENTS", "STAGE_NAMES"]

#: the participant's page events -> the names of the actions on the timeline
PAGE_EVENTS = {"page_refresh": "refresh", "tab_closed": "close_tab", "offline": "go_offline", "online": "go_online"}
#: every stage an actor measures (docs/stages.md), ``system`` included


class Actor:
    """One person (one device) in the story."""

    def __init__(self, scenario: Scenario, participant: Participant) -> None:
        self._s = scenario
        self.participant = participant
        self.name = participant.actor
        self.room: str | None = None      # the room of the last join
        participant.listeners.append(self._heard)

    # -- identity ------------------------------------------------------------------------------------
    @property
    def display_name(self) -> str:
        return self.participant.display_name

    @property
    def user_id(self) -> int:
        return self.participant.user_id

    @property
    def role(self) -> str:
        return self.participant.role

    def __getattr__(self, name: str) -> Any:     # the participant's API (video, comet, marks, joins ...)
        return getattr(self.participant, name)

    def __repr__(self) -> str:
        return f"<Actor {self.name} ({self.display_name}, user {self.user_id})>"

    # -- what the page sees -> the timeline -------------------------------------------------------------
    def _heard(self, name: str, t: float, data: dict) -> None:
        if name == "received":
            self._s.timeline.add(self.name, f"received.{data.get('event')}", data, at=t)
            return
        self._s.timeline.add(self.name, PAGE_EVENTS.get(name, name), data, at=t)
        if (name[:2] == "on" and name[2:3].isupper()) or name in ("toggleMute", "toggleHold"):
            self._s._journal("callback", {"actor": self.name, "callback": name,
                                          **{k: v for k, v in data.items() if k != "call"}})

    # -- actions --------------------------------------------------------------------------------------
    async def open_page(self) -> None:
        """Load the page: auth.php, cometApi.start (after the 1.2 s tab election), cometVideoApi.start."""
        self._s.timeline.add(self.name, "open_page")
        await self.participant.open_page()

    async def join(self, room: str, *, profile: str = "video", at: float | None = None) -> None:
        """Click Join: the app invites the user into ``room`` (``INSERT INTO conference``).  ``at``:
        the intended moment (trio time; ``s.at(offset)``) when a schedule fixes it."""
        self.room = str(room)
        self._s.timeline.add(self.name, "join", {"room": str(room), "profile": profile},
                             at=at if at is not None else None)
        await self.participant.join(str(room), profile=profile, at=at)

    async def refresh(self) -> None:
        """Reload the page: every connection vanishes without a goodbye, a new page starts."""
        await self.participant.refresh()

    def close_tab(self) -> None:
        self.participant.close_tab()

    def go_offline(self) -> None:
        """The browser goes offline (``navigator.onLine`` false): the comet client stops reconnecting."""
        self.participant.go_offline()

    def go_online(self) -> None:
        self.participant.go_online()

    def hangup(self) -> None:
        """The Hangup button (``cometVideoApi.hangup()``; the invitation row stays)."""
        self.participant.hangup()

    async def leave(self, room: str | None = None) -> None:
        """Hang up and have the app delete the invitation."""
        self._s.timeline.add(self.name, "leave", {"room": room or self.room or ""})
        await self.participant.leave(room)

    def accept(self) -> bool:
        self._s.timeline.add(self.name, "accept")
        return self.participant.accept()

    def mute_audio(self, mute: bool = True) -> bool | None:
        """``cometVideoApi.muteAudio(mute)``: local mute plus ``toggleMute`` on the callPipe."""
        self._s.timeline.add(self.name, "mute_audio", {"mute": mute})
        return self.participant.mute_audio(mute)

    def mute_video(self, mute: bool = True) -> bool | None:
        self._s.timeline.add(self.name, "mute_video", {"mute": mute})
        return self.participant.mute_video(mute)

    def hold(self) -> None:
        """``cometVideoApi.toggleHold()`` on a call that is not held (a re-INVITE, sendonly)."""
        self._s.timeline.add(self.name, "hold")
        self.participant.hold()

    def resume(self) -> None:
        self._s.timeline.add(self.name, "resume")
        self.participant.resume()

    def talk(self, talking: bool = True, *, energy: int = 1000, room: str | None = None) -> None:
        """Script this actor's talking in FreeSWITCH's media model (its automatic talk spurts stop):
        the member starts or stops talking, which moves the floor (video-call-flow.md 5.7)."""
        member = self.member(room)
        if member is None:
            raise ScenarioError(f"{self.name} has no member in the conference of room {room or self.room!r}")
        self._s.timeline.add(self.name, "talk", {"talking": talking, "member": member.id})
        self._s.target.bridge.set_talking(member.id, talking, energy if talking else None)

    # -- state -------------------------------------------------------------------------------------------
    @property
    def in_call(self) -> bool:
        """The page has an active call (``cometVideoApi.isInCall()``)."""
        page = self.participant.page
        return page is not None and page.video.is_in_call()

    @property
    def on_hold(self) -> bool:
        return self.participant.page is not None and self.participant.is_on_hold()

    def stage(self, name: str, join: int = -1) -> float | None:
        """Milliseconds of stage ``name`` in a join of this actor (the last by default); None if that
        join did not get that far.  An unknown stage name is an error."""
        if name not in STAGE_NAMES:
            raise ScenarioError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
        joins = self.participant.joins
        if not joins:
            return None
        return stage_values(joins[join].marks).get(name)

    def callbacks(self, name: str) -> list[dict]:
        """Every app callback ``name`` (``onCallEnd`` or ``on_call_end``) this actor's pages fired."""
        from bench.actors.participant import JS_CALLBACKS

        py = {v: k for k, v in JS_CALLBACKS.items()}.get(name, name)
        return [arg for page in self.participant.pages for _, cb, arg in page.video.callbacks if cb == py]

    def member(self, room: str | None = None) -> Any:
        """This actor's FreeSWITCH member in the room's conference (the live one if there are several:
        media flowing, newest first), or None."""
        return self._s._member_of(self, room or self.room)

    def members(self, room: str | None = None) -> list:
        """Every member this actor's SIP user has in the room's conference, ghosts included, newest first."""
        return self._s._members_of(self, room or self.room)
