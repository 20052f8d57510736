"""The comet WebSocket listener: trio-websocket framing under CppComet's connection rules.

Per accepted stream:

1. read the HTTP request head ourselves (bounded size, bounded time: a handshake that never
   finishes is closed after ``handshake_timeout``);
2. route it like the real server (comet-ws-protocol.md 1.2, 1.5): ``GET /ws/...`` and the
   ``/comet-server/ws/`` and double-slash forms with a ``Sec-WebSocket-Key`` header upgrade; other
   requests get the plain HTTP answers; a ``/ws/`` request without the key is closed silently;
3. write the real server's exact 101 response, then hand the stream to a trio-websocket
   :class:`WebSocketConnection` driving wsproto's frame layer for the frames clients send (the
   HTTP part is already done);
4. URL errors get their error frame and a TCP close; otherwise the hub authenticates and owns the
   connection.

Where CppComet differs from RFC 6455, :class:`CometWebSocket` follows CppComet: it never sends a
Close frame (a client Close frame, a protocol error, an oversize message or a server-side close
all end in a plain TCP close, which the browser sees as an unclean close and reconnects, 7.3), a
Ping closes the connection, binary frames are commands like text frames, and frames over 65535
bytes are not delivered.  Incoming frames go straight to the hub (no queue).  Every way a client
leaves ends the same quiet way: one ``disconnect`` journal record naming the reason, no log line,
no traceback.

Outgoing frames do not go through trio-websocket (docs/decisions.md): the hub hands each
connection's :class:`_Outbox` the frame's bytes, encoded once per publish and shared by all
subscribers.  The outbox writes them to the socket at once, from inside the hub's fan-out, when
nothing is queued before them and the socket takes them (:func:`emulator.net.network.nonblocking_send`);
only when the socket would block do frames wait in the bounded outbox for the connection's writer
task, which batches whatever has accumulated into one ``send_all``.  Frames of one connection
therefore leave in the order the hub produced them, whichever path they take.  An outbox that
overflows (a client that stopped reading) closes its connection, so one slow client never holds
up the others.

Memory: a closed connection must be freed by reference counting alone, because ``cometbench
serve`` runs the cyclic collector rarely (``bench/cli.py: tune_gc``).  So nothing here forms a
reference cycle: the hub's Connection refers to the outbox (its ``deliver``/``drop``), the
trio-websocket object refers to the outbox (its callbacks), and the outbox refers to neither; it
finds the Connection by id when it needs it (an incoming command, an overflow).  wsproto's one
cycle (its frame parser is a generator that refers back to its owner) is broken when the
connection ends (:meth:`_ServerFrames.release`).  tests/integration/test_comet_memory.py checks
that thousands of closed connections leave no tracked object behind.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import cast

import trio
from trio_websocket import WebSocketConnection
from wsproto.connection import Connection as FrameConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import CloseConnection, Event, Message, Ping

from emulator.comet.hub import Hub
from emulator.journal import Journal
from emulator.net.network import Listener, Network, nonblocking_send, peer_of, quiet_close
from emulator.net.timeouts import HANDSHAKE_TIMEOUT
from emulator.profiles import Profile, Quirk
from emulator.wire import comet as w
from emulator.wire import http

OUTBOX_FRAMES = 4096  # frames queued for a connection whose socket would block, before it is closed
WRITE_BATCH = 256     # frames the writer task joins into one send_all
DRAIN_TIMEOUT = 2.0   # seconds a server-side close waits for queued frames to be written


class _ServerFrames(FrameConnection):
    """wsproto's frame layer, with the one attribute trio-websocket asks of a handshake layer."""

    client = False

    def release(self) -> None:
        """Break wsproto's one reference cycle once the connection is over.

        wsproto's FrameProtocol keeps its frame parser as a generator (``_parse_more``) whose frame
        refers back to the FrameProtocol; closing the generator lets reference counting free both.
        """
        self._proto._parse_more.close()


