"""The comet WebSocket listener: trio-websocket framing under CppComet's connection rules.

Per accepted stream:

1. read the HTTP request head ourselves (bounded size, bounded time: a handshake that never
   finishes is closed after ``handshake_timeout``);
2. route it like the real server (comet-ws-protocol.md 1.2, 1.5): ``GET /ws/...`` and the
   ``/comet-server/ws/`` and double-slash forms with a ``Sec-WebSocket-Key`` header upgrade; other
   requests get the plain HTTP answers; a ``/ws/`` request without the key is closed silently;
3. write the real server's exact 101 response, then hand the stream to a trio-websocket
   :class:`WebSocketConnection` driving wsproto's frame layer (the HTTP part is already done);
4. URL errors get their error frame and a TCP close; otherwise the hub authenticates and owns the
   connection.

Where CppComet differs from RFC 6455, :class:`CometWebSocket` follows CppComet: it never sends a
Close frame (a client Close frame, a protocol error, an oversize message or a server-side close
all end in a plain TCP close, which the browser sees as an unclean close and reconnects, 7.3), a
Ping closes the connection, binary frames are commands like text frames, and frames over 65535
bytes are not delivered.  Incoming frames go straight to the hub (no queue); outgoing frames go
through a bounded per-connection outbox written by one task, batching whatever has accumulated
into one ``send_all``.  A connection whose outbox overflows (a client that stopped reading) is
closed, so one slow client never holds up the others.
"""

from __future__ import annotations

import trio
from trio_websocket import WebSocketConnection
from wsproto.connection import Connection as FrameConnection, ConnectionType
from wsproto.events import CloseConnection, Ping, TextMessage

from emulator.comet.hub import Hub
from emulator.journal import Journal
from emulator.net.network import Listener, Network, peer_of
from emulator.profiles import Profile
from emulator.wire import comet as w
from emulator.wire import http

OUTBOX_FRAMES = 4096
DRAIN_TIMEOUT = 2.0  # seconds a server-side close waits for queued frames to be written


class _ServerFrames(FrameConnection):
    """wsproto's frame layer, with the one attribute trio-websocket asks of a handshake layer."""

    client = False


class CometWebSocket(WebSocketConnection):
    """A trio-websocket connection that closes the CppComet way (never a Close frame)."""

    def __init__(self, stream: trio.abc.Stream, on_message, on_closed) -> None:
        super().__init__(stream, _ServerFrames(ConnectionType.SERVER), message_queue_size=0,
                         max_message_size=w.MAX_FRAME, receive_buffer_size=65536)
        self._on_message = on_message
        self._on_closed = on_closed
        self._open_handshake.set()

    async def _send(self, event) -> None:  # type: ignore[override]
        if isinstance(event, CloseConnection):
            # CppComet never answers or sends a Close frame: it closes TCP (spec 1.3, 7.3).
            await self._drop()
            return
        await super()._send(event)

    async def _handle_ping_event(self, event: Ping) -> None:  # type: ignore[override]
        await self._drop()  # the real server closes on Ping (1.3)

    async def _handle_message_event(self, event) -> None:  # type: ignore[override]
        if event.frame_finished and not event.message_finished:
            # a fragmented message: the real server accepts only FIN frames (spec 1.3)
            self._message_parts = []
            await self._drop()
            return
        self._message_size += len(event.data)
        if self._message_size > self._max_message_size:
            self._message_parts = []
            await self._drop()
            return
        self._message_parts.append(event.data)
        if event.message_finished:
            parts, self._message_parts, self._message_size = self._message_parts, [], 0
            if isinstance(parts[0], str):
                text = "".join(parts)
            else:
                text = b"".join(parts).decode("utf-8", "replace")
            self._on_message(text)

    async def _close_web_socket(self, code: int, reason: str | None = None) -> None:  # type: ignore[override]
        await super()._close_web_socket(code, reason)
        self._on_closed()

    async def _drop(self) -> None:
        """Close TCP without any WebSocket closing handshake."""
        if self._close_reason is None:
            await self._close_web_socket(1006, "closed by server")
        self._reader_running = False
        await self._close_stream()
        self._close_handshake.set()

    async def send_texts(self, texts: list[str]) -> None:
        """Write several text frames with one ``send_all``."""
        data = b"".join(self._wsproto.send(TextMessage(data=t)) for t in texts)
        async with self._stream_lock:
            await self._stream.send_all(data)


