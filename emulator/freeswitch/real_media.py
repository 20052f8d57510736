"""Real media (``media = "real"``): the fake FreeSWITCH's WebRTC endpoint, run in a worker process.

By default the bridge has no media endpoint: the SDP answer is valid, but a real browser's ICE never
completes and the media start is the media model's (emulator/freeswitch/media.py).  With ``media =
"real"`` (config key, ``--media real``) the stack owns a media worker process
(emulator/freeswitch/media_worker.py: aiortc, PyAV) and the SIP core answers each WebRTC offer with
it:

* **Answer** -- the SIP core first decides as FreeSWITCH does (:func:`emulator.wire.sdp.build_webrtc_answer`:
  which m-lines, which one codec each, 488 when none); :func:`emulator.wire.sdp.endpoint_offer`
  narrows the offer to that, the worker answers it, and :func:`emulator.wire.sdp.reskin_answer`
  puts the endpoint's transport and RTP lines (ICE credentials, candidates and port, fingerprint,
  setup role, mids, payload types, SSRCs) into FreeSWITCH's shape.
* **Timings** -- the worker reports ICE connected, DTLS connected, first RTP in and out (per kind)
  for each call; they are journalled (service ``media``, kinds ``ice_connected``, ``dtls_connected``,
  ``first_rtp_in``, ``first_rtp_out``, with the seconds since the 200 OK).  The member's media
  flows (``Bridge.media_flowing``) at the first RTP in, not after the model's delay.
* **Conference** -- :meth:`RealMedia.reroute` tells the worker what each member receives, as
  mod_conference's video passthrough does: the video floor holder's video (the floor holder itself
  sees the member who joined last among the others); nobody else: the project's floor clip.  Audio:
  the loudest member among the others that may speak (muted members are not heard), or silence.
* **Talking** -- the worker's audio levels (dBov every 200 ms) start and stop talking
  (:data:`TALK_ON_DBOV` / :data:`TALK_OFF_DBOV`, with hysteresis), which moves the floor.
* **Who** -- every caller by default; :attr:`RealMedia.real_clients` narrows it (a scenario names its
  browser actors: its virtual actors send no RTP, so their calls keep the media model).
* **Failures** -- ICE or DTLS that fails, or a connection that closes, stops the member's media: its
  RTP timeout (``rtp_timeout``) then ends the call with MEDIA_TIMEOUT, as FreeSWITCH does.  A media
  worker that dies ends every call that used it at once (BYE, cause MEDIA_TIMEOUT, journalled
  ``media worker_crashed``) and is started again for new calls; the emulator carries on.  An
  INVITE while no worker is up is answered 503.

Real media needs the real clock: the worker's sockets and timers are the OS's.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from emulator.freeswitch.conference import Bridge
from emulator.freeswitch.events import Event
from emulator.freeswitch.model import Conference, HangupCause, MediaState, Member
from emulator.journal import Journal

__all__ = ["MediaWorker", "MediaWorkerError", "RealMedia", "TALK_ON_DBOV", "TALK_OFF_DBOV"]

TALK_ON_DBOV = -45.0     # louder than this starts talking (the fake microphone's beep is about -20)
TALK_OFF_DBOV = -60.0    # quieter than this stops it
START_TIMEOUT = 60.0     # s for the worker to import aiortc, make the floor clip and answer hello
REQUEST_TIMEOUT = 10.0
HEALTH_INTERVAL = 2.0
HEALTH_MISSES = 3        # pings unanswered (each within REQUEST_TIMEOUT) before the worker counts as hung
RESTART_DELAY = 0.5
_ROUTED_ACTIONS = {"add-member", "del-member", "floor-change", "video-floor-change", "mute-member",
                   "unmute-member", "vmute-member", "unvmute-member"}


class MediaWorkerError(Exception):
    """The media worker could not do what was asked (it is down, it timed out, or it said no)."""


class MediaWorker:
    """The worker process: started, health-checked and stopped by :meth:`run` (a task of the stack).

    ``on_event(message)`` receives the worker's events; ``on_crash(reason)`` is called when the
    process ends without being asked to (the worker is started again ``RESTART_DELAY`` later)."""

    def __init__(self, host: str, journal: Journal, *, on_event: Callable[[dict], None],
                 on_crash: Callable[[str], None], argv: list[str] | None = None,
                 health_interval: float = HEALTH_INTERVAL) -> None:
        self.host = host
        self.journal = journal
        self.on_event = on_event
        self.on_crash = on_crash
        self.argv = argv or [sys.executable, "-m", "emulator.freeswitch.media_worker", "--host", host]
        self.health_interval = health_interval
        self.ping_timeout = REQUEST_TIMEOUT
        self.process: trio.Process | None = None
        self.info: dict = {}
        self.ready = trio.Event()
        self.restarts = 0
        self.stderr_tail: list[str] = []
        self._next_id = 0
        self._waiting: dict[int, tuple[trio.Event, list[dict]]] = {}
        self._send_lock = trio.Lock()
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the worker until cancelled (then stop it); started once the first one said hello."""
        started = False
        try:
            while True:
                reason = await self._run_once(None if started else task_status)
                started = True
                self.ready = trio.Event()
                self.journal.record("media", "worker_crashed", data=reason)
                self.on_crash(reason)
                self.restarts += 1
                await trio.sleep(RESTART_DELAY)
        finally:
            self._stopping = True

    async def _run_once(self, task_status: trio.TaskStatus[None] | None) -> str:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        process = await trio.lowlevel.open_process(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE, env=env)
        self.process = process
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_replies, process)
                nursery.start_soon(self._read_stderr, process)
                try:
                    self.info = await self.request("hello", timeout=START_TIMEOUT)
                except MediaWorkerError as exc:
                    raise MediaWorkerError(f"the media worker did not start: {exc}; "
                                           f"stderr: {' | '.join(self.stderr_tail[-5:])}") from None
                self.journal.record("media", "worker_started", data=json.dumps(self.info, sort_keys=True))
                self.ready.set()
                if task_status is not None:
                    task_status.started()
                nursery.start_soon(self._health)
                code = await process.wait()
                nursery.cancel_scope.cancel()
            tail = " | ".join(self.stderr_tail[-3:])
            return f"the media worker (pid {process.pid}) exited with {code}" + (f": {tail}" if tail else "")
        finally:
            self._fail_waiting("the media worker is gone")
            with trio.CancelScope(shield=True):
                await self._stop(process)

    async def _stop(self, process: trio.Process) -> None:
        if process.returncode is None:
            if process.stdin is not None:
                await process.stdin.aclose()   # the worker stops when its stdin closes
            with trio.move_on_after(3):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()

    async def _health(self) -> None:
        missed = 0
        while True:
            await trio.sleep(self.health_interval)
            try:
                await self.request("ping", timeout=self.ping_timeout)
                missed = 0
            except MediaWorkerError:
                missed += 1    # a busy machine can delay one answer; HEALTH_MISSES in a row is a hung worker
                if missed < HEALTH_MISSES:
                    continue
                self.journal.record("media", "worker_unhealthy",
                                    data=f"pid {self.pid}: no answer to {missed} pings in a row")
                if self.process is not None and self.process.returncode is None:
                    self.process.kill()   # run() sees the exit, fails its calls and starts a new one
                return

    async def _read_replies(self, process: trio.Process) -> None:
        assert process.stdout is not None
        buffer = b""
        async for chunk in process.stdout:
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    message = json.loads(line)
                except ValueError:
                    self.journal.record("media", "worker_garbage", data=line[:200].decode("utf-8", "replace"))
                    continue
                if not isinstance(message, dict):
                    continue
                if "ev" in message:
                    self.on_event(message)
                    continue
                waiting = self._waiting.pop(message.get("id", -1), None)
                if waiting is not None:
                    waiting[1].append(message)
                    waiting[0].set()

    async def _read_stderr(self, process: trio.Process) -> None:
        assert process.stderr is not None
        async for chunk in process.stderr:   # kept (the tail explains a crash), never printed
            self.stderr_tail = (self.stderr_tail + chunk.decode("utf-8", "replace").splitlines())[-50:]

    def _fail_waiting(self, why: str) -> None:
        for event, box in self._waiting.values():
            box.append({"ok": False, "error": why})
            event.set()
        self._waiting.clear()

    async def request(self, op: str, *, timeout: float = REQUEST_TIMEOUT, **fields: Any) -> dict:
        """Send one request and wait for its reply, at most ``timeout`` seconds (:class:`MediaWorkerError`
        when it fails)."""
        process = self.process
        if process is None or process.returncode is not None or process.stdin is None:
            raise MediaWorkerError("the media worker is not running")
        self._next_id += 1
        rid = self._next_id
        done, box = trio.Event(), list[dict]()
        self._waiting[rid] = (done, box)
        data = (json.dumps({"id": rid, "op": op, **fields}) + "\n").encode()
        try:
            async with self._send_lock:
                await process.stdin.send_all(data)
            with trio.fail_after(timeout):
                await done.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError) as exc:
            self._waiting.pop(rid, None)
            raise MediaWorkerError(f"media worker request {op}: {type(exc).__name__}") from None
        reply = box[0]
        if not reply.get("ok"):
            raise MediaWorkerError(str(reply.get("error")))
        return reply


