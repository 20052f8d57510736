"""The mod_conference model of one FreeSWITCH node: the :class:`Bridge` -- lifecycle, media, floor.

No sockets.  The SIP layer calls :meth:`Bridge.join` once the dialplan has answered a call to
``<dev>*<room>*<profile>`` (conference ``<dev>*<room>-<domain>``, profile ``<profile>``), and
:meth:`Bridge.leave` on a BYE; the ESL server calls :meth:`Bridge.api` and :meth:`Bridge.subscribe`.
Everything is synchronous.  Things that happen on their own (a member's media starting, a talk
spurt, an RTP timeout, a recording flush) are timers on the node's :class:`~emulator.clock.Timers`,
which it shares with its SIP core; the stack runs them (``Timers.run``), a test that moves a
:class:`~emulator.clock.ManualClock` calls :meth:`Bridge.process_due`, and every entry point
below first runs what is due, so the state it acts on is current.  Time comes from a
:class:`~emulator.clock.WallClock` (inside a timer's action: the moment it was due), randomness
from one seeded ``random.Random``.

The node in rooms (one job each):

* this module -- the conference lifecycle, media, ghosts and hold, talking and the floor;
* :mod:`emulator.freeswitch.model` -- the data: channels, members, conferences, recordings, states;
* :mod:`emulator.freeswitch.events` -- the :class:`~emulator.freeswitch.events.Event` type and the
  builders of conference and CHANNEL_* events (FreeSWITCH 1.6's headers and their order);
* :mod:`emulator.freeswitch.recording` -- WAV recording and noted streams;
* :mod:`emulator.freeswitch.api` -- ``api conference ...``: the command tables, both reply styles,
  ``list`` and ``xml_list`` (rendered by :mod:`emulator.wire.xml`).

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
* **Events** -- every event goes to the journal and to the subscribers (:meth:`Bridge.subscribe`);
  :meth:`Bridge.channel_create` / ``channel_answer`` / ``channel_hangup`` / ``channel_destroy``
  build and fire the CHANNEL_* events for the SIP layer.  :meth:`Bridge.add_media_observer` is the
  bench's hook for media starting and stopping (FreeSWITCH fires no event for it).

The names that moved out of this module (``Channel``, ``Member``, ``Event``, ``render_xml``, ...)
are still importable from here.
"""

from __future__ import annotations

import itertools
import random
import uuid as _uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import trio

from emulator.clock import Timers, WallClock
from emulator.config import DEFAULT_DOMAIN
from emulator.freeswitch.api import ConferenceApi
from emulator.freeswitch.conference_profiles import (
    ConferenceProfile,
    ConferenceProfiles,
    load_conference_profiles,
    max_members_value,
)
from emulator.freeswitch.events import MAINT, Event, EventBuilder, Header
from emulator.freeswitch.model import (
    AnswerState,
    CallState,
    Channel,
    ChannelState,
    Conference,
    HangupCause,
    MediaState,
    Member,
    Recording,
    Refusal,
    TalkPattern,
    tenant_ids,
)
from emulator.freeswitch.recording import Recorder
from emulator.journal import Journal
from emulator.profiles import Profile, Quirk
from emulator.wire.esl import url_encode
from emulator.wire.xml import render_xml

# quirks registered in emulator/profiles.py
QUIRK_PLUS = Quirk.FS_REPLY_WITHOUT_PLUS
QUIRK_GHOST = Quirk.FS_GHOST_UNTIL_MEDIA_TIMEOUT

#: The timer group of a bridge (its SIP core's timers share the node's Timers under another group).
TIMER_GROUP = "bridge"


def _quirk(profile: Profile | None, name: Quirk) -> bool:
    """A quirk's state; the faithful default without a profile."""
    return True if profile is None else profile.on(name)


