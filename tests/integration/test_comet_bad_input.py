"""Abuse of the comet WebSocket port over real sockets, with hand-built bytes.

Every test runs the whole stack on 127.0.0.1 with a well-behaved "witness" client connected
alongside (anonymous, subscribed to ``web_witness``).  After each abuse the witness must still
receive a published message: one misbehaving client never takes the server down.

Expected reactions are the real server's (comet-ws-protocol.md 1.2-1.5, 2.2, 3.1): URL errors get
one error frame and a TCP close; protocol violations get a TCP close without any Close frame;
plain HTTP requests get their fixed answers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import resource
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from emulator.config import Config
from emulator.stack import open_stack
from emulator.wire import comet as w

HOST = "127.0.0.1"
DEV = 1
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
HANDSHAKE_TIMEOUT = 0.5


def path(key="undefined", user="undefined", dev=DEV, uuid="c" * 32, prefix="/ws/") -> str:
    return f"{prefix}sesion={key}&myid={user}&devid={dev}&v=4.08&uuid={uuid}&api=js"


def frame(opcode: int, payload: bytes | str, *, fin: bool = True, mask: bool = True, rsv: int = 0,
          length: int | None = None, long_header: bool = False) -> bytes:
    """A client frame, byte by byte.  ``length`` lies about the payload length in the header;
    ``long_header`` forces the 64-bit length form."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    m = 0x80 if mask else 0
    if long_header or n > 0xFFFF:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    elif n >= 126:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | n])
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawClient:
    """A TCP stream speaking just enough WebSocket, by hand."""

    def __init__(self, stream: trio.SocketStream):
        self.stream = stream
        self.buffer = bytearray()
        self.response = b""

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        return cls(await trio.open_tcp_stream(HOST, port))

    @classmethod
    async def open(cls, port: int, target: str, *, server_info: bool = True) -> RawClient:
        c = await cls.connect(port)
        await c.handshake(target)
        if server_info:
            info = await c.recv_json()
            assert info["event"] == "serverInfo", info
        return c

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def handshake(self, target: str, headers: str | None = None) -> bytes:
        if headers is None:
            headers = (f"Host: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n")
        await self.send(f"GET {target} HTTP/1.1\r\n{headers}\r\n".encode())
        with trio.fail_after(5):
            while b"\r\n\r\n" not in self.buffer:
                chunk = await self.stream.receive_some(65536)
                assert chunk, f"closed during the handshake, got {bytes(self.buffer)!r}"
                self.buffer += chunk
        end = self.buffer.index(b"\r\n\r\n") + 4
        self.response, self.buffer = bytes(self.buffer[:end]), self.buffer[end:]
        accept = base64.b64encode(hashlib.sha1(KEY.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        assert self.response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), self.response
        assert b"Sec-WebSocket-Accept: " + accept + b"\r\n" in self.response
        return self.response

    async def _fill(self, n: int) -> bool:
        while len(self.buffer) < n:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return False
            self.buffer += chunk
        return True

    async def recv_frame(self, timeout: float = 5) -> tuple[int, bytes] | None:
        """(opcode, payload) of the next server frame, or None at EOF."""
        with trio.fail_after(timeout):
            if not await self._fill(2):
                assert not self.buffer, f"EOF inside a frame header: {bytes(self.buffer)!r}"
                return None
            b0, b1 = self.buffer[0], self.buffer[1]
            assert b1 & 0x80 == 0, "server frames are never masked"
            assert b0 & 0x80, "server frames are always final"
            n, offset = b1 & 0x7F, 2
            if n == 126:
                assert await self._fill(4)
                n, offset = struct.unpack("!H", self.buffer[2:4])[0], 4
            assert n != 127, "the server never uses the 64-bit length form"
            assert await self._fill(offset + n), "EOF inside a frame"
            payload = bytes(self.buffer[offset:offset + n])
            del self.buffer[:offset + n]
            return b0 & 0x0F, payload

    async def recv_json(self, timeout: float = 5) -> dict:
        got = await self.recv_frame(timeout)
        assert got is not None, "connection closed, a frame was expected"
        opcode, payload = got
        assert opcode == 0x1, f"opcode {opcode:#x}"
        return json.loads(payload)

    async def frames_until_closed(self, timeout: float = 5) -> list[tuple[int, bytes]]:
        """Every frame the server still sends, then its TCP close (EOF or reset).  Fails on timeout."""
        frames = []
        try:
            while (f := await self.recv_frame(timeout)) is not None:
                frames.append(f)
        except (trio.BrokenResourceError, ConnectionResetError):
            pass  # closed with our unread bytes still in its buffer: the kernel resets
        assert all(op != 0x8 for op, _ in frames), "the server sent a Close frame"
        return frames

    async def closed_silently(self, timeout: float = 5) -> None:
        assert await self.frames_until_closed(timeout) == []

    async def aclose(self, reset: bool = False) -> None:
        if reset:
            self.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.stream.aclose()


class Env:
    def __init__(self, stack, witness: RawClient):
        self.stack = stack
        self.hub = stack.hub
        self.port = stack.ports["ws"]
        self.witness = witness
        self.published = 0

    async def assert_alive(self) -> None:
        """The witness, connected all along, still gets a published message."""
        self.published += 1
        text = f"still here {self.published}"
        assert self.hub.publish(DEV, "web_witness", "alive", text) == 1
        got = await self.witness.recv_json()
        assert (got["pipe"], got["event"], got["data"]) == ("web_witness", "alive", text)

    async def until(self, condition, what: str, timeout: float = 5) -> None:
        with trio.fail_after(timeout):
            while not condition():
                await trio.sleep(0.01)

    async def connections_settle(self, n: int) -> None:
        await self.until(lambda: len(self.hub.connections) == n, f"{n} connections")

    async def client(self, target: str | None = None, **kw) -> RawClient:
        return await RawClient.open(self.port, target or path(**kw))


@asynccontextmanager
async def _open_env(handshake_timeout: float) -> AsyncIterator[Env]:
    cfg = Config(handshake_timeout=handshake_timeout)
    cfg.free_ports()  # every service on port 0 (127.0.0.1)
    async with open_stack(cfg) as stack:
        witness = await RawClient.open(stack.ports["ws"], path(uuid="w" * 32))
        await witness.send(frame(0x1, "subscription\nweb_witness"))
        e = Env(stack, witness)
        await e.until(lambda: stack.hub.pipe_users(DEV, "web_witness") == 1, "witness subscribed")
        yield e
        await witness.aclose()


@pytest.fixture
async def env():
    """A stack whose handshake timeout is short, so the timeout tests run quickly."""
    async with _open_env(HANDSHAKE_TIMEOUT) as e:
        yield e


@pytest.fixture
async def crowd_env():
    """A stack with the default handshake timeout (10 s), for the crowds.

    The crowds are not about the handshake timeout: with 0.5 s, a machine busy enough to give this
    process a tenth of a core let the server time out (and reset) handshakes that 100 concurrent
    clients of the same process had not finished writing yet.
    """
    async with _open_env(Config().handshake_timeout) as e:
        yield e


# --- URL errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("target,code,text", [
    ("/ws/nothing", 401, "Error code 401(Invalid request, session ID not found)"),
    ("/ws/sesion=abc", 401, "Error code 401(Invalid request, the user ID can not be found)"),
    ("/ws/sesion=abc&myid=1", 406, "Error code 406(Invalid request, no public key found [1])"),
    ("/ws/sesion=abc&myid=1&devid=1", 418, "Error code 418(Invalid request Not assigned client api version)\n"),
    ("/ws/sesion=abc&myid=1&devid=1&v=four&uuid=" + "u" * 32 + "&api=js", 418,
     "Error code 418(Invalid request Not assigned client api version)\n"),
    ("/comet-server/ws/sesion=abc&myid=1&devid=1&v=4.&api=js", 418,
     "Error code 418(Invalid request Not assigned client api version)\n"),
])
async def test_malformed_url_gets_one_error_frame_then_tcp_close(env, target, code, text):
    c = await RawClient.connect(env.port)
    await c.handshake(target)
    frames = await c.frames_until_closed()
    assert len(frames) == 1 and frames[0][0] == 0x1, frames
    got = json.loads(frames[0][1])
    assert (got["pipe"], got["event"]) == ("sys", "error")
    data = json.loads(got["data"]) if isinstance(got["data"], str) else got["data"]  # v<4 shape (2.2, 4.4)
    assert data == {"error": text, "error_code": code, "info": "Closed due to error. See last message."}
    assert len(env.hub.connections) == 1  # never registered: only the witness
    await env.assert_alive()


