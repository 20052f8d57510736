"""Head and idle timeouts of every listener but the comet WebSocket one, in virtual time.

The whole stack runs on the in-memory network under an autojumping MockClock, so "10 seconds" is
exact and costs nothing.  Each test checks both sides of a limit (still open just before it,
closed just after), that a client trickling a byte every 2 s (slowloris) does not push it back,
and the one journal record the close leaves.  Values and their FreeSWITCH counterparts:
docs/decisions.md, "Timeouts".
"""

from __future__ import annotations

import pytest
import trio

from emulator.config import Config
from emulator.net.network import VirtualNetwork
from emulator.stack import open_stack
from tests.hostile import closed_within
from tests.rawws import RawWS

REGISTER = ("REGISTER sip:127.0.0.1 SIP/2.0\r\n"
            "Via: SIP/2.0/TCP client.invalid;branch=z9hG4bK{branch}\r\n"
            "Max-Forwards: 70\r\nTo: <sip:000001015@127.0.0.1>\r\n"
            "From: <sip:000001015@127.0.0.1>;tag=abc\r\n"
            "Call-ID: {branch}\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n")
OPTIONS = REGISTER.replace("REGISTER sip", "OPTIONS sip").replace("1 REGISTER", "1 OPTIONS")


def config(**overrides) -> Config:
    cfg = Config(sip_tls=False, **overrides)
    cfg.free_ports()
    return cfg


async def trickle(stream, data: bytes, every: float = 2.0) -> None:
    """Slowloris: one byte every ``every`` seconds until the peer closes."""
    try:
        for i in range(len(data)):
            await stream.send_all(data[i:i + 1])
            await trio.sleep(every)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def kinds(stack, service: str) -> list[str]:
    return [e["kind"] for e in stack.journal.entries(service=service)]


# --- SIP over TCP ---------------------------------------------------------------------------------