class CometWebSocket(WebSocketConnection):
    """A trio-websocket connection that reads client frames and closes the CppComet way.

    It never sends anything: no Close frame (spec 1.3, 7.3), no Pong; server frames are written by
    :class:`_Outbox`.  ``reason`` says why the connection ended, for the journal.

    It overrides private methods of trio-websocket 0.12 (``_send``, ``_handle_*_event``,
    ``_close_web_socket``) and runs its ``_reader_task``;
    tests/integration/test_comet_quiet_close.py::test_trio_websocket_private_api_is_what_we_rely_on
    fails loudly if an upgrade changes them.
    """

    def __init__(self, stream: trio.abc.Stream, frames: _ServerFrames, on_message: Callable[[str], None],
                 on_closed: Callable[[str], None]) -> None:
        # a frame layer without the HTTP handshake where trio-websocket expects a WSConnection
        # (docs/decisions.md, "trio-websocket's internals")
        super().__init__(stream, frames, message_queue_size=0,  # type: ignore[arg-type]
                         max_message_size=w.MAX_FRAME, receive_buffer_size=65536)
        self._on_message = on_message
        self._on_closed = on_closed
        self.reason = ""
        self._open_handshake.set()

    async def _send(self, event: Event) -> None:
        # trio-websocket only sends on its own for a closing handshake (a protocol error's Close,
        # an oversize message's 1009): CppComet closes TCP instead (spec 1.3, 7.3)
        if isinstance(event, CloseConnection):
            await self._drop(self.reason or f"protocol error ({event.code})")
            return
        await self._drop(f"unexpected {type(event).__name__} to send")  # pragma: no cover - defensive

    async def _handle_close_connection_event(self, event: CloseConnection) -> None:
        if self._wsproto.state == ConnectionState.REMOTE_CLOSING:
            reason = f"client Close frame ({event.code})"  # answered by a TCP close, never a Close frame
        else:  # wsproto turns a frame it cannot parse into a CloseConnection event
            reason = f"protocol error ({event.code}): {event.reason}"[:200]
        await self._drop(reason)

    async def _handle_ping_event(self, event: Ping) -> None:
        await self._drop("client Ping")  # the real server closes on Ping (1.3)

    async def _handle_message_event(self, event: Message) -> None:
        if event.frame_finished and not event.message_finished:
            # a fragmented message: the real server accepts only FIN frames (spec 1.3)
            self._message_parts = []
            await self._drop("fragmented frame")
            return
        self._message_size += len(event.data)
        if self._message_size > self._max_message_size:
            self._message_parts = []
            await self._drop("client frame over 65535 bytes")
            return
        self._message_parts.append(event.data)
        if event.message_finished:
            parts, self._message_parts, self._message_size = self._message_parts, [], 0
            if isinstance(parts[0], str):
                text = "".join(cast(list[str], parts))
            else:
                text = b"".join(cast(list[bytes], parts)).decode("utf-8", "replace")
            self._on_message(text)

    async def _close_web_socket(self, code: int, reason: str | None = None) -> None:
        await super()._close_web_socket(code, reason)
        self._on_closed(self.reason or "client closed the connection")

    async def _drop(self, reason: str) -> None:
        """Close TCP without any WebSocket closing handshake."""
        if not self.reason:
            self.reason = reason
        if self._close_reason is None:
            await self._close_web_socket(1006, "closed by server")
        self._reader_running = False
        await self._close_stream()
        self._close_handshake.set()


