"""The trio driver of the JsSIP-like user agent: SIP over a secure WebSocket from the Network seam.

:class:`SipPhone` runs one :class:`bench.clients.sip.UserAgent` (the sans-IO protocol side) the way
JsSIP's ``WebSocketInterface`` does in a browser:

* every connection goes through ``network.connect(host, port, client=<actor name>)``, so per-actor
  link conditions apply to SIP like to the other protocols;
* TLS with the given ``ssl.SSLContext`` (the stack's ``certificates.client_context()``, one that
  trusts a CA file, or one that skips verification for an external target: :func:`client_ssl_context`),
  then the WebSocket opening handshake on path ``/`` with ``Sec-WebSocket-Protocol: sip``; a server
  that does not echo ``sip`` is treated as a failed connect, as Chrome aborts (real-video-client.md
  4.1, run r14);
* one SIP message per text message; a transport close (or a failed connect) is reported to the UA,
  which schedules the reconnect with its back-off and registers again once connected;
* the browser's share of a call: the offer is made by :class:`~bench.clients.webrtc.LocalMedia`
  after the ICE-gathering delay, and the answer is "applied" after the setRemoteDescription delay,
  with ``addstream`` fired in between (spec: ``onaddstream`` about 15 ms after SRD starts, the ACK
  after SRD succeeds); an answer that fails to parse, or accepts no stream, makes SRD fail.

Listeners get the UA's events by name (:meth:`SipPhone.on`), plus ``addstream``; they run
synchronously, as JsSIP's EventEmitter callbacks do, and may call back into the phone.

**Media path** (when the network has a link table, ``network.links``): the browser's peer
connection is its own path to the media server, independent of the SIP WebSocket.  Once the answer
is applied the phone opens it (``links.open_media(name, call_id)``); a session that ends, or a page
that closes, closes it.  While the path is down -- its ``media`` link partitioned, or the far end gone
(a FreeSWITCH restart) -- ICE loses its consent checks; if it is still down after
:data:`ICE_FAILED_AFTER` seconds, ICE reaches ``failed`` and JsSIP terminates the session with cause
``RTP Timeout`` (a BYE if the transport is up; ``ended``, originator local), as JsSIP does on
``iceconnectionstatechange`` failed.  A path that comes back in time lets the call go on.

Time comes from trio's clock and randomness from the ``random.Random`` given, so under a MockClock
the same seed gives the same messages at the same virtual times.  Every task lives in the nursery
the caller passes (the page's); :meth:`SipPhone.close` (page gone: no goodbye) and
:meth:`SipPhone.stop` (``ua.stop()``: un-REGISTER and a clean close) end them.
"""

from __future__ import annotations

import math
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, wrap_client_stream

from bench.clients.sip import Event, Session, SessionStatus, UAConfig, UserAgent
from bench.clients.webrtc import DeviceTimings, LocalMedia
from emulator.net.network import Network, quiet_close
from emulator.wire import sdp as sdp_wire
from emulator.wire.sip import SipParseError

__all__ = ["SipPhone", "client_ssl_context", "ConnectionRecord", "answer_is_usable", "ICE_FAILED_AFTER"]

#: Seconds without media connectivity until ICE fails (Chrome: consent freshness, RFC 7675's 30 s).
ICE_FAILED_AFTER = 30.0


