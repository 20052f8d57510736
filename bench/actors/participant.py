"""A participant: one person in a video call, with the app backend, a browser page and its timings.

A :class:`Participant` ties the actors together the way the demo app does (video-call-flow.md 2):

* the **app** (:class:`~bench.actors.backend.App`) authorises the user and invites them into rooms
  over CometQL (its connections carry ``client="backend"``: the app server's own link, not the
  browser's; the page's AJAX round trip to the app server is ``app_request_rtt``, 0 by default);
* the **page** -- a :class:`~bench.clients.comet.CometClient` (CometServerApi.js 4.08, with its 1.2 s
  tab-election wait) and a :class:`~bench.clients.video.VideoClient` (cometVideoApi.js), which opens
  JsSIP user agents (:class:`~bench.clients.sip_ua.SipPhone`) towards the node named in the push;
* the **media model** -- on the in-process stack, the fake FreeSWITCH's bridge says when this
  member's media flows (:meth:`emulator.freeswitch.conference.Bridge.add_media_observer`); against
  an external target nothing can be observed and the first remote frame falls back to the moment
  the remote video is attached (the mark says ``"media": "unobserved"``).

Operations a scenario needs: :meth:`Participant.open_page`, :meth:`join` (the app invites the user;
the page accepts according to the accept policy: at once, after a decision delay, or when the
scenario calls :meth:`accept`), :meth:`hangup`, :meth:`leave`, :meth:`mute_audio`,
:meth:`mute_video`, :meth:`hold`, :meth:`resume`, :meth:`refresh` (the page reloads: every
connection vanishes without a goodbye and a new page starts), :meth:`close_tab`, and the
:meth:`go_offline` / :meth:`go_online` hooks.

Every latency stage of video-call-flow.md section 7 that can be observed is recorded as a **mark**:
in :attr:`Participant.marks` (mark name -> trio time of its first occurrence in the current join)
and in the journal (service ``bench``, kind ``mark``, data a compact JSON object with ``actor``,
``room``, ``call`` (the callKey), ``mark`` and ``t``).  The vocabulary and the stage intervals built
from it are in :data:`MARKS` / :data:`STAGES` and docs/stages.md.

Listeners (:attr:`Participant.listeners`, ``listener(name, t, data)``) hear everything above as it
happens -- marks, page events, the video client's other observations (``received`` for each
callPipe event, ``session_ended``, ``rejoin_ignored`` ...) and every app callback under its
JavaScript name (``onCall``, ``onCallStart``, ``onOut`` ...): the scenario timeline is built from
them (``bench/scenario``).  :meth:`Participant.join` takes ``at``, the intended moment of the click
when a schedule fixes it; ``join_total`` then counts from that moment.

Randomness: one ``random.Random`` per participant seeded from ``(seed, actor name)``, from which
every client's generator is drawn in a fixed order, and a seeded Faker for the display name.  Time:
trio's clock only.  Every task lives in the nursery of :func:`open_participant`.
"""

from __future__ import annotations

import json
import random
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio
import trio.lowlevel

from bench.actors.backend import App, Backend
from bench.clients.comet import START_TIMER_MS, CometClient
from bench.clients.quirks import ClientQuirks
from bench.clients.video import VideoClient
from bench.clients.webrtc import DeviceTimings
from emulator.config import DEFAULT_PASSWORD
from emulator.net.network import Network

__all__ = ["Target", "Participant", "open_participant", "MARKS", "STAGES", "MEDIA_STAGES", "ALL_STAGE_NAMES",
           "stage_values", "actor_rng",
           "JS_CALLBACKS", "callback_data"]

class CallView(Protocol):
    """What a join's marks read of a call: the virtual client's :class:`bench.clients.video.CallState`
    or a real page's mirror of it (:class:`bench.browser.participant.PageCall`)."""

    @property
    def room(self) -> str: ...

    @property
    def call_key(self) -> str: ...

    @property
    def sys(self) -> dict: ...