class _Outbox:
    """The write side of one comet connection: the hub's ``deliver`` and ``drop`` land here.

    ``deliver`` writes the frame's bytes straight to the socket when nothing is queued and the
    writer task is not in the middle of a ``send_all`` (so order is kept), and the socket takes
    them; what does not fit waits in ``_frames`` for :meth:`run_writer`.  More than
    :data:`OUTBOX_FRAMES` waiting frames close the connection as a slow consumer.
    """

    __slots__ = (
        "_busy",
        "_frames",
        "_lot",
        "_try_send",
        "closed",
        "conn_id",
        "hub",
        "journal",
        "reason",
        "scope",
        "slow",
        "stats",
    )

    def __init__(self, hub: Hub, journal: Journal, stats: dict[str, int],
                 try_send: Callable[[bytes], int] | None) -> None:
        self.hub = hub
        self.journal = journal
        self.stats = stats
        self.conn_id: int | None = None   # the hub's Connection, once connected (no reference: no cycle)
        self.reason = ""                  # why the connection ended, when the transport knows it
        self.closed = False               # no more frames are accepted
        self.slow = False                 # closed because the outbox overflowed
        self.scope = trio.CancelScope()   # the writer task's; its deadline bounds a server-side drain
        self._try_send = try_send         # the stream's non-blocking write, or None: always queue
        self._frames: deque[bytes] = deque()  # bytes waiting for the writer; the first may be a frame's tail
        self._busy = False                # the writer task is inside send_all
        self._lot = trio.lowlevel.ParkingLot()  # where the writer waits for frames

    # -- called by the hub (synchronous, never blocks) ---------------------------------------------
    def deliver(self, text: str, wire: bytes | None) -> None:
        if self.closed:
            return
        if wire is None:
            self.journal.record("comet", "frame_dropped", conn_id=self.conn_id,
                                data="server frame over 65535 bytes not sent")
            return
        frames = self._frames
        if not frames and not self._busy and self._try_send is not None:
            try:
                written = self._try_send(wire)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.gone(f"write failed: {exc}"[:200])
                return
            if written == len(wire):
                return
            wire = wire[written:]
        if len(frames) >= OUTBOX_FRAMES:
            self._overflow()
            return
        frames.append(wire)
        self.stats["queued_frames"] += 1
        if len(frames) == 1:
            self._lot.unpark()

    def drop(self) -> None:
        """Server-side close: write what is queued (an error frame), then close TCP.

        A client that does not read gets no grace: its writer is cancelled at once.
        """
        self.closed = True
        grace = 0.0 if self.slow else DRAIN_TIMEOUT
        self.scope.deadline = min(self.scope.deadline, trio.current_time() + grace)
        self._lot.unpark()

    def _overflow(self) -> None:
        self.slow = True  # a client that stopped reading: close it, keep the others going
        conn = self.hub.connections.get(self.conn_id) if self.conn_id is not None else None
        if conn is not None:
            self.hub.close_connection(conn, "slow consumer: outbox full")

    # -- called by the transport ---------------------------------------------------------------------
    def on_message(self, text: str) -> None:
        if self.closed:
            return
        conn = self.hub.connections.get(self.conn_id) if self.conn_id is not None else None
        if conn is not None:
            self.hub.command(conn, text)

    def gone(self, reason: str) -> None:
        """The client left (or its socket broke): nothing more can be written; stop the writer."""
        if not self.reason:
            self.reason = reason
        self.closed = True
        self._frames.clear()
        self.scope.cancel()

    async def run_writer(self, stream: trio.abc.Stream) -> None:
        """The writer task: send what ``deliver`` could not write at once, in order, batching what
        has accumulated into one ``send_all``; return when the connection is over (closed and
        drained, the client gone, or the drain deadline of a server-side close passed)."""
        frames = self._frames
        with self.scope:
            while True:
                while not frames:
                    if self.closed:
                        return
                    await self._lot.park()
                n = min(len(frames), WRITE_BATCH)
                data = frames.popleft() if n == 1 else b"".join([frames.popleft() for _ in range(n)])
                self._busy = True
                try:
                    await stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self.gone(f"write failed: {exc}"[:200])
                    return
                finally:
                    self._busy = False


