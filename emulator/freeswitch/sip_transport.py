"""The fake FreeSWITCH's SIP transports: WebSocket (WSS/WS), TCP and UDP, on the network seam.

Each transport moves bytes between the network layer and a SIP core with two synchronous
methods::

    core.receive(flow: Flow, data: bytes) -> None     # one whole SIP message
    core.flow_closed(flow: Flow) -> None              # a WS/TCP connection ended

The core answers through ``flow.send(data)``, a non-blocking enqueue into the flow's outbox; a
writer task drains it.  Nothing in this module parses SIP beyond what framing needs; the core
parses every message it receives (and answers malformed requests as it sees fit).

**SIP over WebSocket** (RFC 7118; real-video-client.md 4.1).  JsSIP dials
``wss://host:7443`` with path ``/`` and ``Sec-WebSocket-Protocol: sip``; the 101 must echo
``sip`` or Chrome aborts.  Per accepted stream: TLS (``trio.SSLStream``, server side) when a
context is given, then the upgrade request head, read here (up to 16 KiB) and checked (ASCII only,
well formed for h11, else ``400``), then trio-websocket's server handshake on it; all of this must
finish within ``handshake_timeout`` seconds of accept.  Bytes that came with the request are
handed to the WebSocket layer after the 101 (wsproto alone would drop them).  A failed TLS
handshake (garbage instead of a ClientHello, an untrusted certificate) or an HTTP request that is
not a WebSocket upgrade is journaled and closed.  After the upgrade, ``idle_timeout`` (default 0:
never, as sofia's WS transport) closes a connection quiet both ways.

* Subprotocol rule: a request proposing ``sip`` is accepted with ``sip`` echoed.  A request
  proposing no subprotocol at all is accepted without one (lenient: hand-rolled test clients,
  wscat, websocat) unless ``require_subprotocol=True``.  A request proposing only other
  subprotocols is rejected with HTTP 400 (we cannot speak them, and echoing nothing would make a
  browser abort anyway).  Any path is accepted (the real client always asks for ``/``).
* Every received message, text or binary, goes to ``core.receive`` as bytes (text is UTF-8
  encoded).  Messages made only of CR/LF (keep-alive noise) are dropped.  Messages longer than
  ``max_message`` close the connection with 1009.
* Outgoing messages are sent as TEXT frames (SIP is UTF-8; JsSIP expects text), or as binary
  frames for the rare payload that is not valid UTF-8 (RFC 7118 section 5.2).
* WebSocket pings are answered by trio-websocket.

**SIP over TCP** (RFC 3261 18.3): :class:`~emulator.wire.sip.SipStreamParser` frames the stream
(Content-Length required); the core receives each message's exact bytes.  RFC 5626 keep-alives:
each CRLFCRLF ping is answered with a CRLF pong (``answer_pings=False`` ignores them).  A
malformed or oversized message, or a stream cut inside a message, is journaled (``bad_stream``),
answered ``400`` (413/505/513) through ``core.answer_malformed`` when its Via allows, and the
connection closed once that answer is written.  Timeouts (``emulator/net/timeouts.py``): the first
message must arrive, and every message must be complete, within ``head_timeout`` seconds (a
message cut off this way is answered ``408`` when its Via has arrived); a connection quiet both
ways for ``idle_timeout`` seconds (sofia's 30 minutes) is closed.

**SIP over UDP**: one datagram endpoint.  A :class:`Flow` per peer address, created on that
peer's first SIP datagram and cached in an LRU of ``max_flows`` entries (an evicted flow object
keeps working for sends; the peer's next datagram gets a fresh flow).  UDP flows never close: no
``flow_closed``.  CRLF keep-alives are ignored; a datagram that does not start with a SIP request
or status line is garbage: journaled, counted in :attr:`SipUdpTransport.garbage`, dropped, and it
creates no flow.  Outgoing datagrams go through one bounded outbox; when it is full (or a message
exceeds 65507 bytes) the datagram is dropped, as a kernel would, and SIP retransmission copes.

Connection-oriented transports (WS, TCP):

* ``core.flow_closed(flow)`` is called exactly once for every flow created, whatever ended it:
  client close, TCP drop, protocol error, outbox overflow, server shutdown, or ``flow.close()``
  called by the core.  ``flow.alive`` is False by then.
* ``flow.close()`` (from the core) is graceful: queued messages are written first, then the
  connection is closed (WebSocket close 1000, at most :data:`CLOSE_TIMEOUT` s).
* Each connection has a bounded outbox of ``outbox_size`` messages (default
  :data:`OUTBOX_MESSAGES`).  A peer that stops reading lets it fill; overflow closes that
  connection at once, so one slow or hostile client never holds up the others.
* An exception raised by the core is logged, journaled (``core_error``) and closes only that
  connection (drops only that datagram on UDP); the listener keeps serving.

Journal (service ``sip``): ``message`` with direction ``in``/``out`` and data ``<start line> |
<Call-ID>`` for every message (built only when the journal is enabled), with ``conn_id`` = the
flow id; plus ``ws_open``, ``closed``, ``tls_failed``, ``handshake_timeout``, ``bad_handshake``,
``bad_stream``, ``head_timeout``, ``idle_timeout``, ``outbox_overflow``, ``garbage``, ``core_error``.
A connection's objects are freed by reference counting when it ends (the flow is unhooked from
it, wsproto's parser generator closed, the SSLStream released): no cyclic garbage per connection.
"""

