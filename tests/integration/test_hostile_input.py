"""Quiet closes and 400s: every way a client can leave or misbehave on the SIP (UDP, TCP, WS),
ESL, CometQL and directory listeners ends in at most one journal record of the misbehaviour, no
log line at WARNING or above and no traceback on stderr, and the listener keeps serving.

A SIP request that does not parse is answered 400 wherever its Via tells where the answer goes
(sofia-sip's nta does the same): bad CSeq, no Call-ID, unparseable From, Content-Length past the
body, a header line without a colon, a Latin-1 byte.  The directory answers from the request head
alone, so a truncated or invalid body cannot break it.
"""

from __future__ import annotations

import logging
import socket
import struct

import pytest
import trio

from emulator.config import Config
from emulator.net.network import Endpoint, OSNetwork, VirtualNetwork
from emulator.stack import open_stack
from emulator.wire import sip
from tests.rawmysql import RawMySQL
from tests.rawws import RawWS, frame

BASE = ("OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/{transport} client.invalid:5999;branch=z9hG4bK{branch}\r\n"
        "Max-Forwards: 70\r\nTo: <sip:127.0.0.1>\r\n"
        "From: \"caller\" <sip:000001015@127.0.0.1>;tag=abc\r\n"
        "Call-ID: call-{branch}\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n")

# what the issue listed, each a request whose Via is fine
MALFORMED = {
    "bad_cseq": lambda m: m.replace(b"CSeq: 7 OPTIONS", b"CSeq: seven OPTIONS"),
    "no_call_id": lambda m: m.replace(b"Call-ID: call-", b"X-Call: call-"),
    "unparseable_from": lambda m: m.replace(b'From: "caller" <sip:', b'From: "caller <sip:'),
    "content_length_past_body": lambda m: m.replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: 50\r\n\r\nv=0\r\n"),
    "line_without_colon": lambda m: m.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards 70\r\n"),
    "latin1_byte": lambda m: m.replace(b'"caller"', b'"caf\xe9"'),
}


def base(transport: str, branch: str) -> bytes:
    return BASE.format(transport=transport, branch=branch).encode()


def config(**overrides) -> Config:
    cfg = Config(sip_tls=False, **overrides)
    cfg.free_ports()
    return cfg


def assert_400_for(answer: bytes, branch: str) -> None:
    assert answer.startswith(b"SIP/2.0 400 Bad Request\r\n"), answer[:80]
    assert f"branch=z9hG4bK{branch}\r\n".encode() in answer
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    assert ";tag=" in head.split("\r\nTo: ", 1)[1].split("\r\n", 1)[0]  # a To tag, as every final answer


# --- 400 over each transport (virtual network) ----------------------------------------------------


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_udp_malformed_request_gets_400(autojump_clock, case):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        client = await net.udp_socket("test", "127.0.0.1", 0)
        server = Endpoint("127.0.0.1", stack.ports["sip"])
        await client.sendto(MALFORMED[case](base("UDP", case)), server)
        with trio.fail_after(5):
            answer, _ = await client.recvfrom()
        assert_400_for(answer, case)
        await client.sendto(base("UDP", "fine"), server)  # the flow is still served
        with trio.fail_after(5):
            answer, _ = await client.recvfrom()
        assert answer.startswith(b"SIP/2.0 200 OK")
        assert [e["kind"] for e in stack.journal.entries(service="sip")].count("bad_message") == 1


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_tcp_malformed_request_gets_400_then_close(autojump_clock, case):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        stream = await net.connect("127.0.0.1", stack.ports["sip"])
        await stream.send_all(MALFORMED[case](base("TCP", case)))
        if case == "content_length_past_body":
            await stream.send_eof()  # on a stream the body is just late until the peer stops
        received = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                received += chunk
        assert_400_for(received, case)
        assert [e["kind"] for e in stack.journal.entries(service="sip")].count("bad_stream") == 1


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_ws_malformed_request_gets_400(autojump_clock, case):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        ws = await RawWS.open(net, stack.ports["sip_ws"], "/", "Sec-WebSocket-Protocol: sip\r\n")
        data = MALFORMED[case](base("WS", case))
        await ws.send(data, opcode=0x2 if case == "latin1_byte" else 0x1)  # text frames are UTF-8 only
        with trio.fail_after(5):
            _, answer = await ws.recv_raw()
        assert_400_for(answer, case)
        await ws.send(base("WS", "fine"))
        with trio.fail_after(5):
            assert (await ws.recv_raw())[1].startswith(b"SIP/2.0 200 OK")


