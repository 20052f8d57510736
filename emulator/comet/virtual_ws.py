"""The comet WebSocket over the message shortcut of the virtual network (:class:`emulator.net.links.MessageChannel`).

On the in-memory network a virtual browser (``bench/clients/comet.py``) and this server are in one
process; after the HTTP upgrade, which still goes over the bytes exactly as before, they hand each other
whole text messages instead of WebSocket frames.  Everything above the framing is the same: the same
:class:`~emulator.comet.hub.Hub` calls (``connect``, ``command``, ``disconnect``), the same frame texts,
the same journal records, and the rules :class:`~emulator.comet.server.CometWebSocket` applies to
frames: a client Close frame is answered by closing the connection (never a Close frame back), a
client message over 65,535 bytes closes the connection, a server frame over 65,535 bytes is not sent
(``frame_dropped``), a server-side close ends the connection after the frames already sent.  Link
conditions time each message like the frame it stands for.

Why: in virtual time a long call is mostly the real client's heartbeat (a ping a second, answered,
each event sent three times); masking, framing and parsing those frames on both ends, and the tasks
that move the bytes, were most of what an hour of call cost.  ``tests/integration/test_message_shortcut.py``
shows that the same frames arrive over both paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from emulator.profiles import Quirk
from emulator.wire import comet as w
from emulator.wire import http

if TYPE_CHECKING:  # pragma: no cover
    from emulator.comet.server import CometServer
    from emulator.net.links import MessageChannel

__all__ = ["run_message_connection", "server_wire_length", "client_wire_length"]


def server_wire_length(n: int) -> int:
    """Bytes of an unmasked (server) frame with an ``n``-byte payload."""
    return n + (2 if n < 126 else 4 if n < 65536 else 10)


def client_wire_length(n: int) -> int:
    """Bytes of a masked (client) frame with an ``n``-byte payload."""
    return server_wire_length(n) + 4


def _too_long(text: str) -> bool:
    return len(text) > w.MAX_FRAME // 4 and len(text.encode("utf-8", "surrogatepass")) > w.MAX_FRAME


async def run_message_connection(server: CometServer, channel: MessageChannel, head: http.RequestHead,
                                 peer: Any) -> None:
    """One comet connection over messages, from the parsed upgrade request to the close."""
    hub, journal = server.hub, server.journal
    params = w.parse_url(head.target)
    if params.error is not None:
        code, text = params.error
        old_shape = server.profile.on(Quirk.URL_ERRORS_V3_SHAPE) and code in (401, 406, 418)
        frame = w.dumps(w.url_error_frame(code, text, hub.now(), old_shape=old_shape))
        journal.record("comet", "url_error", data=f"{code} {head.target[:200]}")
        channel.send("text", frame, server_wire_length(len(frame.encode())))
        channel.close()
        return
    state = {"closed": False}

    def deliver(text: str, wire: bytes | None = None) -> None:   # the hub's deliver (wire: None, see below)
        if state["closed"]:
            return
        if _too_long(text):
            journal.record("comet", "frame_dropped", data="server frame over 65535 bytes not sent")
            return
        n = len(text) if text.isascii() else len(text.encode("utf-8", "replace"))
        try:
            channel.send("text", text, server_wire_length(server_wire_length(n)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            state["closed"] = True

    def drop() -> None:   # a server-side close: what was sent is on its way; then the connection ends
        state["closed"] = True
        channel.close()

    conn = hub.connect(params, deliver=deliver, drop=drop, ip=peer.host,
                       user_agent=head.header("User-Agent", exact=True) or "",
                       origin=head.header("Origin", exact=True) or head.header("origin", exact=True) or "",
                       language=head.header("Accept-Language", exact=True) or "")
    conn.raw = False   # only the text crosses the message channel: the hub builds no frame bytes for it
    try:
        while True:
            try:
                message = await channel.receive()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
            if message is None:
                break
            kind, payload = message
            if kind != "text" or _too_long(payload):
                break   # a Close frame is answered with a TCP close; an oversize message closes too
            hub.command(conn, payload)
            while not state["closed"]:   # everything that has arrived at this moment, in one go
                more = channel.receive_nowait()
                if more is None:
                    break
                kind, payload = more
                if kind != "text" or _too_long(payload):
                    state["closed"] = True
                    break
                hub.command(conn, payload)
            if state["closed"]:
                break
    finally:
        state["closed"] = True
        hub.disconnect(conn, "closed")
        channel.close()
