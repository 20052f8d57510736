"""Every way a comet WebSocket client can leave or misbehave ends quietly (issue 8, item 3).

A Ping, a Close frame, an unmasked frame, a fragmented frame, an oversize or non-UTF-8 frame, a
FIN, a reset, a client that vanishes while the server is writing to it: sent together with the
handshake, right after it, or later in the connection's life.  Each must end in a TCP close with
exactly one ``disconnect`` journal record naming the reason, at most one log line from the
emulator, nothing at WARNING or above from anyone, and no traceback on stderr; the witness client
connected alongside keeps getting its frames.

The last test pins the private parts of trio-websocket that :class:`CometWebSocket` relies on, so
that a library upgrade that changes them fails here, loudly, instead of somewhere subtle.
"""

from __future__ import annotations

import inspect
import json
import logging
import socket
import struct
from typing import Any, cast

import pytest
import trio
import trio.lowlevel
import trio_websocket

from emulator.comet import server as comet_server
from emulator.comet.server import CometWebSocket, _ServerFrames
from emulator.config import Config
from emulator.net.network import OSNetwork, VirtualNetwork
from emulator.stack import open_stack
from tests.rawws import KEY, RawWS, frame

DEV = 1


def path(uuid: str) -> str:
    return f"/ws/sesion=undefined&myid=undefined&devid={DEV}&v=4.08&uuid={uuid}&api=js"