class CometServer:
    def __init__(self, hub: Hub, network: Network, profile: Profile, journal: Journal, *,
                 handshake_timeout: float = 10.0, node_name: str = "n1") -> None:
        self.hub = hub
        self.network = network
        self.profile = profile
        self.journal = journal
        self.handshake_timeout = handshake_timeout
        self.node_name = node_name
        self.listener: Listener | None = None
        self.active = 0

    async def serve(self, host: str, port: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.listener = await self.network.listen("comet", host, port)
        try:
            await self.network.serve(self.listener, self.handle, service="comet", task_status=task_status)
        finally:
            await self.listener.aclose()

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
            with trio.CancelScope(shield=True):
                await _quiet_close(stream)

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
            old_shape = self.profile.on("url_errors_v3_shape") and code in (401, 406, 418)
            frame = w.url_error_frame(code, text, hub.now(), old_shape=old_shape)
            ws = CometWebSocket(stream, lambda t: None, lambda: None)
            self.journal.record("comet", "url_error", data=f"{code} {head.target[:200]}")
            await ws.send_texts([w.dumps(frame)])
            return

        send, receive = trio.open_memory_channel[str | None](OUTBOX_FRAMES)
        state: dict = {"conn": None, "closed": False, "slow": False}
        writer_scope = trio.CancelScope()

        def deliver(text: str) -> None:
            try:
                send.send_nowait(text)
            except trio.WouldBlock:  # a client that stopped reading: close it, keep the others going
                state["slow"] = True
                conn = state["conn"]
                if conn is not None:
                    hub.close_connection(conn, "slow consumer: outbox full")
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass

        def drop() -> None:
            """Server-side close: write what is queued (an error frame), then close TCP.

            A client that does not read gets no grace: its writer is cancelled at once.
            """
            state["closed"] = True
            send.close()
            grace = 0.0 if state["slow"] else DRAIN_TIMEOUT
            writer_scope.deadline = min(writer_scope.deadline, trio.current_time() + grace)

        def on_message(text: str) -> None:
            conn = state["conn"]
            if conn is not None:
                hub.command(conn, text)

        def on_closed() -> None:
            state["closed"] = True
            send.close()

        ws = CometWebSocket(stream, on_message, on_closed)
        if leftover:
            ws._wsproto.receive_data(leftover)
        peer = peer_of(stream)
        conn = hub.connect(params, deliver=deliver, drop=drop, ip=peer.host,
                           user_agent=head.header("User-Agent", exact=True) or "",
                           origin=head.header("Origin", exact=True) or head.header("origin", exact=True) or "",
                           language=head.header("Accept-Language", exact=True) or "")
        state["conn"] = conn
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ws._reader_task)
                with writer_scope:
                    await self._writer(ws, receive)
                nursery.cancel_scope.cancel()
        finally:
            hub.disconnect(conn, "closed")

    async def _writer(self, ws: CometWebSocket, receive: trio.MemoryReceiveChannel) -> None:
        max_frame = w.MAX_FRAME
        while True:
            try:
                first = await receive.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return
            batch = [first]
            while len(batch) < 256:
                try:
                    batch.append(receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
            texts = [t for t in batch if len(t) * 4 <= max_frame or len(t.encode()) <= max_frame]
            if len(texts) != len(batch):
                self.journal.record("comet", "frame_dropped", data="server frame over 65535 bytes not sent")
            if texts:
                await ws.send_texts(texts)


async def _quiet_close(stream: trio.abc.Stream) -> None:
    try:
        await trio.aclose_forcefully(stream)
    except Exception:  # pragma: no cover - closing a dead stream
        pass
