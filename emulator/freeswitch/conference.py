"""The mod_conference model of one FreeSWITCH node: conferences, members, floor, talking, recording.

No sockets.  The SIP layer calls :meth:`Bridge.join` once the dialplan has answered a call to
``<dev>*<room>*<profile>`` (conference ``<dev>*<room>-<domain>``, profile ``<profile>``), and
:meth:`Bridge.leave` on a BYE; the ESL server calls :meth:`Bridge.api` and :meth:`Bridge.subscribe`.
Everything is synchronous except :meth:`Bridge.run`, which sleeps until the next scheduled thing
(a member's media starting, a talk spurt, an RTP timeout, a recording flush) and never ticks
through idle time, so under ``MockClock(autojump_threshold=0)`` an hour-long call takes
milliseconds.  Time comes from a :class:`~emulator.clock.WallClock`, randomness from one seeded
``random.Random``.

What is modelled, from mod_conference 1.6 (sources read: conference_api.c, conference_member.c,
mod_conference.c of the 1.6 split, and the current tree where 1.6 agrees; spec video-call-flow.md
sections 4.2, 5 and 6.1):

* **Lifecycle** -- the first join of an unknown name creates a dynamic conference
  (``conference-create``, a new Conference-Unique-ID); joins fire ``add-member``; a leave (BYE, kick,
  hup, media timeout) fires ``del-member``; when the last caller leaves, recordings stop
  (``stop-recording``) and ``conference-destroy`` fires.  Members are kept newest first, as
  FreeSWITCH prepends them, so ``list`` and ``xml_list`` show the newest member first.
* **max-members** -- from the profile, from the channel variable ``conference_max_members`` read
  when the conference is created (``1``, negative: ignored; ``0``: no limit), or ``set
  max_members``.  A full room returns a :class:`Refusal` and fires nothing: the caller was already
  answered, so the SIP layer sends BYE (NORMAL_CLEARING) after a 200 OK.
* **Member ids** -- one counter per node shared by every conference (FreeSWITCH's ``id_pool``);
  recording nodes take an id from it too.  Pass ``member_ids`` to share a counter between nodes.
* **Floor** -- the first member gets the audio floor at once (FreeSWITCH's frame loop takes any
  running member when nobody holds it); afterwards the floor moves only when its holder is silent
  and someone else talks (the loudest talker wins).  In passthrough video the video floor follows
  the audio floor to members that have video.  ``floor-change`` / ``video-floor-change`` carry
  ``Old-ID`` / ``New-ID``.
* **Talking** -- a member talks only while its media flows (:meth:`Bridge.media_flowing`, or
  ``Channel.media_delay`` seconds after the join) and it may speak; a seeded :class:`TalkPattern`
  alternates spurts and silences, or a scenario scripts it with :meth:`Bridge.set_talking`.
  ``last_talking`` in ``xml_list`` is seconds since it last talked, ``N/A`` if it never did.
* **Ghosts** -- when the SIP side reports the browser gone without a BYE
  (:meth:`Bridge.signalling_lost`), the member stays, silent, until ``rtp_timeout`` seconds without
  media, then leaves with MEDIA_TIMEOUT (quirk ``fs_ghost_until_media_timeout``; off: it leaves at
  once).  FreeSWITCH itself does not know about the lost signalling, so nothing in ``xml_list``
  marks such a member; the ``ghost`` member *flag* (``conference_member_flags=ghost``) is the
  unrelated mod_conference flag counted in ``ghost-count``.
* **Hold** -- :meth:`Bridge.set_hold` (a re-INVITE with sendonly/inactive): media stops and
  ``rtp_hold_timeout`` (rtp-hold-timeout-sec, 1800 s) replaces the RTP timeout; 1.6 fires no event.
* **Recording** -- ``auto-record`` starts when the member count reaches
  ``min-required-recording-participants``; ``record <path>`` / ``norecord <path|all>`` by API.  A file
  target gets a real WAV (mono, 16-bit, the conference rate) whose length equals the recorded time:
  silence, with a quiet seeded tone while somebody talks, written as time passes.  ``rtmp://`` and
  ``shout://`` targets are only noted (journal + events).  Relative paths are under
  ``recordings_dir``; absolute paths outside it are re-rooted inside it (the emulator never writes
  elsewhere).  Recording nodes appear in ``xml_list`` as ``<member type="recording_node">``.
* **API** -- ``conference list|xml_list`` and ``conference <name> list|xml_list|mute|unmute|deaf|
  undeaf|vmute|unvmute|tmute|tvmute|kick|hup|floor|energy|volume_in|volume_out|record|norecord|
  recording|chkrecord|set|get`` with targets ``<id>|all|last|non_moderator``.  Replies are FreeSWITCH
  1.6's (``OK mute 7``, ``Non-Existant ID 9``, ``hup`` prints nothing) while the quirk
  ``fs_reply_without_plus`` is on, and the 1.8+ forms (``+OK mute 7``, ``-ERR Member: 9 not found.``)
  when it is off.  There is no ``count`` sub-command in FreeSWITCH (``list count`` and ``get count``
  are the real ones), so ``conference <name> count`` gets ``Conference command 'count' not found.``
  as it would there.
* **Events** -- :class:`Event` objects (``CUSTOM`` / ``conference::maintenance``) with FreeSWITCH's
  header order: Event-Subclass, Event-Name, Core-UUID, FreeSWITCH-Hostname, -Switchname, -IPv4,
  -IPv6, Event-Date-Local, -GMT, -Timestamp, Event-Calling-File, -Function, -Line-Number,
  Event-Sequence; then Conference-Name, -Domain, -Size, -Ghosts, -Profile-Name, -Unique-ID; for
  member events Floor, the channel's basic headers (Channel-State ... Caller-Caller-ID-Name ...),
  Video, Hear, See, Speak, Talking, Mute-Detect, Member-ID, Member-Type, Energy-Level,
  Current-Energy; then Action and the action's own headers.  (Member-Ghost and Hold are newer than
  1.6 and are not sent.)  Event-Calling-Line-Number values are plausible, not FreeSWITCH's.
  :meth:`Bridge.channel_create` / ``channel_answer`` / ``channel_hangup`` / ``channel_destroy`` build
  and fire the CHANNEL_* events for the SIP layer.
"""

from __future__ import annotations

import array
import heapq
import itertools
import math
import random
import re
import time
import uuid as _uuid
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import trio

from emulator.clock import WallClock
from emulator.freeswitch.conference_profiles import (
    ConferenceProfile, ConferenceProfiles, c_strtol, load_conference_profiles,
)
from emulator.journal import Journal
from emulator.profiles import Profile
from emulator.wire.esl import url_encode

# quirks registered in emulator/profiles.py
QUIRK_PLUS = "fs_reply_without_plus"
QUIRK_GHOST = "fs_ghost_until_media_timeout"

MAINT = "conference::maintenance"
EPS = 1e-6
WAV_AMPLITUDE = 800          # the talking tone: about -32 dBFS

STATE_NUMBERS = {"CS_NEW": 0, "CS_INIT": 1, "CS_ROUTING": 2, "CS_SOFT_EXECUTE": 3, "CS_EXECUTE": 4,
                 "CS_EXCHANGE_MEDIA": 5, "CS_PARK": 6, "CS_CONSUME_MEDIA": 7, "CS_HIBERNATE": 8,
                 "CS_RESET": 9, "CS_HANGUP": 10, "CS_REPORTING": 11, "CS_DESTROY": 12, "CS_NONE": 13}

# Action -> (Event-Calling-File, Event-Calling-Function, Event-Calling-Line-Number)
CALLING = {
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
CHANNEL_CALLING = {
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", 481),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", 3713),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", 3388),
    "CHANNEL_DESTROY": ("switch_core_session.c", "switch_core_session_perform_destroy", 1422),
}
# suppress-events names (EFLAG_*) -> the actions they silence
SUPPRESS = {"record": ("start-recording", "stop-recording"), "floor-change": ("floor-change", "video-floor-change"),
            "energy-level-member": ("energy-level-member",), "volume-in-member": ("volume-in-member",),
            "volume-out-member": ("volume-out-member",)}