class CometServer:
    def __init__(self, hub: Hub, network: Network, profile: Profile, journal: Journal, *,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, node_name: str = "n1") -> None:
        self.hub = hub
        self.network = network
        self.profile = profile
        self.journal = journal
        self.handshake_timeout = handshake_timeout
        self.node_name = node_name
        self.listener: Listener | None = None
        self.active = 0  # connections being handled
        #: frames that waited for a writer task because the socket would block (the slow path)
        self.stats = {"queued_frames": 0}

    async def serve(self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Listen and serve until cancelled; ``await nursery.start(server.serve, host, port)`` is the port."""
        await self.network.listen_and_serve("comet", host, port, self.handle, on_listen=self._listening,
                                            task_status=task_status)

    def _listening(self, listener: Listener) -> None:
        self.listener = listener

    # -- one connection ----------------------------------------------------------------------------
    async def handle(self, stream: trio.abc.Stream) -> None:
        self.active += 1
        try:
            head, leftover = await self._read_head(stream)
            if head is None:
                return
            key = head.header("Sec-WebSocket-Key", exact=True)
            if not head.target.startswith(w.URL_PREFIXES) or head.method != "GET":
                await stream.send_all(http.plain_http_response(head, self.node_name))
                return
            if key is None or len(key) > 50:
                return  # the real server closes without a response
            await stream.send_all(http.upgrade_response(
                key, with_protocol=head.header("Sec-WebSocket-Protocol") is not None))
            await self._run_websocket(stream, head, leftover)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        finally:
            self.active -= 1
            await quiet_close(stream)

    async def _read_head(self, stream: trio.abc.Stream) -> tuple[http.RequestHead | None, bytes]:
        buffer = bytearray()
        with trio.move_on_after(self.handshake_timeout):
            while True:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return None, b""
                buffer += chunk
                if not buffer[:1].isalpha():
                    # not an HTTP request line (e.g. a TLS ClientHello from a client that switched
                    # to wss): the real server treats it as plain HTTP and closes at once
                    self.journal.record("comet", "bad_request", data=bytes(buffer[:16]).hex())
                    return None, b""
                end = http.find_head_end(buffer)
                if end >= 0:
                    try:
                        return http.parse_head(bytes(buffer[:end])), bytes(buffer[end:])
                    except http.HeadError:
                        self.journal.record("comet", "bad_request", data=bytes(buffer[:200]))
                        return None, b""
                if len(buffer) > http.MAX_HEAD:
                    self.journal.record("comet", "bad_request", data="request head too large")
                    return None, b""
        self.journal.record("comet", "handshake_timeout")
        return None, b""

    async def _run_websocket(self, stream: trio.abc.Stream, head: http.RequestHead, leftover: bytes) -> None:
        channel = getattr(stream, "cometbench_messages", None)   # the virtual network's message shortcut
        if channel is not None and channel.offered and not leftover:
            from emulator.comet.virtual_ws import run_message_connection

            await run_message_connection(self, channel, head, peer_of(stream))
            return
        params = w.parse_url(head.target)
        hub = self.hub
        if params.error is not None:
            code, text = params.error
            old_shape = self.profile.on(Quirk.URL_ERRORS_V3_SHAPE) and code in (401, 406, 418)
            frame = w.url_error_frame(code, text, hub.now(), old_shape=old_shape)
            self.journal.record("comet", "url_error", data=f"{code} {head.target[:200]}")
            await stream.send_all(w.encode_server_frame(w.dumps(frame)) or b"")
            return

        outbox = _Outbox(hub, self.journal, self.stats, nonblocking_send(stream))
        frames = _ServerFrames(ConnectionType.SERVER)
        ws = CometWebSocket(stream, frames, outbox.on_message, outbox.gone)
        if leftover:
            frames.receive_data(leftover)
        peer = peer_of(stream)
        conn = hub.connect(params, deliver=outbox.deliver, drop=outbox.drop, ip=peer.host,
                           user_agent=head.header("User-Agent", exact=True) or "",
                           origin=head.header("Origin", exact=True) or head.header("origin", exact=True) or "",
                           language=head.header("Accept-Language", exact=True) or "")
        outbox.conn_id = conn.id
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ws._reader_task)
                await outbox.run_writer(stream)
                nursery.cancel_scope.cancel()
        finally:
            hub.disconnect(conn, outbox.reason or ws.reason or "closed")
            frames.release()