#: Every mark, in the order a join normally produces them (docs/stages.md).
MARKS = (
    "backend_invite_start",   # the app starts the invitation (the intended start; click on Join)
    "backend_insert_sent",    # the INSERT INTO conference left the backend
    "backend_invite_ok",      # CometQL answered OK
    "push_received",          # msg.sys_sipCall reached the page
    "on_call",                # onCall fired
    "accept_call",            # acceptCall ran (the decision)
    "subscribed",             # the subscription frame carrying the callPipe left the page
    "gum1",                   # getUserMedia #1 succeeded
    "accept_sent",            # accept {start_accept} sent on the callPipe
    "ua_created",             # new JsSIP.UA
    "sip_connected",          # its WebSocket is open
    "registered",             # REGISTER answered 200
    "gum2",                   # getUserMedia #2 succeeded
    "sip_invite_sent",        # the first INVITE left (ICE gathering done)
    "answered",               # 200 OK to the INVITE
    "ice_connected",          # real media: the page's ICE connected (iceConnectionState connected/completed)
    "dtls_connected",         # real media: the page's peer connection connected (DTLS done)
    "addstream",              # the remote stream appeared (SRD)
    "media_self",             # mediaStart {self} sent
    "call_start",             # onCallStart
    "video_attached",         # the 300 ms poll attached the remote video
    "media_flowing",          # the bridge's media model: this member's media flows
    "first_remote_frame",     # max(video_attached, media_flowing): both sides see each other
    "call_end",               # onCallEnd
    "hangup",                 # hangup() ran
)

#: Stage name -> (start mark, end mark).  L0-L11 follow video-call-flow.md section 7.
STAGES: dict[str, tuple[str, str]] = {
    "backend_invite": ("backend_invite_start", "backend_invite_ok"),      # L0
    "push": ("backend_insert_sent", "push_received"),                     # L1
    "subscribe": ("on_call", "subscribed"),                               # L2
    "decision": ("on_call", "accept_call"),                               # L3 (not system latency)
    "gum1": ("accept_call", "gum1"),                                      # L4
    "sip_transport": ("ua_created", "sip_connected"),                     # L5
    "register": ("sip_connected", "registered"),                          # L6
    "gum2": ("registered", "gum2"),                                       # L7
    "offer": ("gum2", "sip_invite_sent"),                                 # L8
    "call_setup": ("sip_invite_sent", "answered"),                        # L9
    "self_media": ("answered", "media_self"),                             # L10
    "peer_handshake": ("media_self", "call_start"),                       # L11
    "media": ("answered", "media_flowing"),                               # L12-L14
    "first_remote_frame": ("answered", "first_remote_frame"),             # L12-L14 to the first picture
    "join_total": ("backend_invite_start", "first_remote_frame"),
}
#: Every stage a report or ``--stage`` may name: the stages above and ``system`` (the latency the
#: system adds to a join: join_total without the user's decision).
#: Stages only a real page with real media has (``media = "real"``; docs/stages.md): L12 and L13 measured.
MEDIA_STAGES: dict[str, tuple[str, str]] = {
    "ice_connected": ("answered", "ice_connected"),
    "dtls_connected": ("answered", "dtls_connected"),
}
STAGE_NAMES: tuple[str, ...] = (*STAGES, "system")
#: The stages a report, a threshold or a story may name: those above and the real-media ones.
ALL_STAGE_NAMES: tuple[str, ...] = (*STAGES, *MEDIA_STAGES, "system")


#: cometVideoApi's callback names (video.py's Python names -> the JavaScript option names the seed uses).
JS_CALLBACKS = {"on_call": "onCall", "on_call_accept": "onCallAccept", "on_call_start": "onCallStart",
                "on_call_end": "onCallEnd", "on_out": "onOut", "on_in": "onIn", "toggle_mute": "toggleMute",
                "on_toggle_mute": "onToggleMute", "toggle_hold": "toggleHold"}