from __future__ import annotations

import functools
import logging
import re
import ssl
from collections import OrderedDict
from typing import Protocol

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection
from wsproto import ConnectionType, WSConnection
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from emulator.freeswitch.flow import Flow
from emulator.journal import Journal
from emulator.net.network import (
    MAX_DATAGRAM,
    DatagramEndpoint,
    Endpoint,
    Listener,
    Network,
    forget_traceback,
    is_peer_gone,
    peer_of,
    quiet_close,
    release_ssl_stream,
)
from emulator.net.timeouts import HANDSHAKE_TIMEOUT, NEVER, SIP_TCP_HEAD_TIMEOUT, SIP_TCP_IDLE_TIMEOUT, ReadDeadline
from emulator.net.websocket import release_frame_parser
from emulator.wire import http
from emulator.wire.sip import MAX_BODY_BYTES, MAX_HEADER_BYTES, SipParseError, SipStreamParser, is_keepalive

log = logging.getLogger(__name__)

#: Messages queued per WS/TCP connection before the connection is closed as a slow consumer.
#: A SIP flow carries a handful of messages per transaction, so 256 is far beyond any honest peer.
OUTBOX_MESSAGES = 256
#: Datagrams queued for the UDP socket before further ones are dropped.
UDP_OUTBOX = 4096
#: UDP peer addresses whose flows are cached.
UDP_MAX_FLOWS = 4096
#: Largest HTTP upgrade request head accepted on the SIP WebSocket port.
MAX_UPGRADE_HEAD = http.MAX_HEAD
#: Seconds a graceful server-side close waits for the queued messages and the close handshake.
CLOSE_TIMEOUT = 2.0

SERVICE = "sip"
#: The answer to an upgrade request we refuse before wsproto sees it.
_BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
                b"Connection: close\r\n\r\nBad Request\n")
#: What wsproto raises (beyond its own protocol errors, which trio-websocket handles) on bytes it
#: cannot take: decoding errors in headers, bad values.
_WSPROTO_INPUT_ERRORS = (UnicodeError, ValueError, LocalProtocolError, RemoteProtocolError)
#: WebSocket close codes that mean the client broke the protocol (journaled as ``bad_stream``).
_BAD_STREAM_CODES = (1002, 1003, 1007, 1009)


class SipCoreLike(Protocol):
    def receive(self, flow: Flow, data: bytes) -> None: ...

    def flow_closed(self, flow: Flow) -> None: ...


# --- helpers --------------------------------------------------------------------------------------

