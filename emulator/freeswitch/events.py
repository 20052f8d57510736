"""FreeSWITCH events as the fake node builds them: the :class:`Event` type and its header builders.

An :class:`Event` is what FreeSWITCH's event system carries: a name (``CUSTOM``,
``CHANNEL_CREATE``, ``BACKGROUND_JOB``), a subclass (``conference::maintenance``), ordered headers
with raw (not URL-encoded) values, and an optional body.  The ESL listener serialises it in the
plain, JSON or XML format (:mod:`emulator.wire.esl`); the bridge fires it to its subscribers.

:class:`EventBuilder` builds the events of one node with FreeSWITCH 1.6's header order:
Event-Subclass, Event-Name, Core-UUID, FreeSWITCH-Hostname, -Switchname, -IPv4, -IPv6,
Event-Date-Local, -GMT, -Timestamp, Event-Calling-File, -Function, -Line-Number, Event-Sequence;
then for a conference event Conference-Name, -Domain, -Size, -Ghosts, -Profile-Name, -Unique-ID;
for a member event Floor, the channel's basic headers (Channel-State ... Caller-Caller-ID-Name ...),
Video, Hear, See, Speak, Talking, Mute-Detect, Member-ID, Member-Type, Energy-Level,
Current-Energy; then Action and the action's own headers.  (Member-Ghost and Hold are newer than
1.6 and are not sent.)  Event-Calling-Line-Number values are plausible, not FreeSWITCH's.  A CHANNEL_*
event carries the channel's headers and its variables (``variable_<name>``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from emulator.freeswitch.model import Channel, Conference, Member

__all__ = ["Event", "Header", "EventBuilder", "MAINT", "CALLING", "CHANNEL_CALLING", "SUPPRESS"]

#: One event header: (name, raw value).
Header = tuple[str, str]

MAINT = "conference::maintenance"

# Action -> (Event-Calling-File, Event-Calling-Function, Event-Calling-Line-Number)
CALLING: dict[str, tuple[str, str, int]] = {
    "conference-create": ("mod_conference.c", "conference_new", 2893),
    "conference-destroy": ("mod_conference.c", "conference_thread_run", 774),
    "add-member": ("conference_member.c", "conference_member_add", 875),
    "del-member": ("conference_member.c", "conference_member_del", 1276),
    "start-talking": ("conference_loop.c", "conference_loop_input", 1137),
    "stop-talking": ("conference_loop.c", "conference_loop_input", 1215),
    "floor-change": ("conference_member.c", "conference_member_set_floor_holder", 1076),
    "video-floor-change": ("conference_video.c", "conference_video_set_floor_holder", 2722),
    "mute-member": ("conference_api.c", "conference_api_sub_mute", 318),
    "unmute-member": ("conference_api.c", "conference_api_sub_unmute", 367),
    "vmute-member": ("conference_api.c", "conference_api_sub_vmute", 438),
    "unvmute-member": ("conference_api.c", "conference_api_sub_unvmute", 493),
    "deaf-member": ("conference_api.c", "conference_api_sub_deaf", 516),
    "undeaf-member": ("conference_api.c", "conference_api_sub_undeaf", 540),
    "hup-member": ("conference_api.c", "conference_api_sub_hup", 563),
    "kick-member": ("conference_api.c", "conference_api_sub_kick", 591),
    "energy-level-member": ("conference_api.c", "conference_api_sub_energy", 755),
    "volume-in-member": ("conference_api.c", "conference_api_sub_volume_in", 869),
    "volume-out-member": ("conference_api.c", "conference_api_sub_volume_out", 904),
    "start-recording": ("conference_record.c", "conference_record_thread_run", 247),
    "stop-recording": ("conference_record.c", "conference_record_thread_run", 371),
}
CHANNEL_CALLING: dict[str, tuple[str, str, int]] = {
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", 481),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", 3713),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", 3388),
    "CHANNEL_DESTROY": ("switch_core_session.c", "switch_core_session_perform_destroy", 1422),
}
# suppress-events names (EFLAG_*) -> the actions they silence
SUPPRESS: dict[str, tuple[str, ...]] = {
    "record": ("start-recording", "stop-recording"), "floor-change": ("floor-change", "video-floor-change"),
    "energy-level-member": ("energy-level-member",), "volume-in-member": ("volume-in-member",),
    "volume-out-member": ("volume-out-member",),
}

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class Event:
    """A FreeSWITCH event: ordered headers (name, raw value) and an optional body."""

    name: str
    subclass: str
    headers: list[Header]
    body: str = ""

    def get(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.headers:
            if k == key:
                return v
        return default

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return any(k == key for k, _ in self.headers)

    @property
    def action(self) -> str | None:
        return self.get("Action")

    def names(self) -> list[str]:
        return [k for k, _ in self.headers]


def _tf(flag: bool) -> str:
    return "true" if flag else "false"


def _us(t: float | None) -> str:
    return str(int(t * 1_000_000)) if t is not None else "0"


class EventBuilder:
    """Builds one node's events; ``now()`` gives the (wall) time they are dated with."""

    def __init__(self, now: Callable[[], float], *, core_uuid: str, hostname: str = "cometbench",
                 ipv4: str = "127.0.0.1") -> None:
        self.now = now
        self.core_uuid = core_uuid
        self.hostname = hostname
        self.ipv4 = ipv4
        self._sequence = itertools.count(1)

    def restart(self, core_uuid: str) -> None:
        """A new process: a new Core-UUID, Event-Sequence from 1 again."""
        self.core_uuid = core_uuid
        self._sequence = itertools.count(1)

    # -- headers -------------------------------------------------------------------------------------
    def base_headers(self, name: str, subclass: str, calling: tuple[str, str, int]) -> list[Header]:
        now = self.now()
        tm = time.gmtime(now)
        headers = [("Event-Subclass", subclass)] if subclass else []
        headers += [
            ("Event-Name", name), ("Core-UUID", self.core_uuid), ("FreeSWITCH-Hostname", self.hostname),
            ("FreeSWITCH-Switchname", self.hostname), ("FreeSWITCH-IPv4", self.ipv4), ("FreeSWITCH-IPv6", "::1"),
            ("Event-Date-Local", time.strftime("%Y-%m-%d %H:%M:%S", tm)),
            ("Event-Date-GMT", f"{_WEEKDAYS[tm.tm_wday]}, {tm.tm_mday:02d} {_MONTHS[tm.tm_mon - 1]} {tm.tm_year} "
                               f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} GMT"),
            ("Event-Date-Timestamp", str(int(now * 1_000_000))),
            ("Event-Calling-File", calling[0]), ("Event-Calling-Function", calling[1]),
            ("Event-Calling-Line-Number", str(calling[2])), ("Event-Sequence", str(next(self._sequence))),
        ]
        return headers

    @staticmethod
    def conference_headers(conf: Conference) -> list[Header]:
        return [("Conference-Name", conf.name), ("Conference-Domain", conf.domain),
                ("Conference-Size", str(conf.count)), ("Conference-Ghosts", str(conf.count_ghosts)),
                ("Conference-Profile-Name", conf.profile_name), ("Conference-Unique-ID", conf.uuid)]

    @staticmethod
    def channel_headers(ch: Channel, *, in_conference: bool = False, rate: int = 8000) -> list[Header]:
        headers = [
            ("Channel-State", str(ch.state)), ("Channel-Call-State", str(ch.call_state)),
            ("Channel-State-Number", str(ch.state.number)), ("Channel-Name", ch.channel_name),
            ("Unique-ID", ch.uuid), ("Call-Direction", "inbound"), ("Presence-Call-Direction", "inbound"),
            ("Channel-HIT-Dialplan", "true"),
        ]
        if ch.variables.get("presence_id"):
            headers.append(("Channel-Presence-ID", ch.variables["presence_id"]))
        headers += [("Channel-Call-UUID", ch.uuid), ("Answer-State", str(ch.answer_state))]
        if ch.hangup_cause:
            headers.append(("Hangup-Cause", ch.hangup_cause))
        if in_conference:
            headers += [("Channel-Read-Codec-Name", "L16"), ("Channel-Read-Codec-Rate", str(rate)),
                        ("Channel-Read-Codec-Bit-Rate", str(rate * 16))]
        else:
            headers += [("Channel-Read-Codec-Name", "opus"), ("Channel-Read-Codec-Rate", "48000"),
                        ("Channel-Read-Codec-Bit-Rate", "0")]
        headers += [
            ("Channel-Write-Codec-Name", "opus"), ("Channel-Write-Codec-Rate", "48000"),
            ("Channel-Write-Codec-Bit-Rate", "0"),
            ("Caller-Direction", "inbound"), ("Caller-Username", ch.username or ch.caller_id_number),
            ("Caller-Dialplan", "XML"), ("Caller-Caller-ID-Name", ch.caller_id_name),
            ("Caller-Caller-ID-Number", ch.caller_id_number), ("Caller-Orig-Caller-ID-Name", ch.caller_id_name),
            ("Caller-Orig-Caller-ID-Number", ch.caller_id_number), ("Caller-Network-Addr", ch.network_addr),
            ("Caller-ANI", ch.caller_id_number), ("Caller-Destination-Number", ch.destination_number),
            ("Caller-Unique-ID", ch.uuid), ("Caller-Source", "mod_sofia"), ("Caller-Context", ch.context),
            ("Caller-Channel-Name", ch.channel_name), ("Caller-Profile-Index", "1"),
            ("Caller-Profile-Created-Time", _us(ch.created_at)),
            ("Caller-Channel-Created-Time", _us(ch.created_at)),
            ("Caller-Channel-Answered-Time", _us(ch.answered_at)),
            ("Caller-Channel-Progress-Time", "0"), ("Caller-Channel-Progress-Media-Time", "0"),
            ("Caller-Channel-Hangup-Time", _us(ch.hangup_at)), ("Caller-Channel-Transfer-Time", "0"),
            ("Caller-Channel-Resurrect-Time", "0"), ("Caller-Channel-Bridged-Time", "0"),
            ("Caller-Channel-Last-Hold", "0"), ("Caller-Channel-Hold-Accum", "0"), ("Caller-Screen-Bit", "true"),
            ("Caller-Privacy-Hide-Name", "false"), ("Caller-Privacy-Hide-Number", "false"),
        ]
        return headers

    def member_headers(self, m: Member) -> list[Header]:
        conf = m.conference
        headers = self.conference_headers(conf)
        headers.append(("Floor", _tf(conf.floor_holder is m)))
        headers += self.channel_headers(m.channel, in_conference=True, rate=conf.rate)
        headers += [
            ("Video", _tf(m.has_video)), ("Hear", _tf(m.can_hear)), ("See", _tf(m.can_be_seen)),
            ("Speak", _tf(m.can_speak)), ("Talking", _tf(m.talking)), ("Mute-Detect", _tf(m.mute_detect)),
            ("Member-ID", str(m.id)), ("Member-Type", "moderator" if m.moderator else "member"),
            ("Energy-Level", str(m.energy_level)), ("Current-Energy", str(m.score)),
        ]
        return headers

    # -- events --------------------------------------------------------------------------------------
    @staticmethod
    def suppressed(conf: Conference, action: str) -> bool:
        """Whether the conference profile's ``suppress-events`` silences ``action``."""
        for name in conf.profile.suppress_events:
            if name == action or action in SUPPRESS.get(name, ()):
                return True
        return False

    def conference_event(self, conf: Conference, action: str, *, member: Member | None = None,
                         extra: Iterable[Header] = ()) -> Event | None:
        """A ``CUSTOM conference::maintenance`` event, or None when the profile suppresses it."""
        if self.suppressed(conf, action):
            return None
        headers = self.base_headers("CUSTOM", MAINT, CALLING.get(action, ("mod_conference.c", "conference", 1)))
        headers += self.member_headers(member) if member is not None else self.conference_headers(conf)
        headers.append(("Action", action))
        headers += list(extra)
        return Event("CUSTOM", MAINT, headers)

    def channel_event(self, name: str, channel: Channel) -> Event:
        """A CHANNEL_* event with the channel's data and variables."""
        headers = self.base_headers(name, "", CHANNEL_CALLING.get(name, ("switch_channel.c", "switch_channel", 1)))
        headers += self.channel_headers(channel)
        headers += [(f"variable_{k}", str(v)) for k, v in channel.variables.items()]
        return Event(name, "", headers)