MEMBER_COMMANDS = {
    "mute": "mute <[member_id|all]|last|non_moderator> [<quiet>]",
    "tmute": "tmute <[member_id|all]|last|non_moderator> [<quiet>]",
    "unmute": "unmute <[member_id|all]|last|non_moderator> [<quiet>]",
    "vmute": "vmute <[member_id|all]|last|non_moderator> [<quiet>]",
    "tvmute": "tvmute <[member_id|all]|last|non_moderator> [<quiet>]",
    "unvmute": "unvmute <[member_id|all]|last|non_moderator> [<quiet>]",
    "deaf": "deaf <[member_id|all]|last|non_moderator>",
    "undeaf": "undeaf <[member_id|all]|last|non_moderator>",
    "kick": "kick <[member_id|all|last|non_moderator]> [<optional sound file>]",
    "hup": "hup <[member_id|all|last|non_moderator]>",
    "floor": "floor <member_id|last>",
    "energy": "energy <member_id|all|last|non_moderator> [<newval>]",
    "volume_in": "volume_in <member_id|all|last|non_moderator> [<newval>]",
    "volume_out": "volume_out <member_id|all|last|non_moderator> [<newval>]",
}
SPLIT_COMMANDS = {
    "list": "list [delim <string>]|[count]",
    "xml_list": "xml_list ",
    "record": "record <filename>",
    "chkrecord": "chkrecord <confname>",
    "norecord": "norecord <[filename|all]>",
    "recording": "recording [start|stop|check|pause|resume] [<filename>|all]",
    "get": "get <parameter-name>",
    "set": "set <max_members|sound_prefix|caller_id_name|caller_id_number|endconference_grace_time> <value>",
}

# (FreeSWITCH 1.6, 1.8+) reply templates
REPLIES = {
    "ok": ("OK {text}\n", "+OK {text}\n"),
    "member_not_found": ("Non-Existant ID {id}\n", "-ERR Member: {id} not found.\n"),
    "conf_not_found": ("Conference {name} not found\n", "-ERR Conference {name} not found\n"),
    "no_conferences": ("No active conferences.\n", "+OK No active conferences.\n"),
    "hup": ("", "+OK hup {id}\n"),
    "floor_held": ("ERR floor is held by {id}\n", "-ERR floor is held by {id}\n"),
}

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CHANNEL_VAR = re.compile(r"\$\{([^}]*)\}")


def _quirk(profile: Profile | None, name: str) -> bool:
    """A quirk's state; the faithful default when the profile predates this module's registrations."""
    if profile is None:
        return True
    try:
        return profile.on(name)
    except KeyError:
        return True


def _tf(flag: bool) -> str:
    return "true" if flag else "false"


def _atoi(text: str | None) -> int:
    if not text:
        return 0
    value = c_strtol(text)
    if value is None:
        return 0
    return value & 0xFFFFFFFF if value < 0 else value


# --- data ----------------------------------------------------------------------------------------


@dataclass
class Event:
    """A FreeSWITCH event: ordered headers (name, raw value) and an optional body."""

    name: str
    subclass: str
    headers: list[tuple[str, str]]
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
    hangup: Callable[[str], None] = lambda cause: None
    variables: dict[str, str] = field(default_factory=dict)
    name: str = ""
    destination_number: str = ""
    network_addr: str = "127.0.0.1"
    username: str = ""
    context: str = "default"
    has_video: bool = True
    media_delay: float | None = 0.0
    state: str = "CS_EXECUTE"
    call_state: str = "ACTIVE"
    answer_state: str = "answered"
    created_at: float | None = None
    answered_at: float | None = None
    hangup_at: float | None = None
    hangup_cause: str | None = None
    client: str = ""        # the bench client (link) the call came from; emulator bookkeeping, never shown
    counted: bool = field(default=False, repr=False)   # counted in Bridge.session_count; bookkeeping

    @property
    def channel_name(self) -> str:
        return self.name or f"sofia/internal/{self.username or self.caller_id_number}@{self.network_addr}"


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
    cause: str = "NORMAL_CLEARING"
    sound: str | None = None


class _Timer:
    __slots__ = ("at", "fn", "args", "cancelled")

    def __init__(self, at: float, fn: Callable, args: tuple) -> None:
        self.at, self.fn, self.args, self.cancelled = at, fn, args, False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(eq=False)
class Member:
    """One caller in a conference."""

    id: int
    conference: "Conference"
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
    media: str = "pending"               # pending | flowing | dead
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
    talk_timer: _Timer | None = field(default=None, repr=False)
    rtp_timer: _Timer | None = field(default=None, repr=False)
    media_timer: _Timer | None = field(default=None, repr=False)

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


@dataclass(eq=False)
class Recording:
    """A recording node: a file being written, or a stream that is only noted."""

    id: int
    conference: "Conference"
    path: str                            # as given / expanded (xml_list record_path, event Path)
    file: Path | None                    # None for rtmp:// and other streams
    started: float
    start_epoch: int
    autorec: bool
    rate: int
    frames: int = 0
    stopped: float | None = None
    wav: Any = field(default=None, repr=False)
    timer: _Timer | None = field(default=None, repr=False)

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


# --- XML rendering (switch_xml_toxml's layout) -------------------------------------------------


class _X:
    __slots__ = ("name", "attrs", "text", "children")

    def __init__(self, name: str, attrs: Iterable[tuple[str, str]] = (), text: str = "",
                 children: list["_X"] | None = None) -> None:
        self.name, self.attrs, self.text = name, list(attrs), text
        self.children = children if children is not None else []

    def add(self, name: str, text: str = "", attrs: Iterable[tuple[str, str]] = ()) -> "_X":
        child = _X(name, attrs, text)
        self.children.append(child)
        return child


def _amp(text: str, attr: bool) -> str:
    out = []
    for ch in text:
        if ch == "&":
            out.append("&amp;")
        elif ch == "<":
            out.append("&lt;")
        elif ch == ">":
            out.append("&gt;")
        elif ch == '"':
            out.append("&quot;" if attr else '"')
        elif ch == "\n":
            out.append("&#xA;" if attr else "\n")
        elif ch == "\t":
            out.append("&#x9;" if attr else "\t")
        elif ch == "\r":
            out.append("&#xD;")
        else:
            out.append(ch)
    return "".join(out)


class _Buf:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.last = ""

    def write(self, s: str) -> None:
        if s:
            self.parts.append(s)
            self.last = s[-1]


def _render(node: _X, depth: int, buf: _Buf) -> None:
    if buf.last == ">":
        buf.write("\n")
    attrs = "".join(f' {k}="{_amp(v, True)}"' for k, v in node.attrs)
    buf.write("  " * depth + f"<{node.name}{attrs}>")
    if node.children:
        for child in node.children:
            _render(child, depth + 1, buf)
    else:
        buf.write(_amp(node.text, False))
    if buf.last == "\n":
        buf.write("  " * depth)
    buf.write(f"</{node.name}>\n")


def render_xml(root: _X) -> str:
    buf = _Buf()
    buf.write('<?xml version="1.0"?>\n')
    _render(root, 0, buf)
    return "".join(buf.parts)


# --- the bridge ------------------------------------------------------------------------------------