_CALL_ID_RE = re.compile(rb"\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
_START_LINE_RE = re.compile(
    rb"[\r\n]*(?:[Ss][Ii][Pp]/[0-9]{1,3}\.[0-9]{1,3} [1-6][0-9][0-9] "
    rb"|[!%'*+\-.0-9A-Z_`a-z~]+ [\x21-\x7e]+ [Ss][Ii][Pp]/[0-9]{1,3}\.[0-9]{1,3}\r?\n)")


def summary(data: bytes) -> str:
    """``<start line> | <Call-ID>`` of a SIP message, for the journal (never raises)."""
    data = bytes(data[:8192])
    start = len(data) - len(data.lstrip(b"\r\n"))
    end = data.find(b"\n", start)
    line = data[start:end if end >= 0 else len(data)][:200].rstrip(b"\r")
    m = _CALL_ID_RE.search(data)
    call_id = m.group(1).strip()[:200] if m else b""
    return f"{line.decode('utf-8', 'replace')} | {call_id.decode('utf-8', 'replace')}"


def looks_like_sip(data: bytes) -> bool:
    """Whether ``data`` starts (after optional CR/LFs) with a SIP request or status line."""
    return _START_LINE_RE.match(data, 0, 1200) is not None


def _local_of(stream: trio.abc.Stream, default: Endpoint) -> Endpoint:
    """The local address of an OS stream (the listener's endpoint for virtual streams)."""
    while True:
        sock = getattr(stream, "socket", None)
        if sock is not None:
            try:
                host, port = sock.getsockname()[:2]
                return Endpoint(host, port)
            except OSError:
                return default
        inner = getattr(stream, "transport_stream", None)
        if inner is None:
            return default
        stream = inner


#: What a stream raises when the peer reset the connection or the stream is already closed.  Caught
#: where it happens, so it never travels through a nursery: an exception group that mixes it with
#: the Cancelled of a sibling task leaves a reference cycle of tracebacks and frames behind.
_PEER_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError)


def _is_network_error(exc: BaseException) -> bool:
    """A peer going away (possibly wrapped in exception groups by nurseries): not worth a log line."""
    return is_peer_gone(exc, (ConnectionClosed,))


def _dropped(data: bytes) -> None:
    """What a closed connection's flow sends through (the core may keep the flow, e.g. a ghost's)."""


def _nothing() -> None:
    pass


async def _read_head(stream: trio.abc.Stream) -> tuple[bytes, bytes]:
    """The HTTP request head of a WebSocket upgrade, and what followed it in the same reads.

    wsproto's server handshake drops bytes that arrive in the same read as the request (a client
    that sends its first frame without waiting for the 101 would lose it), so the transport reads
    the head itself and replays it, then the rest, to trio-websocket (:class:`_Replay`).
    ``(b"", b"")`` when the peer closed or sent something that is not an HTTP head.
    """
    buffer = bytearray()
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            return bytes(buffer[:end + 4]), bytes(buffer[end + 4:])
        if len(buffer) > MAX_UPGRADE_HEAD or (buffer and not buffer[:1].isalpha()):
            return b"", b""
        chunk = await stream.receive_some(65536)
        if not chunk:
            return b"", b""
        buffer += chunk


class _Replay(trio.abc.Stream):
    """A stream whose first read returns ``head``; later reads wait for :meth:`release` (the 101 is
    out), then return ``rest``, then the inner stream's bytes."""

    def __init__(self, inner: trio.abc.Stream, head: bytes, rest: bytes) -> None:
        self._inner = inner
        self._head = head
        self._rest = rest
        self._released = trio.Event()

    def release(self) -> None:
        self._released.set()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._head:
            await trio.lowlevel.checkpoint()
            chunk, self._head = self._head, b""
            return chunk
        await self._released.wait()
        if self._rest:
            n = len(self._rest) if max_bytes is None else max_bytes
            chunk, self._rest = self._rest[:n], self._rest[n:]
            return chunk
        return await self._inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Base:
    """What all three transports share: journaling and guarded calls into the core."""

    kind = ""

    def __init__(self, core: SipCoreLike, network: Network, journal: Journal) -> None:
        self.core = core
        self.network = network
        self.journal = journal

    def _connection_error(self, exc: Exception, peer: Endpoint, flow: Flow | None) -> None:
        """The per-connection boundary: a peer that went away is normal; anything else is logged,
        journaled, and ends only this connection."""
        if not _is_network_error(exc):
            log.error("SIP %s connection from %s failed", self.kind, peer, exc_info=exc)
            self.journal.record(SERVICE, "error", conn_id=flow.id if flow else None,
                                data=f"{peer} {type(exc).__name__}: {exc}"[:300])
        forget_traceback(exc)

    def _deliver(self, flow: Flow, data: bytes) -> bool:
        """Hand one message to the core; False if the core raised (the caller drops the flow)."""
        if self.journal.enabled:
            self.journal.record(SERVICE, "message", direction="in", conn_id=flow.id, data=summary(data))
        try:
            self.core.receive(flow, data)
            return True
        except Exception as exc:
            log.exception("SIP core failed on a message from %s %s", flow.transport, flow.peer)
            self.journal.record(SERVICE, "core_error", conn_id=flow.id, data=f"{type(exc).__name__}: {exc}")
            return False

    def _flow_closed(self, flow: Flow) -> None:
        flow.alive = False
        self.journal.record(SERVICE, "closed", conn_id=flow.id, data=f"{flow.transport} {flow.peer}")
        try:
            self.core.flow_closed(flow)
        except Exception as exc:
            log.exception("SIP core failed on flow_closed for %s %s", flow.transport, flow.peer)
            self.journal.record(SERVICE, "core_error", conn_id=flow.id, data=f"{type(exc).__name__}: {exc}")