def callback_data(arg: dict) -> dict:
    """The scalar fields of a callback's argument (status, user_id, isMute, time, fullTime, ...),
    plus the room of its callInfo: what a timeline keeps of it."""
    out: dict[str, Any] = {}
    for key, value in arg.items():
        if isinstance(value, float) and value != value:
            out[key] = None          # NaN (onCallEnd's time of a call that never started)
        elif isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
    info = arg.get("callInfo")
    if isinstance(info, dict):
        sys = info.get("sys") if "sys" in info else (info.get("data") or {}).get("sys")
        if isinstance(sys, dict):
            out["room"] = str(sys.get("conference_name", ""))
            out["call"] = str(sys.get("callKey", ""))
    return out


def stage_values(marks: dict[str, float]) -> dict[str, float]:
    """Milliseconds per stage for which both marks exist (``join_total`` starts at the push when
    someone else invited the user); ``system`` is ``join_total`` without the human decision."""
    out: dict[str, float] = {}
    for name, (start, end) in (STAGES | MEDIA_STAGES).items():
        if name == "join_total" and start not in marks:
            start = "push_received"
        if start in marks and end in marks:
            out[name] = round((marks[end] - marks[start]) * 1000.0, 3)
    if "join_total" in out:
        out["system"] = round(out["join_total"] - out.get("decision", 0.0), 3)
    return out


def actor_rng(seed: int | str, actor: str) -> random.Random:
    """The one generator of an actor: seeded from the run seed and the actor name (SHA-512 of the
    text, so it is the same in every process whatever ``PYTHONHASHSEED`` is)."""
    return random.Random(f"{seed}:{actor}")


@dataclass
class Target:
    """Where the actors connect: the comet WebSocket node, CometQL, the tenant and its password.

    The SIP node comes from each push (serverName/serverPort).  ``ssl_context`` is used for SIP over
    WSS; ``bridge`` (the in-process fake FreeSWITCH) lets participants observe their media;
    ``journal`` receives the marks."""

    ws_host: str
    ws_port: int
    cometql_host: str
    cometql_port: int
    dev_id: int
    password: str = DEFAULT_PASSWORD
    ws_prefix: str = ""
    ssl_context: ssl.SSLContext | None = None
    sip_secure: bool = True
    bridge: Any = None
    journal: Any = None

    @property
    def node(self) -> str:
        return f"{self.ws_host}:{self.ws_port}{self.ws_prefix}"

    @classmethod
    def from_stack(cls, stack: Any, dev_id: int = 15) -> Target:
        """The in-process emulator of ``emulator.stack.open_stack``."""
        host = stack.config.host
        certificates = stack.certificates
        return cls(host, stack.ports["ws"], host, stack.ports["cometql"], dev_id, password=stack.config.password,
                   ssl_context=certificates.client_context() if certificates is not None else None,
                   sip_secure=bool(getattr(stack.config, "sip_tls", True)), bridge=stack.bridge,
                   journal=stack.journal)


@dataclass
class Page:
    """One loaded page (tab): its clients and the cancel scope that ends them all."""

    number: int
    comet: CometClient
    video: VideoClient
    scope: trio.CancelScope
    opened_at: float
    closed_at: float | None = None


@dataclass
class Join:
    """One attempt to be in a room: the marks from the invitation to the first remote frame."""

    room: str
    started: float
    restoring: bool = False
    marks: dict[str, float] = field(default_factory=dict)
    call_key: str = ""



_FAKER: Any = None


def fake_name(seed: int) -> str:
    """A person's name from Faker, the same for the same seed.

    One Faker instance serves every participant, seeded again for each name: an instance costs
    about 40 KB and 3 ms to build (its providers), so one per participant made a thousand pages pay
    40 MB and 3 s for a name each.  ``seed_instance`` gives the instance its own ``random.Random``
    seeded afresh, so the name depends on ``seed`` only, not on the names drawn before it.
    """
    global _FAKER
    if _FAKER is None:
        from faker import Faker  # imported here: it is slow to import and only names need it

        _FAKER = Faker()
    _FAKER.seed_instance(seed)
    return _FAKER.name()