@dataclass
class RealCall:
    """One call's media in the worker."""

    key: str
    answered_at: float
    member_id: int | None = None
    hangup: Callable[[str], None] | None = None
    timings: dict[str, float] = field(default_factory=dict)   # event -> seconds after the 200 OK
    level: float = -127.0


class RealMedia:
    """The glue between one node's bridge and SIP core and its :class:`MediaWorker`."""

    def __init__(self, bridge: Bridge, journal: Journal, *, host: str = "127.0.0.1",
                 argv: list[str] | None = None) -> None:
        self.bridge = bridge
        self.journal = journal
        self.clock = trio.current_time
        self.worker = MediaWorker(host, journal, on_event=self._on_event, on_crash=self._on_crash, argv=argv)
        self.calls: dict[str, RealCall] = {}
        #: The clients (``Channel.client``: the bench's actor names) whose calls get the real endpoint;
        #: None: every client.  A scenario with browser actors names them: its virtual actors send no
        #: RTP, so their calls keep the media model's answer and start delay.
        self.real_clients: set[str] | None = None
        self._by_member: dict[int, RealCall] = {}
        self._routes: dict[str, tuple[str | None, str | None]] = {}
        self._nursery: trio.Nursery | None = None
        self._unsubscribe = bridge.subscribe(self._on_bridge_event)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await nursery.start(self.worker.run)
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None
                self._unsubscribe()

    # -- what the SIP core asks ----------------------------------------------------------------------
    def serves(self, client: str) -> bool:
        """Whether a call from ``client`` is answered by the real endpoint (else by the media model)."""
        return self.real_clients is None or client in self.real_clients

    async def answer(self, key: str, offer: str) -> str:
        """The endpoint's answer to a narrowed offer (:class:`MediaWorkerError` if it cannot)."""
        if not self.worker.ready.is_set():
            with trio.move_on_after(REQUEST_TIMEOUT):
                await self.worker.ready.wait()
        reply = await self.worker.request("answer", call=key, sdp=offer)
        self.calls[key] = RealCall(key, self.clock())
        return str(reply["sdp"])

    def answered(self, key: str, member_id: int | None, hangup: Callable[[str], None]) -> None:
        """The 200 OK left and the channel joined as ``member_id`` (None: refused)."""
        call = self.calls.get(key)
        if call is None:
            return
        call.answered_at, call.member_id, call.hangup = self.clock(), member_id, hangup
        if member_id is not None:
            self._by_member[member_id] = call
            member = self.bridge.member(member_id)
            if member is not None:
                member.scripted = True   # talking comes from the real audio, not the talk pattern
                self.reroute(member.conference)

    def ended(self, key: str) -> None:
        """The call is over (BYE, CANCEL, refused): its peer connection closes."""
        call = self.calls.pop(key, None)
        if call is None:
            return
        if call.member_id is not None:
            self._by_member.pop(call.member_id, None)
        self._routes.pop(key, None)
        self._spawn(self._request_quietly, "hangup", {"call": key})

    def timings(self, key: str) -> dict[str, float]:
        call = self.calls.get(key)
        return dict(call.timings) if call is not None else {}

    # -- the worker's events ------------------------------------------------------------------------
    def _on_event(self, message: dict) -> None:
        key, ev = str(message.get("call", "")), str(message.get("ev", ""))
        call = self.calls.get(key)
        if call is None:
            return
        member = self.bridge.member(call.member_id) if call.member_id is not None else None
        if ev == "level":
            self._level(call, member, float(message.get("dbov", -127.0)))
            return
        since = self.clock() - call.answered_at
        kind = message.get("kind")
        name = f"{ev}_{kind}" if kind else ev
        call.timings.setdefault(name, since)
        detail = f"call={key} member={call.member_id} after {since * 1000:.1f}ms" + (
            f" kind={kind}" if kind else "") + (f" reason={message['reason']}" if "reason" in message else "")
        if ev == "ice_connected":      # one literal kind per call (the README lists every kind)
            self.journal.record("media", "ice_connected", data=detail)
        elif ev == "dtls_connected":
            self.journal.record("media", "dtls_connected", data=detail)
        elif ev == "first_rtp_in":
            self.journal.record("media", "first_rtp_in", data=detail)
        elif ev == "first_rtp_out":
            self.journal.record("media", "first_rtp_out", data=detail)
        elif ev == "failed":
            self.journal.record("media", "failed", data=detail)
        else:
            self.journal.record("media", "worker_event", data=f"{ev} {detail}")
        if member is None:
            return
        if ev == "first_rtp_in" and member.media != MediaState.FLOWING:
            self.bridge.media_flowing(member.id, True)
        elif ev == "failed":
            self.bridge.media_flowing(member.id, False)   # the RTP timeout ends the call, as FreeSWITCH

    def _level(self, call: RealCall, member: Member | None, dbov: float) -> None:
        call.level = dbov
        if member is None or member.left:
            return
        if dbov >= TALK_ON_DBOV and not member.talking and member.can_speak \
                and member.media == MediaState.FLOWING:
            energy = int(32768 * math.pow(10, dbov / 20))
            self.bridge.set_talking(member.id, True, energy)
        elif dbov <= TALK_OFF_DBOV and member.talking:
            self.bridge.set_talking(member.id, False)
        if member.conference.name in self.bridge.conferences:
            self.reroute(member.conference)   # the loudest other member is heard

    def _on_crash(self, reason: str) -> None:
        calls, self.calls = list(self.calls.values()), {}
        self._by_member.clear()
        self._routes.clear()
        for call in calls:
            self.journal.record("media", "call_failed", data=f"call={call.key} member={call.member_id}: {reason}")
            if call.hangup is not None:
                call.hangup(HangupCause.MEDIA_TIMEOUT)

    # -- routing: what each member receives -----------------------------------------------------------
    def _on_bridge_event(self, event: Event) -> None:
        if event.get("Action") not in _ROUTED_ACTIONS:
            return
        conf = self.bridge.conference(event.get("Conference-Name") or "")
        if conf is not None:
            self.reroute(conf)

    def reroute(self, conf: Conference) -> None:
        members = [m for m in conf.members if not m.left and m.id in self._by_member]
        holder = conf.video_floor_holder or conf.floor_holder
        for member in members:
            others = [m for m in members if m is not member]
            seen = [m for m in others if m.can_be_seen]
            video = holder if holder is not None and holder is not member and holder in seen else None
            if video is None and seen:
                video = seen[0]            # members are newest first: the last one to join
            speakers = [m for m in others if m.can_speak]
            audio = max(speakers, key=lambda m: self._by_member[m.id].level) if speakers else None
            key = self._by_member[member.id].key
            route = (self._by_member[video.id].key if video is not None else None,
                     self._by_member[audio.id].key if audio is not None and member.can_hear else None)
            if self._routes.get(key) != route:
                self._routes[key] = route
                self._spawn(self._request_quietly, "route", {"call": key, "video": route[0], "audio": route[1]})

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    async def _request_quietly(self, op: str, fields: dict) -> None:
        try:
            await self.worker.request(op, **fields)
        except MediaWorkerError as exc:
            self.journal.record("media", "request_failed", data=f"{op} {fields.get('call')}: {exc}")