class _StreamBase(_Base):
    """What the two connection-oriented transports (WS, TCP) share: the stream listener."""

    def __init__(self, core: SipCoreLike, network: Network, journal: Journal) -> None:
        super().__init__(core, network, journal)
        self.listener: Listener | None = None

    def _listening(self, listener: Listener) -> None:
        self.listener = listener

    def _local(self, stream: trio.abc.Stream) -> Endpoint:
        """Where the peer reached us: the OS socket's address, else the listener's endpoint."""
        return _local_of(stream, self.listener.endpoint if self.listener else Endpoint("?", 0))


class _Connection:
    """Per WS/TCP connection: the flow, its bounded outbox and the scope that ends it."""

    def __init__(self, transport: _Base, outbox_size: int) -> None:
        self.transport = transport
        self.send_channel, self.receive_channel = trio.open_memory_channel[bytes](outbox_size)
        self.scope = trio.CancelScope()
        self.flow: Flow | None = None
        self.overflowed = False
        self.deadline: ReadDeadline | None = None  # the writer reports sends to it (idle clock)

    def make_flow(self, kind: str, peer: Endpoint, local: Endpoint) -> Flow:
        self.flow = Flow(kind, peer, local, send_bytes=self.put, close=self.close)
        return self.flow

    def put(self, data: bytes) -> None:
        journal = self.transport.journal
        if journal.enabled and self.flow is not None:
            journal.record(SERVICE, "message", direction="out", conn_id=self.flow.id, data=summary(data))
        self.put_raw(data)

    def put_raw(self, data: bytes) -> None:
        try:
            self.send_channel.send_nowait(bytes(data))
        except trio.WouldBlock:
            if not self.overflowed:
                self.overflowed = True
                self.transport.journal.record(SERVICE, "outbox_overflow",
                                              conn_id=self.flow.id if self.flow else None,
                                              data=str(self.flow.peer) if self.flow else "")
            self.scope.cancel()  # a peer that stopped reading: drop it, keep the others going
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def close(self) -> None:
        """Graceful close requested by the core: the writer drains the outbox, then closes."""
        self.send_channel.close()

    def release(self) -> None:
        """The connection is over: unhook the flow from it.  The flow's ``send_bytes``/``close`` are
        bound methods of this object and it holds the flow, a reference cycle; cutting it here
        lets reference counting free the connection at once (no wait for the cyclic collector)."""
        flow = self.flow
        if flow is not None:
            flow.send_bytes, flow.close = _dropped, _nothing
            self.flow = None
        self.send_channel.close()


# --- SIP over WebSocket ---------------------------------------------------------------------------