async def test_sip_tcp_connection_that_sends_nothing_is_closed_at_the_head_timeout(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        stream = await net.connect("127.0.0.1", stack.ports["sip"])
        start = trio.current_time()
        assert await closed_within(stream, 9.9) == (False, b"")
        closed, received = await closed_within(stream, 0.2)
        assert closed and received == b"" and trio.current_time() - start == pytest.approx(10.0, abs=0.01)
        assert kinds(stack, "sip").count("idle_timeout") == 1


async def test_sip_tcp_slowloris_head_is_cut_and_answered_408(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        stream = await net.connect("127.0.0.1", stack.ports["sip"])
        head = OPTIONS.format(branch="slow1").encode()
        start = trio.current_time()
        await stream.send_all(head[:120])  # request line, Via, Max-Forwards: a usable Via has arrived
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle, stream, head[120:])
            closed, received = await closed_within(stream, 30)
            nursery.cancel_scope.cancel()
        assert closed and trio.current_time() - start == pytest.approx(10.0, abs=0.01)
        assert received.startswith(b"SIP/2.0 408 Request Timeout\r\n")
        assert b"branch=z9hG4bKslow1" in received
        assert kinds(stack, "sip").count("head_timeout") == 1


async def test_sip_tcp_after_the_first_message_sofia_idle_rule_applies(autojump_clock):
    """Quiet both ways for 1800 s closes a connection, registered or not (sofia's nta); CRLF
    keep-alives or any message count as activity, and the registration goes with the flow."""
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        stack.hub.set_hash(1, 15, "h")
        stream = await net.connect("127.0.0.1", stack.ports["sip"])
        await stream.send_all(OPTIONS.format(branch="first").encode())
        assert (await stream.receive_some(65536)).startswith(b"SIP/2.0 200 OK")
        # keep-alives every 600 s keep it open far past 1800 s
        for _ in range(5):
            await trio.sleep(600)
            await stream.send_all(b"\r\n\r\n")
            assert await stream.receive_some(65536) == b"\r\n"
        start = trio.current_time()
        assert (await closed_within(stream, 1799.9))[0] is False
        closed, _ = await closed_within(stream, 0.2)
        assert closed and trio.current_time() - start == pytest.approx(1800.0, abs=0.01)
        assert kinds(stack, "sip").count("idle_timeout") == 1


async def test_sip_tcp_message_begun_later_must_finish_within_the_head_timeout(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(sip_tcp_idle_timeout=0), network=net) as stack:
        stream = await net.connect("127.0.0.1", stack.ports["sip"])
        await stream.send_all(OPTIONS.format(branch="one").encode())
        assert (await stream.receive_some(65536)).startswith(b"SIP/2.0 200 OK")
        await trio.sleep(5000)  # idle timeout off: an idle connection stays
        await stream.send_all(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n")
        start = trio.current_time()
        closed, received = await closed_within(stream, 30)
        assert closed and received == b"" and trio.current_time() - start == pytest.approx(10.0, abs=0.01)
        assert kinds(stack, "sip").count("head_timeout") == 1


async def test_sip_tcp_timeouts_are_configurable(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(sip_tcp_head_timeout=3, sip_tcp_idle_timeout=20), network=net) as stack:
        stream = await net.connect("127.0.0.1", stack.ports["sip"])
        start = trio.current_time()
        assert (await closed_within(stream, 10))[0]
        assert trio.current_time() - start == pytest.approx(3.0, abs=0.01)
        stream = await net.connect("127.0.0.1", stack.ports["sip"])
        await stream.send_all(OPTIONS.format(branch="two").encode())
        await stream.receive_some(65536)
        start = trio.current_time()
        assert (await closed_within(stream, 60))[0]
        assert trio.current_time() - start == pytest.approx(20.0, abs=0.01)


# --- SIP over WebSocket ---------------------------------------------------------------------------


async def test_sip_ws_upgrade_trickled_byte_by_byte_is_closed_at_the_handshake_timeout(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        stream = await net.connect("127.0.0.1", stack.ports["sip_ws"])
        upgrade = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle, stream, upgrade)
            closed, received = await closed_within(stream, 60)
            nursery.cancel_scope.cancel()
        assert closed and received == b"" and trio.current_time() - start == pytest.approx(10.0, abs=0.01)
        assert kinds(stack, "sip").count("handshake_timeout") == 1


async def test_sip_ws_after_the_upgrade_no_idle_limit_by_default_and_a_configured_one(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        ws = await RawWS.open(net, stack.ports["sip_ws"], "/", "Sec-WebSocket-Protocol: sip\r\n")
        assert ws.response.startswith(b"HTTP/1.1 101")
        assert (await closed_within(ws.stream, 7200))[0] is False  # sofia's WS transport: never
    async with open_stack(config(sip_ws_idle_timeout=30), network=net) as stack:
        ws = await RawWS.open(net, stack.ports["sip_ws"], "/", "Sec-WebSocket-Protocol: sip\r\n")
        start = trio.current_time()
        assert (await closed_within(ws.stream, 60))[0]
        assert trio.current_time() - start == pytest.approx(30.0, abs=0.01)
        assert kinds(stack, "sip").count("idle_timeout") == 1


# --- ESL ------------------------------------------------------------------------------------------


async def esl_read(stream, buffer: bytearray) -> bytes:
    while b"\n\n" not in buffer:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError(bytes(buffer))
        buffer += chunk
    end = buffer.index(b"\n\n") + 2
    head = bytes(buffer[:end])
    del buffer[:end]
    return head


async def test_esl_must_authenticate_within_25_seconds_even_when_busy(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        stream = await net.connect("127.0.0.1", stack.ports["esl"])
        start = trio.current_time()
        assert b"auth/request" in await esl_read(stream, bytearray())

        async def busy() -> None:  # commands other than auth, one byte every 2 s, never stop the clock
            await trickle(stream, b"api status\n\n" * 20)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(busy)
            closed, _ = await closed_within(stream, 100)
            nursery.cancel_scope.cancel()
        assert closed and trio.current_time() - start == pytest.approx(25.0, abs=0.01)
        assert kinds(stack, "esl").count("auth_timeout") == 1


async def test_esl_after_auth_no_idle_limit_by_default_and_a_configured_one(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        stream = await net.connect("127.0.0.1", stack.ports["esl"])
        buffer = bytearray()
        await esl_read(stream, buffer)
        await stream.send_all(b"auth ClueCon\n\n")
        assert b"+OK accepted" in await esl_read(stream, buffer)
        assert (await closed_within(stream, 7200))[0] is False  # FreeSWITCH: no limit after auth
    async with open_stack(config(esl_idle_timeout=60), network=net) as stack:
        stream = await net.connect("127.0.0.1", stack.ports["esl"])
        buffer = bytearray()
        await esl_read(stream, buffer)
        await stream.send_all(b"auth ClueCon\n\n")
        await esl_read(stream, buffer)
        for _ in range(3):  # a command every 50 s keeps it
            await trio.sleep(50)
            await stream.send_all(b"api uptime\n\n")
            await esl_read(stream, buffer)
        start = trio.current_time()
        assert (await closed_within(stream, 59.9))[0] is False
        assert (await closed_within(stream, 0.5))[0]
        assert trio.current_time() - start == pytest.approx(60.0, abs=0.01)
        assert kinds(stack, "esl").count("idle_timeout") == 1


# --- CometQL and the directory: the handshake timeout covers a trickled handshake ----------------


async def test_cometql_handshake_trickled_is_closed_at_10_seconds(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        stream = await net.connect("127.0.0.1", stack.ports["cometql"])
        greeting = await stream.receive_some(65536)
        assert greeting[4] == 0x0A
        start = trio.current_time()
        async with trio.open_nursery() as nursery:  # a packet header announcing 60 bytes, then a trickle
            nursery.start_soon(trickle, stream, b"\x3c\x00\x00\x01" + b"\x00" * 60)
            closed, _ = await closed_within(stream, 60)
            nursery.cancel_scope.cancel()
        assert closed and trio.current_time() - start == pytest.approx(10.0, abs=0.01)


async def test_directory_head_trickled_is_closed_at_10_seconds(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        stream = await net.connect("127.0.0.1", stack.ports["directory"])
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle, stream, b"GET /directory?a=1&user=000001015&b=2 HTTP/1.1\r\nHost: x\r\n\r\n")
            closed, received = await closed_within(stream, 200)
            nursery.cancel_scope.cancel()
        assert closed and received == b"" and trio.current_time() - start == pytest.approx(10.0, abs=0.01)