@pytest.mark.parametrize("headers", [
    f"Host: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",                     # no key
    f"Host: {HOST}\r\nsec-websocket-key: {KEY}\r\n",                                      # wrong spelling
    f"Host: {HOST}\r\nSec-WebSocket-Key: {'k' * 51}\r\n",                                 # key over 50 chars
])
async def test_upgrade_without_a_usable_key_is_closed_without_response(env, headers):
    c = await RawClient.connect(env.port)
    await c.send(f"GET {path()} HTTP/1.1\r\n{headers}\r\n".encode())
    with trio.fail_after(5):
        assert await c.stream.receive_some(4096) == b""
    await env.assert_alive()


async def test_handshake_and_first_frames_in_one_write(env):
    c = await RawClient.connect(env.port)
    request = (f"GET {path(uuid='q' * 32)} HTTP/1.1\r\nHost: {HOST}\r\nSec-WebSocket-Key: {KEY}\r\n"
               f"Sec-WebSocket-Protocol: anything\r\n\r\n").encode()
    await c.send(request + frame(0x1, "subscription\nweb_same") + frame(0x1, "pipe_count\nweb_same\n6666666666\n"))
    with trio.fail_after(5):
        while b"\r\n\r\n" not in c.buffer:
            c.buffer += await c.stream.receive_some(65536)
    end = c.buffer.index(b"\r\n\r\n") + 4
    response, c.buffer = bytes(c.buffer[:end]), c.buffer[end:]
    assert response.endswith(b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
    assert (await c.recv_json())["event"] == "serverInfo"
    got = await c.recv_json()
    assert got["marker"] == "6666666666" and got["data"] == ["user_in_pipe", 1]
    await env.assert_alive()
    await c.aclose()


# --- commands and frames ---------------------------------------------------------------------------


async def test_unknown_command_closes_only_that_connection(env):
    bad, other = await env.client(uuid="b" * 32), await env.client(uuid="o" * 32)
    await other.send(frame(0x1, "subscription\nweb_other"))
    await bad.send(frame(0x1, "subscription\nweb_other"))
    await env.until(lambda: env.hub.pipe_users(DEV, "web_other") == 2, "both subscribed")
    await bad.send(frame(0x1, "hello\nworld"))
    await bad.closed_silently()
    await env.until(lambda: env.hub.pipe_users(DEV, "web_other") == 1, "bad one unsubscribed")
    assert env.hub.publish(DEV, "web_other", "ev", "for the other") == 1
    assert (await other.recv_json())["data"] == "for the other"
    await env.assert_alive()
    await other.aclose()


async def test_binary_frame_carrying_a_command_is_accepted(env):
    c = await env.client()
    await c.send(frame(0x2, "pipe_count\nweb_witness\n1234567890\n"))
    got = await c.recv_json()
    assert got["pipe"] == "_answer_pipe_count" and got["marker"] == "1234567890"
    assert got["data"] == ["user_in_pipe", 1]
    await env.assert_alive()
    await c.aclose()


async def test_masked_and_split_frames_several_per_read(env):
    c = await env.client()
    data = frame(0x1, "pipe_count\nweb_witness\n1111111111\n") + frame(0x1, "pipe_count\nweb_witness\n2222222222\n")
    for i in range(0, len(data), 7):  # dribbled 7 bytes at a time
        await c.send(data[i:i + 7])
        await trio.sleep(0.001)
    assert [(await c.recv_json())["marker"] for _ in range(2)] == ["1111111111", "2222222222"]
    await c.send(data + data)  # four frames in one write
    assert [(await c.recv_json())["marker"] for _ in range(4)] == ["1111111111", "2222222222"] * 2
    await env.assert_alive()
    await c.aclose()


async def test_invalid_utf8_text_frame_closes_cleanly(env):
    c = await env.client()
    await c.send(frame(0x1, b"web_pipe2\nweb_witness\nev\n*\n\xff\xfe\xc3"))
    await c.closed_silently()
    await env.connections_settle(1)
    await env.assert_alive()


async def test_oversize_frame_closes_cleanly(env):
    c = await env.client()
    payload = b"statistics\n" + b"x" * 70_000
    try:
        await c.send(frame(0x1, payload))
    except (trio.BrokenResourceError, ConnectionResetError):
        pass  # the server may close before it has read everything
    await c.closed_silently()
    await env.connections_settle(1)
    await env.assert_alive()


async def test_64_bit_length_header_closes_even_for_a_small_payload(env):
    c = await env.client()
    await c.send(frame(0x1, "statistics\n{}", long_header=True))
    await c.closed_silently()
    await env.assert_alive()


async def test_largest_allowed_frame_is_accepted(env):
    c = await env.client()
    body = "statistics\n"
    await c.send(frame(0x1, body + "x" * (w.MAX_FRAME - len(body))))  # exactly 65535 bytes
    await c.send(frame(0x1, "pipe_count\nweb_witness\n3333333333\n"))
    assert (await c.recv_json())["marker"] == "3333333333"
    await env.assert_alive()
    await c.aclose()


async def test_65_char_pipe_name_in_subscription_errors_then_closes(env):
    c = await env.client()
    await c.send(frame(0x1, "subscription\nweb_ok\n" + "a" * 65))
    frames = await c.frames_until_closed()
    assert [json.loads(p) for _, p in frames] == [
        {"data": {"code": "403", "error": "Channel name is too long"}, "event": "error",
         "message_send_time": json.loads(frames[0][1])["message_send_time"], "pipe": "sys"}]
    await env.connections_settle(1)
    assert env.hub.pipe_users(DEV, "web_ok") == 0
    await env.assert_alive()


async def test_64_char_pipe_name_is_fine(env):
    c = await env.client()
    name = "b" * 64
    await c.send(frame(0x1, "subscription\n" + name))
    await env.until(lambda: env.hub.pipe_users(DEV, name) == 1, "subscribed")
    await env.assert_alive()
    await c.aclose()


async def test_33_pipes_error_but_connection_kept(env):
    c = await env.client()
    names = [f"web_p{i:02d}" for i in range(33)]
    await c.send(frame(0x1, "subscription\n" + "\n".join(names)))
    got = await c.recv_json()
    assert (got["pipe"], got["event"], got["data"]) == ("sys", "error", {"code": "403", "error": "Too many letters"})
    assert [env.hub.pipe_users(DEV, n) for n in names] == [1] * 32 + [0]
    assert env.hub.publish(DEV, "web_p31", "ev", "32nd works") == 1
    assert (await c.recv_json())["data"] == "32nd works"
    await env.assert_alive()
    await c.aclose()


async def test_subscription_body_over_2176_bytes_errors_then_closes(env):
    c = await env.client()
    await c.send(frame(0x1, "subscription\n" + "\n".join(f"web_{i:060d}" for i in range(40))))
    frames = await c.frames_until_closed()
    assert [json.loads(p)["data"] for _, p in frames] == [{"code": "403", "error": "Too many letters"}]
    await env.assert_alive()


async def test_client_ping_frame_closes(env):
    c = await env.client()
    await c.send(frame(0x9, b"are you there"))
    await c.closed_silently()  # no Pong, no Close: a TCP close
    await env.connections_settle(1)
    await env.assert_alive()


async def test_client_pong_frame_is_ignored(env):
    c = await env.client()
    await c.send(frame(0xA, b"unsolicited"))
    await c.send(frame(0x1, "pipe_count\nweb_witness\n4444444444\n"))
    assert (await c.recv_json())["marker"] == "4444444444"
    await env.assert_alive()
    await c.aclose()


async def test_client_close_frame_gets_tcp_close_without_close_frame(env):
    c = await env.client()
    await c.send(frame(0x8, struct.pack("!H", 1000)))
    await c.closed_silently()
    await env.connections_settle(1)
    await env.assert_alive()


@pytest.mark.parametrize("data", [
    frame(0x0, "orphan continuation"),                      # continuation without a start
    frame(0x3, "reserved opcode"),                          # reserved data opcode
    frame(0x1, "subscription\nweb_x", rsv=4),               # RSV1 without a negotiated extension
    frame(0x1, "subscription\nweb_x", mask=False),          # unmasked client frame
], ids=["continuation", "opcode3", "rsv1", "unmasked"])
async def test_other_protocol_violations_close(env, data):
    c = await env.client()
    await c.send(data)
    await c.closed_silently()
    await env.connections_settle(1)
    await env.assert_alive()


async def test_fragmented_message_closes_like_the_real_server(env):
    c = await env.client()
    await c.send(frame(0x1, "pipe_count\nweb_wit", fin=False) + frame(0x0, "ness\n5555555555\n"))
    await c.closed_silently(timeout=1)


# --- handshakes that never finish, clients that vanish ----------------------------------------------


@pytest.mark.parametrize("sent", [b"", b"GET /ws/sesion=x&myid=1",
                                  b"GET " + b"/ws/" * 10 + b" HTTP/1.1\r\nHost: x\r\n"])
async def test_handshake_that_never_finishes_is_closed_after_the_timeout(env, sent):
    c = await RawClient.connect(env.port)
    start = trio.current_time()
    if sent:
        await c.send(sent)
    with trio.fail_after(5):
        assert await c.stream.receive_some(4096) == b""
    elapsed = trio.current_time() - start
    assert HANDSHAKE_TIMEOUT * 0.8 <= elapsed < HANDSHAKE_TIMEOUT + 2, elapsed
    await env.assert_alive()


async def test_oversized_request_head_is_closed(env):
    c = await RawClient.connect(env.port)
    try:
        await c.send(b"GET /ws/sesion=x HTTP/1.1\r\n" + b"X-Filler: " + b"f" * 20_000 + b"\r\n")
    except (trio.BrokenResourceError, ConnectionResetError):
        pass
    with trio.fail_after(5):
        try:
            assert await c.stream.receive_some(4096) == b""
        except (trio.BrokenResourceError, ConnectionResetError):
            pass
    await env.assert_alive()


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_client_vanishing_mid_frame(env, reset):
    c = await env.client(uuid="v" * 32)
    await c.send(frame(0x1, "subscription\ntrack_room"))
    await env.until(lambda: env.hub.pipe_users(DEV, "track_room") == 1, "subscribed")
    whole = frame(0x1, "web_pipe2\nweb_witness\nev\n*\n" + "z" * 200)
    await c.send(whole[:20])  # header and part of the payload
    await trio.sleep(0.05)
    await c.aclose(reset=reset)
    await env.connections_settle(1)
    assert env.hub.pipe_users(DEV, "track_room") == 0
    await env.assert_alive()


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_client_vanishing_mid_handshake(env, reset):
    c = await RawClient.connect(env.port)
    await c.send(b"GET /ws/sesion=x&myid=1&devid=1&v=4.08 HTTP/1.1\r\nSec-WebSocket-")
    await trio.sleep(0.05)
    await c.aclose(reset=reset)
    await env.assert_alive()
    await env.until(lambda: env.stack.comet.active == 1, "handler finished")


async def test_client_that_stops_reading_is_disconnected(env):
    c = await env.client(uuid="s" * 32)
    await c.send(frame(0x1, "subscription\nweb_flood"))
    await env.until(lambda: env.hub.pipe_users(DEV, "web_flood") == 1, "subscribed")
    for _ in range(50):  # ~20 MB it never reads, in bursts, so the writer gets to block in send_all
        for _ in range(200):
            env.hub.publish(DEV, "web_flood", "ev", "x" * 2000)
        await trio.sleep(0.01)
    await env.connections_settle(1)  # the hub has let go of it...
    await env.assert_alive()
    await env.until(lambda: env.stack.comet.active == 1, "its TCP connection closed", timeout=3)  # ...the socket not


def _raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")


async def _crowd(env: Env, n: int, pipes: str) -> list[RawClient]:
    _raise_fd_limit(2 * n + 256)  # both ends live in this process
    clients: list[RawClient] = []
    limiter = trio.CapacityLimiter(100)

    async def one(i: int) -> None:
        async with limiter:
            c = await RawClient.open(env.port, path(uuid=f"{i:032d}"))
            clients.append(c)
            await c.send(frame(0x1, "subscription\n" + pipes))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
    first = pipes.split("\n")[0]
    await env.until(lambda: env.hub.pipe_users(DEV, first) == n, "all subscribed", timeout=30)
    assert len(env.hub.connections) == n + 1
    return clients


async def _drop_all(env: Env, clients: list[RawClient]) -> None:
    """All of them vanish at once: half with FIN, half with RST."""
    async with trio.open_nursery() as nursery:
        for i, c in enumerate(clients):
            nursery.start_soon(c.aclose, i % 2 == 1)
    await env.until(lambda: len(env.hub.connections) == 1, "all gone", timeout=60)


@pytest.mark.slow
async def test_thousand_clients_connect_then_drop_at_once(crowd_env):
    env = crowd_env
    clients = await _crowd(env, 1000, "web_crowd")
    await env.assert_alive()
    await _drop_all(env, clients)
    assert env.hub.pipe_users(DEV, "web_crowd") == 0
    await env.assert_alive()

    fresh = await RawClient.connect(env.port)
    await fresh.handshake(path(uuid="f" * 32))
    info = await fresh.recv_json()
    assert info["event"] == "serverInfo" and info["authorized"] is False
    await fresh.aclose()
    await env.witness.aclose()
    await env.connections_settle(0)
    await env.until(lambda: env.stack.comet.active == 0, "every handler finished")


@pytest.mark.slow
async def test_crowd_on_a_track_pipe_drops_at_once(crowd_env):
    """n clients on one track_* pipe: n(n-1)/2 subscription events in, as many unsubscriptions out
    while the peers themselves are going away, and nobody reads their sockets."""
    env = crowd_env
    n = 300
    clients = await _crowd(env, n, "track_crowd")
    await env.assert_alive()
    await _drop_all(env, clients)
    assert env.hub.pipe_users(DEV, "track_crowd") == 0
    await env.assert_alive()
    await env.witness.aclose()
    await env.connections_settle(0)
    await env.until(lambda: env.stack.comet.active == 0, "every handler finished")


# --- plain HTTP on the WebSocket port --------------------------------------------------------------


async def http_exchange(port: int, request: bytes) -> bytes:
    c = await RawClient.connect(port)
    await c.send(request)
    out = b""
    with trio.fail_after(5):
        while chunk := await c.stream.receive_some(65536):
            out += chunk
    await c.aclose()
    return out


async def test_plain_http_get_root(env):
    out = await http_exchange(env.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    for line in (b"Content-Type:text/html; charset=UTF-8", b"Server:CppComet Server", b"Comet-Server:CppComet Server",
                 b"Access-Control-Allow-Origin: *    ", b"Connection: close"):
        assert line in head.split(b"\r\n"), line
    assert b"<html" in body.lower()
    await env.assert_alive()


async def test_plain_http_get_info(env):
    out = await http_exchange(env.port, b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == b'{"status":"ok","node":"n1________"}'
    await env.assert_alive()


@pytest.mark.parametrize("request_bytes", [
    b"POST /sesion=x&myid=1&devid=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"POST /ws/sesion=x&myid=1&devid=1&v=4.08 HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Key: " + KEY.encode() + b"\r\n\r\n",
])
async def test_plain_http_post_is_404(env, request_bytes):
    out = await http_exchange(env.port, request_bytes)
    assert out.startswith(b"HTTP/1.1 404 Not Found\r\n")
    await env.assert_alive()


async def test_plain_http_other_answers(env):
    assert (await http_exchange(env.port, b"GET /favicon.ico HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 301 OK\r\n")
    out = await http_exchange(env.port, b"OPTIONS / HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\n+OK")
    assert await http_exchange(env.port, b"GET /ws/sesion=x&myid=1&devid=1&v=4.08 HTTP/1.1\r\n\r\n") == b""
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40 + b"\r\n\r\n"
    assert await http_exchange(env.port, hello) == b""
    await env.assert_alive()
