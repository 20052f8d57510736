"""A virtual cometVideoApi.js 1.0: the browser's video-call state machine, on the virtual comet client.

What a page does between ``cometVideoApi.start({...callbacks})`` and the end of a call (spec
video-call-flow.md sections 2.4-2.11, 3 and 6; real-video-client.md sections 3-5), reproduced so
that latency and recovery are measured with a client that behaves like the real one:

* **start** -- waits for the comet login, then subscribes ``msg.sys_sipCall``; a failed login leaves
  the video API silent, as in the browser.
* **onCall** -- the push is parsed (``message`` JSON-decoded, then after ``stripslashes``), the ping
  heartbeat starts at once (first loneliness timeout 60 s), the callPipe is subscribed (the comet
  client's 50 ms debounce applies) and ``onCall({data: message})`` runs.  A push for the pipe of the
  call already active is the "already in this conference" branch: ``accept {status: start_accept}``
  and ``pong``, no onCall.
* **acceptCall** -- refused while a call is active; ``pong``, the ``track_<callPipe>`` subscription,
  getUserMedia #1 (``DeviceTimings.gum_first``), ``accept {status: start_accept, type}``, then a **new
  JsSIP UA per acceptCall** (SIP user ``<dev_id padded to 6><user_id>``, password = the comet
  server's ``real_user_key``, ``wss://serverName:serverPort``).  On ``registered``: ``_sipCall``
  (retried every 500 ms while the UA is not registered and connected), getUserMedia #2, then the
  INVITE with an offer from :mod:`bench.clients.webrtc`; every SDP passes cometVideoApi's ``sdp``
  listener, which rewrites the ``b=AS`` lines (:meth:`VideoClient.set_bandwidth`).
* **onCallStart** -- ``addstream`` sends ``mediaStart {status: self}``; a peer's ``mediaStart``
  records the interlocutor and, when our media is up and it was not an ``answer``, we reply
  ``mediaStart {status: answer}``; onCallStart fires once per call when both are up (or at once in
  stream mode).  The remote video is "attached" by a 300 ms interval that waits for onCallStart.
* **onCallAccept** -- the first peer ``accept`` when our user is the call's ``caller_id``; an
  ``accept`` from our own user id (another tab or device took the call) ends this one silently
  (``onCallEnd {status: start_accept}``, no ``out``).
* **onCallEnd** -- statuses ``hangup``, ``terminated``, ``registration-failure``, ``no-media-stream``
  and ``start_accept``; ``time`` = ms since onCallStart (NaN if it never started, 0 for busy),
  ``fullTime`` = ms since acceptCall.  **onOut** -- a peer's ``out`` (conference mode: the call
  goes on and the ping restarts).
* **Heartbeat** -- ``ping`` after 1 s without any callPipe event, rescheduled by every event;
  accepted members answer ``pong``; the loneliness timer is re-armed by every ping and its expiry
  does nothing (the real callback returns first).
* **hangup / busy / mute / hold** -- ``out {status: hangup, callKey}``; the local handlers are
  dropped (the server subscription stays); BYE or CANCEL through JsSIP.  ``busy()`` sends
  ``out {status: busy}``.  ``muteAudio``/``muteVideo`` mute locally and send ``toggleMute
  {isMute}``; ``toggleMute()`` sends nothing; ``toggleHold()`` never signals.
* **Every callPipe event is sent 3 times** (0, 1, 2 s) with one ``_cometApi_uuid``, and received
  copies are de-duplicated: both are the comet client's ``multi_web_pipe_send`` and receive path.

The real client's known bugs are client quirks (``bench/clients/quirks.py``, on by default).

An observer callback (``observer(name, call, data)``) is told every moment the latency stages of
video-call-flow.md section 7 need (``push_received``, ``on_call``, ``subscribed``, ``accept_call``,
``gum1``, ``ua_created``, ``sip_connected``, ``registered``, ``gum2``, ``sip_invite_sent``,
``answered``, ``media_self``, ``call_start``, ``video_attached``, ``call_end`` ...); the participant
actor turns them into journal marks (docs/stages.md).  It is also told ``received`` (data ``event``,
``user_id`` and the payload's status/type/callKey/isMute/isHold) for every callPipe event the page's
handler takes, once per logical event.  :attr:`VideoClient.listeners` are told every app callback as
it fires (``on_call`` ... ``toggle_hold``), whether or not the page defined it: the scenario
timeline (``bench/scenario``) hears the page through these two hooks.

Timers are trio tasks in the page's nursery and read trio's clock; the only randomness is the comet
client's and the SIP phones' seeded generators.  Deviations: callbacks that raise propagate (the
bench should fail loudly); a JavaScript TypeError that would abort a callback is recorded in
:attr:`VideoClient.console` and the callback returns.
"""

