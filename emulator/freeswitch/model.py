"""The data model of the fake FreeSWITCH: channels, members, conferences, recordings, and their states.

Plain data, no behaviour beyond derived properties: the bridge (:mod:`emulator.freeswitch.conference`)
changes these objects, the event builders (:mod:`emulator.freeswitch.events`) and the conference
API (:mod:`emulator.freeswitch.api`) read them, the recorder (:mod:`emulator.freeswitch.recording`)
writes :class:`Recording` files.  States that FreeSWITCH names are enums whose values are
FreeSWITCH's own words (``CS_EXECUTE``, ``ACTIVE``, ``answered``), so they print, compare with
strings and appear in events exactly as before.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import wave

    from emulator.clock import Timer
    from emulator.freeswitch.conference_profiles import ConferenceProfile

__all__ = [
    "ChannelState", "CallState", "AnswerState", "MediaState", "Channel", "TalkPattern", "Refusal", "Member",
    "Recording", "Conference", "HangupCause", "tenant_ids",
]


class ChannelState(StrEnum):
    """switch_channel_state_t: a channel's place in FreeSWITCH's state machine."""

    CS_NEW = "CS_NEW"
    CS_INIT = "CS_INIT"
    CS_ROUTING = "CS_ROUTING"
    CS_SOFT_EXECUTE = "CS_SOFT_EXECUTE"
    CS_EXECUTE = "CS_EXECUTE"
    CS_EXCHANGE_MEDIA = "CS_EXCHANGE_MEDIA"
    CS_PARK = "CS_PARK"
    CS_CONSUME_MEDIA = "CS_CONSUME_MEDIA"
    CS_HIBERNATE = "CS_HIBERNATE"
    CS_RESET = "CS_RESET"
    CS_HANGUP = "CS_HANGUP"
    CS_REPORTING = "CS_REPORTING"
    CS_DESTROY = "CS_DESTROY"
    CS_NONE = "CS_NONE"

    @property
    def number(self) -> int:
        """Channel-State-Number: the enum's position in switch_channel_state_t."""
        return _STATE_NUMBERS[self]


_STATE_NUMBERS = {state: number for number, state in enumerate(ChannelState)}


class CallState(StrEnum):
    """Channel-Call-State (switch_channel_callstate_t, the values a conference call passes through)."""

    DOWN = "DOWN"
    ACTIVE = "ACTIVE"
    HANGUP = "HANGUP"


class AnswerState(StrEnum):
    """Answer-State."""

    RINGING = "ringing"
    ANSWERED = "answered"
    HANGUP = "hangup"


class MediaState(StrEnum):
    """Whether a member's media flows (FreeSWITCH itself has no such field: the model's view)."""

    PENDING = "pending"     # joined, media not started yet (the modelled delay)
    FLOWING = "flowing"
    DEAD = "dead"           # stopped: hold, a vanished browser, a partitioned link; the RTP timer runs


class HangupCause(StrEnum):
    """The hangup causes the emulated node produces (switch_cause_t names)."""

    NORMAL_CLEARING = "NORMAL_CLEARING"
    MEDIA_TIMEOUT = "MEDIA_TIMEOUT"
    RECOVERY_ON_TIMER_EXPIRE = "RECOVERY_ON_TIMER_EXPIRE"


def _no_hangup(cause: str) -> None:
    """The hangup of a channel nobody has hooked up (tests, a finished dialog)."""


@dataclass(eq=False)
class Channel:
    """The call leg as the conference sees it; the SIP layer creates it and implements ``hangup``.

    ``hangup(cause)`` is called when FreeSWITCH ends the call (kick, hup, media timeout, lost
    signalling in lenient mode): the SIP side then sends BYE (or cleans up when the transport is
    gone).  It is not called for :meth:`Bridge.leave` (the SIP side hung up) nor for a max-members
    :class:`Refusal` (the SIP layer acts on the return value).  ``media_delay``: seconds after the
    join until the member's media flows (see :mod:`emulator.freeswitch.media`); ``None``: never
    (the RTP timeout then runs from the join).  When the conference ends a call it sets
    ``hangup_cause`` and the HANGUP states but leaves ``hangup_at`` to :meth:`Bridge.channel_hangup`,
    so the SIP layer can tell whether it still has to fire CHANNEL_HANGUP / CHANNEL_DESTROY.
    """

    uuid: str
    caller_id_name: str
    caller_id_number: str
    hangup: Callable[[str], None] = _no_hangup
    variables: dict[str, str] = field(default_factory=dict)
    name: str = ""
    destination_number: str = ""
    network_addr: str = "127.0.0.1"
    username: str = ""
    context: str = "default"
    has_video: bool = True
    media_delay: float | None = 0.0
    state: ChannelState = ChannelState.CS_EXECUTE
    call_state: CallState = CallState.ACTIVE
    answer_state: AnswerState = AnswerState.ANSWERED
    created_at: float | None = None
    answered_at: float | None = None
    hangup_at: float | None = None
    hangup_cause: str | None = None
    client: str = ""        # the bench client (link) the call came from; emulator bookkeeping, never shown
    counted: bool = field(default=False, repr=False)   # counted in Bridge.session_count; bookkeeping

    @property
    def channel_name(self) -> str:
        return self.name or f"sofia/internal/{self.username or self.caller_id_number}@{self.network_addr}"

    def set_states(self, state: ChannelState, call_state: CallState, answer_state: AnswerState) -> None:
        self.state, self.call_state, self.answer_state = state, call_state, answer_state