async def test_ack_and_requests_without_a_usable_via_get_no_answer(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        client = await net.udp_socket("test", "127.0.0.1", 0)
        server = Endpoint("127.0.0.1", stack.ports["sip"])
        bad_ack = base("UDP", "ack").replace(b"OPTIONS sip", b"ACK sip").replace(b"7 OPTIONS", b"x ACK")
        no_via = base("UDP", "novia").replace(b"Via: SIP/2.0/UDP", b"Via: SIP/2.0/")
        for data in (bad_ack, no_via):
            await client.sendto(data, server)
        await client.sendto(base("UDP", "fine"), server)
        with trio.fail_after(5):
            answer, _ = await client.recvfrom()
        assert answer.startswith(b"SIP/2.0 200 OK") and b"branch=z9hG4bKfine" in answer  # nothing before it
        assert [e["kind"] for e in stack.journal.entries(service="sip")].count("bad_message") == 2


def test_error_response_builder_echoes_only_well_formed_headers():
    data = MALFORMED["bad_cseq"](base("UDP", "b1"))
    answer = sip.error_response(data, to_tag="t9")
    assert answer is not None and b"CSeq:" not in answer and b"Call-ID: call-b1\r\n" in answer
    assert b"To: <sip:127.0.0.1>;tag=t9\r\n" in answer
    assert sip.error_response(MALFORMED["latin1_byte"](data)).count(b"caf\xe9") == 1  # the client's bytes
    assert sip.error_response(b"\x16\x03\x01garbage") is None
    assert sip.error_response(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n") is None
    folded = base("UDP", "f").replace(b"Via: SIP/2.0/UDP client.invalid:5999",
                                      b"v: SIP/2.0/UDP\r\n client.invalid:5999")
    assert b"Via: SIP/2.0/UDP client.invalid:5999;branch=z9hG4bKf\r\n" in sip.error_response(folded)
    assert sip.error_response(data, 413).startswith(b"SIP/2.0 413 Request Entity Too Large\r\n")


# --- misbehaviour on OS sockets: logs, tracebacks, journal ----------------------------------------


def _rst(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _raw(port: int, data: bytes, *, how: str = "close", wait: float = 0.3) -> bytes:
    """Send ``data`` on a fresh OS connection, then close / half-close / reset; what came back."""
    def run() -> bytes:
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(wait)
        received = b""
        try:
            if data:
                s.sendall(data)
            if how == "half":
                s.shutdown(socket.SHUT_WR)
            try:
                while chunk := s.recv(65536):
                    received += chunk
            except (TimeoutError, ConnectionResetError):
                pass
        finally:
            _rst(s) if how == "rst" else s.close()
        return received
    return await trio.to_thread.run_sync(run)


@pytest.fixture
def quiet(caplog, capfd):
    """Yields; then asserts no WARNING+ log record and no traceback on stderr."""
    caplog.set_level(logging.WARNING)
    yield
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not problems, [r.getMessage() for r in problems]
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ERROR" not in err, err[-2000:]


UPGRADE = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Protocol: sip\r\n\r\n")


async def _still_serves(stack) -> None:
    net = stack.network
    stream = await net.connect("127.0.0.1", stack.ports["sip"])
    await stream.send_all(base("TCP", "alive"))
    assert (await stream.receive_some(65536)).startswith(b"SIP/2.0 200 OK")
    await stream.aclose()
    mysql = await RawMySQL.open(net, stack.ports["cometql"])
    assert (await mysql.login())[1][0] == 0x00
    await mysql.stream.aclose()
    esl = await net.connect("127.0.0.1", stack.ports["esl"])
    assert b"auth/request" in await esl.receive_some(65536)
    await esl.aclose()
    answer = await _raw(stack.ports["directory"], b"OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n", how="half", wait=2)
    assert answer.startswith(b"HTTP/1.1 200 ")


async def test_sip_tcp_and_ws_misbehaviour_is_quiet(quiet):
    async with open_stack(config(), network=OSNetwork()) as stack:
        tcp, ws = stack.ports["sip"], stack.ports["sip_ws"]
        register = base("TCP", "r1").replace(b"OPTIONS sip", b"REGISTER sip").replace(b"7 OPTIONS", b"7 REGISTER")
        cases = [
            (tcp, b"", "rst"), (tcp, register[:60], "rst"), (tcp, register[:60], "half"),
            (tcp, b"\x16\x03\x01\x02\x00" + bytes(range(256)), "close"), (tcp, register + b"\x00" * 70000, "close"),
            (tcp, b"OPTIONS sip:x SIP/2.0\r\n" + b"X: " + b"a" * 70000, "close"),
            (ws, UPGRADE[:40], "rst"), (ws, b"\x16\x03\x01garbage\r\n\r\n", "close"),
            (ws, UPGRADE + frame(b"\xe9\xff", 0x1), "close"), (ws, UPGRADE + frame(b"x", 0x1, mask=False), "close"),
            (ws, UPGRADE + frame(b"x", 0x9), "half"), (ws, UPGRADE + frame(b"", 0x8), "close"),
            (ws, UPGRADE + frame(b"x", 0x3), "close"), (ws, UPGRADE + frame(b"x" * 70000, 0x2), "close"),
            (ws, UPGRADE + frame(register, 0x1)[:30], "rst"),
        ]
        for port, data, how in cases:
            await _raw(port, data, how=how)
        await _still_serves(stack)
        await trio.sleep(0.2)
        sip_kinds = [e["kind"] for e in stack.journal.entries(service="sip")]
        assert "core_error" not in sip_kinds and "error" not in sip_kinds
        assert sip_kinds.count("bad_stream") == 8  # one per connection that broke the protocol


async def test_esl_cometql_and_directory_misbehaviour_is_quiet(quiet):
    async with open_stack(config(), network=OSNetwork()) as stack:
        esl, mysql, directory = stack.ports["esl"], stack.ports["cometql"], stack.ports["directory"]
        head = b"GET /directory?a=1&user=000001015&domain=d HTTP/1.1\r\nHost: x\r\n"
        cases = [
            (esl, b"", "rst"), (esl, b"auth ClueCon\n\nevent plain ALL\n\napi status\n\n", "rst"),
            (esl, b"x" * 70000, "close"), (esl, b"auth ClueCon\n\nsendmsg\nContent-Length: 99999999\n\n", "close"),
            (esl, b"\xff\xfe\x00auth\x00\n\n", "half"), (esl, b"auth ClueCon\n\nexit\n\n", "half"),
            (mysql, b"", "rst"), (mysql, b"\xff\xff\xff\x01" + b"\x00" * 100, "close"),
            (mysql, b"\x05\x00\x00\x01abc", "rst"), (mysql, b"GET / HTTP/1.1\r\n\r\n", "half"),
            (directory, head[:20], "rst"), (directory, head + b"Content-Length: 100000\r\n\r\nabc", "half"),
            (directory, head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n", "half"),
            (directory, head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n", "close"),
            (directory, b"\x00\xff" * 9000, "close"), (directory, b"GET / HTTP/1.1\r\nHost: \xe9\r\n\r\n", "half"),
        ]
        for port, data, how in cases:
            await _raw(port, data, how=how)
        await _still_serves(stack)
        await trio.sleep(0.2)
        assert [e["kind"] for e in stack.journal.entries(service="esl")].count("bad_input") == 2


@pytest.mark.parametrize("body", [b"Content-Length: 100000\r\n\r\nabc",
                                  b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
                                  b"Content-Length: 3\r\n\r\nabc", b"Content-Length: nope\r\n\r\n"])
async def test_directory_answers_from_the_head_whatever_the_body(quiet, body):
    async with open_stack(config(), network=OSNetwork()) as stack:
        stack.hub.set_hash(1, 15, "secret-hash")
        head = b"GET /directory?a=1&user=000001015&domain=d HTTP/1.1\r\nHost: x\r\n"
        for how in ("half", "close"):
            answer = await _raw(stack.ports["directory"], head + body, how=how, wait=3)
            assert answer.startswith(b"HTTP/1.1 200 ") and b"secret-hash" in answer, (how, answer[:100])


async def test_ws_upgrade_with_a_non_ascii_header_byte_gets_400(quiet):
    async with open_stack(config(), network=OSNetwork()) as stack:
        upgrade = UPGRADE.replace(b"Connection: Upgrade", b"Connection: Upgrade, \xcd\xcd")
        answer = await _raw(stack.ports["sip_ws"], upgrade, how="half", wait=2)
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        answer = await _raw(stack.ports["sip_ws"], UPGRADE.replace(b"Host: x", b"Host: caf\xe9"), how="half", wait=2)
        assert answer.startswith(b"HTTP/1.1 400 ")
        await _still_serves(stack)
        kinds = [e["kind"] for e in stack.journal.entries(service="sip")]
        assert kinds.count("bad_handshake") == 2


async def test_ws_frame_sent_with_the_upgrade_request_is_not_lost(quiet):
    """wsproto's server handshake drops bytes that arrive with the request; the transport keeps them."""
    async with open_stack(config(), network=OSNetwork()) as stack:
        answer = await _raw(stack.ports["sip_ws"], UPGRADE + frame(base("WS", "eager"), 0x1), how="half", wait=2)
        head, _, frames = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ") and b"SIP/2.0 200 OK\r\n" in frames
        assert b"branch=z9hG4bKeager" in frames


@pytest.mark.parametrize("host", [b"a..b", b"x" * 70, b"a." + b"b" * 64 + b":8082", b"."])
async def test_directory_answers_whatever_the_host(quiet, host):
    """Found by the live fuzzer: werkzeug encodes Host with IDNA and failed ("label empty or too
    long") with a traceback and no answer; the original never looks at Host."""
    async with open_stack(config(), network=OSNetwork()) as stack:
        stack.hub.set_hash(1, 15, "secret-hash")
        request = b"GET /directory?a=1&user=000001015&domain=d HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
        answer = await _raw(stack.ports["directory"], request, how="half", wait=3)
        assert answer.startswith(b"HTTP/1.1 200 ") and b"secret-hash" in answer


@pytest.mark.parametrize("request_bytes", [b"GET ?x HTTP/1.1\r\nHost: x\r\n\r\n", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
                                           b"GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n",
                                           b"GET / HTTP/1.1\r\nhost\r\n\r\n",
                                           b"OPTIONS ? HTTP/1.1\r\nHost: a..b\r\n\r\n"])
async def test_directory_odd_targets_and_host_lines(quiet, request_bytes):
    """Found by the live fuzzer: a target without a leading slash failed inside quart, a Host line
    without a colon inside the pre-read; both are answered now (or refused with 400)."""
    async with open_stack(config(), network=OSNetwork()) as stack:
        answer = await _raw(stack.ports["directory"], request_bytes, how="half", wait=3)
        assert answer.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 400 ")), answer[:80]