def client_ssl_context(cafile: str | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """A TLS client context: the system trust store, plus ``cafile`` if given; ``verify=False``
    accepts any certificate (an external target with a self-signed certificate, like Chromium's
    ``--ignore-certificate-errors``)."""
    context = ssl.create_default_context(cafile=cafile)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def answer_is_usable(answer: str) -> bool:
    """Whether Chrome's setRemoteDescription would take this answer: it parses and accepts at
    least one stream (non-zero port) with ICE credentials and a DTLS fingerprint somewhere."""
    try:
        parsed = sdp_wire.parse_sdp(answer)
    except SipParseError:
        return False
    for media in parsed.media:
        if media.rejected:
            continue
        ice = media.ice_ufrag or parsed.ice_ufrag
        fingerprint = media.fingerprints or parsed.fingerprints
        if ice and fingerprint:
            return True
    return False


@dataclass
class ConnectionRecord:
    """One connect attempt: when, how it ended."""

    started: float
    outcome: str = "pending"      # "open", "refused: ...", "tls failed: ...", "handshake failed: ..."
    opened: float | None = None
    closed: float | None = None


_CLOSE = object()


class SipPhone:
    """One ``JsSIP.UA`` in a page, over ``wss://host:port`` (or ``ws://`` with ``secure=False``)."""

    def __init__(self, network: Network, host: str, port: int, config: UAConfig, *, nursery: trio.Nursery,
                 rng: random.Random, name: str = "", secure: bool = True,
                 ssl_context: ssl.SSLContext | None = None, timings: DeviceTimings | None = None,
                 origin: str = "http://localhost", connect_timeout: float | None = None) -> None:
        self.network = network
        self.host = host
        self.port = port
        self.name = name
        self.secure = secure
        self.ssl_context = ssl_context
        self.timings = timings or DeviceTimings()
        self.origin = origin
        self.connect_timeout = connect_timeout
        self.rng = rng
        self.ua = UserAgent(config, random.Random(rng.getrandbits(64)))
        self._media_rng = random.Random(rng.getrandbits(64))
        self._nursery = nursery
        self._listeners: dict[str, list[Callable[[Event], Any]]] = {}
        self._wakeup = trio.Event()
        self._pumping = False
        self._change_event = trio.Event()
        self._outbox: trio.MemorySendChannel | None = None
        self._connection_scope: trio.CancelScope | None = None
        self._scopes: set[trio.CancelScope] = set()
        self._timer_task = False
        self.media: dict[str, LocalMedia] = {}          # session id -> its peer connection's media
        self.connections: list[ConnectionRecord] = []
        self.events_log: list[tuple[float, Event]] = []
        self.closed = False
        self.links = getattr(network, "links", None)    # the network's link table (media paths), if any
        self._media_paths: dict[str, Session] = {}      # call id -> session with an open media path
        self._ice_timers: dict[str, trio.CancelScope] = {}
        self._unwatch = None
        self.ice_failures: list[tuple[float, str]] = []  # (time, call id) sessions ended by ICE failure

    # -- public API --------------------------------------------------------------------------------
    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.secure else 'ws'}://{self.host}:{self.port}"

    def on(self, name: str, callback: Callable[[Event], Any]) -> None:
        """Add a listener for a UA/session event name (JsSIP's ``ua.on`` / ``session.on``)."""
        self._listeners.setdefault(name, []).append(callback)

    def start(self) -> None:
        """``ua.start()``: connect, then register."""
        if not self._timer_task:
            self._timer_task = True
            self._spawn(self._timer_loop)
        self.ua.start(trio.current_time())
        self._pump()

    def stop(self) -> None:
        """``ua.stop()``: un-REGISTER if registered, BYE/CANCEL sessions, close cleanly."""
        self.ua.stop(trio.current_time())
        self._pump()

    def close(self) -> None:
        """The page is gone: every task of this phone is cancelled, TCP closes without a goodbye, and
        the peer connections go with the page (their media paths close)."""
        self.closed = True
        for call_id in list(self._media_paths):
            self._close_media(call_id)
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        for scope in list(self._scopes):
            scope.cancel()

    def drop_transport(self) -> None:
        """The WebSocket's TCP connection breaks under the page (a network fault): the UA sees a
        close and recovers with its back-off."""
        if self._connection_scope is not None:
            self._connection_scope.cancel()

    def call(self, target: str, *, send_audio: bool = True, send_video: bool = True,
             offer: str | None = None) -> Session:
        """``ua.call(target)`` with a camera stream: the INVITE follows once ICE gathering is done.
        ``offer`` replaces the generated offer (a test sending a captured SDP)."""
        session = self.ua.call(target, trio.current_time())
        media = LocalMedia(random.Random(self._media_rng.getrandbits(64)), send_audio=send_audio,
                           send_video=send_video)
        self.media[session.id] = media
        self._pump()

        async def gather() -> None:
            await trio.sleep(self.timings.ice_gathering)
            self.ua.send_offer(session, offer if offer is not None else media.offer(), trio.current_time())
            self._pump()

        self._spawn(gather)
        return session

    def terminate(self, session: Session) -> None:
        """``session.terminate()`` (raises :class:`InvalidStateError` on an ended session)."""
        self.ua.terminate(session, trio.current_time())
        self._pump()

    def hold(self, session: Session) -> bool:
        media = self.media.get(session.id)
        if media is None or not self.ua.hold(session, media.offer("sendonly"), trio.current_time()):
            return False
        self._pump()
        return True

    def unhold(self, session: Session) -> bool:
        media = self.media.get(session.id)
        if media is None or not self.ua.unhold(session, media.offer("sendrecv"), trio.current_time()):
            return False
        self._pump()
        return True

    def mute(self, session: Session, *, audio: bool = False, video: bool = False) -> None:
        self.ua.mute(session, audio=audio, video=video)
        self._pump()

    def unmute(self, session: Session, *, audio: bool = False, video: bool = False) -> None:
        self.ua.unmute(session, audio=audio, video=video)
        self._pump()

    @property
    def is_registered(self) -> bool:
        return self.ua.registered

    @property
    def is_connected(self) -> bool:
        return self.ua.is_connected

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = 10.0) -> None:
        """Wait until ``predicate()`` holds (checked after every event)."""
        with trio.fail_after(timeout) if timeout is not None else trio.CancelScope():
            while not predicate():
                await self._changed().wait()

    async def wait_event(self, name: str, *, since: int = 0, timeout: float | None = 10.0) -> Event:
        """The first event called ``name`` at position ``since`` or later of :attr:`events_log`."""
        found: list[Event] = []

        def seen() -> bool:
            for _, event in self.events_log[since:]:
                if event.name == name:
                    found.append(event)
                    return True
            return False

        await self.wait_for(seen, timeout)
        return found[0]

    # -- plumbing ----------------------------------------------------------------------------------
    def _changed(self) -> trio.Event:
        return self._change_event

    def _notify(self) -> None:
        self._change_event.set()
        self._change_event = trio.Event()

    def _spawn(self, fn, *args) -> trio.CancelScope:
        scope = trio.CancelScope()
        self._scopes.add(scope)

        async def runner() -> None:
            try:
                with scope:
                    await fn(*args)
            finally:
                self._scopes.discard(scope)

        if self.closed:
            scope.cancel()
        self._nursery.start_soon(runner)
        return scope

    def _pump(self) -> None:
        """Move the UA's outputs: transport requests, messages, events (re-entrant calls fold in)."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while True:
                progressed = False
                for request in self.ua.transport_requests():
                    progressed = True
                    if request == "connect":
                        self._connection_scope = self._spawn(self._connection)
                    elif request == "disconnect" and self._outbox is not None:
                        self._outbox.send_nowait(_CLOSE)
                for data in self.ua.data_to_send():
                    progressed = True
                    if self._outbox is not None:
                        self._outbox.send_nowait(data.decode("utf-8", "replace"))
                for event in self.ua.events():
                    progressed = True
                    self._dispatch(event)
                if not progressed:
                    break
        finally:
            self._pumping = False
        self._wakeup.set()
        self._notify()

    def _dispatch(self, event: Event) -> None:
        self.events_log.append((trio.current_time(), event))
        if event.name == "answer" and event.session is not None:
            self._spawn(self._apply_answer, event.session, event.sdp or "")
        elif event.name in ("ended", "failed") and event.session is not None:
            self._close_media(event.session.call_id)
        for callback in list(self._listeners.get(event.name, [])):
            callback(event)

    async def _apply_answer(self, session: Session, answer: str) -> None:
        """The browser's setRemoteDescription: ``addstream`` after ``timings.addstream``, success
        (ACK, ``accepted``, ``confirmed``) after ``timings.set_remote_description``."""
        ok = answer_is_usable(answer)
        first = min(self.timings.addstream, self.timings.set_remote_description)
        await trio.sleep(first)
        if ok and session.status == SessionStatus.ANSWERED:
            self._dispatch(Event("addstream", session, originator="remote", sdp=answer))
            self._pump()
        await trio.sleep(self.timings.set_remote_description - first)
        self.ua.remote_description_applied(session, trio.current_time(), ok=ok)
        if ok and not session.terminated:
            self._open_media(session)
        self._pump()

    # -- the media path (ICE) ------------------------------------------------------------------------
    def _open_media(self, session: Session) -> None:
        if self.links is None or self.closed:
            return
        self._media_paths[session.call_id] = session
        self.links.open_media(self.name, session.call_id)
        if self._unwatch is None:
            self._unwatch = self.links.watch(self._on_link_change)
        self._check_ice(session.call_id)

    def _close_media(self, call_id: str) -> None:
        if self._media_paths.pop(call_id, None) is None:
            return
        timer = self._ice_timers.pop(call_id, None)
        if timer is not None:
            timer.cancel()
        if self.links is not None:
            self.links.close_media(self.name, call_id)

    def _on_link_change(self, change) -> None:
        for call_id in list(self._media_paths):
            self._check_ice(call_id)

    def _check_ice(self, call_id: str) -> None:
        """Start ICE's failure clock while the path is down; stop it when the path is back."""
        state = self.links.media_state(self.name, call_id) if self.links is not None else "up"
        timer = self._ice_timers.get(call_id)
        if state == "up":
            if timer is not None:
                timer.cancel()
                del self._ice_timers[call_id]
        elif timer is None and call_id in self._media_paths:
            self._ice_timers[call_id] = self._spawn(self._ice_failure, call_id)

    async def _ice_failure(self, call_id: str) -> None:
        await trio.sleep(ICE_FAILED_AFTER)
        self._ice_timers.pop(call_id, None)
        session = self._media_paths.get(call_id)
        if session is None or session.terminated:
            return
        self.ice_failures.append((trio.current_time(), call_id))
        self.ua.terminate(session, trio.current_time(), cause="RTP Timeout")
        self._pump()

    async def _timer_loop(self) -> None:
        while True:
            self._wakeup = trio.Event()
            deadline = self.ua.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                await self._wakeup.wait()
            now = trio.current_time()
            deadline = self.ua.next_deadline()
            if deadline is not None and deadline <= now:
                self.ua.handle_timers(now)
                self._pump()

    async def _connection(self) -> None:
        record = ConnectionRecord(trio.current_time())
        self.connections.append(record)
        stream: trio.abc.Stream | None = None
        try:
            try:
                with trio.fail_after(self.connect_timeout) if self.connect_timeout else trio.CancelScope():
                    stream = await self.network.connect(self.host, self.port, client=self.name)
                    if self.secure:
                        context = self.ssl_context or ssl.create_default_context()
                        stream = trio.SSLStream(stream, context, server_hostname=self.host, https_compatible=True)
                        try:
                            await stream.do_handshake()
                        except (trio.BrokenResourceError, ssl.SSLError) as exc:
                            record.outcome = f"tls failed: {exc!r}"
                            return
            except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                record.outcome = f"refused: {exc!r}"
                return
            async with trio.open_nursery() as conn_nursery:
                ws = await self._handshake(conn_nursery, stream, record)
                if ws is None:
                    conn_nursery.cancel_scope.cancel()
                    return
                record.outcome = "open"
                record.opened = trio.current_time()
                send, receive = trio.open_memory_channel[object](math.inf)
                self._outbox = send
                conn_nursery.start_soon(self._writer, ws, receive)
                self.ua.transport_connected(trio.current_time())
                self._pump()
                try:
                    while True:
                        message = await ws.get_message()
                        self.ua.receive(message, trio.current_time())
                        self._pump()
                except ConnectionClosed:
                    pass
                conn_nursery.cancel_scope.cancel()
        finally:
            self._outbox = None
            record.closed = trio.current_time()
            if stream is not None:
                await quiet_close(stream)
            if not self.closed:
                self.ua.transport_closed(trio.current_time(), error=True)
                self._pump()

    async def _handshake(self, nursery: trio.Nursery, stream: trio.abc.Stream,
                         record: ConnectionRecord) -> WebSocketConnection | None:
        """trio-websocket's opening handshake, raced against the reader ending (the server closed
        or refused): None unless it completed with subprotocol ``sip``."""
        done = trio.Event()
        failure: list[str] = []

        class _Watch:
            def start_soon(self, fn, *args, name=None) -> None:
                async def run() -> None:
                    try:
                        await fn(*args)
                    except (HandshakeError, ConnectionClosed, trio.BrokenResourceError, OSError) as exc:
                        failure.append(repr(exc))
                    finally:
                        done.set()

                nursery.start_soon(run, name=name)

        result: list[WebSocketConnection] = []
        async with trio.open_nursery() as race:
            async def reader_ended() -> None:
                await done.wait()
                race.cancel_scope.cancel()

            race.start_soon(reader_ended)
            result.append(await wrap_client_stream(
                _Watch(), stream, f"{self.host}:{self.port}", "/",  # type: ignore[arg-type]
                subprotocols=["sip"], extra_headers=[(b"Origin", self.origin.encode("latin-1", "replace"))]))
            race.cancel_scope.cancel()
        if not result:
            record.outcome = f"handshake failed: {failure[0] if failure else 'closed'}"
            return None
        ws = result[0]
        if ws.subprotocol != "sip":
            record.outcome = "handshake failed: the server did not accept subprotocol sip"
            return None
        return ws

    async def _writer(self, ws: WebSocketConnection, receive: trio.MemoryReceiveChannel) -> None:
        async for item in receive:
            if item is _CLOSE:
                with trio.move_on_after(2.0):
                    await ws.aclose()
                return
            try:
                await ws.send_message(item)
            except ConnectionClosed:
                return