class SipWebSocketTransport(_StreamBase):
    """SIP over secure WebSocket (``tls_context`` given: flows are "WSS") or plain WebSocket ("WS")."""

    def __init__(self, core: SipCoreLike, network: Network, journal: Journal, *,
                 tls_context: ssl.SSLContext | None, max_message: int = 65536,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, outbox_size: int = OUTBOX_MESSAGES,
                 require_subprotocol: bool = False, idle_timeout: float = NEVER) -> None:
        super().__init__(core, network, journal)
        self.tls_context = tls_context
        self.max_message = max_message
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout  # after the upgrade; 0 = never, as sofia's WS transport
        self.outbox_size = outbox_size
        self.require_subprotocol = require_subprotocol
        self.kind = "WSS" if tls_context is not None else "WS"
        self.active = 0  # accepted streams being served (handshaking or open)

    async def serve(self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        await self.network.listen_and_serve("sip_ws", host, port, self.handle, on_listen=self._listening,
                                            task_status=task_status)

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.active += 1
        peer = peer_of(stream)
        local = self._local(stream)
        conn = _Connection(self, self.outbox_size)
        deadline = trio.current_time() + self.handshake_timeout
        tls: trio.SSLStream | None = None
        try:
            with conn.scope:
                ws_stream: trio.abc.Stream = stream
                if self.tls_context is not None:
                    # https_compatible: a browser may drop TCP without close_notify; a normal close
                    tls = trio.SSLStream(stream, self.tls_context, server_side=True, https_compatible=True)
                    if not await self._tls_handshake(tls, peer, deadline):
                        return
                    ws_stream = tls
                async with trio.open_nursery() as nursery:
                    await self._run(nursery, ws_stream, conn, peer, local, deadline)
                    nursery.cancel_scope.cancel()
        except Exception as exc:  # noqa: BLE001 - the per-connection boundary: logged unless the peer left
            self._connection_error(exc, peer, conn.flow)
        finally:
            self.active -= 1
            if conn.flow is not None:
                self._flow_closed(conn.flow)
            conn.release()
            await quiet_close(stream)
            release_ssl_stream(tls)

    async def _tls_handshake(self, tls: trio.SSLStream, peer: Endpoint, deadline: float) -> bool:
        with trio.move_on_at(deadline):
            try:
                await tls.do_handshake()
                return True
            except trio.BrokenResourceError as exc:
                self.journal.record(SERVICE, "tls_failed", data=f"{peer} {exc.__cause__!r}"[:300])
                return False
        self.journal.record(SERVICE, "handshake_timeout", data=f"{peer} during TLS")
        return False

    async def _run(self, nursery: trio.Nursery, stream: trio.abc.Stream, conn: _Connection,
                   peer: Endpoint, local: Endpoint, deadline: float) -> None:
        head = None
        with trio.move_on_at(deadline):
            head = await _read_head(stream)
        if head is None or not head[0]:
            if head is None:
                self.journal.record(SERVICE, "handshake_timeout", data=f"{peer} during HTTP upgrade")
            else:
                self.journal.record(SERVICE, "bad_handshake", data=f"{peer} no WebSocket upgrade request")
            return
        problem = http.strict_head_problem(head[0])
        if problem:
            # refused here, before wsproto: it would fail with UnicodeDecodeError on a non-ASCII byte,
            # and h11's parse errors leave a reference cycle behind
            self.journal.record(SERVICE, "bad_handshake", data=f"{peer} {problem}"[:300])
            with trio.move_on_at(deadline):
                await stream.send_all(_BAD_REQUEST)
            return
        replay = _Replay(stream, *head)
        ws = WebSocketConnection(replay, WSConnection(ConnectionType.SERVER), message_queue_size=1,
                                 max_message_size=self.max_message, receive_buffer_size=65536)
        try:
            await self._serve_websocket(nursery, ws, replay, conn, peer, local, deadline)
        finally:
            release_frame_parser(ws)

    async def _serve_websocket(self, nursery: trio.Nursery, ws: WebSocketConnection, replay: _Replay,
                               conn: _Connection, peer: Endpoint, local: Endpoint, deadline: float) -> None:
        handshake = trio.CancelScope(deadline=deadline)
        reader_done = False

        async def reader() -> None:
            nonlocal reader_done
            try:
                await ws._reader_task()
            except _WSPROTO_INPUT_ERRORS as exc:  # input wsproto could not take: the client's fault
                self.journal.record(SERVICE, "bad_stream", conn_id=conn.flow.id if conn.flow else None,
                                    data=f"{peer} {type(exc).__name__}: {exc}"[:300])
            finally:
                # EOF or a bad HTTP request before the upgrade: stop waiting for it
                reader_done = True
                handshake.cancel()

        nursery.start_soon(reader)
        request = None
        with handshake:
            request = await ws._get_request()
        if request is None:
            if reader_done:
                self.journal.record(SERVICE, "bad_handshake", data=f"{peer} no WebSocket upgrade request")
            else:
                self.journal.record(SERVICE, "handshake_timeout", data=f"{peer} during HTTP upgrade")
            return

        proposed = request.proposed_subprotocols
        if "sip" in proposed:
            subprotocol: str | None = "sip"
        elif not proposed and not self.require_subprotocol:
            subprotocol = None
        else:
            self.journal.record(SERVICE, "bad_handshake",
                                data=f"{peer} subprotocols {list(proposed)!r}: 'sip' required (RFC 7118)")
            with trio.move_on_at(deadline):
                await request.reject(400, body=b"SIP over WebSocket needs Sec-WebSocket-Protocol: sip\r\n")
            return
        with trio.move_on_at(deadline) as accept_scope:
            ws = await request.accept(subprotocol=subprotocol)
        if accept_scope.cancelled_caught:
            self.journal.record(SERVICE, "handshake_timeout", data=f"{peer} writing the 101")
            return
        replay.release()  # frames that came with the request go to the WebSocket layer now

        flow = conn.make_flow(self.kind, peer, local)
        self.journal.record(SERVICE, "ws_open", conn_id=flow.id,
                            data=f"{self.kind} {peer} path={request.path} subprotocol={subprotocol}")
        nursery.start_soon(self._writer, ws, conn)
        idle = ReadDeadline(idle=self.idle_timeout)
        conn.deadline = idle
        with idle.scope:
            while True:
                try:
                    message = await ws.get_message()
                except ConnectionClosed:
                    break
                idle.received(pending=False)
                data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
                if is_keepalive(data):
                    continue
                if not self._deliver(flow, data):
                    break
        if idle.expired:
            self.journal.record(SERVICE, "idle_timeout", conn_id=flow.id, data=f"{peer} {self.idle_timeout:g} s")
            return
        reason = ws.closed
        if reason is not None and reason.code in _BAD_STREAM_CODES:
            # a protocol error, invalid UTF-8 in a text frame (1007), an oversize message (1009)
            self.journal.record(SERVICE, "bad_stream", conn_id=flow.id,
                                data=f"{peer} {reason.code} {reason.reason}"[:300])

    async def _writer(self, ws: WebSocketConnection, conn: _Connection) -> None:
        try:
            async for data in conn.receive_channel:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    await ws.send_message(data)
                else:
                    await ws.send_message(text)
                if conn.deadline is not None:
                    conn.deadline.sent()
            # the core called flow.close(): everything queued is written; close the WebSocket
            with trio.move_on_after(CLOSE_TIMEOUT):
                await ws.aclose(1000)
        except ConnectionClosed:
            pass
        conn.scope.cancel()


# --- SIP over TCP ---------------------------------------------------------------------------------


class SipTcpTransport(_StreamBase):
    """SIP over TCP, RFC 3261 18.3 framing, RFC 5626 CRLF keep-alives, head and idle timeouts."""

    kind = "TCP"

    def __init__(self, core: SipCoreLike, network: Network, journal: Journal, *,
                 outbox_size: int = OUTBOX_MESSAGES, answer_pings: bool = True,
                 max_header_bytes: int = MAX_HEADER_BYTES, max_body_bytes: int = MAX_BODY_BYTES,
                 head_timeout: float = SIP_TCP_HEAD_TIMEOUT, idle_timeout: float = SIP_TCP_IDLE_TIMEOUT) -> None:
        super().__init__(core, network, journal)
        self.outbox_size = outbox_size
        self.answer_pings = answer_pings
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.head_timeout = head_timeout
        self.idle_timeout = idle_timeout
        self.active = 0

    async def serve(self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        await self.network.listen_and_serve("sip", host, port, self.handle, on_listen=self._listening,
                                            task_status=task_status)

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.active += 1
        conn = _Connection(self, self.outbox_size)
        flow = conn.make_flow("TCP", peer_of(stream),
                              self._local(stream))
        # the first message must arrive as soon as any message must be complete; then sofia's idle rule
        conn.deadline = ReadDeadline(start=self.head_timeout, head=self.head_timeout, idle=self.idle_timeout)
        try:
            with conn.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, stream, conn)
                    if await self._reader(stream, conn, flow, conn.deadline):
                        # a last answer (400, 408) is queued: let the writer send it, then close
                        conn.close()
                        nursery.cancel_scope.deadline = trio.current_time() + CLOSE_TIMEOUT
                    else:
                        nursery.cancel_scope.cancel()
        except Exception as exc:  # noqa: BLE001 - the per-connection boundary: logged unless the peer left
            self._connection_error(exc, flow.peer, flow)
        finally:
            self.active -= 1
            self._flow_closed(flow)
            conn.release()
            await quiet_close(stream)

    async def _reader(self, stream: trio.abc.Stream, conn: _Connection, flow: Flow, deadline: ReadDeadline) -> bool:
        """Read and deliver messages until EOF, an error or a timeout.  True if a final answer was
        queued that should be written before the connection closes."""
        parser = SipStreamParser(max_header_bytes=self.max_header_bytes, max_body_bytes=self.max_body_bytes)
        raw = bytearray()  # mirrors the parser's buffer, so the core gets each message's exact bytes
        started = False
        with deadline.scope:
            try:
                while True:
                    try:
                        chunk = await stream.receive_some(65536)
                    except _PEER_GONE:  # a reset: over, without an exception through the nursery
                        return False
                    if not chunk:
                        parser.feed_eof()  # raises if the peer stopped inside a message
                        return False
                    raw += chunk
                    parser.receive_data(chunk)
                    while True:
                        before, pings = parser.buffered, parser.pings
                        message = parser.next_message()
                        consumed = before - parser.buffered
                        if self.answer_pings:
                            for _ in range(parser.pings - pings):
                                conn.put_raw(b"\r\n")  # RFC 5626 3.5.1: CRLFCRLF ping, CRLF pong
                        if message is None:
                            del raw[:consumed]  # keep-alive CR/LFs only
                            break
                        data = bytes(raw[:consumed]).lstrip(b"\r\n")
                        del raw[:consumed]
                        if not started:
                            started = True
                            deadline.settle()
                        if not self._deliver(flow, data):
                            return False
                    deadline.received(pending=parser.buffered > 0)
            except SipParseError as exc:
                # sofia answers what it cannot parse when the Via allows (then stops reading)
                self.journal.record(SERVICE, "bad_stream", conn_id=flow.id, data=f"{flow.peer} {exc}"[:300])
                return self._answer_malformed(flow, bytes(raw), exc.status, exc.reason)
        pending = parser.buffered > 0
        if pending:
            self.journal.record(SERVICE, "head_timeout", conn_id=flow.id, data=f"{flow.peer} {len(raw)} bytes pending")
        else:
            self.journal.record(SERVICE, "idle_timeout", conn_id=flow.id, data=str(flow.peer))
        return pending and self._answer_malformed(flow, bytes(raw), 408, None)

    def _answer_malformed(self, flow: Flow, data: bytes, status: int, reason: str | None) -> bool:
        answer = getattr(self.core, "answer_malformed", None)
        if answer is None:
            return False
        try:
            return bool(answer(flow, data, status, reason))
        except Exception as exc:  # the core's bug must not hide the close
            log.exception("SIP core failed answering a malformed message from %s", flow.peer)
            self.journal.record(SERVICE, "core_error", conn_id=flow.id, data=f"{type(exc).__name__}: {exc}")
            return False

    async def _writer(self, stream: trio.abc.Stream, conn: _Connection) -> None:
        receive = conn.receive_channel
        deadline = conn.deadline
        while True:
            try:
                batch = [await receive.receive()]
            except (trio.EndOfChannel, trio.ClosedResourceError):
                break  # flow.close(): all queued bytes are written
            while len(batch) < 64:
                try:
                    batch.append(receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
            try:
                await stream.send_all(b"".join(batch))
            except _PEER_GONE:
                break
            if deadline is not None:
                deadline.sent()
        conn.scope.cancel()


# --- SIP over UDP ---------------------------------------------------------------------------------


class SipUdpTransport(_Base):
    """SIP over UDP: one datagram endpoint, a cached flow per peer address."""

    kind = "UDP"

    def __init__(self, core: SipCoreLike, network: Network, journal: Journal, *,
                 max_flows: int = UDP_MAX_FLOWS, outbox_size: int = UDP_OUTBOX,
                 buffer: int | None = None) -> None:
        super().__init__(core, network, journal)
        self.max_flows = max_flows
        self.outbox_size = outbox_size
        self.buffer = buffer
        self.listener: DatagramEndpoint | None = None
        self.flows: OrderedDict[Endpoint, Flow] = OrderedDict()
        self._outbox: trio.MemorySendChannel | None = None
        self.garbage = 0       # datagrams dropped as not SIP
        self.dropped_out = 0   # outgoing datagrams dropped (outbox full, too large)

    async def serve(self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Bind and serve until cancelled; ``await nursery.start(transport.serve, host, port)`` is the port."""
        await self.network.bind_and_serve("sip", host, port, self._run, buffer=self.buffer, on_bind=self._bound,
                                          task_status=task_status)

    def _bound(self, endpoint: DatagramEndpoint) -> None:
        self.listener = endpoint

    async def _run(self, endpoint: DatagramEndpoint) -> None:
        send, receive = trio.open_memory_channel[tuple[bytes, Endpoint]](self.outbox_size)
        self._outbox = send
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, receive)
                await self._reader()
                nursery.cancel_scope.cancel()
        finally:
            self._outbox = None
            send.close()

    def flow_for(self, peer: Endpoint) -> Flow:
        """The cached flow of a peer address (created if new); the core may use it to send first."""
        flow = self.flows.get(peer)
        if flow is None:
            local = self.listener.endpoint if self.listener is not None else Endpoint("?", 0)
            flow = Flow("UDP", peer, local, send_bytes=lambda data: None)
            flow.send_bytes = functools.partial(self._sendto, peer, flow.id)
            self.flows[peer] = flow
            if len(self.flows) > self.max_flows:
                self.flows.popitem(last=False)  # least recently heard from
        else:
            self.flows.move_to_end(peer)
        return flow

    async def _reader(self) -> None:
        sock = self.listener
        assert sock is not None
        while True:
            try:
                data, source = await sock.recvfrom()
            except trio.ClosedResourceError:
                return
            except OSError as exc:  # e.g. an ICMP error reported on some platforms: keep serving
                self.journal.record(SERVICE, "udp_error", data=repr(exc))
                await trio.sleep(0.001)
                continue
            self.datagram(data, source)

    def datagram(self, data: bytes, source: Endpoint) -> None:
        """One received datagram (public so tests and replays can inject)."""
        if is_keepalive(data):
            return
        if not looks_like_sip(data):
            self.garbage += 1
            if self.journal.enabled:
                self.journal.record(SERVICE, "garbage", data=f"{source} {len(data)} bytes {data[:16].hex()}")
            return
        self._deliver(self.flow_for(source), data)

    def _sendto(self, peer: Endpoint, flow_id: int, data: bytes) -> None:
        if self.journal.enabled:
            self.journal.record(SERVICE, "message", direction="out", conn_id=flow_id, data=summary(data))
        if len(data) > MAX_DATAGRAM or self._outbox is None:
            self.dropped_out += 1
            return
        try:
            self._outbox.send_nowait((bytes(data), peer))
        except trio.WouldBlock:
            self.dropped_out += 1  # as a full socket buffer would
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.dropped_out += 1

    async def _writer(self, receive: trio.MemoryReceiveChannel) -> None:
        sock = self.listener
        assert sock is not None
        async for data, peer in receive:
            try:
                await sock.sendto(data, peer)
            except trio.ClosedResourceError:
                return
            except OSError as exc:
                self.dropped_out += 1
                self.journal.record(SERVICE, "udp_error", data=f"sendto {peer}: {exc!r}")