class Bridge:
    """mod_conference on one FreeSWITCH node."""

    def __init__(self, profiles: ConferenceProfiles | Mapping[str, ConferenceProfile] | None = None, *,
                 domain: str = DEFAULT_DOMAIN, clock: WallClock | None = None,
                 rng: random.Random | None = None, profile: Profile | None = None,
                 recordings_dir: str | Path | None = None, rtp_timeout: float = 300.0,
                 journal: Journal | None = None, hostname: str = "cometbench", ipv4: str = "127.0.0.1",
                 member_ids: Iterator[int] | None = None, talk: TalkPattern | None = None,
                 record_flush: float = 5.0, rtp_hold_timeout: float = 1800.0, timers: Timers | None = None) -> None:
        if profiles is None:
            profiles = load_conference_profiles(variables={"domain": domain, "domain_name": domain})
        elif not isinstance(profiles, ConferenceProfiles):
            profiles = ConferenceProfiles(profiles)
        self.profiles = profiles
        self.domain = domain
        self.clock = clock or WallClock()
        if timers is None:
            timers = Timers(self.clock.monotonic)
        elif timers.clock is not self.clock.monotonic:
            raise ValueError("the bridge's timers must run on its clock's monotonic source")
        #: The node's timers (shared with its SIP core); :meth:`process_due` runs what is due.
        self.timers = timers
        self.rng = rng or random.Random(0)
        self.profile = profile
        self.rtp_timeout = rtp_timeout
        self.rtp_hold_timeout = rtp_hold_timeout
        self.journal = journal or Journal(enabled=False)
        self.talk = talk or TalkPattern()
        self.events = EventBuilder(self.now, core_uuid=self._new_uuid(), hostname=hostname, ipv4=ipv4)
        self.conferences: dict[str, Conference] = {}
        self._member_ids = member_ids if member_ids is not None else itertools.count(1)
        self._own_member_ids = member_ids is None
        self.recorder = Recorder(
            recordings_dir=Path(recordings_dir) if recordings_dir is not None else Path("recordings"),
            now=self.now, timers=timers, journal=self.journal, next_id=lambda: next(self._member_ids),
            emit=self._emit_recording, flush=record_flush,
            group=TIMER_GROUP)
        self.commands = ConferenceApi(self)
        self._members: dict[int, Member] = {}
        self._subscribers: list[Callable[[Event], None]] = []
        self._media_observers: list[Callable[[Member, bool], None]] = []
        # sessions since start-up, as FreeSWITCH's ``status`` counts them: a number, not a set of
        # every uuid ever seen (which grew by one entry per call for the life of the server)
        self._sessions = 0
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
        firing = self.timers.firing
        return self.clock.now() if firing is None else self.clock.at(firing)

    @property
    def core_uuid(self) -> str:
        return self.events.core_uuid

    @property
    def hostname(self) -> str:
        return self.events.hostname

    @property
    def ipv4(self) -> str:
        return self.events.ipv4

    @property
    def recordings_dir(self) -> Path:
        return self.recorder.recordings_dir

    @property
    def recordings(self) -> list[Recording]:
        """Every recording ever started (inspection)."""
        return self.recorder.recordings

    @property
    def record_flush(self) -> float:
        return self.recorder.flush

    @staticmethod
    def conference_name_for(dev_id: int | str, room: str, domain: str = DEFAULT_DOMAIN) -> str:
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

    def add_media_observer(self, callback: Callable[[Member, bool], None]) -> Callable[[], None]:
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

    # -- time ----------------------------------------------------------------------------------------
    def process_due(self) -> int:
        """Run every timer of the node due by now (each at its own due time); returns how many ran."""
        return self.timers.run_due()

    tick = process_due

    def next_due(self) -> float | None:
        """Wall time of the node's next timer, or None."""
        due = self.timers.next_due()
        return None if due is None else self.clock.at(due)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Drive the node's timers (when nothing else does: the stack runs ``timers.run`` itself) and
        write recordings up to the end when cancelled."""
        try:
            await self.timers.run(task_status=task_status)
        finally:
            self.recorder.flush_all()

    def restart(self) -> None:
        """FreeSWITCH restarts: every conference, member, channel and timer is gone without a single
        event (the process died), recordings are closed as they are, member ids start again at 1 and
        the node gets a new Core-UUID.  Subscribers and media observers stay attached (they are the
        transports' and the bench's, which reconnect)."""
        self.restarts += 1
        self.close()
        self.recorder.restart()
        self.conferences.clear()
        self._members.clear()
        self.timers.cancel_group(TIMER_GROUP)
        self._sessions = 0
        if self._own_member_ids:
            self._member_ids = itertools.count(1)
        self.events.restart(self._new_uuid())

    def close(self) -> None:
        """Write recordings up to now and close their files (no events)."""
        self.recorder.close()

    def resolve_record_path(self, path: str) -> Path:
        """Where a recording path lands on disk: under ``recordings_dir``, never outside it."""
        return self.recorder.resolve_path(path)

    # -- events ------------------------------------------------------------------------------------
    def emit(self, conf: Conference, action: str, *, member: Member | None = None,
             extra: Iterable[Header] = ()) -> Event | None:
        """Build and fire a conference event (None when the profile suppresses it)."""
        event = self.events.conference_event(conf, action, member=member, extra=extra)
        if event is not None:
            self._fire(event, conf=conf, member=member)
        return event

    def _emit_recording(self, conf: Conference, action: str, extra: Iterable[Header]) -> None:
        self.emit(conf, action, extra=extra)

    def _fire(self, event: Event, *, conf: Conference | None = None, member: Member | None = None,
              channel: Channel | None = None) -> None:
        if self.journal.enabled:
            channel = channel or (member.channel if member else None)
            dev_id, user_id = tenant_ids(conf.name if conf else "", channel)
            what = event.action or event.name
            where = f" {conf.name}" if conf else ""
            who = f" member={member.id}" if member else (f" uuid={channel.uuid}" if channel else "")
            self.journal.record("freeswitch", "event", direction="out", dev_id=dev_id, user_id=user_id,
                                data=f"{what}{where}{who}")
        for callback in list(self._subscribers):
            callback(event)

    # -- CHANNEL_* events for the SIP layer ------------------------------------------------------
    def channel_event(self, name: str, channel: Channel) -> Event:
        """Build (without firing) a CHANNEL_* event with the channel's data and variables."""
        return self.events.channel_event(name, channel)

    def _channel_fire(self, name: str, channel: Channel) -> Event:
        self._count_session(channel)
        event = self.channel_event(name, channel)
        self._fire(event, channel=channel)
        return event

    def channel_create(self, channel: Channel) -> Event:
        self.process_due()
        if channel.created_at is None:
            channel.created_at = self.now()
        channel.set_states(ChannelState.CS_INIT, CallState.DOWN, AnswerState.RINGING)
        return self._channel_fire("CHANNEL_CREATE", channel)

    def channel_answer(self, channel: Channel) -> Event:
        self.process_due()
        channel.answered_at = self.now()
        if channel.created_at is None:
            channel.created_at = channel.answered_at
        channel.set_states(ChannelState.CS_EXECUTE, CallState.ACTIVE, AnswerState.ANSWERED)
        return self._channel_fire("CHANNEL_ANSWER", channel)

    def channel_hangup(self, channel: Channel, cause: str = HangupCause.NORMAL_CLEARING) -> Event:
        self.process_due()
        self._mark_hungup(channel, cause)
        channel.state = ChannelState.CS_EXECUTE
        return self._channel_fire("CHANNEL_HANGUP", channel)

    def channel_destroy(self, channel: Channel) -> Event:
        self.process_due()
        self._mark_hungup(channel, channel.hangup_cause or HangupCause.NORMAL_CLEARING)
        channel.set_states(ChannelState.CS_DESTROY, CallState.HANGUP, AnswerState.HANGUP)
        return self._channel_fire("CHANNEL_DESTROY", channel)

    def _mark_hungup(self, channel: Channel, cause: str, *, stamp: bool = True) -> None:
        """Channel state for a hung-up call.  ``stamp``: also set ``hangup_at`` (the CHANNEL_HANGUP
        helpers do; the conference paths leave it to the SIP layer, which fires those events when it
        is still None)."""
        if stamp and channel.hangup_at is None:
            channel.hangup_at = self.now()
        if channel.hangup_cause is None:
            channel.hangup_cause = cause
        channel.set_states(ChannelState.CS_HANGUP, CallState.HANGUP, AnswerState.HANGUP)

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
                dev_id, user_id = tenant_ids(conf.name, channel)
                self.journal.record("freeswitch", "refused", dev_id=dev_id, user_id=user_id,
                                    data=f"Conference {conf.name} is full. ({conf.count}/{conf.max_members}) "
                                         f"uuid={channel.uuid}")
            return refusal
        member = Member(id=next(self._member_ids), conference=conf, channel=channel, join_time=int(now),
                        joined_at=now, energy_level=conf.profile.energy_level,
                        talk_rng=random.Random(self.rng.getrandbits(64)))
        member.tone_hz = member.talk_rng.randint(220, 660)
        _apply_member_flags(member, conf.profile.member_flags)
        _apply_member_flags(member, channel.variables.get("conference_member_flags", ""))
        channel.set_states(ChannelState.CS_EXECUTE, CallState.ACTIVE, AnswerState.ANSWERED)
        channel.variables["conference_name"] = conf.name
        channel.variables["conference_member_id"] = str(member.id)
        conf.nodes.insert(0, member)
        self._members[member.id] = member
        self.emit(conf, "add-member", member=member)
        self.update_floor(conf)
        if channel.media_delay is None:
            self._start_rtp_timer(member)
        elif channel.media_delay <= 0:
            self._set_media(member, True)
        else:
            member.media_timer = self.timers.after(channel.media_delay, self._set_media, member, True,
                                                   group=TIMER_GROUP)
        self.recorder.check_auto_record(conf)
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
            value = max_members_value(text)
            if value is not None:
                conf.max_members = value
        self.conferences[name] = conf
        self.emit(conf, "conference-create")
        return conf

    def leave(self, member_id: int, cause: str = HangupCause.NORMAL_CLEARING) -> bool:
        """The caller hung up (BYE from the SIP side): the member leaves.  False if unknown."""
        self.process_due()
        member = self._members.get(member_id)
        if member is None:
            return False
        self._mark_hungup(member.channel, cause, stamp=False)
        self.remove_member(member, cause)
        return True

    def remove_member(self, member: Member, cause: str, *, hangup: bool = False) -> None:
        """The member leaves (``del-member``; the conference ends with its last caller).  ``hangup``:
        FreeSWITCH ends the call (kick, hup, timeout), so the channel's hangup runs (a BYE)."""
        if member.left:
            return
        conf = member.conference
        self.recorder.catch_up(conf)
        member.left, member.left_cause = True, cause
        member.talking, member.score = False, 0
        member.cancel_timers()
        if conf.floor_holder is member:
            self.set_floor(conf, None)
        if conf.video_floor_holder is member:
            self._set_video_floor(conf, None)
        conf.nodes.remove(member)
        self._members.pop(member.id, None)
        self.emit(conf, "del-member", member=member)
        if not conf.members:
            self._destroy(conf)
        else:
            self.update_floor(conf)
        if hangup:
            self._mark_hungup(member.channel, cause, stamp=False)
            member.channel.hangup(cause)

    def _destroy(self, conf: Conference) -> None:
        for rec in conf.recordings:
            self.recorder.stop(conf, rec)
        self.conferences.pop(conf.name, None)
        self.emit(conf, "conference-destroy")

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
            if member.media == MediaState.FLOWING or member.signalling_lost or member.hold:
                return
            if self.media_gate is not None and not self.media_gate(member):
                return  # held back (a partitioned link): the gate's owner starts it later
            member.media, member.media_since, member.media_lost_at = MediaState.FLOWING, now, None
            if member.rtp_timer is not None:
                member.rtp_timer.cancel()
                member.rtp_timer = None
            if self.journal.enabled:
                dev_id, user_id = tenant_ids(member.conference.name, member.channel)
                self.journal.record("freeswitch", "media", dev_id=dev_id, user_id=user_id,
                                    data=f"flowing member={member.id} after {now - member.joined_at:.3f}s")
            if self.talk.enabled and not member.scripted:
                delay = member.talk_rng.uniform(*self.talk.first_silence)
                member.talk_timer = self.timers.after(delay, self._talk_step, member, group=TIMER_GROUP)
        else:
            if member.media == MediaState.DEAD:
                return
            member.media, member.media_lost_at = MediaState.DEAD, now
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
        member.rtp_timer = self.timers.after(timeout, self._rtp_timeout, member, group=TIMER_GROUP)

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
        if member.left or member.media == MediaState.FLOWING:
            return
        self._mark_hungup(member.channel, HangupCause.MEDIA_TIMEOUT, stamp=False)
        self.remove_member(member, HangupCause.MEDIA_TIMEOUT, hangup=True)

    def signalling_lost(self, member_id: int) -> bool:
        """The member's SIP transport closed without a BYE (page refresh, tab closed, network gone).

        Faithful (quirk ``fs_ghost_until_media_timeout`` on): its media stops and it stays until
        ``rtp_timeout`` seconds later, then leaves with MEDIA_TIMEOUT.  Lenient: it leaves now."""
        self.process_due()
        member = self._members.get(member_id)
        if member is None:
            return False
        if self.journal.enabled:
            dev_id, user_id = tenant_ids(member.conference.name, member.channel)
            self.journal.record("freeswitch", "signalling_lost", dev_id=dev_id, user_id=user_id,
                                data=f"member={member.id}")
        self._set_media(member, False)
        member.signalling_lost = True
        if not _quirk(self.profile, QUIRK_GHOST):
            self.remove_member(member, HangupCause.NORMAL_CLEARING, hangup=True)
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
        if member.left or member.media != MediaState.FLOWING or member.scripted:
            return
        rng = member.talk_rng
        if member.talking:
            self._stop_talking(member)
            delay = rng.uniform(*self.talk.silence)
        elif self._start_talking(member, rng.randint(*self.talk.energy)):
            delay = rng.uniform(*self.talk.talk)
        else:
            delay = rng.uniform(*self.talk.silence)
        member.talk_timer = self.timers.after(delay, self._talk_step, member, group=TIMER_GROUP)

    def _start_talking(self, member: Member, energy: int) -> bool:
        if member.left or member.talking or member.media != MediaState.FLOWING or not member.can_speak:
            return False
        conf = member.conference
        self.recorder.catch_up(conf)
        member.talking, member.score, member.last_talking = True, energy, self.now()
        self.emit(conf, "start-talking", member=member)
        self.update_floor(conf)
        return True

    def _stop_talking(self, member: Member) -> None:
        if not member.talking:
            return
        conf = member.conference
        self.recorder.catch_up(conf)
        member.talking, member.score, member.last_talking = False, 0, self.now()
        self.emit(conf, "stop-talking", member=member)
        self.update_floor(conf)

    # -- floor ---------------------------------------------------------------------------------------
    def update_floor(self, conf: Conference) -> None:
        """Hand the floor on as mod_conference's frame loop does (see the module docstring)."""
        if conf.name not in self.conferences:
            return
        candidates = [m for m in conf.members if not m.kicked and not m.left]
        holder = conf.floor_holder
        if holder is None:
            if candidates:
                self.set_floor(conf, candidates[0])
            return
        if holder.talking:
            return
        talking = [m for m in candidates if m.talking and m is not holder]
        if talking:
            self.set_floor(conf, max(talking, key=lambda m: m.score))

    def set_floor(self, conf: Conference, member: Member | None) -> None:
        """Give the audio floor to ``member`` (None: nobody); the video floor follows in passthrough."""
        old = conf.floor_holder
        if old is member:
            return
        conf.floor_holder = member
        self.emit(conf, "floor-change", extra=[("Old-ID", str(old.id) if old else "none"),
                                               ("New-ID", str(member.id) if member else "none")])
        if (member is not None and conf.video_mode == "passthrough" and member.has_video
                and conf.video_floor_holder is not member):
            self._set_video_floor(conf, member)

    def _set_video_floor(self, conf: Conference, member: Member | None) -> None:
        old = conf.video_floor_holder
        if old is member:
            return
        conf.video_floor_holder = member
        self.emit(conf, "video-floor-change", extra=[("Old-ID", str(old.id) if old else "none"),
                                                     ("New-ID", str(member.id) if member else "none")])

    # -- the API -----------------------------------------------------------------------------------
    def api(self, command_line: str) -> str:
        """``api conference ...`` as mod_conference answers it (the leading word ``conference``
        optional); see :mod:`emulator.freeswitch.api`."""
        self.process_due()
        return self.commands(command_line)


def _apply_member_flags(member: Member, flags: str) -> None:
    """``member-flags`` of the profile or ``conference_member_flags`` of the channel."""
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


__all__ = [
    "Bridge", "Channel", "Member", "Conference", "Recording", "Refusal", "Event", "TalkPattern", "MediaState",
    "url_encode", "render_xml", "QUIRK_PLUS", "QUIRK_GHOST", "MAINT", "TIMER_GROUP",
]