from __future__ import annotations

import copy
import math
import random
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from bench.clients.comet import UNDEFINED, CometClient, CometMessage, js_json_parse, stripslashes
from bench.clients.quirks import ClientQuirk, ClientQuirks
from bench.clients.sip import Event, InvalidStateError, Session, UAConfig
from bench.clients.sip_ua import SipPhone
from bench.clients.timers import Timer
from bench.clients.webrtc import DeviceTimings
from emulator.net.network import Network

__all__ = ["VideoClient", "CallState", "rewrite_bandwidth", "LONELINESS_TIMEOUT", "ALONE_TIME"]

LONELINESS_TIMEOUT = 60.0   # cometVideoApi.opt.lonelinessTimeout, the first ping's
ALONE_TIME = 5.0            # cometVideoApi.opt.alone_time
PING_INTERVAL = 1.0         # pingUpdate
SIP_CALL_RETRY = 0.5        # _sipCall while the UA is not registered and connected

Callback = Callable[[dict], Any]


def rewrite_bandwidth(sdp: str, video_kbps: int, audio_kbps: int) -> str:
    """cometVideoApi's ``sdp`` listener: drop every ``b=AS:`` line, then put ``b=AS:<video>`` after
    each ``m=video`` line and ``b=AS:<audio>`` after each ``m=audio`` line (CRLF lines only, as its
    regular expressions require)."""
    sdp = re.sub(r"b=AS:[0-9]+\r\n", "", sdp)
    sdp = re.sub(r"m=video([^\r\n]*)\r\n", lambda m: f"m=video{m.group(1)}\r\nb=AS:{video_kbps}\r\n", sdp)
    return re.sub(r"m=audio([^\r\n]*)\r\n", lambda m: f"m=audio{m.group(1)}\r\nb=AS:{audio_kbps}\r\n", sdp)


def _truthy(value: Any) -> bool:
    if value is None or value is UNDEFINED:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    if isinstance(value, (bool, int, float, str)):
        return bool(value)
    return True


def _loose_true(value: Any) -> bool:
    """JavaScript ``value == true``."""
    if value is True:
        return True
    if isinstance(value, bool) or value is None or value is UNDEFINED:
        return False
    if isinstance(value, (int, float)):
        return value == 1
    if isinstance(value, str):
        try:
            return float(value.strip() or "0") == 1
        except ValueError:
            return False
    return False


@dataclass(eq=False)
class CallState:
    """One entry of ``cometVideoApi._callPipes`` (a received sys_sipCall and what became of it)."""

    pipe: str
    data: dict                      # {"message": parsed message, "sys": {...}}
    original: dict                  # the deep copy made at receipt: {"data": ..., "server_info": ...}
    received_at: float
    is_accept: bool = False
    start_time: float | None = None          # ms, acceptCall
    media_start_time: float | None = None    # ms, onCallStart
    end_time: float | None = None
    is_call_on_call_end: bool = False
    is_call_on_call_accept: bool = False
    is_call_on_call_start: bool = False
    call_media_self_status: bool = False
    call_media_interlocutor_status: bool = False
    is_hangup: bool = False         # _isHangup (a call hung up before it was accepted)
    is_hungup: bool = False         # _isHungup (never set by the real client: quirk second_out_after_auto_end)
    call_type: str = "video"
    custom_stream: bool = False
    self_stream: bool = False
    session: Session | None = None  # jssipRTCSession
    session_phone: SipPhone | None = None
    phone: SipPhone | None = None   # the UA created by this call's acceptCall
    pipe_slot: Any = None
    track_slot: Any = None
    ping_timer: Timer | None = None
    out_timer: Timer | None = None
    subscribed: bool = False
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def sys(self) -> dict:
        return self.data.get("sys") or {}

    @property
    def call_key(self) -> str:
        return str(self.sys.get("callKey", ""))

    @property
    def room(self) -> str:
        return str(self.sys.get("conference_name", ""))