class Participant:
    """A doctor or a patient: user id, display name, app, page, marks."""

    _change_event: trio.Event | None = None   # made only while someone waits (see _notify)

    def __init__(self, target: Target, network: Network, *, user_id: int, nursery: trio.Nursery | None = None,
                 role: str = "patient", actor: str | None = None, seed: int | str = 0, app: App | None = None,
                 quirks: ClientQuirks | None = None, timings: DeviceTimings | None = None,
                 accept: str = "auto", decision_delay: float = 0.0, call_type: str = "video",
                 tab_election: float = START_TIMER_MS / 1000, fresh_connection: bool = True,
                 bandwidth: tuple[int, int] | None = None, journal: Any = None,
                 page_url: str = "http://localhost/video-chat", callbacks: dict[str, Any] | None = None,
                 app_request_rtt: float = 0.0, history: int | None = None) -> None:
        if accept not in ("auto", "manual"):
            raise ValueError(f"accept must be 'auto' or 'manual', not {accept!r}")
        if decision_delay < 0:
            raise ValueError("decision_delay must be >= 0")
        if app_request_rtt < 0:
            raise ValueError("app_request_rtt must be >= 0")
        if call_type not in ("video", "audio"):
            raise ValueError(f"call_type must be 'video' or 'audio', not {call_type!r}")
        self.target = target
        self.network = network
        self.user_id = int(user_id)
        self.role = role
        self.actor = actor or f"{role}{user_id}"
        self.seed = seed
        self.rng = actor_rng(seed, self.actor)
        self.display_name = fake_name(self.rng.getrandbits(64))
        self.quirks = quirks or ClientQuirks()
        self.timings = timings or DeviceTimings()
        self.accept_policy = accept
        self.decision_delay = decision_delay
        self.call_type = call_type
        self.tab_election = tab_election
        self.bandwidth = bandwidth
        self.page_url = page_url
        self.app_request_rtt = app_request_rtt   # the page's AJAX round trip to the app server (L0)
        if history is not None and history < 1:
            raise ValueError(f"history must be None (keep everything) or >= 1, not {history!r}")
        # how many raw frames/messages each page's comet client keeps (CometClient's ``history``):
        # None keeps all (tests read them whole); a bound keeps a long call or a thousand pages small
        self.history = history
        self.callbacks = dict(callbacks or {})   # more cometVideoApi callbacks (on_in, on_toggle_mute ...)
        if {"on_call", "on_call_end"} & set(self.callbacks):
            raise ValueError("on_call and on_call_end belong to the participant; observe them via video.callbacks")
        self.journal = journal if journal is not None else target.journal
        self.app = app or App(Backend(network, target.cometql_host, target.cometql_port, dev_id=target.dev_id,
                                      password=target.password, name="backend", fresh_connection=fresh_connection,
                                      rng=random.Random(self.rng.getrandbits(64))))
        self.user_key: str | None = None
        self.page: Page | None = None
        self.pages: list[Page] = []
        self.joins: list[Join] = []
        self.current: Join | None = None
        self._nursery_or_none = nursery
        self._restoring: set[str] = set()
        self._early_media: tuple[Join, int] | None = None   # media reported before the page had the 200 OK
        self._media_observer_remove = None
        # listeners(name, t, data): every mark, page event, other observation of the video client and
        # app callback (by its JavaScript name), as it happens (the scenario timeline's hook)
        self.listeners: list[Any] = []
        if target.bridge is not None:
            self._media_observer_remove = target.bridge.add_media_observer(self.on_media)
        self.closed = False

    @property
    def _nursery(self) -> trio.Nursery:
        if self._nursery_or_none is None:
            raise RuntimeError("the participant has no nursery: use open_participant() or pass nursery=")
        return self._nursery_or_none

    # -- identity --------------------------------------------------------------------------------
    @property
    def sip_user(self) -> str:
        return f"{self.target.dev_id:06d}{self.user_id}"

    @property
    def video(self) -> VideoClient:
        if self.page is None:
            raise RuntimeError(f"{self.actor} has no open page")
        return self.page.video

    @property
    def comet(self) -> CometClient:
        if self.page is None:
            raise RuntimeError(f"{self.actor} has no open page")
        return self.page.comet

    @property
    def marks(self) -> dict[str, float]:
        """Marks of the current join (empty before the first)."""
        return self.current.marks if self.current is not None else {}

    def stages(self) -> dict[str, float]:
        """Stage durations (ms) of the current join."""
        return stage_values(self.marks)

    # -- page lifecycle ----------------------------------------------------------------------------
    async def open_page(self, *, wait_auth: bool = True, timeout: float | None = 30.0) -> Page:
        """Load the page: the app authorises the user (auth.php), then cometVideoApi.start and
        cometApi.start (the 1.2 s tab election first).  With the app's restore on, the page then
        re-joins the rooms the app believes the user is in."""
        if self.page is not None:
            raise RuntimeError(f"{self.actor} already has an open page (use refresh())")
        if self.user_key is None:
            self.user_key = await self.app.authorize(self.user_id)
        page = await self._nursery.start(self._run_page)
        self.page = page
        if wait_auth:
            with trio.fail_after(timeout) if timeout is not None else trio.CancelScope():
                await page.comet.wait_server_info(timeout=None)
        if self.app.restore and self.app.rooms_of(self.user_id):
            self._nursery.start_soon(self.app.restore_on_page_load, self)
        return page

    async def _run_page(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        number = len(self.pages) + 1
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                comet = CometClient(self.network, self.target.node, nursery=nursery, user_key=self.user_key,
                                    user_id=self.user_id, dev_id=self.target.dev_id,
                                    rng=random.Random(self.rng.getrandbits(64)), name=self.actor,
                                    start_delay=self.tab_election, page_url=self.page_url,
                                    history=self.history)
                video = VideoClient(comet, nursery=nursery, network=self.network,
                                    rng=random.Random(self.rng.getrandbits(64)), name=self.actor, quirks=self.quirks,
                                    timings=self.timings, ssl_context=self.target.ssl_context,
                                    secure=self.target.sip_secure, observer=self._observe)
                if self.bandwidth is not None:
                    video.set_bandwidth(*self.bandwidth)
                video.listeners.append(self._on_callback)
                comet.on_connection = self._on_comet_connection
                video.start(on_call=self._on_call, on_call_end=self._on_call_end, **self.callbacks)
                comet.start()
                page = Page(number, comet, video, scope, trio.current_time())
                self.pages.append(page)
                task_status.started(page)
                await trio.sleep_forever()

    def _close_page(self) -> None:
        page = self.page
        if page is None:
            return
        self.page = None
        page.closed_at = trio.current_time()
        page.video.close()
        page.comet.shutdown()
        page.scope.cancel()

    async def refresh(self, *, wait_auth: bool = True) -> Page:
        """The page reloads: its WebSockets (comet and every SIP UA) vanish without a goodbye, its call
        state is gone, and a new page starts (auth, the tab-election wait, a new video client)."""
        self._mark_event("page_refresh")
        self._close_page()
        await trio.lowlevel.checkpoint()
        return await self.open_page(wait_auth=wait_auth)

    def close_tab(self) -> None:
        """The tab closes: every connection vanishes without a goodbye; no new page."""
        if self.page is not None:
            self._mark_event("tab_closed")
        self._close_page()

    def go_offline(self) -> None:
        """Hook for link faults: the browser reports ``navigator.onLine = false`` (the comet client
        stops reconnecting until back online).  Link conditions on the network seam do the rest."""
        if self.page is not None:
            self.page.comet.go_offline()
        self._mark_event("offline")

    def go_online(self) -> None:
        if self.page is not None:
            self.page.comet.go_online()
        self._mark_event("online")

    def close(self) -> None:
        """The participant leaves the run: page closed, media observer removed."""
        if self.closed:
            return
        self.closed = True
        self._close_page()
        if self._media_observer_remove is not None:
            self._media_observer_remove()
            self._media_observer_remove = None

    # -- call operations -------------------------------------------------------------------------
    async def join(self, room: str, *, profile: str = "video", message: str = "{}", restoring: bool = False,
                   at: float | None = None) -> None:
        """The user clicks Join: the app invites the user into ``room`` (call.php's INSERT).  The
        call itself proceeds in the page; wait for it with :meth:`wait_call_start`.

        ``at``: the intended moment of the click (trio time) when a schedule fixes it (a storm, a
        repeated run): the call waits until then, and ``backend_invite_start`` -- where ``join_total``
        starts -- is that moment even if this task only gets to run later, so a busy bench counts its
        own lateness instead of hiding it (no coordinated omission)."""
        room = self.app.backend.room_name(str(room))   # the deployment's name (bench/actors/backend.py)
        if at is not None and at > trio.current_time():
            await trio.sleep_until(at)
        started = trio.current_time() if at is None else at
        join = Join(str(room), started, restoring=restoring)
        self.joins.append(join)
        self.current = join
        if restoring:
            self._restoring.add(str(room))
        extra: dict[str, Any] = {"restoring": True} if restoring else {}
        self._mark("backend_invite_start", room=room, at=started, **extra)
        if self.app_request_rtt:   # the page's AJAX request to call.php travels to the app server
            await trio.sleep(self.app_request_rtt / 2)
        await self.app.invite(str(room), self.user_id, profile=profile, message=message,
                              on_sent=lambda: self._mark("backend_insert_sent", room=room))
        if self.app_request_rtt:   # ... and call.php's answer back to the page
            await trio.sleep(self.app_request_rtt / 2)
        self._mark("backend_invite_ok", room=room)

    def accept(self) -> bool:
        """Accept the ringing call now (manual accept policy)."""
        return self.video.accept_call(self.call_type)

    def hangup(self) -> None:
        """The Hangup button: ``cometVideoApi.hangup()`` (the invitation row stays)."""
        if self.page is not None:
            self.page.video.hangup()

    async def leave(self, room: str | None = None) -> None:
        """A deliberate leave: hang up, then the app deletes the invitation."""
        room = self.app.backend.room_name(str(room)) if room is not None else \
            (self.current.room if self.current is not None else None)
        self.hangup()
        if room is not None:
            await self.app.leave(str(room), self.user_id)

    def mute_audio(self, mute: bool = True) -> bool | None:
        return self.video.mute_audio(mute)

    def mute_video(self, mute: bool = True) -> bool | None:
        return self.video.mute_video(mute)

    def is_on_hold(self) -> bool:
        call = self.video.active
        return bool(call is not None and call.session is not None and call.session.local_hold)

    def hold(self) -> None:
        """``cometVideoApi.toggleHold()`` when the call is not on hold (the only hold API the app
        has; with quirk ``toggle_hold_never_resumes`` it holds and can never resume)."""
        if not self.is_on_hold():
            self.video.toggle_hold()

    def resume(self) -> None:
        """``cometVideoApi.toggleHold()`` when the call is on hold."""
        if self.is_on_hold():
            self.video.toggle_hold()

    async def wait_call_start(self, timeout: float | None = 30.0) -> None:
        """Wait for onCallStart of the current join."""
        await self.wait_mark("call_start", timeout=timeout)

    async def wait_mark(self, name: str, *, timeout: float | None = 30.0) -> float:
        """Wait until the current join has mark ``name``; its time."""
        with trio.fail_after(timeout) if timeout is not None else trio.CancelScope():
            while name not in self.marks:
                await self._changed().wait()
        return self.marks[name]

    # -- page callbacks ----------------------------------------------------------------------------
    def _on_call(self, arg: dict) -> None:
        page = self.page
        if page is None:
            return
        call = page.video.last
        room = call.room if call is not None else ""
        if room in self._restoring:  # the app's restore accepts at once, without asking
            self._restoring.discard(room)
            page.video.accept_call(self.call_type)
            return
        if self.accept_policy != "auto":
            return
        if self.decision_delay > 0:
            async def decide() -> None:
                await trio.sleep(self.decision_delay)
                if self.page is page and page.video.last is call:
                    page.video.accept_call(self.call_type)

            self._nursery.start_soon(decide)
        else:
            page.video.accept_call(self.call_type)

    def _on_call_end(self, info: dict) -> None:
        status = info.get("status")
        page = self.page
        call = page.video.calls.get(info["callInfo"]["sys"].get("callPipe")) if page is not None else None
        room = call.room if call is not None else (self.current.room if self.current is not None else "")
        if room and self.app.on_call_end(self, room, status):   # the app's hangup() runs here, synchronously
            self._nursery.start_soon(self.app.rejoin, self, room, f"call end: {status}")

    # -- marks -----------------------------------------------------------------------------------------
    def _observe(self, name: str, call: CallView | None, data: dict) -> None:
        """The video client's observations -> marks of the join they belong to.  ``data`` may carry
        ``at``, the trio time of a moment observed elsewhere (a real browser's page clock, mapped:
        bench/browser), and ``service``, the journal service of the mark (default ``bench``)."""
        at = data.pop("at", None)
        service = data.pop("service", "bench")
        journal_extra = data.pop("journal", None)   # fields for the journal record only
        now = trio.current_time() if at is None else at
        room = call.room if call is not None else (self.current.room if self.current is not None else "")
        if name == "push_received":
            if self.current is None or self.current.room != room or "push_received" in self.current.marks:
                join = Join(room, now)  # invited by someone else, or a second push
                self.joins.append(join)
                self.current = join
            self.current.call_key = call.call_key if call is not None else ""
        if name in MARKS:
            self._mark(name, room=room, call=call, at=at, service=service, journal=journal_extra, **data)
            early = self._early_media
            if name == "answered" and early is not None:
                self._early_media = None
                if early[0] is self.current and "media_flowing" not in self.current.marks:
                    self._mark("media_flowing", room=room, call=call, member=early[1], early=True, at=at)
        elif self.listeners:
            self._emit(name, now, {"room": room, "call": call.call_key if call is not None else "", **data})
        if name == "video_attached":
            self._first_frame_check()
        elif name == "ua_created" and self.page is not None:
            phone = getattr(self.page.video, "phone", None)
            if phone is not None:
                ua = len(self.page.video.phones)   # its transport closes too
                phone.on("disconnected", lambda event: self._page_event("sip_disconnected", ua=ua))
        self._notify()

    def on_media(self, member: Any, flowing: bool) -> None:
        """The bridge's media observer (:meth:`Bridge.add_media_observer`): this participant's member
        started (or stopped) media.

        The model counts from the moment FreeSWITCH answered; a page slowed down by a busy machine
        (real time, a join storm) may handle that 200 OK later than the model's delay.  Media
        cannot flow before the browser has the answer, so media reported early is kept and marked
        when the page's ``answered`` comes."""
        join = self.current
        if not flowing or join is None or "media_flowing" in join.marks:
            return
        channel = member.channel
        if channel.caller_id_name != self.sip_user:
            return
        call = self.page.video.active if self.page is not None else None
        if call is None or str(call.sys.get("sipNumber")) != channel.destination_number:
            return
        if "answered" not in join.marks:
            self._early_media = (join, member.id)
            return
        self._mark("media_flowing", room=join.room, call=call, member=member.id)
        self._first_frame_check()
        self._notify()

    def _first_frame_check(self) -> None:
        marks = self.marks
        if "first_remote_frame" in marks or "video_attached" not in marks:
            return
        call = self.page.video.active if self.page is not None else None
        room = self.current.room if self.current is not None else ""
        if self.target.bridge is None:
            self._mark("first_remote_frame", room=room, call=call, media="unobserved")
        elif "media_flowing" in marks:
            self._mark("first_remote_frame", room=room, call=call, media="bridge",
                       at=max(marks["video_attached"], marks["media_flowing"]))

    def _mark(self, name: str, *, room: Any = "", call: CallView | None = None, at: float | None = None,
              service: str = "bench", journal: dict | None = None, **data: Any) -> None:
        now = trio.current_time() if at is None else at
        join = self.current
        if join is not None:
            join.marks.setdefault(name, now)
        if self.listeners:
            self._emit(name, now, {"room": str(room), "call": call.call_key if call is not None else
                                   (join.call_key if join is not None else ""), **data})
        if self.journal is not None and getattr(self.journal, "enabled", False):
            record = {"actor": self.actor, "room": str(room), "call": call.call_key if call is not None else
                      (join.call_key if join is not None else ""), "mark": name, "t": round(now, 6)}
            record.update({k: v for k, v in data.items() if v is not None})
            record.update(journal or {})
            text = json.dumps(record, separators=(",", ":"), sort_keys=True, default=str)
            if service == "browser":     # observed in a real browser's page (bench/browser)
                self.journal.record("browser", "mark", dev_id=self.target.dev_id, user_id=self.user_id, data=text)
            else:
                self.journal.record("bench", "mark", dev_id=self.target.dev_id, user_id=self.user_id, data=text)
        self._notify()

    def _mark_event(self, name: str) -> None:
        """A page-level event (refresh, tab closed, offline): journal only, not a join mark."""
        if self.listeners:
            self._emit(name, trio.current_time(), {})
        if self.journal is not None and getattr(self.journal, "enabled", False):
            record = {"actor": self.actor, "mark": name, "t": round(trio.current_time(), 6)}
            self.journal.record("bench", "mark", dev_id=self.target.dev_id, user_id=self.user_id,
                                data=json.dumps(record, separators=(",", ":"), sort_keys=True))

    def _on_comet_connection(self, kind: str, data: dict) -> None:
        """The page's comet WebSocket opened or closed (``comet_open`` / ``comet_close``)."""
        self._page_event(f"comet_{kind}", **data)

    def _page_event(self, name: str, **data: Any) -> None:
        """A transport event of the page for the listeners (the scenario timeline); not a mark."""
        if self.listeners:
            self._emit(name, trio.current_time(), data)

    def _on_callback(self, name: str, arg: dict, at: float | None = None) -> None:
        """An app callback of the page fired (the video client's listener; ``at``: when, if it was
        observed elsewhere)."""
        if self.listeners:
            self._emit(JS_CALLBACKS.get(name, name), trio.current_time() if at is None else at, callback_data(arg))

    def _emit(self, name: str, t: float, data: dict) -> None:
        for listener in list(self.listeners):
            listener(name, t, data)

    def _changed(self) -> trio.Event:
        event = self._change_event
        if event is None:
            event = self._change_event = trio.Event()
        return event

    def _notify(self) -> None:
        # an Event exists only while someone waits (a callPipe event used to make a new one each)
        event = self._change_event
        if event is not None:
            self._change_event = None
            event.set()


@asynccontextmanager
async def open_participant(target: Target, network: Network, **kwargs: Any) -> AsyncIterator[Participant]:
    """A :class:`Participant` with its own nursery; leaving the block closes its tab (no goodbye)
    and cancels every task it started."""
    participant = Participant(target, network, **kwargs)   # bad arguments fail here, outside the nursery
    async with trio.open_nursery() as nursery:
        participant._nursery_or_none = nursery
        try:
            yield participant
        finally:
            participant.close()
            nursery.cancel_scope.cancel()