@dataclass
class TalkPattern:
    """Seeded talk spurts: after media starts, silence ``first_silence``, then alternate ``talk`` and
    ``silence`` (uniform ranges, seconds) with an energy score drawn from ``energy``."""

    enabled: bool = True
    first_silence: tuple[float, float] = (0.5, 4.0)
    talk: tuple[float, float] = (1.0, 6.0)
    silence: tuple[float, float] = (2.0, 12.0)
    energy: tuple[int, int] = (300, 1500)


@dataclass
class Refusal:
    """A join refused by mod_conference (room full).  The call was answered: the SIP layer sends BYE."""

    reason: str
    conference: str
    max_members: int
    cause: str = HangupCause.NORMAL_CLEARING
    sound: str | None = None


@dataclass(eq=False)
class Member:
    """One caller in a conference."""

    id: int
    conference: Conference
    channel: Channel
    join_time: int                       # epoch seconds (switch_epoch_time_now)
    joined_at: float
    energy_level: int = 0
    can_hear: bool = True
    can_speak: bool = True
    can_be_seen: bool = True
    talking: bool = False
    mute_detect: bool = False
    moderator: bool = False
    ghost: bool = False                  # the mod_conference member flag, not a vanished browser
    end_conference: bool = False
    video_bridge: bool = False
    volume_in: int = 0
    volume_out: int = 0
    score: int = 0                       # current energy while talking
    last_talking: float | None = None
    media: MediaState = MediaState.PENDING
    hold: bool = False                   # re-INVITE sendonly/inactive: no media, rtp-hold-timeout
    media_since: float | None = None
    media_lost_at: float | None = None
    signalling_lost: bool = False
    scripted: bool = False               # talking driven by set_talking, no automatic pattern
    kicked: bool = False
    left: bool = False
    left_cause: str | None = None
    tone_hz: int = 440
    talk_rng: random.Random = field(default_factory=random.Random, repr=False)
    talk_timer: Timer | None = field(default=None, repr=False)
    rtp_timer: Timer | None = field(default=None, repr=False)
    media_timer: Timer | None = field(default=None, repr=False)

    @property
    def conference_name(self) -> str:
        return self.conference.name

    @property
    def has_video(self) -> bool:
        return self.channel.has_video

    @property
    def has_floor(self) -> bool:
        return self.conference.floor_holder is self

    @property
    def has_video_floor(self) -> bool:
        return self.conference.video_floor_holder is self

    @property
    def uuid(self) -> str:
        return self.channel.uuid

    def cancel_timers(self) -> None:
        """Cancel the member's timers and drop them: a timer's arguments hold the member, so no
        cycle outlives the call."""
        for timer in (self.talk_timer, self.rtp_timer, self.media_timer):
            if timer is not None:
                timer.cancel()
        self.talk_timer = self.rtp_timer = self.media_timer = None


@dataclass(eq=False)
class Recording:
    """A recording node: a file being written, or a stream that is only noted."""

    id: int
    conference: Conference
    path: str                            # as given / expanded (xml_list record_path, event Path)
    file: Path | None                    # None for rtmp:// and other streams
    started: float
    start_epoch: int
    autorec: bool
    rate: int
    frames: int = 0
    stopped: float | None = None
    wav: wave.Wave_write | None = field(default=None, repr=False)
    timer: Timer | None = field(default=None, repr=False)

    @property
    def stream(self) -> bool:
        return self.file is None

    def duration(self, now: float | None = None) -> float:
        end = self.stopped if self.stopped is not None else now
        return max(0.0, (end if end is not None else self.started) - self.started)


@dataclass(eq=False)
class Conference:
    name: str
    profile: ConferenceProfile
    profile_name: str
    domain: str
    uuid: str
    created: float
    run_time: int
    max_members: int = 0
    auto_record: str | None = None
    min_recording: int = 1
    auto_recording: bool = False
    record_count: int = 0
    endconf_grace_time: int = 0
    caller_id_name: str = ""
    caller_id_number: str = ""
    sound_prefix: str = ""
    nodes: list[Member | Recording] = field(default_factory=list)   # newest first, as FreeSWITCH
    floor_holder: Member | None = None
    video_floor_holder: Member | None = None

    @property
    def members(self) -> list[Member]:
        return [n for n in self.nodes if isinstance(n, Member)]

    @property
    def recordings(self) -> list[Recording]:
        return [n for n in self.nodes if isinstance(n, Recording)]

    @property
    def count(self) -> int:
        return sum(1 for m in self.members if not m.ghost)

    @property
    def count_ghosts(self) -> int:
        return sum(1 for m in self.members if m.ghost)

    @property
    def rate(self) -> int:
        return self.profile.rate

    @property
    def video_mode(self) -> str:
        return self.profile.video_mode



def tenant_ids(conference_name: str, channel: Channel | None) -> tuple[int | None, int | None]:
    """(dev_id, user_id) for the journal: the dev_id from a CppComet conference name
    (``<dev>*<room>-<domain>``), the user from the caller id (``<6-digit dev_id><user id>``)."""
    dev = conference_name.split("*", 1)[0]
    dev_id = int(dev) if dev.isdigit() else None
    user_id = None
    if channel is not None:
        cid = channel.caller_id_name
        if len(cid) > 6 and cid.isdigit():
            dev_id = dev_id if dev_id is not None else int(cid[:6])
            user_id = int(cid[6:])
    return dev_id, user_id