class VideoClient:
    """``cometVideoApi`` on one page, over a started (or about to start) :class:`CometClient`.

    Construct it in the page's nursery, then call :meth:`start` with the callbacks.  ``network``,
    ``ssl_context`` and ``secure`` are used for the SIP WebSockets; ``name`` is the actor name passed
    to ``network.connect``.
    """

    def __init__(self, comet: CometClient, *, nursery: trio.Nursery, network: Network, rng: random.Random,
                 name: str = "", quirks: ClientQuirks | None = None, timings: DeviceTimings | None = None,
                 ssl_context: ssl.SSLContext | None = None, secure: bool = True,
                 observer: Callable[[str, CallState | None, dict], Any] | None = None,
                 sip_connect_timeout: float | None = None) -> None:
        self.comet = comet
        self.network = network
        self.rng = rng
        self.name = name
        self.quirks = quirks or ClientQuirks()
        self.timings = timings or DeviceTimings()
        self.ssl_context = ssl_context
        self.secure = secure
        self.observer = observer
        self.sip_connect_timeout = sip_connect_timeout
        self._nursery = nursery
        self.opt: dict[str, Any] = {}
        self.bandwidth_video = 256
        self.bandwidth_audio = 32
        self.is_init = False
        self.calls: dict[str, CallState] = {}
        self.active: CallState | None = None
        self.last: CallState | None = None
        self.phone: SipPhone | None = None       # coolPhone: the newest UA
        self.phones: list[SipPhone] = []          # every UA this page created
        self.console: list[tuple[float, str, str]] = []
        self.callbacks: list[tuple[float, str, dict]] = []   # every app callback fired, in order
        # listeners(name, arg): told of every app callback as it fires, defined by the page or not
        # (the scenario timeline's hook; they must not call back into the client)
        self.listeners: list[Callable[[str, dict], Any]] = []
        self._timers: dict[Timer, None] = {}      # this page's pending timers of the video API
        self._timers_purge_at = 64                # size at which cancelled ones are forgotten
        self._dialled: set[int] = set()           # ids of UAs whose registered already dialled
        self.closed = False
        self._changed: trio.Event | None = None   # made when someone waits (see _notify)

    # =============================================================================================
    # public API (cometVideoApi.*)
    # =============================================================================================
    def start(self, **callbacks: Callback | None) -> None:
        """``cometVideoApi.start({onCall, onCallAccept, onCallStart, onCallEnd, onOut, onIn,
        toggleMute, onToggleMute, toggleHold})`` -- Python names ``on_call`` ... ``toggle_hold``."""
        known = {"on_call", "on_call_accept", "on_call_start", "on_call_end", "on_out", "on_in", "toggle_mute",
                 "on_toggle_mute", "toggle_hold"}
        unknown = set(callbacks) - known
        if unknown:
            raise TypeError(f"unknown cometVideoApi callbacks: {', '.join(sorted(unknown))}")
        self.opt.update({k: v for k, v in callbacks.items() if v is not None})
        self.comet.on_frame_sent = self._frame_sent
        if self.comet.authorized is None:
            previous = self.comet.on_auth_success

            def on_auth_success() -> None:
                if previous is not None:
                    previous()
                self._init()

            self.comet.on_auth_success = on_auth_success
        elif self.comet.authorized is True:
            self._init()

    def set_bandwidth(self, video: int | None = None, audio: int | None = None) -> None:
        """``cometVideoApi.setBandwidth({video, audio})``: the b=AS values (kbit/s) put in every SDP."""
        if video is not None:
            self.bandwidth_video = int(video)
        if audio is not None:
            self.bandwidth_audio = int(audio)

    def accept_call(self, type: str = "video", *, custom_stream: bool = False) -> bool:
        """``cometVideoApi.acceptCall({type, video_remote, audio_remote, video_local})``."""
        if self.active is not None:
            self._console("error", "There is already an active call. Two calls at once from one browser "
                                   "are not allowed.")
            return False
        if self.last is None:
            self._console("error", "TypeError: Cannot read properties of undefined (reading 'startTime')")
            return False
        call = self.active = self.last
        call.start_time = self._ms()
        call.is_accept = True
        call.call_type = type
        call.custom_stream = custom_stream
        self._send(call.pipe, "pong", {"status": "pong"})
        call.track_slot = self.comet.subscription("track_" + call.pipe, self._on_track)
        self._observe("accept_call", call)
        if custom_stream:
            self._accept_this_call(call, type)
        else:
            self._get_user_media(self.timings.gum_first, lambda: self._gum1_success(type),
                                 self._gum1_failure)
        return True

    def busy(self) -> bool:
        """``cometVideoApi.busy()``: ``out {status: busy}`` for the last call, its heartbeat stops."""
        call = self.last
        if call is None:
            return False
        call.is_call_on_call_end = True
        self._ping_cancel(call.pipe)
        self._send(call.pipe, "out", {"status": "busy", "callKey": call.call_key})
        return True

    def hangup(self, call: CallState | None = None, do_not_notify: bool = False) -> None:
        """``cometVideoApi.hangup(callInfo, doNotNotify)``."""
        c = call
        if call is None:
            c = self.active
            self.active = None
        if c is None:  # "second chance": an accepted call that was never hung up
            for candidate in self.calls.values():
                if candidate.is_accept and not candidate.is_hungup:
                    c = candidate
                    break
        if c is not None:
            if not do_not_notify:
                self._send(c.pipe, "out", {"status": "hangup", "callKey": c.call_key})
                self._observe("out_sent", c)
            if c.pipe_slot is not None:
                c.pipe_slot.unsubscribe()
            if c.track_slot is not None:
                c.track_slot.unsubscribe()
            self._ping_cancel(c.pipe)
        elif self.last is not None and not self.last.is_hangup:
            last = self.last
            last.is_hangup = True
            if not do_not_notify:
                self._send(last.pipe, "out", {"status": "hangup", "callKey": last.call_key})
            if last.track_slot is not None:
                last.track_slot.unsubscribe()
            # the real code unsubscribes and cancels `lastCallEvent.callPipe`, which is undefined:
            # the callPipe handler and the heartbeat of a declined call stay.
        if c is not None and c.is_accept:
            self._call_end(c.pipe, {"action": "terminated", "status": "hangup"})
            if c.session is not None and c.session_phone is not None:
                try:
                    c.session_phone.terminate(c.session)
                except InvalidStateError as exc:
                    self._console("warn", f'exeption INVALID_STATE_ERROR "{exc}"')
            if not self.quirks.on(ClientQuirk.OLD_UAS_NEVER_STOPPED) and c.phone is not None:
                c.phone.stop()
            self.active = None
            if not self.quirks.on(ClientQuirk.SECOND_OUT_AFTER_AUTO_END):
                c.is_hungup = c.is_hangup = True
        self._observe("hangup", c)
        self._notify()

    def mute_audio(self, set_mute: bool) -> bool | None:
        """``cometVideoApi.muteAudio(x)``: local mute plus ``toggleMute {isMute: x}``."""
        return self._mute_one("audio", set_mute)

    def mute_video(self, set_mute: bool) -> bool | None:
        """``cometVideoApi.muteVideo(x)``."""
        return self._mute_one("video", set_mute)

    def _mute_one(self, kind: str, set_mute: bool) -> bool | None:
        call = self.active
        if call is None or call.session is None or call.session_phone is None:
            return None
        if set_mute:
            call.session_phone.mute(call.session, **{kind: True})
        else:
            call.session_phone.unmute(call.session, **{kind: True})
        self._send(call.pipe, "toggleMute", {"isMute": set_mute})
        return True

    def toggle_mute(self) -> bool | None:
        """``cometVideoApi.toggleMute()``: local only, no signal."""
        call = self.active
        if call is None or call.session is None or call.session_phone is None:
            return None
        if not call.session.muted["audio"]:
            call.session_phone.mute(call.session, audio=True, video=True)
        else:
            call.session_phone.unmute(call.session, audio=True, video=call.call_type == "video")
        return call.session.muted["audio"]

    def is_mute(self) -> dict | None:
        call = self.active
        if call is None or call.session is None:
            return None
        return call.session.is_muted()

    def toggle_hold(self) -> None:
        """``cometVideoApi.toggleHold()``: never signals on the callPipe.  The real code tests
        ``isOnHold()``, an object, so it always calls ``hold()`` (quirk ``toggle_hold_never_resumes``)."""
        call = self.active
        if call is None or call.session is None or call.session_phone is None:
            return None
        held = call.session.is_on_hold()["local"]
        if self.quirks.on(ClientQuirk.TOGGLE_HOLD_NEVER_RESUMES) or not held:
            call.session_phone.hold(call.session)
        else:
            call.session_phone.unhold(call.session)
        return None

    def is_in_call(self) -> bool:
        return self.active is not None

    def close(self) -> None:
        """The page is gone: every timer and every SIP UA of this page stops without a goodbye."""
        self.closed = True
        for phone in self.phones:
            phone.close()
        for timer in list(self._timers):
            timer.cancel()
        self._timers.clear()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = 10.0) -> None:
        """Wait until ``predicate()`` holds (re-checked after every callback and callPipe event)."""
        with trio.fail_after(timeout) if timeout is not None else trio.CancelScope():
            while not predicate():
                if self._changed is None:
                    self._changed = trio.Event()
                await self._changed.wait()

    async def wait_callback(self, name: str, *, since: int = 0, timeout: float | None = 10.0) -> dict:
        """The first app callback ``name`` (``on_call_start`` ...) at position ``since`` or later."""
        found: list[dict] = []

        def seen() -> bool:
            for _, cb, arg in self.callbacks[since:]:
                if cb == name:
                    found.append(arg)
                    return True
            return False

        await self.wait_for(seen, timeout)
        return found[0]

    # =============================================================================================
    # receiving calls
    # =============================================================================================
    def _init(self) -> None:
        if self.is_init:
            return
        self.is_init = True
        self.comet.subscription("msg.sys_sipCall", self._on_sys_sipcall)

    def _on_sys_sipcall(self, event: CometMessage) -> None:
        data = event.data
        if not isinstance(data, dict) or not isinstance(data.get("sys"), dict):
            self._console("error", "TypeError: sys_sipCall without data.sys")
            return
        data = dict(data)
        data["message"] = _parse_message(data.get("message"))
        sys = data["sys"]
        pipe = sys.get("callPipe")
        if not isinstance(pipe, str):
            self._console("error", "TypeError: sys_sipCall without a callPipe")
            return
        active = self.active
        if pipe in self.calls and active is not None and active.pipe == pipe:
            if not _truthy(active.sys.get("conference")):
                self._send(pipe, "out", {"status": "busy", "callKey": sys.get("callKey")})
                return
            self._send(pipe, "accept", {"status": "start_accept"})
            self._send(pipe, "pong", {"status": "pong"})
            self._observe("rejoin_ignored", active, callKey=sys.get("callKey"))
            self._notify()
            return
        original = {"data": copy.deepcopy(data), "server_info": event.server_info}
        call = CallState(pipe, data, original, trio.current_time())
        self.calls[pipe] = call
        self._observe("push_received", call)
        self._ping(pipe, LONELINESS_TIMEOUT)
        already = pipe in self.comet.subscription_array
        call.pipe_slot = self.comet.subscription(pipe, self._on_pipe_event)
        if already:  # the server subscription is still there: nothing new goes out
            self._mark_subscribed(call)
        self.last = call
        call.is_hangup = False
        self._observe("on_call", call)
        on_call = self.opt.get("on_call")
        if on_call is None:
            self._console("error", "onCall is not set: incoming calls are not handled")
        else:
            self._fire("on_call", on_call, {"data": data["message"]})
        self._notify()

    def _on_pipe_event(self, event: CometMessage) -> None:
        pipe = event.pipe
        call = self.calls.get(pipe)
        if call is None:
            return
        self._ping_update(pipe)
        name = event.event
        data = event.data if isinstance(event.data, dict) else {}
        self._observe("received", call, event=name, user_id=event.user_id,
                      **{k: v for k, v in data.items() if k in ("status", "type", "callKey", "isMute", "isHold")})
        active = self.active
        if name == "out":
            if not _truthy(call.sys.get("conference")):
                if data.get("callKey") == call.call_key:
                    self._call_end(pipe, {"action": "out", "status": data.get("status")})
                    self.hangup(call)
            else:
                self._ping(pipe)
                self._fire("on_out", self.opt.get("on_out"), {
                    "action": "out", "uuid": event.uuid, "user_id": event.user_id, "status": data.get("status"),
                    "callInfo": call.original["data"], "type": call.original["data"]["sys"].get("type", UNDEFINED)})
        elif name == "toggleMute" and call.is_accept:
            info = {"action": "toggleMute", "uuid": event.uuid, "user_id": event.user_id,
                    "isMute": data.get("isMute"), "status": data.get("isMute"), "callInfo": call.original,
                    "type": call.original["data"]["sys"].get("type", UNDEFINED)}
            if self.quirks.on(ClientQuirk.TOGGLE_MUTE_WRONG_CALLBACK):
                if self.opt.get("on_toggle_mute") is not None:
                    if self.opt.get("toggle_mute") is None:
                        self._console("error", "TypeError: cometVideoApi.opt.toggleMute is not a function")
                    else:
                        self._fire("toggle_mute", self.opt["toggle_mute"], info)
            else:
                self._fire("on_toggle_mute", self.opt.get("on_toggle_mute"), info)
        elif name == "toggleHold" and call.is_accept:
            self._fire("toggle_hold", self.opt.get("toggle_hold"), {
                "action": "toggleHold", "uuid": event.uuid, "user_id": event.user_id, "isHold": data.get("isHold"),
                "status": data.get("isHold"), "callInfo": call.original,
                "type": call.original["data"]["sys"].get("type", UNDEFINED)})
        elif name == "ping" and call.is_accept and active is not None and active.pipe == pipe:
            self._send(pipe, "pong", {"status": "pong"})
        elif name == "pong":
            if call.out_timer is not None:
                call.out_timer.cancel()
                call.out_timer = None
        elif name == "accept":
            if str(event.user_id) == str(self._user_id()):
                # our own user accepted on another tab or device
                self._call_end(pipe, {"action": "cancel", "uuid": event.uuid, "user_id": event.user_id,
                                      "status": data.get("status")})
                self.hangup(call, True)
                return
            self._call_accept(pipe, {"uuid": event.uuid, "user_id": event.user_id, "type": data.get("type")})
        elif name == "mediaStart":
            self._call_start(pipe, "interlocutor", data.get("status"))
            if (not self.quirks.on(ClientQuirk.NO_IN_EVENT) and data.get("status") == "self" and call.is_accept
                    and active is call):
                self._fire("on_in", self.opt.get("on_in"), {"action": "in", "uuid": event.uuid,
                                                            "user_id": event.user_id, "callInfo": call.original})
        elif call.is_accept:
            self._console("info", f"callPipe {name}")
        self._notify()

    def _on_track(self, event: CometMessage) -> None:
        """The ``track_<callPipe>`` handler: conference mode ignores every event."""
        if self.active is None:
            return
        if not _truthy(self.active.sys.get("conference")) and event.event == "unsubscription":
            self._ping(self.active.pipe)

    # =============================================================================================
    # heartbeat
    # =============================================================================================
    def _ping(self, pipe: str, loneliness: float | None = None) -> None:
        call = self.calls.get(pipe)
        if call is None:
            return
        message = call.data.get("message")
        if _loose_true(call.sys.get("stream")) or (isinstance(message, dict) and _loose_true(message.get("stream"))):
            return
        loneliness = loneliness or ALONE_TIME
        self._send(pipe, "ping", {"status": "ping"})
        self._ping_update(pipe)
        if call.out_timer is not None:
            call.out_timer.cancel()
        call.out_timer = self._later(loneliness, self._loneliness, pipe)

    def _loneliness(self, pipe: str) -> None:
        # The real callback logs, then returns before callEnd/hangup: nobody is ever hung up for
        # being alone (video-call-flow.md 2.9).
        self._console("info", "call ended with status loneliness (disabled)")

    def _ping_update(self, pipe: str) -> bool:
        call = self.calls.get(pipe)
        if call is None or call.is_call_on_call_end:
            return False
        if call.ping_timer is not None:
            call.ping_timer.cancel()
        call.ping_timer = self._later(PING_INTERVAL, self._ping, pipe)
        return True

    def _ping_cancel(self, pipe: str) -> None:
        call = self.calls.get(pipe)
        if call is None:
            return
        for timer in (call.out_timer, call.ping_timer):
            if timer is not None:
                timer.cancel()
        call.out_timer = call.ping_timer = None

    # =============================================================================================
    # callbacks of the call's life
    # =============================================================================================
    def _call_end(self, pipe: str, info: dict) -> bool:
        call = self.calls.get(pipe)
        self._ping_cancel(pipe)
        if call is None or call.is_call_on_call_end:
            return False
        call.is_call_on_call_end = True
        call.end_time = self._ms()
        status = info.get("status")
        full_time = call.end_time - call.start_time if call.start_time is not None else math.nan
        time = call.end_time - call.media_start_time if call.media_start_time is not None else math.nan
        if status == "busy":
            time = 0
        self._observe("call_end", call, status=status)
        self._fire("on_call_end", self.opt.get("on_call_end"), {
            "action": "out", "callInfo": call.original["data"], "time": time, "status": status,
            "fullTime": full_time})
        return True

    def _call_accept(self, pipe: str, info: dict) -> bool:
        call = self.calls.get(pipe)
        if call is None or call.is_call_on_call_accept:
            return False
        if str(call.original["data"]["sys"].get("caller_id")) != str(self._user_id()):
            return False
        call.is_call_on_call_accept = True
        self._observe("call_accept", call)
        self._fire("on_call_accept", self.opt.get("on_call_accept"), {
            "action": "accept", "callInfo": call.original["data"], "accept_type": info.get("type")})
        return True

    def _call_start(self, pipe: str, person: str, status: Any = None) -> bool:
        call = self.calls.get(pipe)
        if call is None:
            return False
        if person == "interlocutor":
            call.call_media_interlocutor_status = True
            if call.call_media_self_status and status != "answer":
                self._send(pipe, "mediaStart", {"status": "answer"})
        if person == "self":
            call.call_media_self_status = True
            self._send(pipe, "mediaStart", {"status": "self"})
            self._observe("media_self", call)
        if call.is_call_on_call_start or not call.call_media_self_status:
            return False
        if not call.call_media_interlocutor_status:
            message = call.data.get("message")
            if not (_loose_true(call.sys.get("stream"))
                    or (isinstance(message, dict) and _loose_true(message.get("stream")))):
                return False
        call.is_call_on_call_start = True
        if self.active is None:
            self._console("error", "TypeError: Cannot set properties of undefined (setting 'mediaStartTime')")
            return False
        self.active.media_start_time = self._ms()
        self._observe("call_start", call)
        self._fire("on_call_start", self.opt.get("on_call_start"), {
            "action": "start", "status": "start", "callInfo": call.original,
            "type": call.original["data"]["sys"].get("type", UNDEFINED)})
        return True

    # =============================================================================================
    # accepting: getUserMedia, the JsSIP UA, the INVITE
    # =============================================================================================
    def _gum1_success(self, type: str) -> None:
        call = self.active
        if call is None:  # hung up meanwhile: the callback's first statement throws
            self._console("error", "TypeError: Cannot set properties of undefined (setting 'selfStream')")
            return
        call.self_stream = True
        self._observe("gum1", call)
        self._accept_this_call(call, type)

    def _gum1_failure(self) -> None:
        call = self.active
        if call is not None:
            self._call_end(call.pipe, {"action": "terminated", "status": "no-media-stream"})
            self.hangup(call)

    def _accept_this_call(self, call: CallState, type: str) -> None:
        self._send(call.pipe, "accept", {"status": "start_accept", "type": type})
        self._observe("accept_sent", call)
        sys = call.sys
        dev6 = str(self.comet.dev_id).rjust(6, "0")
        impi = dev6 + str(self._user_id())
        server = str(sys.get("serverName"))
        self._sip_register(call, server, int(sys.get("serverPort") or 0), impi, type)

    def _sip_register(self, call: CallState, server: str, port: int, impi: str, type: str) -> None:
        if not self.quirks.on(ClientQuirk.OLD_UAS_NEVER_STOPPED) and self.phone is not None:
            self.phone.stop()
        unclamped = self.quirks.on(ClientQuirk.UNCLAMPED_RECONNECT_BACKOFF)
        config = UAConfig(uri=f"sip:{impi}@{server}", password=str(self.comet.real_user_key or ""),
                          authorization_user=impi, display_name=impi, registrar_server=f"sip:{server}",
                          recovery_min_interval=None if unclamped else 2,
                          recovery_max_interval=None if unclamped else 30,
                          sdp_filter=self._sdp_filter)
        phone = SipPhone(self.network, server, port, config, nursery=self._nursery,
                         rng=random.Random(self.rng.getrandbits(64)), name=self.name, secure=self.secure,
                         ssl_context=self.ssl_context, timings=self.timings, connect_timeout=self.sip_connect_timeout)
        self.phones.append(phone)
        self.phone = phone
        call.phone = phone

        def on_connected(event: Event) -> None:
            if self.active is not None and self.phone is phone:
                self._observe("sip_connected", self.active)

        def on_registered(event: Event) -> None:
            if self.active is not None and self.phone is phone:
                self._observe("registered", self.active)
            if not self.quirks.on(ClientQuirk.REJOIN_ON_REREGISTER) and id(phone) in self._dialled:
                return
            self._dialled.add(id(phone))
            if self.active is None:
                self._console("log", "too late to take the call: it has ended")
                return
            self._sip_call(type, str(self.active.sys.get("sipNumber")))

        def on_registration_failed(event: Event) -> None:
            if self.active is not None:
                self._call_end(self.active.pipe, {"action": "terminated", "status": "registration-failure"})
                self.hangup(self.active)

        def on_new_session(event: Event) -> None:
            if event.originator != "local":
                return
            if self.active is None:
                self._console("error", "TypeError: Cannot set properties of undefined (setting 'jssipRTCSession')")
                return
            self.active.session = event.session
            self.active.session_phone = phone

        phone.on("connected", on_connected)
        phone.on("registered", on_registered)
        phone.on("registrationFailed", on_registration_failed)
        phone.on("newRTCSession", on_new_session)
        phone.on("sending", lambda e: self._session_mark("sip_invite_sent", e))
        phone.on("answer", lambda e: self._session_mark("answered", e))
        phone.on("addstream", lambda e: self._on_addstream(e.session))
        phone.on("failed", self._on_session_failed)
        phone.on("ended", self._on_session_ended)
        self._observe("ua_created", call)
        phone.start()

    def _session_mark(self, name: str, event: Event) -> None:
        call = self.active
        if call is not None and call.session is event.session:
            self._observe(name, call)

    def _sip_call(self, type: str, number: str) -> None:
        call = self.active
        if call is None:
            return
        phone = self.phone
        if phone is None or not phone.is_registered or not phone.is_connected:
            self._later(SIP_CALL_RETRY, self._sip_call, type, number)
            return

        def success() -> None:
            active = self.active
            if active is None:
                self._console("error", "TypeError: Cannot read properties of undefined (reading 'data')")
                return
            self._observe("gum2", active)
            current = self.phone
            assert current is not None
            current.call(f"sip:{number}@{active.sys.get('serverName')}", send_audio=True,
                         send_video=type == "video")

        def failure() -> None:
            if self.active is not None:
                self._call_end(self.active.pipe, {"action": "terminated", "status": "terminated"})
                self.hangup(self.active)

        self._get_user_media(self.timings.gum_again, success, failure)

    def _on_addstream(self, session: Session | None) -> None:
        if self.active is None:
            self._console("warn", 'the call is no longer active - peerconnection "addstream" event')
            return
        self._observe("addstream", self.active)
        def attach() -> bool:
            active = self.active
            if active is None or not self._is_call_start(active.pipe):
                return False
            self._observe("video_attached", active)
            return True

        self._every(self.timings.attach_poll, attach)
        self._call_start(self.active.pipe, "self")
        self._notify()

    def _on_session_failed(self, event: Event) -> None:
        if event.session is None or event.session.direction != "outgoing":
            return
        if self.active is not None:
            self._observe("session_failed", self.active, cause=event.cause)
            self._call_end(self.active.pipe, {"action": "terminated", "status": "terminated"})
            self.hangup(self.active)

    def _on_session_ended(self, event: Event) -> None:
        if event.session is None or event.session.direction != "outgoing":
            return
        if self.active is not None:
            self._observe("session_ended", self.active, cause=event.cause, originator=event.originator)
            self._call_end(self.active.pipe, {"action": "terminated", "status": "terminated"})
            if not self.quirks.on(ClientQuirk.STALE_CALL_AFTER_REMOTE_END) and event.originator != "local":
                self.hangup(self.active)

    def _is_call_start(self, pipe: str) -> bool:
        call = self.calls.get(pipe)
        return bool(call and call.is_call_on_call_start)

    def _sdp_filter(self, originator: str, kind: str, sdp: str) -> str:
        return rewrite_bandwidth(sdp, self.bandwidth_video, self.bandwidth_audio)

    # =============================================================================================
    # plumbing
    # =============================================================================================
    def _user_id(self) -> Any:
        return self.comet.options.get("user_id")

    def _ms(self) -> float:
        return trio.current_time() * 1000.0

    def _send(self, pipe: str, event: str, message: dict) -> None:
        self.comet.multi_web_pipe_send(pipe, event, message)

    def _frame_sent(self, text: str) -> None:
        if not text.startswith("subscription\n"):
            return
        names = set(text.split("\n")[1:])
        for call in self.calls.values():
            if not call.subscribed and call.pipe in names:
                self._mark_subscribed(call)

    def _mark_subscribed(self, call: CallState) -> None:
        call.subscribed = True
        self._observe("subscribed", call)

    def _observe(self, name: str, call: CallState | None, **data: Any) -> None:
        if call is not None:
            call.marks.setdefault(name, trio.current_time())
        if self.observer is not None:
            self.observer(name, call, data)

    def _fire(self, name: str, callback: Callback | None, arg: dict) -> None:
        self.callbacks.append((trio.current_time(), name, arg))
        for listener in self.listeners:
            listener(name, arg)
        if callback is not None:
            callback(arg)
        self._notify()

    def _console(self, level: str, text: str) -> None:
        self.console.append((trio.current_time(), level, text))

    def _notify(self) -> None:
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    def _get_user_media(self, delay: float, success: Callable[[], None], failure: Callable[[], None]) -> None:
        """``navigator.getUserMedia``: ``success`` after ``delay``, or ``failure`` when denied."""
        self._later(delay, failure if self.timings.deny_media else success)

    def _later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        """``setTimeout`` on the page's timer heap (shared with the comet client)."""
        timers = self._timers

        def fire() -> None:
            timers.pop(timer, None)
            fn(*args)

        timer = self.comet.timers.call_later(delay, fire)
        if self.closed:
            timer.cancel()
        else:
            timers[timer] = None
            if len(timers) > self._timers_purge_at:   # forget the ones that were cancelled
                for stale in [t for t in timers if t.cancelled]:
                    del timers[stale]
                # amortised: the next purge when the live ones have doubled (the 1 s ping timer is
                # cancelled and set again by every event, so a fixed limit purged on every call)
                self._timers_purge_at = max(64, 2 * len(timers))
        return timer

    def _every(self, interval: float, fn: Callable[[], bool]) -> None:
        """``setInterval``: ``fn`` every ``interval`` seconds until it returns True (the real
        attach interval is never cleared otherwise: it runs until the page goes)."""

        def tick() -> None:
            if not fn():
                self._later(interval, tick)

        self._later(interval, tick)


def _parse_message(message: Any) -> Any:
    """The message field: ``JSON.parse`` kept if it gives an object (null included: ``typeof null``
    is "object"); only if the parse throws, the same after ``stripslashes``; else the string."""
    if not isinstance(message, str):
        return message
    for text in (message, stripslashes(message)):
        try:
            value = js_json_parse(text)
        except (ValueError, RecursionError):
            continue
        return value if isinstance(value, (dict, list)) or value is None else message
    return message