def upgrade(target: str) -> bytes:
    return (f"GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def reset(ws: RawWS) -> None:
    """Make the next close a TCP reset (SO_LINGER 0)."""
    cast(Any, ws.stream).socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# what the client sends to misbehave, and the reason the journal must give
BAD_FRAMES = {
    "ping": (frame(b"are you there", opcode=0x9), "client Ping"),
    "close": (frame(struct.pack("!H", 1000), opcode=0x8), "client Close frame (1000)"),
    "unmasked": (frame("subscription\nweb_x", mask=False), "protocol error (1002)"),
    "fragmented": (frame("pipe_count\nweb_wit", fin=False) + frame("ness\n5\n", opcode=0x0), "fragmented frame"),
    "oversize": (frame(b"x" * 70_000), "client frame over 65535 bytes"),
    "bad_utf8": (frame(b"subscription\n\xff\xfe"), "protocol error (1007)"),
}
LEAVES = {"fin": "client closed the connection", "rst": ""}  # a reset may read as EOF or as a broken socket


class Env:
    def __init__(self, stack, witness: RawWS):
        self.stack = stack
        self.hub = stack.hub
        self.port = stack.ports["ws"]
        self.witness = witness
        self.published = 0

    async def until(self, condition, timeout: float = 5) -> None:
        with trio.fail_after(timeout):
            while not condition():
                await trio.sleep(0.01)

    async def assert_alive(self) -> None:
        self.published += 1
        assert self.hub.publish(DEV, "web_witness", "alive", str(self.published)) == 1
        got = json.loads(await self.witness.recv())
        assert got["data"] == str(self.published)

    async def settle(self) -> None:
        """Only the witness left, every handler finished."""
        await self.until(lambda: len(self.hub.connections) == 1 and self.stack.comet.active == 1)

    def conn_ids(self) -> list[int]:
        return [e["conn_id"] for e in self.stack.journal.entries(kind="connect")]


@pytest.fixture
async def env():
    cfg = Config(handshake_timeout=2.0)
    cfg.free_ports()
    network = OSNetwork()
    async with open_stack(cfg, network=network) as stack:
        witness = await RawWS.open(network, stack.ports["ws"], path("w" * 32))
        await witness.recv()
        await witness.send("subscription\nweb_witness")
        e = Env(stack, witness)
        await e.until(lambda: stack.hub.pipe_users(DEV, "web_witness") == 1)
        yield e
        await witness.aclose()


def assert_quiet(env: Env, caplog, capfd, reason: str) -> None:
    """One disconnect record for the one connection the test made; no noise anywhere."""
    witness_id, *others = env.conn_ids()
    assert len(others) == 1, others
    records = env.stack.journal.entries(kind="disconnect", conn_id=others[0])
    assert len(records) == 1, records
    assert records[0]["data"].startswith(reason), records[0]["data"]
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == [], [(r.name, r.getMessage()) for r in loud]
    ours = [r for r in caplog.records if r.name.startswith("cometbench")]
    assert len(ours) <= 1, [r.getMessage() for r in ours]
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error" not in err, err


@pytest.mark.parametrize("when", ["with_handshake", "after_handshake", "later"])
@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
async def test_bad_frame_closes_quietly(env, case, when, caplog, capfd):
    caplog.set_level(logging.DEBUG, logger="cometbench")
    data, reason = BAD_FRAMES[case]
    stream = await trio.open_tcp_stream("127.0.0.1", env.port)
    ws = RawWS(stream)
    if when == "with_handshake":  # the frame rides in the same TCP write as the request head
        await stream.send_all(upgrade(path("b" * 32)) + data)
        ws.response = await ws.read_until(b"\r\n\r\n")
    else:
        await stream.send_all(upgrade(path("b" * 32)))
        ws.response = await ws.read_until(b"\r\n\r\n")
        if when == "later":
            assert json.loads(await ws.recv())["event"] == "serverInfo"
            await ws.send("subscription\nweb_later")
            await env.until(lambda: env.hub.pipe_users(DEV, "web_later") == 1)
            env.hub.publish(DEV, "web_later", "ev", "one")
            assert json.loads(await ws.recv())["data"] == "one"
        try:
            await stream.send_all(data)
        except trio.BrokenResourceError:
            pass  # closed while the oversize frame was still going out
    assert ws.response.startswith(b"HTTP/1.1 101 ")
    assert await ws.closed_by_server()  # a TCP close, never a Close frame
    await env.settle()
    await env.assert_alive()
    assert_quiet(env, caplog, capfd, reason)
    await ws.aclose()


@pytest.mark.parametrize("when", ["after_handshake", "later"])
@pytest.mark.parametrize("leave", sorted(LEAVES))
async def test_client_leaving_is_quiet(env, leave, when, caplog, capfd):
    caplog.set_level(logging.DEBUG, logger="cometbench")
    ws = await RawWS.open(OSNetwork(), env.port, path("l" * 32))
    if when == "later":
        await ws.recv()
        await ws.send("subscription\nweb_later")
        await env.until(lambda: env.hub.pipe_users(DEV, "web_later") == 1)
    if leave == "rst":
        reset(ws)
    await ws.aclose()
    await env.settle()
    await env.assert_alive()
    assert_quiet(env, caplog, capfd, LEAVES[leave])


@pytest.mark.parametrize("blocked", [True, False], ids=["writer_blocked", "direct_write"])
async def test_client_vanishing_mid_write_is_quiet(env, blocked, caplog, capfd):
    """The client stops reading and resets while the server is writing to it: with frames waiting
    in its outbox (the writer task blocked in send_all), or with the next frame written straight
    from the publish onto the dead socket."""
    caplog.set_level(logging.DEBUG, logger="cometbench")
    ws = await RawWS.open(OSNetwork(), env.port, path("v" * 32))
    await ws.recv()
    await ws.send("subscription\nweb_vanish")
    await env.until(lambda: env.hub.pipe_users(DEV, "web_vanish") == 1)
    if blocked:
        for _ in range(40):  # ~20 MB it never reads, far from the 4,096-frame outbox limit
            for _ in range(10):
                env.hub.publish(DEV, "web_vanish", "ev", "x" * 50_000)
            await trio.sleep(0.005)
    reset(ws)
    await ws.aclose()
    for i in range(50):  # keep writing to it until the server notices
        env.hub.publish(DEV, "web_vanish", "ev", f"after the reset {i}")
        await trio.lowlevel.checkpoint()
    await env.settle()
    await env.assert_alive()
    witness_id, conn_id = env.conn_ids()
    (record,) = env.stack.journal.entries(kind="disconnect", conn_id=conn_id)
    assert record["data"].startswith(("write failed", "client closed the connection")), record
    assert_quiet(env, caplog, capfd, "")


# --- the private API of trio-websocket we build on -----------------------------------------------


def test_trio_websocket_private_api_is_what_we_rely_on():
    """If this fails after a trio-websocket or wsproto upgrade, read docs/decisions.md ("Comet
    writes go around trio-websocket") and adapt CometWebSocket and _ServerFrames."""
    cls = trio_websocket.WebSocketConnection
    for name in ("_reader_task", "_send", "_handle_message_event", "_handle_ping_event",
                 "_handle_close_connection_event", "_close_web_socket", "_close_stream"):
        assert inspect.iscoroutinefunction(getattr(cls, name, None)), f"trio-websocket lost {name}"
        assert name in cls.__dict__, f"{name} is no longer defined by WebSocketConnection itself"
    params = inspect.signature(cls.__init__).parameters
    for name in ("stream", "ws_connection", "message_queue_size", "max_message_size", "receive_buffer_size"):
        assert name in params, f"WebSocketConnection() lost its {name} parameter"
    assert list(inspect.signature(cls._close_web_socket).parameters) == ["self", "code", "reason"]
    # the reader dispatches events to the handler methods by name: their overrides must be called
    source = inspect.getsource(cls._reader_task)
    for handler in ("self._handle_message_event", "self._handle_ping_event", "self._handle_close_connection_event"):
        assert handler in source, f"_reader_task no longer dispatches to {handler}"
    # the attributes the overrides read and write
    frames = _ServerFrames(comet_server.ConnectionType.SERVER)
    ws = CometWebSocket(trio.testing.memory_stream_pair()[0], frames, lambda text: None, lambda reason: None)
    for name in ("_wsproto", "_message_parts", "_message_size", "_max_message_size", "_close_reason",
                 "_reader_running", "_close_handshake", "_open_handshake", "_stream"):
        assert hasattr(ws, name), f"WebSocketConnection instances lost {name}"
    assert ws._wsproto is frames
    # wsproto: the parser generator whose reference cycle _ServerFrames.release() breaks
    assert inspect.isgenerator(frames._proto._parse_more)
    frames.release()
    assert frames._proto._parse_more.gi_frame is None  # closed: the generator no longer holds its FrameProtocol


@pytest.mark.parametrize("data,reason", [
    (frame("pipe_count\nweb_a\n1\n") + frame(b"!", opcode=0x9), "client Ping"),
    (frame("pipe_count\nweb_a\n1\n") + frame(struct.pack("!H", 1001), opcode=0x8), "client Close frame (1001)"),
    (frame("pipe_count\nweb_a\n1\n") + frame(b"abc", mask=False), "protocol error (1002)"),
], ids=["ping", "close", "unmasked"])
async def test_comet_websocket_reads_messages_and_reports_why_it_closed(data, reason, autojump_clock):
    """CometWebSocket driven directly over a virtual stream: messages reach the callback, the
    closing event is reported once with its reason, nothing is ever written back."""
    network = VirtualNetwork()
    listener = await network.listen("t", "127.0.0.1", 0)
    client = await network.connect("127.0.0.1", listener.endpoint.port)
    server = await listener.accept()
    messages, closed = [], []
    ws = CometWebSocket(server, _ServerFrames(comet_server.ConnectionType.SERVER), messages.append, closed.append)
    await client.send_all(data)
    with trio.fail_after(5):
        await ws._reader_task()
    assert messages == ["pipe_count\nweb_a\n1\n"]
    assert len(closed) == 1 and closed[0].startswith(reason) and ws.reason == closed[0]
    assert await client.receive_some(100) == b""  # closed, and not a byte written (no Pong, no Close)
    await listener.aclose()


async def test_commands_behind_a_closing_frame_are_not_executed(env):
    """The real server stops at the frame that closes the connection; so does the emulator."""
    ws = await RawWS.open(OSNetwork(), env.port, path("a" * 32))
    await ws.recv()
    await ws.stream.send_all(frame(b"!", opcode=0x9) + frame("subscription\nweb_after_ping"))
    assert await ws.closed_by_server()
    await env.settle()
    assert env.hub.pipe_users(DEV, "web_after_ping") == 0
    assert not [e for e in env.stack.journal.entries(kind="frame", direction="in") if "web_after_ping" in e["data"]]