class Bridge:
    """mod_conference on one FreeSWITCH node."""

    def __init__(self, profiles: ConferenceProfiles | Mapping[str, ConferenceProfile] | None = None, *,
                 domain: str = "FSdefaultDomain", clock: WallClock | None = None,
                 rng: random.Random | None = None, profile: Profile | None = None,
                 recordings_dir: str | Path | None = None, rtp_timeout: float = 300.0,
                 journal: Journal | None = None, hostname: str = "cometbench", ipv4: str = "127.0.0.1",
                 member_ids: Iterator[int] | None = None, talk: TalkPattern | None = None,
                 record_flush: float = 5.0, rtp_hold_timeout: float = 1800.0) -> None:
        if profiles is None:
            profiles = load_conference_profiles(variables={"domain": domain, "domain_name": domain})
        elif not isinstance(profiles, ConferenceProfiles):
            profiles = ConferenceProfiles(profiles)
        self.profiles = profiles
        self.domain = domain
        self.clock = clock or WallClock()
        self.rng = rng or random.Random(0)
        self.profile = profile
        self.recordings_dir = Path(recordings_dir) if recordings_dir is not None else Path("recordings")
        self.rtp_timeout = rtp_timeout
        self.rtp_hold_timeout = rtp_hold_timeout
        self.journal = journal or Journal(enabled=False)
        self.hostname = hostname
        self.ipv4 = ipv4
        self.talk = talk or TalkPattern()
        self.record_flush = record_flush
        self.core_uuid = self._new_uuid()
        self.conferences: dict[str, Conference] = {}
        self.recordings: list[Recording] = []        # every recording ever started (inspection)
        self._member_ids = member_ids if member_ids is not None else itertools.count(1)
        self._own_member_ids = member_ids is None
        self._members: dict[int, Member] = {}
        self._subscribers: list[Callable[[Event], None]] = []
        self._media_observers: list[Callable[[Member, bool], None]] = []
        self._heap: list[tuple[float, int, _Timer]] = []
        self._timer_seq = itertools.count()
        self._event_seq = itertools.count(1)
        self._now_override: float | None = None
        self._processing = False
        self._wakeup: trio.Event | None = None
        # sessions since start-up, as FreeSWITCH's ``status`` counts them: a number, not a set of
        # every uuid ever seen (which grew by one entry per call for the life of the server)
        self._sessions = 0
        self._tones: dict[int, bytes] = {}
        #: asked before a member's media starts (True: it may flow now); None lets media always start.
        #: The media link glue (emulator/freeswitch/media_link.py) holds media back while the member's
        #: link is partitioned and starts it when the partition heals.
        self.media_gate: Callable[[Member], bool] | None = None
        self.restarts = 0

    # -- basics ------------------------------------------------------------------------------------
    def _new_uuid(self) -> str:
        return str(_uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def now(self) -> float:
        """Wall (or virtual) time; inside a scheduled action, the time it was due."""
        return self._now_override if self._now_override is not None else self.clock.now()

    @staticmethod
    def conference_name_for(dev_id: int | str, room: str, domain: str = "FSdefaultDomain") -> str:
        """``<dev>*<room>-<domain>``, the name the CppComet dialplan gives a room."""
        return f"{dev_id}*{room}-{domain}"

    def conference_name(self, dev_id: int | str, room: str) -> str:
        return self.conference_name_for(dev_id, room, self.domain)

    @property
    def plus_replies(self) -> bool:
        return not _quirk(self.profile, QUIRK_PLUS)

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns the unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            try:
                self._subscribers.remove(callback)
            except ValueError:
                pass
        return unsubscribe

    def add_media_observer(self, callback: Callable[["Member", bool], None]) -> Callable[[], None]:
        """Call ``callback(member, flowing)`` whenever a member's media starts (True) or stops (False).

        A public hook for benches that time the join (FreeSWITCH itself fires no event for media);
        returns the function that removes the observer."""
        self._media_observers.append(callback)

        def remove() -> None:
            try:
                self._media_observers.remove(callback)
            except ValueError:
                pass

        return remove

    def _count_session(self, channel: Channel) -> None:
        if not channel.counted:
            channel.counted = True
            self._sessions += 1

    def session_count(self) -> int:
        """Channels seen since start (ESL ``status``)."""
        return self._sessions

    def member(self, member_id: int) -> Member | None:
        return self._members.get(member_id)

    def conference(self, name: str) -> Conference | None:
        return self.conferences.get(name)

    def members(self, conference_name: str) -> list[Member]:
        conf = self.conferences.get(conference_name)
        return conf.members if conf else []

    # -- scheduling ------------------------------------------------------------------------------
    def _schedule(self, at: float, fn: Callable, *args: Any) -> _Timer:
        timer = _Timer(at, fn, args)
        heapq.heappush(self._heap, (at, next(self._timer_seq), timer))
        if self._wakeup is not None:
            self._wakeup.set()
        return timer

    def next_due(self) -> float | None:
        """Wall time of the next scheduled action, or None."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def process_due(self) -> int:
        """Run every action due by now (each at its own due time); returns how many ran."""
        if self._processing:
            return 0
        self._processing = True
        ran = 0
        try:
            while True:
                due = self.next_due()
                if due is None or due > self.clock.now() + EPS:
                    break
                _, _, timer = heapq.heappop(self._heap)
                self._now_override = timer.at
                try:
                    timer.fn(*timer.args)
                finally:
                    self._now_override = None
                ran += 1
        finally:
            self._processing = False
        return ran

    tick = process_due

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Drive media starts, talking, RTP timeouts and recordings: sleep until the next one is due."""
        task_status.started()
        try:
            while True:
                self.process_due()
                self._wakeup = trio.Event()     # no await since process_due: the heap is current
                due = self.next_due()
                deadline = math.inf if due is None else trio.current_time() + max(0.0, due - self.clock.now())
                with trio.move_on_at(deadline):
                    await self._wakeup.wait()
        finally:
            self._wakeup = None
            self._flush_recordings()

    def restart(self) -> None:
        """FreeSWITCH restarts: every conference, member, channel and timer is gone without a single
        event (the process died), recordings are closed as they are, member ids start again at 1 and
        the node gets a new Core-UUID.  Subscribers and media observers stay attached (they are the
        transports' and the bench's, which reconnect)."""
        self.restarts += 1
        self.close()
        for rec in self.recordings:
            if rec.stopped is None:
                rec.stopped = self.now()
        self.conferences.clear()
        self._members.clear()
        self._heap.clear()
        self._sessions = 0
        self._event_seq = itertools.count(1)
        if self._own_member_ids:
            self._member_ids = itertools.count(1)
        self.core_uuid = self._new_uuid()
        if self._wakeup is not None:
            self._wakeup.set()

    def close(self) -> None:
        """Write recordings up to now and close their files (no events)."""
        for rec in self.recordings:
            if rec.wav is not None:
                self._write_recording(rec, self.now())
                rec.wav.close()
                rec.wav = None

    # -- events ------------------------------------------------------------------------------------
    def _base_headers(self, name: str, subclass: str, calling: tuple[str, str, int]) -> list[tuple[str, str]]:
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
            ("Event-Calling-Line-Number", str(calling[2])), ("Event-Sequence", str(next(self._event_seq))),
        ]
        return headers

    @staticmethod
    def _conference_headers(conf: Conference) -> list[tuple[str, str]]:
        return [("Conference-Name", conf.name), ("Conference-Domain", conf.domain),
                ("Conference-Size", str(conf.count)), ("Conference-Ghosts", str(conf.count_ghosts)),
                ("Conference-Profile-Name", conf.profile_name), ("Conference-Unique-ID", conf.uuid)]

    @staticmethod
    def _us(t: float | None) -> str:
        return str(int(t * 1_000_000)) if t is not None else "0"

    def _channel_headers(self, ch: Channel, *, in_conference: bool = False, rate: int = 8000) -> list[tuple[str, str]]:
        headers = [
            ("Channel-State", ch.state), ("Channel-Call-State", ch.call_state),
            ("Channel-State-Number", str(STATE_NUMBERS.get(ch.state, 4))), ("Channel-Name", ch.channel_name),
            ("Unique-ID", ch.uuid), ("Call-Direction", "inbound"), ("Presence-Call-Direction", "inbound"),
            ("Channel-HIT-Dialplan", "true"),
        ]
        if ch.variables.get("presence_id"):
            headers.append(("Channel-Presence-ID", ch.variables["presence_id"]))
        headers += [("Channel-Call-UUID", ch.uuid), ("Answer-State", ch.answer_state)]
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
            ("Caller-Profile-Created-Time", self._us(ch.created_at)),
            ("Caller-Channel-Created-Time", self._us(ch.created_at)),
            ("Caller-Channel-Answered-Time", self._us(ch.answered_at)),
            ("Caller-Channel-Progress-Time", "0"), ("Caller-Channel-Progress-Media-Time", "0"),
            ("Caller-Channel-Hangup-Time", self._us(ch.hangup_at)), ("Caller-Channel-Transfer-Time", "0"),
            ("Caller-Channel-Resurrect-Time", "0"), ("Caller-Channel-Bridged-Time", "0"),
            ("Caller-Channel-Last-Hold", "0"), ("Caller-Channel-Hold-Accum", "0"), ("Caller-Screen-Bit", "true"),
            ("Caller-Privacy-Hide-Name", "false"), ("Caller-Privacy-Hide-Number", "false"),
        ]
        return headers

    def _member_headers(self, m: Member) -> list[tuple[str, str]]:
        conf = m.conference
        headers = self._conference_headers(conf)
        headers.append(("Floor", _tf(conf.floor_holder is m)))
        headers += self._channel_headers(m.channel, in_conference=True, rate=conf.rate)
        headers += [
            ("Video", _tf(m.has_video)), ("Hear", _tf(m.can_hear)), ("See", _tf(m.can_be_seen)),
            ("Speak", _tf(m.can_speak)), ("Talking", _tf(m.talking)), ("Mute-Detect", _tf(m.mute_detect)),
            ("Member-ID", str(m.id)), ("Member-Type", "moderator" if m.moderator else "member"),
            ("Energy-Level", str(m.energy_level)), ("Current-Energy", str(m.score)),
        ]
        return headers

    def _suppressed(self, conf: Conference, action: str) -> bool:
        for name in conf.profile.suppress_events:
            if name == action or action in SUPPRESS.get(name, ()):
                return True
        return False

    def _conference_event(self, conf: Conference, action: str, *, member: Member | None = None,
                          extra: Iterable[tuple[str, str]] = (), fire: bool = True) -> Event | None:
        if self._suppressed(conf, action):
            return None
        headers = self._base_headers("CUSTOM", MAINT, CALLING.get(action, ("mod_conference.c", "conference", 1)))
        headers += self._member_headers(member) if member is not None else self._conference_headers(conf)
        headers.append(("Action", action))
        headers += list(extra)
        event = Event("CUSTOM", MAINT, headers)
        if fire:
            self._fire(event, conf=conf, member=member)
        return event

    def _fire(self, event: Event, *, conf: Conference | None = None, member: Member | None = None,
              channel: Channel | None = None) -> None:
        if self.journal.enabled:
            channel = channel or (member.channel if member else None)
            dev_id, user_id = self._ids(conf.name if conf else "", channel)
            what = event.action or event.name
            where = f" {conf.name}" if conf else ""
            who = f" member={member.id}" if member else (f" uuid={channel.uuid}" if channel else "")
            self.journal.record("freeswitch", "event", direction="out", dev_id=dev_id, user_id=user_id,
                                data=f"{what}{where}{who}")
        for callback in list(self._subscribers):
            callback(event)

    @staticmethod
    def _ids(conference_name: str, channel: Channel | None) -> tuple[int | None, int | None]:
        dev = conference_name.split("*", 1)[0]
        dev_id = int(dev) if dev.isdigit() else None
        user_id = None
        if channel is not None:
            cid = channel.caller_id_name
            if len(cid) > 6 and cid.isdigit():
                dev_id = dev_id if dev_id is not None else int(cid[:6])
                user_id = int(cid[6:])
        return dev_id, user_id

    # -- CHANNEL_* events for the SIP layer ------------------------------------------------------
    def channel_event(self, name: str, channel: Channel) -> Event:
        """Build (without firing) a CHANNEL_* event with the channel's data and variables."""
        headers = self._base_headers(name, "", CHANNEL_CALLING.get(name, ("switch_channel.c", "switch_channel", 1)))
        headers += self._channel_headers(channel)
        headers += [(f"variable_{k}", str(v)) for k, v in channel.variables.items()]
        return Event(name, "", headers)

    def _channel_fire(self, name: str, channel: Channel) -> Event:
        self._count_session(channel)
        event = self.channel_event(name, channel)
        self._fire(event, channel=channel)
        return event

    def channel_create(self, channel: Channel) -> Event:
        self.process_due()
        if channel.created_at is None:
            channel.created_at = self.now()
        channel.state, channel.call_state, channel.answer_state = "CS_INIT", "DOWN", "ringing"
        return self._channel_fire("CHANNEL_CREATE", channel)

    def channel_answer(self, channel: Channel) -> Event:
        self.process_due()
        channel.answered_at = self.now()
        if channel.created_at is None:
            channel.created_at = channel.answered_at
        channel.state, channel.call_state, channel.answer_state = "CS_EXECUTE", "ACTIVE", "answered"
        return self._channel_fire("CHANNEL_ANSWER", channel)

    def channel_hangup(self, channel: Channel, cause: str = "NORMAL_CLEARING") -> Event:
        self.process_due()
        self._mark_hungup(channel, cause)
        channel.state = "CS_EXECUTE"
        return self._channel_fire("CHANNEL_HANGUP", channel)

    def channel_destroy(self, channel: Channel) -> Event:
        self.process_due()
        self._mark_hungup(channel, channel.hangup_cause or "NORMAL_CLEARING")
        channel.state, channel.call_state, channel.answer_state = "CS_DESTROY", "HANGUP", "hangup"
        return self._channel_fire("CHANNEL_DESTROY", channel)

    def _mark_hungup(self, channel: Channel, cause: str, *, stamp: bool = True) -> None:
        """Channel state for a hung-up call.  ``stamp``: also set ``hangup_at`` (the CHANNEL_HANGUP
        helpers do; the conference paths leave it to the SIP layer, which fires those events when it
        is still None)."""
        if stamp and channel.hangup_at is None:
            channel.hangup_at = self.now()
        if channel.hangup_cause is None:
            channel.hangup_cause = cause
        channel.state, channel.call_state, channel.answer_state = "CS_HANGUP", "HANGUP", "hangup"

    # -- join / leave ------------------------------------------------------------------------------
    def join(self, conference_name: str, profile_name: str | None, channel: Channel) -> Member | Refusal:
        """Put an answered channel into ``conference_name`` (created with ``profile_name`` if new)."""
        self.process_due()
        now = self.now()
        self._count_session(channel)
        if channel.created_at is None:
            channel.created_at = now
        if channel.answered_at is None:
            channel.answered_at = now
        conf = self.conferences.get(conference_name)
        if conf is None:
            conf = self._create(conference_name, profile_name, channel)
        if conf.max_members > 0 and conf.count >= conf.max_members:
            refusal = Refusal("full", conf.name, conf.max_members, sound=conf.profile.max_members_sound)
            if self.journal.enabled:
                dev_id, user_id = self._ids(conf.name, channel)
                self.journal.record("freeswitch", "refused", dev_id=dev_id, user_id=user_id,
                                    data=f"Conference {conf.name} is full. ({conf.count}/{conf.max_members}) "
                                         f"uuid={channel.uuid}")
            return refusal
        member = Member(id=next(self._member_ids), conference=conf, channel=channel, join_time=int(now),
                        joined_at=now, energy_level=conf.profile.energy_level,
                        talk_rng=random.Random(self.rng.getrandbits(64)))
        member.tone_hz = member.talk_rng.randint(220, 660)
        self._apply_member_flags(member, conf.profile.member_flags)
        self._apply_member_flags(member, channel.variables.get("conference_member_flags", ""))
        channel.state, channel.call_state, channel.answer_state = "CS_EXECUTE", "ACTIVE", "answered"
        channel.variables["conference_name"] = conf.name
        channel.variables["conference_member_id"] = str(member.id)
        conf.nodes.insert(0, member)
        self._members[member.id] = member
        self._conference_event(conf, "add-member", member=member)
        self._update_floor(conf)
        if channel.media_delay is None:
            self._start_rtp_timer(member)
        elif channel.media_delay <= 0:
            self._set_media(member, True)
        else:
            member.media_timer = self._schedule(now + channel.media_delay, self._set_media, member, True)
        self._check_auto_record(conf)
        return member

    def _create(self, name: str, profile_name: str | None, channel: Channel) -> Conference:
        prof = self.profiles.resolve(profile_name)
        domain = prof.domain
        if not domain:
            presence = channel.variables.get("presence_id", "")
            domain = presence.split("@", 1)[1] if "@" in presence else "cluecon.com"
        now = self.now()
        conf = Conference(name=name, profile=prof, profile_name=prof.name, domain=domain, uuid=self._new_uuid(),
                          created=now, run_time=int(now), max_members=prof.max_members,
                          auto_record=prof.auto_record, min_recording=prof.min_required_recording_participants,
                          endconf_grace_time=prof.endconf_grace_time, caller_id_name=prof.caller_id_name,
                          caller_id_number=prof.caller_id_number)
        text = channel.variables.get("conference_auto_record")
        if text:
            conf.auto_record = text
        text = channel.variables.get("conference_max_members")
        if text:
            value = c_strtol(text)
            value = 0 if value is None else value
            if not (value < 0 or value == 1 or value > 0x7FFFFFFF):
                conf.max_members = value
        self.conferences[name] = conf
        self._conference_event(conf, "conference-create")
        return conf

    @staticmethod
    def _apply_member_flags(member: Member, flags: str) -> None:
        for flag in (f.strip().lower() for f in flags.split("|")):
            if flag == "mute":
                member.can_speak = False
            elif flag == "deaf":
                member.can_hear = False
            elif flag in ("moderator", "mod"):
                member.moderator = True
            elif flag == "ghost":
                member.ghost = True
            elif flag == "mute-detect":
                member.mute_detect = True
            elif flag == "endconf":
                member.end_conference = True
            elif flag == "vmute":
                member.can_be_seen = False

    def leave(self, member_id: int, cause: str = "NORMAL_CLEARING") -> bool:
        """The caller hung up (BYE from the SIP side): the member leaves.  False if unknown."""
        self.process_due()
        member = self._members.get(member_id)
        if member is None:
            return False
        self._mark_hungup(member.channel, cause, stamp=False)
        self._remove_member(member, cause)
        return True

    def _remove_member(self, member: Member, cause: str, *, hangup: bool = False) -> None:
        if member.left:
            return
        conf = member.conference
        self._record_catch_up(conf)
        member.left, member.left_cause = True, cause
        member.talking, member.score = False, 0
        for timer in (member.talk_timer, member.rtp_timer, member.media_timer):
            if timer is not None:
                timer.cancel()
        # a timer's arguments hold the member: drop them so no cycle outlives the call
        member.talk_timer = member.rtp_timer = member.media_timer = None
        if conf.floor_holder is member:
            self._set_floor(conf, None)
        if conf.video_floor_holder is member:
            self._set_video_floor(conf, None)
        conf.nodes.remove(member)
        self._members.pop(member.id, None)
        self._conference_event(conf, "del-member", member=member)
        if not conf.members:
            self._destroy(conf)
        else:
            self._update_floor(conf)
        if hangup:
            self._mark_hungup(member.channel, cause, stamp=False)
            member.channel.hangup(cause)

    def _destroy(self, conf: Conference) -> None:
        for rec in conf.recordings:
            self._stop_recording(conf, rec)
        self.conferences.pop(conf.name, None)
        self._conference_event(conf, "conference-destroy")

    # -- media, ghosts, talking --------------------------------------------------------------------
    def media_flowing(self, member_id: int, flowing: bool = True) -> bool:
        """The SIP/media side reports the member's media started (True) or stopped (False)."""
        self.process_due()
        member = self._members.get(member_id)
        if member is None:
            return False
        self._set_media(member, flowing)
        return True

    def _set_media(self, member: Member, flowing: bool) -> None:
        if member.left:
            return
        now = self.now()
        if member.media_timer is not None:
            member.media_timer.cancel()
            member.media_timer = None
        if flowing:
            if member.media == "flowing" or member.signalling_lost or member.hold:
                return
            if self.media_gate is not None and not self.media_gate(member):
                return  # held back (a partitioned link): the gate's owner starts it later
            member.media, member.media_since, member.media_lost_at = "flowing", now, None
            if member.rtp_timer is not None:
                member.rtp_timer.cancel()
                member.rtp_timer = None
            if self.journal.enabled:
                dev_id, user_id = self._ids(member.conference.name, member.channel)
                self.journal.record("freeswitch", "media", dev_id=dev_id, user_id=user_id,
                                    data=f"flowing member={member.id} after {now - member.joined_at:.3f}s")
            if self.talk.enabled and not member.scripted:
                delay = member.talk_rng.uniform(*self.talk.first_silence)
                member.talk_timer = self._schedule(now + delay, self._talk_step, member)
        else:
            if member.media == "dead":
                return
            member.media, member.media_lost_at = "dead", now
            if member.talk_timer is not None:
                member.talk_timer.cancel()
                member.talk_timer = None
            self._stop_talking(member)
            self._start_rtp_timer(member)
        for observer in list(self._media_observers):
            observer(member, flowing)

    def _start_rtp_timer(self, member: Member) -> None:
        if member.rtp_timer is not None:
            member.rtp_timer.cancel()
        timeout = self.rtp_hold_timeout if member.hold else self.rtp_timeout
        member.rtp_timer = self._schedule(self.now() + timeout, self._rtp_timeout, member)

    def set_hold(self, member_id: int, hold: bool) -> bool:
        """A re-INVITE put the member on hold (sendonly/inactive) or took it off.  On hold its media
        stops (no talking) and ``rtp_hold_timeout`` (rtp-hold-timeout-sec, 1800 s) applies instead of
        the RTP timeout; off hold its media flows again.  FreeSWITCH 1.6 fires no conference event."""
        self.process_due()
        member = self._members.get(member_id)
        if member is None:
            return False
        if member.hold == hold:
            return True
        if hold:
            self._set_media(member, False)
            member.hold = True
            self._start_rtp_timer(member)
        else:
            member.hold = False
            self._set_media(member, True)
        return True

    def _rtp_timeout(self, member: Member) -> None:
        if member.left or member.media == "flowing":
            return
        self._mark_hungup(member.channel, "MEDIA_TIMEOUT", stamp=False)
        self._remove_member(member, "MEDIA_TIMEOUT", hangup=True)

    def signalling_lost(self, member_id: int) -> bool:
        """The member's SIP transport closed without a BYE (page refresh, tab closed, network gone).

        Faithful (quirk ``fs_ghost_until_media_timeout`` on): its media stops and it stays until
        ``rtp_timeout`` seconds later, then leaves with MEDIA_TIMEOUT.  Lenient: it leaves now."""
        self.process_due()
        member = self._members.get(member_id)
        if member is None:
            return False
        if self.journal.enabled:
            dev_id, user_id = self._ids(member.conference.name, member.channel)
            self.journal.record("freeswitch", "signalling_lost", dev_id=dev_id, user_id=user_id,
                                data=f"member={member.id}")
        self._set_media(member, False)
        member.signalling_lost = True
        if not _quirk(self.profile, QUIRK_GHOST):
            self._remove_member(member, "NORMAL_CLEARING", hangup=True)
        return True

    def set_talking(self, member_id: int, talking: bool, energy: int | None = None) -> bool:
        """Script a member's talking (its automatic pattern stops).  False when it cannot talk now
        (unknown, media not flowing, muted) and ``talking`` was asked."""
        self.process_due()
        member = self._members.get(member_id)
        if member is None:
            return False
        member.scripted = True
        if member.talk_timer is not None:
            member.talk_timer.cancel()
            member.talk_timer = None
        if talking:
            if member.talking:
                if energy is not None:
                    member.score = energy
                return True
            return self._start_talking(member, energy if energy is not None else 1000)
        self._stop_talking(member)
        return True

    def _talk_step(self, member: Member) -> None:
        if member.left or member.media != "flowing" or member.scripted:
            return
        rng = member.talk_rng
        if member.talking:
            self._stop_talking(member)
            delay = rng.uniform(*self.talk.silence)
        elif self._start_talking(member, rng.randint(*self.talk.energy)):
            delay = rng.uniform(*self.talk.talk)
        else:
            delay = rng.uniform(*self.talk.silence)
        member.talk_timer = self._schedule(self.now() + delay, self._talk_step, member)

    def _start_talking(self, member: Member, energy: int) -> bool:
        if member.left or member.talking or member.media != "flowing" or not member.can_speak:
            return False
        conf = member.conference
        self._record_catch_up(conf)
        member.talking, member.score, member.last_talking = True, energy, self.now()
        self._conference_event(conf, "start-talking", member=member)
        self._update_floor(conf)
        return True

    def _stop_talking(self, member: Member, *, fire: bool = True) -> None:
        if not member.talking:
            return
        conf = member.conference
        self._record_catch_up(conf)
        member.talking, member.score, member.last_talking = False, 0, self.now()
        if fire:
            self._conference_event(conf, "stop-talking", member=member)
        self._update_floor(conf)

    # -- floor ---------------------------------------------------------------------------------------
    def _update_floor(self, conf: Conference) -> None:
        if conf.name not in self.conferences:
            return
        candidates = [m for m in conf.members if not m.kicked and not m.left]
        holder = conf.floor_holder
        if holder is None:
            if candidates:
                self._set_floor(conf, candidates[0])
            return
        if holder.talking:
            return
        talking = [m for m in candidates if m.talking and m is not holder]
        if talking:
            self._set_floor(conf, max(talking, key=lambda m: m.score))

    def _set_floor(self, conf: Conference, member: Member | None) -> None:
        old = conf.floor_holder
        if old is member:
            return
        conf.floor_holder = member
        self._conference_event(conf, "floor-change", extra=[("Old-ID", str(old.id) if old else "none"),
                                                            ("New-ID", str(member.id) if member else "none")])
        if (member is not None and conf.video_mode == "passthrough" and member.has_video
                and conf.video_floor_holder is not member):
            self._set_video_floor(conf, member)

    def _set_video_floor(self, conf: Conference, member: Member | None) -> None:
        old = conf.video_floor_holder
        if old is member:
            return
        conf.video_floor_holder = member
        self._conference_event(conf, "video-floor-change",
                               extra=[("Old-ID", str(old.id) if old else "none"),
                                      ("New-ID", str(member.id) if member else "none")])

    # -- recording -----------------------------------------------------------------------------------
    def _check_auto_record(self, conf: Conference) -> None:
        if not conf.auto_record or conf.auto_recording or conf.count < conf.min_recording:
            return
        conf.auto_recording = True
        head = conf.members[0] if conf.members else None
        path = self._expand(conf.auto_record, head.channel if head else None, conf)
        for m in conf.members:
            m.channel.variables["conference_recording"] = path
        self._start_recording(conf, path, autorec=True)

    def _expand(self, template: str, channel: Channel | None, conf: Conference) -> str:
        text = template.replace("$${recordings_dir}", str(self.recordings_dir))
        now = self.now()

        def var(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("strftime(") and name.endswith(")"):
                return time.strftime(name[len("strftime("):-1], time.gmtime(now))
            if name == "conference_name":
                return conf.name
            if channel is None:
                return ""
            builtin = {"uuid": channel.uuid, "caller_id_name": channel.caller_id_name,
                       "caller_id_number": channel.caller_id_number,
                       "destination_number": channel.destination_number}
            return channel.variables.get(name, builtin.get(name, ""))
        return _CHANNEL_VAR.sub(var, text)

    def resolve_record_path(self, path: str) -> Path:
        """Where a recording path lands on disk: under ``recordings_dir``, never outside it."""
        base = self.recordings_dir.resolve()
        p = Path(path)
        if p.is_absolute():
            try:
                p.resolve().relative_to(base)
            except ValueError:
                p = base / p.relative_to(p.anchor)
        else:
            p = base / p
        resolved = p.resolve()
        try:
            resolved.relative_to(base)
        except ValueError:
            resolved = base / (Path(path).name or "recording.wav")
        if resolved == base:
            resolved = base / "recording.wav"
        return resolved

    def _start_recording(self, conf: Conference, path: str, *, autorec: bool) -> Recording:
        now = self.now()
        stream = "://" in path
        rec = Recording(id=next(self._member_ids), conference=conf, path=path,
                        file=None if stream else self.resolve_record_path(path), started=now,
                        start_epoch=int(now), autorec=autorec, rate=conf.rate)
        if rec.file is not None:
            try:
                rec.file.parent.mkdir(parents=True, exist_ok=True)
                rec.wav = wave.open(str(rec.file), "wb")
                rec.wav.setnchannels(1)
                rec.wav.setsampwidth(2)
                rec.wav.setframerate(rec.rate)
            except OSError as exc:
                rec.wav = None
                if self.journal.enabled:
                    self.journal.record("freeswitch", "recording_failed", data=f"{conf.name} {path}: {exc}")
        conf.nodes.insert(0, rec)
        conf.record_count += 1
        self.recordings.append(rec)
        if self.journal.enabled:
            dev_id, _ = self._ids(conf.name, None)
            kind = "stream" if stream else "file"
            target = path if stream else str(rec.file)
            self.journal.record("freeswitch", "recording", dev_id=dev_id,
                                data=f"start {kind} {target} conference={conf.name} auto={autorec}")
        self._conference_event(conf, "start-recording", extra=[("Path", path)])
        if rec.wav is not None and self.record_flush > 0:
            rec.timer = self._schedule(now + self.record_flush, self._flush_recording, rec)
        return rec

    def _flush_recording(self, rec: Recording) -> None:
        if rec.stopped is not None or rec.wav is None:
            return
        self._write_recording(rec, self.now())
        rec.timer = self._schedule(self.now() + self.record_flush, self._flush_recording, rec)

    def _flush_recordings(self) -> None:
        for rec in self.recordings:
            if rec.stopped is None and rec.wav is not None:
                self._write_recording(rec, self.now())

    def _record_catch_up(self, conf: Conference) -> None:
        for rec in conf.recordings:
            if rec.wav is not None:
                self._write_recording(rec, self.now())

    def _tone(self, hz: int, rate: int) -> bytes:
        key = hz * 100_000 + rate
        if key not in self._tones:
            samples = array.array("h", (int(WAV_AMPLITUDE * math.sin(2 * math.pi * hz * i / rate))
                                        for i in range(rate)))
            self._tones[key] = samples.tobytes()
        return self._tones[key]

    def _write_recording(self, rec: Recording, until: float) -> None:
        target = int(round((until - rec.started) * rec.rate))
        count = target - rec.frames
        if count <= 0 or rec.wav is None:
            return
        talkers = [m for m in rec.conference.members if m.talking]
        tone = self._tone(max(talkers, key=lambda m: m.score).tone_hz, rec.rate) if talkers else None
        position = rec.frames
        while count > 0:
            offset = position % rec.rate
            n = min(count, rec.rate - offset)
            rec.wav.writeframes(b"\x00\x00" * n if tone is None else tone[2 * offset:2 * (offset + n)])
            position += n
            count -= n
        rec.frames = target

    def _stop_recording(self, conf: Conference, rec: Recording) -> None:
        if rec.stopped is not None:
            return
        now = self.now()
        if rec.wav is not None:
            self._write_recording(rec, now)
            rec.wav.close()
            rec.wav = None
        if rec.timer is not None:
            rec.timer.cancel()
        rec.stopped = now
        samples = rec.frames if rec.file is not None else int(round(rec.duration() * rec.rate))
        if rec in conf.nodes:
            conf.nodes.remove(rec)
        conf.record_count = max(0, conf.record_count - 1)
        if self.journal.enabled:
            dev_id, _ = self._ids(conf.name, None)
            self.journal.record("freeswitch", "recording", dev_id=dev_id,
                                data=f"stop {rec.path} conference={conf.name} seconds={rec.duration():.3f}")
        self._conference_event(conf, "stop-recording", extra=[
            ("Path", rec.path), ("Other-Recordings", _tf(conf.record_count > 0)), ("Samples-Out", str(samples)),
            ("Samplerate", str(rec.rate)), ("Milliseconds-Elapsed", str(samples // max(1, rec.rate // 1000)))])

    # -- the API -----------------------------------------------------------------------------------
    def _reply(self, key: str, **kw: Any) -> str:
        legacy, modern = REPLIES[key]
        return (modern if self.plus_replies else legacy).format(**kw)

    def api(self, command_line: str) -> str:
        """``api conference ...`` as mod_conference answers it (the leading word ``conference`` optional)."""
        self.process_due()
        text = command_line.strip()
        head, _, rest = text.partition(" ")
        if head.lower() == "conference":
            text = rest.strip()
        argv = [a for a in text.split(" ") if a]
        reply = self._api(argv)
        if self.journal.enabled:
            dev_id, _ = self._ids(argv[0] if argv else "", None)
            self.journal.record("freeswitch", "api", direction="in", dev_id=dev_id,
                                data=f"conference {text} -> {reply[:200]!r}")
        return reply

    def _usage(self) -> str:
        lines = [f"<conf name> {syntax}\n" for syntax in SPLIT_COMMANDS.values()]
        lines += [f"<conf name> {syntax}\n" for syntax in MEMBER_COMMANDS.values()]
        return "".join(lines)

    def _api(self, argv: list[str]) -> str:
        if not argv:
            return self._usage()
        conf = self.conferences.get(argv[0])
        if conf is not None:
            if len(argv) < 2:
                return "Conference command, not specified.\nTry 'help'\n"
            return self._dispatch(conf, argv)
        word = argv[0].lower()
        if word == "list":
            return self._list_all(argv)
        if word == "xml_list":
            return self._xml_list(list(self.conferences.values()))
        if word in ("help", "commands"):
            return self._usage()
        return self._reply("conf_not_found", name=argv[0])

    def _dispatch(self, conf: Conference, argv: list[str]) -> str:
        cmd = argv[1].lower()
        if cmd in MEMBER_COMMANDS:
            return self._member_command(conf, cmd, argv)
        handler = {
            "list": self._cmd_list, "xml_list": lambda c, a: self._xml_list([c]), "record": self._cmd_record,
            "norecord": self._cmd_norecord, "recording": self._cmd_recording, "chkrecord": self._cmd_chkrecord,
            "get": self._cmd_get, "set": self._cmd_set,
        }.get(cmd)
        if handler is None:
            return f"Conference command '{argv[1]}' not found.\n"
        result = handler(conf, argv)
        return result if result is not None else SPLIT_COMMANDS[cmd]

    # member-target commands -----------------------------------------------------------------------
    def _member_command(self, conf: Conference, cmd: str, argv: list[str]) -> str:
        target = argv[2] if len(argv) > 2 else None
        data = argv[3] if len(argv) > 3 else None
        handler = getattr(self, f"_m_{cmd}")
        pending: list[tuple[Member, str]] = []      # kicked / hung-up members leave after the loop
        member_id = _atoi(target)
        out: list[str] = []
        if target is not None and member_id == 0 and target.lower() in ("all", "non_moderator"):
            non_mod = target.lower() == "non_moderator"
            for m in list(conf.members):
                if non_mod and m.moderator:
                    continue
                out.append(handler(m, data, pending))
        elif target is not None and member_id == 0 and target.lower() == "last":
            # the node with the highest id; when that is a recording node, nothing happens (as in FS)
            newest = max(conf.nodes, key=lambda n: n.id, default=None)
            if isinstance(newest, Member) and not newest.left:
                out.append(handler(newest, data, pending))
        elif member_id:
            m = self._members.get(member_id)
            if m is None or m.conference is not conf or m.kicked or m.left:
                out.append(self._reply("member_not_found", id=member_id))
            else:
                out.append(handler(m, data, pending))
        else:
            out.append(MEMBER_COMMANDS[cmd])
        for m, cause in pending:
            self._remove_member(m, cause, hangup=True)
        return "".join(out)

    def _m_mute(self, m: Member, data: str | None, pending: list) -> str:
        m.can_speak = False
        if m.talking:   # mod_conference clears the flag without a stop-talking event
            self._record_catch_up(m.conference)
            m.talking, m.score, m.last_talking = False, 0, self.now()
        reply = self._reply("ok", text=f"mute {m.id}")
        self._conference_event(m.conference, "mute-member", member=m)
        self._update_floor(m.conference)
        return reply

    def _set_flag(self, m: Member, attr: str, value: bool, word: str) -> str:
        """The plain flag commands: set the member flag, reply ``OK <word> <id>``, fire ``<word>-member``."""
        setattr(m, attr, value)
        reply = self._reply("ok", text=f"{word} {m.id}")
        self._conference_event(m.conference, f"{word}-member", member=m)
        return reply

    def _m_unmute(self, m: Member, data: str | None, pending: list) -> str:
        return self._set_flag(m, "can_speak", True, "unmute")

    def _m_tmute(self, m: Member, data: str | None, pending: list) -> str:
        return self._m_mute(m, data, pending) if m.can_speak else self._m_unmute(m, data, pending)

    def _m_vmute(self, m: Member, data: str | None, pending: list) -> str:
        return self._set_flag(m, "can_be_seen", False, "vmute")

    def _m_unvmute(self, m: Member, data: str | None, pending: list) -> str:
        return self._set_flag(m, "can_be_seen", True, "unvmute")

    def _m_tvmute(self, m: Member, data: str | None, pending: list) -> str:
        return self._m_vmute(m, data, pending) if m.can_be_seen else self._m_unvmute(m, data, pending)

    def _m_deaf(self, m: Member, data: str | None, pending: list) -> str:
        return self._set_flag(m, "can_hear", False, "deaf")

    def _m_undeaf(self, m: Member, data: str | None, pending: list) -> str:
        return self._set_flag(m, "can_hear", True, "undeaf")

    def _m_kick(self, m: Member, data: str | None, pending: list) -> str:
        m.kicked = True
        reply = self._reply("ok", text=f"kicked {m.id}")
        self._conference_event(m.conference, "kick-member", member=m)
        pending.append((m, "NORMAL_CLEARING"))
        return reply

    def _m_hup(self, m: Member, data: str | None, pending: list) -> str:
        self._conference_event(m.conference, "hup-member", member=m)
        pending.append((m, "NORMAL_CLEARING"))
        return self._reply("hup", id=m.id)

    def _m_floor(self, m: Member, data: str | None, pending: list) -> str:
        conf = m.conference
        if conf.floor_holder is m:
            self._set_floor(conf, None)
            reply = self._reply("ok", text="floor none")
            self._update_floor(conf)   # the frame loop hands a free floor to a member again
            return reply
        if conf.floor_holder is None:
            self._set_floor(conf, m)
            return self._reply("ok", text=f"floor {m.id}")
        return self._reply("floor_held", id=conf.floor_holder.id)

    def _m_energy(self, m: Member, data: str | None, pending: list) -> str:
        if data is not None:
            if data.lower() == "up":
                m.energy_level = min(1800, m.energy_level + 200)
            elif data.lower() == "down":
                m.energy_level = max(0, m.energy_level - 200)
            else:
                m.energy_level = c_strtol(data) or 0
        reply = f"Energy {m.id} = {m.energy_level}\n"
        if data is not None:
            self._conference_event(m.conference, "energy-level-member", member=m,
                                   extra=[("Energy-Level", str(m.energy_level))])
        return reply

    def _volume(self, m: Member, data: str | None, attr: str) -> None:
        value = getattr(m, attr)
        if data.lower() == "up":
            value += 1
        elif data.lower() == "down":
            value -= 1
        else:
            value = c_strtol(data) or 0
        setattr(m, attr, max(-4, min(4, value)))

    def _m_volume_in(self, m: Member, data: str | None, pending: list) -> str:
        if data is not None:
            self._volume(m, data, "volume_in")
        reply = f"Volume IN {m.id} = {m.volume_in}\n"
        if data is not None:
            self._conference_event(m.conference, "volume-in-member", member=m,
                                   extra=[("Volume-Level", str(m.volume_in))])
        return reply

    def _m_volume_out(self, m: Member, data: str | None, pending: list) -> str:
        if data is not None:
            self._volume(m, data, "volume_out")
        reply = f"Volume OUT {m.id} = {m.volume_out}\n"
        if data is not None:
            self._conference_event(m.conference, "volume-out-member", member=m,
                                   extra=[("Volume-Level", str(m.volume_out))])
        return reply

    # list / xml_list ------------------------------------------------------------------------------
    @staticmethod
    def _member_line(m: Member, delim: str) -> str:
        conf = m.conference
        flags = [name for name, on in (
            ("hear", m.can_hear), ("speak", m.can_speak), ("talking", m.talking), ("video", m.has_video),
            ("floor", conf.floor_holder is m), ("vid-floor", conf.video_floor_holder is m),
            ("moderator", m.moderator), ("ghost", m.ghost)) if on]
        ch = m.channel
        return (f"{m.id}{delim}{ch.channel_name}{delim}{ch.uuid}{delim}{ch.caller_id_name}{delim}"
                f"{ch.caller_id_number}{delim}{'|'.join(flags)}{delim}{m.volume_in}{delim}0{delim}"
                f"{m.volume_out}{delim}{m.energy_level}\n")

    def _conference_flags(self, conf: Conference) -> str:
        flags = ["running", "answered", "dynamic", "exit_sound", "enter_sound"]
        if conf.record_count > 0:
            flags.append("recording")
        flags.append("json_status")
        return "|".join(flags)

    @staticmethod
    def _list_options(argv: list[str], offset: int) -> tuple[str, bool, bool]:
        delim, count_only, summary = ";", False, False
        if len(argv) > offset:
            opt = argv[offset].lower()
            if opt == "delim" and len(argv) > offset + 1:
                delim = argv[offset + 1]
                if delim.startswith('"'):
                    delim = delim[1:].split('"', 1)[0] or ";"
            elif opt == "count":
                count_only = True
            elif opt == "summary":
                summary = True
        return delim, count_only, summary

    def _list_all(self, argv: list[str]) -> str:
        delim, _, summary = self._list_options(argv, 1)
        out = []
        for conf in self.conferences.values():
            n = conf.count
            out.append(f"Conference {conf.name} ({n} member{'' if n == 1 else 's'} rate: {conf.rate} "
                       f"flags: {self._conference_flags(conf)})\n")
            if not summary:
                out.extend(self._member_line(m, delim) for m in conf.members)
        if not self.conferences:
            out.append(self._reply("no_conferences"))
        return "".join(out)

    def _cmd_list(self, conf: Conference, argv: list[str]) -> str:
        delim, count_only, _ = self._list_options(argv, 2)
        if count_only:
            return str(conf.count)
        return "".join(self._member_line(m, delim) for m in conf.members)

    def _xml_list(self, conferences: list[Conference]) -> str:
        root = _X("conferences")
        now_s = int(self.now())
        for conf in conferences:
            attrs = [("name", conf.name), ("member-count", str(conf.count)), ("ghost-count", str(conf.count_ghosts)),
                     ("rate", str(conf.rate)), ("uuid", conf.uuid), ("running", "true"), ("answered", "true"),
                     ("dynamic", "true"), ("exit_sound", "true"), ("enter_sound", "true")]
            if conf.max_members > 0:
                attrs.append(("max_members", str(conf.max_members)))
            if conf.record_count > 0:
                attrs.append(("recording", "true"))
            if conf.endconf_grace_time > 0:
                attrs.append(("endconference_grace_time", str(conf.endconf_grace_time)))
            attrs.append(("run_time", str(now_s - conf.run_time)))
            x_conf = _X("conference", attrs)
            root.children.append(x_conf)
            x_members = x_conf.add("members")
            for node in conf.nodes:
                if isinstance(node, Recording):
                    x_member = x_members.add("member", attrs=[("type", "recording_node")])
                    x_member.add("record_path", node.path)
                    x_member.add("join_time", str(node.start_epoch), attrs=[("type", "UNIX-epoch")])
                    continue
                m, ch = node, node.channel
                x_member = x_members.add("member", attrs=[("type", "caller")])
                x_member.add("id", str(m.id))
                x_flags = x_member.add("flags")
                for name, on in (("can_hear", m.can_hear), ("can_speak", m.can_speak),
                                 ("mute_detect", m.mute_detect), ("talking", m.talking),
                                 ("has_video", m.has_video), ("video_bridge", m.video_bridge),
                                 ("has_floor", conf.floor_holder is m), ("is_moderator", m.moderator),
                                 ("end_conference", m.end_conference), ("is_ghost", m.ghost)):
                    x_flags.add(name, _tf(on))
                x_member.add("uuid", url_encode(ch.uuid))
                x_member.add("caller_id_name", url_encode(ch.caller_id_name))
                x_member.add("caller_id_number", url_encode(ch.caller_id_number))
                x_member.add("join_time", str(now_s - m.join_time))
                if m.talking:
                    last = "0"
                elif m.last_talking is not None:
                    last = str(now_s - int(m.last_talking))
                else:
                    last = "N/A"
                x_member.add("last_talking", last)
                x_member.add("energy", str(m.energy_level))
                x_member.add("volume_in", str(m.volume_in))
                x_member.add("volume_out", str(m.volume_out))
        return render_xml(root)

    # recording / get / set -----------------------------------------------------------------------
    def _cmd_record(self, conf: Conference, argv: list[str]) -> str | None:
        if len(argv) <= 2:
            return None
        reply = f"Record file {argv[2]}\n"
        self._start_recording(conf, argv[2], autorec=False)
        return reply

    def _cmd_norecord(self, conf: Conference, argv: list[str]) -> str | None:
        if len(argv) <= 2:
            return None
        everything = argv[2].lower() == "all"
        out, stopping = [], []
        for rec in conf.recordings:
            if everything or rec.path == argv[2]:
                if rec.autorec:
                    out.append(f"Stopped AUTO recording file {rec.path} (Auto Recording Now Disabled)\n")
                    conf.auto_record = None
                else:
                    out.append(f"Stopped recording file {rec.path}\n")
                stopping.append(rec)
        before = conf.record_count
        if not stopping and not everything:
            out.append(f"non-existant recording '{argv[2]}'\n")
        else:
            self._conference_event(conf, "stop-recording", extra=[
                ("Path", "all" if everything else argv[2]),
                ("Other-Recordings", _tf(before - len(stopping) > 0))])
        for rec in stopping:
            self._stop_recording(conf, rec)
        stopped = before - conf.record_count
        out.append(f"Stopped recording {stopped} file{'' if stopped == 1 else 's'}\n")
        return "".join(out)

    def _cmd_chkrecord(self, conf: Conference, argv: list[str]) -> str:
        recs = conf.recordings
        if not recs:
            return "Conference is not being recorded.\n"
        return "".join(f"Record file {r.path}{' (Auto)' if r.autorec else ''}\n" for r in reversed(recs))

    def _cmd_recording(self, conf: Conference, argv: list[str]) -> str | None:
        if len(argv) == 3 and argv[2].lower() in ("stop", "check"):
            argv = [*argv, "all"]
        if len(argv) <= 3:
            return self._cmd_record(conf, argv)
        action = argv[2].lower()
        if action == "start":
            return self._cmd_record(conf, [argv[0], "record", argv[3]])
        if action == "stop":
            return self._cmd_norecord(conf, [argv[0], "norecord", argv[3]])
        if action == "check":
            return self._cmd_chkrecord(conf, argv)
        return None

    def _cmd_get(self, conf: Conference, argv: list[str]) -> str | None:
        if len(argv) != 3:
            return None
        values = {
            "run_time": str(int(self.now()) - conf.run_time), "count": str(conf.count),
            "count_ghosts": str(conf.count_ghosts), "max_members": str(conf.max_members), "rate": str(conf.rate),
            "profile_name": conf.profile_name, "sound_prefix": conf.sound_prefix,
            "caller_id_name": conf.caller_id_name, "caller_id_number": conf.caller_id_number, "is_locked": "",
            "endconference_grace_time": str(conf.endconf_grace_time), "uuid": conf.uuid, "wait_mod": "",
        }
        return values.get(argv[2].lower())

    def _cmd_set(self, conf: Conference, argv: list[str]) -> str | None:
        if len(argv) != 4 or not argv[3]:
            return None
        key, value = argv[2].lower(), argv[3]
        if key in ("max_members", "endconference_grace_time"):
            number = c_strtol(value)
            number = 0 if number is None else number
            if number < 0:
                return None
            if key == "max_members":
                old, conf.max_members = conf.max_members, number
            else:
                old, conf.endconf_grace_time = conf.endconf_grace_time, number
            return str(old)
        if key in ("sound_prefix", "caller_id_name", "caller_id_number"):
            old = getattr(conf, key)
            setattr(conf, key, value)
            return old
        return None


__all__ = [
    "Bridge", "Channel", "Member", "Conference", "Recording", "Refusal", "Event", "TalkPattern",
    "url_encode", "render_xml", "QUIRK_PLUS", "QUIRK_GHOST", "MAINT",
]
