"""SIP transports of the fake FreeSWITCH (WSS/WS, TCP, UDP) and datagrams on the network seam.

The SIP core is a stub that records what it gets and answers REGISTER with a 200 through the flow.
OS tests use the real clock on loopback; virtual tests use the in-memory network and an
autojumping MockClock.
"""

from __future__ import annotations

import random
import ssl

import pytest
import trio
import trio.testing
import trio_websocket

from emulator.freeswitch.flow import Flow
from emulator.freeswitch.sip_transport import (
    SipTcpTransport,
    SipUdpTransport,
    SipWebSocketTransport,
    looks_like_sip,
    summary,
)
from emulator.freeswitch.tls import ensure_certificates
from emulator.journal import Journal
from emulator.net.network import MAX_DATAGRAM, Endpoint, OSNetwork, VirtualNetwork, abort
from emulator.wire import sip

# real-video-client.md 4.2, the first REGISTER of JsSIP 2.0.6
REGISTER = (
    "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/WSS iusnucoqmctu.invalid;branch=z9hG4bK6792419\r\n"
    "Max-Forwards: 69\r\n"
    "To: <sip:000015503@127.0.0.1>\r\n"
    "From: \"000015503\" <sip:000015503@127.0.0.1>;tag=hmc1su07jq\r\n"
    "Call-ID: gv06imipp3ksv3uqkck4pt\r\n"
    "CSeq: 1 REGISTER\r\n"
    "Contact: <sip:v3vuq5sa@iusnucoqmctu.invalid;transport=ws>;+sip.ice;reg-id=1;"
    "+sip.instance=\"<urn:uuid:161e9fda-8ba8-49ef-9cda-f37d3287fa90>\";expires=600\r\n"
    "Expires: 600\r\n"
    "Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO\r\n"
    "Supported: path,gruu,outbound\r\n"
    "User-Agent: JsSIP 2.0.6\r\n"
    "Content-Length: 0\r\n\r\n")


def register(call_id: str = "gv06imipp3ksv3uqkck4pt", transport: str = "WSS", cseq: int = 1) -> str:
    return (REGISTER.replace("gv06imipp3ksv3uqkck4pt", call_id).replace("SIP/2.0/WSS", f"SIP/2.0/{transport}")
            .replace("CSeq: 1 ", f"CSeq: {cseq} "))


def message(method: str, call_id: str, body: str = "") -> bytes:
    return (f"{method} sip:15*101*video@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP client.invalid;branch=z9hG4bK{call_id}\r\n"
            "Max-Forwards: 70\r\nTo: <sip:15*101*video@127.0.0.1>\r\n"
            "From: <sip:000015503@127.0.0.1>;tag=abc\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\n"
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body.encode())}\r\n\r\n{body}").encode()


class StubCore:
    """Records every call; REGISTER → 200 OK; a few magic methods drive the transport."""

    def __init__(self) -> None:
        self.received: list[tuple[Flow, bytes]] = []
        self.closed: list[Flow] = []

    def receive(self, flow: Flow, data: bytes) -> None:
        self.received.append((flow, data))
        if data.startswith(b"CRASH"):
            raise RuntimeError("core bug")
        if data.startswith(b"FLOOD"):
            for i in range(10_000):
                flow.send(b"NOTIFY %d" % i)
            return
        if data.startswith(b"BYE-ME"):
            flow.send(b"goodbye")
            flow.close()
            return
        if data.startswith(b"REGISTER"):
            req = sip.parse_message(data)
            assert isinstance(req, sip.SipRequest)
            flow.send(sip.make_response(req, 200, to_tag="fs1", headers=[("Expires", "600")]).encode())

    def flow_closed(self, flow: Flow) -> None:
        assert not flow.alive
        self.closed.append(flow)

    def flows(self) -> list[Flow]:
        seen: list[Flow] = []
        for flow, _ in self.received:
            if flow not in seen:
                seen.append(flow)
        return seen


async def until(predicate, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.005)


def is_200(text: str | bytes, call_id: str = "gv06imipp3ksv3uqkck4pt") -> bool:
    if isinstance(text, str):
        text = text.encode()
    return text.startswith(b"SIP/2.0 200 OK") and f"\r\nCall-ID: {call_id}\r\n".encode() in text


# --- network kinds ---------------------------------------------------------------------------------


@pytest.fixture(params=["os", "virtual"])
def kind(request):
    return request.param


@pytest.fixture
def vclock(kind):
    """An autojumping MockClock for the virtual network; the real clock (None) for OS sockets."""
    return trio.testing.MockClock(autojump_threshold=0) if kind == "virtual" else None


@pytest.fixture
def network(kind, vclock):
    return OSNetwork() if kind == "os" else VirtualNetwork()


# =================================================================================================
# Datagrams on the network seam
# =================================================================================================


async def test_datagram_exchange(network, vclock):
    a = await network.udp_socket("test", "127.0.0.1", 0)
    b = await network.udp_socket("test", "127.0.0.1", 0)
    assert a.endpoint.port and b.endpoint.port and a.endpoint != b.endpoint
    await a.sendto(b"hello", b.endpoint)
    with trio.fail_after(2):
        data, source = await b.recvfrom()
    assert (data, source) == (b"hello", a.endpoint)
    await b.sendto(b"back", source)
    with trio.fail_after(2):
        assert await a.recvfrom() == (b"back", b.endpoint)
    # a datagram nobody listens for is silently lost; so is one after the receiver closed
    await a.sendto(b"void", Endpoint("127.0.0.1", 9))
    with pytest.raises(OSError):
        await a.sendto(b"x" * (MAX_DATAGRAM + 1), b.endpoint)
    # closing wakes a waiting recvfrom
    async with trio.open_nursery() as nursery:
        async def waiter():
            with pytest.raises(trio.ClosedResourceError):
                await b.recvfrom()
        nursery.start_soon(waiter)
        await trio.sleep(0.05)
        await b.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await b.sendto(b"late", a.endpoint)
    await a.aclose()
    await a.aclose()  # idempotent


async def test_datagram_port_in_use(network, vclock):
    a = await network.udp_socket("test", "127.0.0.1", 0)
    with pytest.raises(OSError):
        await network.udp_socket("test", "127.0.0.1", a.endpoint.port)
    await a.aclose()
    again = await network.udp_socket("test", "127.0.0.1", a.endpoint.port)  # free after close
    await again.aclose()


async def test_virtual_datagram_buffer_drops_on_overflow(autojump_clock):
    net = VirtualNetwork()
    receiver = await net.udp_socket("test", "127.0.0.1", 5060, buffer=1000)
    sender = await net.udp_socket("test", "10.0.0.7", 0)
    for i in range(20):
        await sender.sendto(bytes([i]) * 100, receiver.endpoint)
    assert receiver.dropped == 10
    got = [(await receiver.recvfrom())[0][0] for _ in range(10)]
    assert got == list(range(10))  # in order, the overflow lost the tail like a kernel buffer
    with trio.move_on_after(1) as scope:
        await receiver.recvfrom()
    assert scope.cancelled_caught
    # the sender's host name is its address on the virtual network
    await sender.sendto(b"x", Endpoint("localhost", 5060))
    assert await receiver.recvfrom() == (b"x", Endpoint("10.0.0.7", sender.endpoint.port))


async def test_wrap_datagram_hook_sees_every_endpoint(autojump_clock):
    seen = []

    class Recording(VirtualNetwork):
        def wrap_datagram(self, endpoint, *, service, client=""):
            seen.append((service, client))
            return super().wrap_datagram(endpoint, service=service, client=client)

    net = Recording()
    await net.udp_socket("sip", "127.0.0.1", 0)
    await net.udp_socket("sip-ua", "127.0.0.1", 0, client="alice")
    assert seen == [("sip", ""), ("sip-ua", "alice")]


def test_summary_and_start_line_check():
    assert summary(REGISTER.encode()) == "REGISTER sip:127.0.0.1 SIP/2.0 | gv06imipp3ksv3uqkck4pt"
    assert summary(b"\r\nSIP/2.0 200 OK\r\ni: abc\r\n\r\n") == "SIP/2.0 200 OK | abc"
    assert summary(b"\xff\xfe") == "\ufffd\ufffd | "
    assert looks_like_sip(REGISTER.encode()) and looks_like_sip(b"SIP/2.0 180 Ringing\r\n")
    assert not looks_like_sip(b"GET / HTTP/1.1\r\n\r\n") and not looks_like_sip(b"\x16\x03\x01")


# =================================================================================================
# SIP over secure WebSocket, real sockets and TLS
# =================================================================================================


async def start_ws(nursery, network, *, tls: ssl.SSLContext | None, **kw):
    core, journal = StubCore(), Journal(":memory:")
    transport = SipWebSocketTransport(core, network, journal, tls_context=tls, **kw)
    await nursery.start(transport.serve, "127.0.0.1", 0)
    return transport, core, journal


async def test_wss_register_over_os_sockets(tmp_path):
    certs = ensure_certificates(tmp_path)
    async with trio.open_nursery() as nursery:
        transport, core, journal = await start_ws(nursery, OSNetwork(), tls=certs.server_context())
        port = transport.listener.endpoint.port
        async with trio_websocket.open_websocket("127.0.0.1", port, "/", use_ssl=certs.client_context(),
                                                 subprotocols=["sip"]) as ws:
            assert ws.subprotocol == "sip"
            await ws.send_message(REGISTER)
            with trio.fail_after(5):
                reply = await ws.get_message()
            assert isinstance(reply, str) and is_200(reply)  # a TEXT frame
            [(flow, data)] = core.received
            assert data == REGISTER.encode()
            assert flow.transport == "WSS" and flow.reliable and flow.alive
            assert flow.peer.host == "127.0.0.1" and flow.local == transport.listener.endpoint
            assert core.closed == []
        await until(lambda: core.closed == [flow])
        assert not flow.alive and transport.active == 0
        # the raw 101 to Chromium's request (real-video-client.md 4.1) echoes the subprotocol
        tls = trio.SSLStream(await OSNetwork().connect("127.0.0.1", port), certs.client_context(),
                             server_hostname="127.0.0.1")
        await tls.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:7443\r\nConnection: Upgrade\r\n"
                           b"Upgrade: websocket\r\nOrigin: https://app.example\r\nSec-WebSocket-Version: 13\r\n"
                           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: sip\r\n"
                           b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
        head = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in head:
                head += await tls.receive_some(4096)
        lines = head.split(b"\r\n\r\n")[0].lower().split(b"\r\n")
        assert lines[0].startswith(b"http/1.1 101 ")
        assert b"sec-websocket-protocol: sip" in lines
        assert b"sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=" in lines
        assert not any(line.startswith(b"sec-websocket-extensions") for line in lines)  # no deflate
        await tls.aclose()
        await until(lambda: len(core.closed) == 2)
        entries = [(e["kind"], e["direction"], e["data"]) for e in journal.entries(service="sip")]
        assert ("message", "in", "REGISTER sip:127.0.0.1 SIP/2.0 | gv06imipp3ksv3uqkck4pt") in entries
        assert ("message", "out", "SIP/2.0 200 OK | gv06imipp3ksv3uqkck4pt") in entries
        nursery.cancel_scope.cancel()


async def test_bad_tls_clients_are_closed_while_a_good_one_works(tmp_path):
    certs = ensure_certificates(tmp_path)
    net = OSNetwork()
    async with trio.open_nursery() as nursery:
        transport, core, journal = await start_ws(nursery, net, tls=certs.server_context(),
                                                  handshake_timeout=0.5)
        port = transport.listener.endpoint.port
        silent = await net.connect("127.0.0.1", port)              # never starts the handshake
        stalled = await net.connect("127.0.0.1", port)             # starts a ClientHello, never ends it
        await stalled.send_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        garbage = await net.connect("127.0.0.1", port)             # not TLS at all
        await garbage.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(random.Random(1).randbytes(300)))
        with trio.fail_after(0.4):                                 # closed at once, not at the timeout
            assert await read_to_eof(garbage)
        untrusted = trio.SSLStream(await net.connect("127.0.0.1", port), ssl.create_default_context(),
                                   server_hostname="127.0.0.1")      # the client refuses our certificate
        with pytest.raises(trio.BrokenResourceError):
            await untrusted.do_handshake()
        await trio.aclose_forcefully(untrusted)
        async with trio_websocket.open_websocket("127.0.0.1", port, "/", use_ssl=certs.client_context(),
                                                 subprotocols=["sip"]) as ws:
            await ws.send_message(REGISTER)
            with trio.fail_after(5):
                assert is_200(await ws.get_message())
            with trio.fail_after(2):                               # the stalled ones time out meanwhile
                assert await read_to_eof(silent)
                assert await read_to_eof(stalled)
            await ws.send_message(REGISTER.replace("CSeq: 1", "CSeq: 2"))
            with trio.fail_after(5):
                assert (await ws.get_message()).startswith("SIP/2.0 200 OK")
        await until(lambda: transport.active == 0)
        assert len(core.flows()) == 1 and core.closed == core.flows()  # bad clients never got a flow
        kinds = [e["kind"] for e in journal.entries(service="sip")]
        assert kinds.count("tls_failed") >= 2 and kinds.count("handshake_timeout") == 2
        nursery.cancel_scope.cancel()


async def read_to_eof(stream) -> bool:
    try:
        while await stream.receive_some(65536):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    return True


# =================================================================================================
# Plain WebSocket over the virtual network
# =================================================================================================


async def ws_client(nursery, net, port, subprotocols=("sip",), **kw):
    return (await ws_client_and_stream(nursery, net, port, subprotocols, **kw))[0]


async def ws_client_and_stream(nursery, net, port, subprotocols=("sip",), **kw):
    """A client WebSocket and the stream under it (to abort the connection without a Close frame)."""
    stream = await net.connect("127.0.0.1", port, client="alice")
    ws = await trio_websocket.wrap_client_stream(nursery, stream, "127.0.0.1", "/",
                                                 subprotocols=list(subprotocols), **kw)
    return ws, stream


async def test_ws_over_virtual_network(autojump_clock):
    net = VirtualNetwork()
    async with trio.open_nursery() as nursery:
        transport, core, journal = await start_ws(nursery, net, tls=None)
        port = transport.listener.endpoint.port
        ws = await ws_client(nursery, net, port)
        assert ws.subprotocol == "sip"
        await ws.send_message(REGISTER.replace("SIP/2.0/WSS", "SIP/2.0/WS"))
        reply = await ws.get_message()
        assert isinstance(reply, str) and is_200(reply)
        await ws.send_message(b"OPTIONS in a binary frame")          # binary reaches the core as bytes
        await ws.send_message("\r\n\r\n")                             # keep-alive noise is dropped
        await until(lambda: len(core.received) == 2)
        flow = core.received[0][0]
        assert flow.transport == "WS" and flow.peer.host == "alice"
        assert core.received[1] == (flow, b"OPTIONS in a binary frame")
        flow.send(b"\xff\xfe not utf-8")                              # sent as a binary frame
        assert await ws.get_message() == b"\xff\xfe not utf-8"
        await ws.aclose()
        await until(lambda: core.closed == [flow])
        assert [e["kind"] for e in journal.entries(kind="ws_open")] == ["ws_open"]
        nursery.cancel_scope.cancel()


async def handshake_status(net, port, subprotocols) -> int:
    """101 if the upgrade is accepted, else the HTTP status of the rejection."""
    status = 101
    try:
        async with trio.open_nursery() as nursery:
            ws = await ws_client(nursery, net, port, subprotocols=subprotocols)
            await ws.aclose()
    except* trio_websocket.ConnectionRejected as group:
        rejected = group.exceptions[0]
        assert isinstance(rejected, trio_websocket.ConnectionRejected)
        status = rejected.status_code
    return status


async def test_ws_subprotocol_rule(autojump_clock):
    net = VirtualNetwork()
    async with trio.open_nursery() as nursery:
        transport, core, journal = await start_ws(nursery, net, tls=None)
        port = transport.listener.endpoint.port
        plain = await ws_client(nursery, net, port, subprotocols=())   # lenient: accepted, nothing echoed
        assert plain.subprotocol is None
        await plain.send_message(REGISTER)
        assert is_200(await plain.get_message())
        assert await handshake_status(net, port, ["mqtt"]) == 400      # only foreign protocols: rejected
        mixed = await ws_client(nursery, net, port, subprotocols=["mqtt", "sip"])
        assert mixed.subprotocol == "sip"
        assert [e["kind"] for e in journal.entries(kind="bad_handshake")] == ["bad_handshake"]

        strict, _, _ = await start_ws(nursery, net, tls=None, require_subprotocol=True)
        assert await handshake_status(net, strict.listener.endpoint.port, []) == 400
        assert await handshake_status(net, strict.listener.endpoint.port, ["sip"]) == 101
        nursery.cancel_scope.cancel()


async def test_ws_handshake_timeout_and_garbage(autojump_clock):
    net = VirtualNetwork()
    async with trio.open_nursery() as nursery:
        transport, core, journal = await start_ws(nursery, net, tls=None, handshake_timeout=10)
        port = transport.listener.endpoint.port
        silent = await net.connect("127.0.0.1", port)
        half = await net.connect("127.0.0.1", port)
        await half.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")    # the head never ends
        start = trio.current_time()
        garbage = await net.connect("127.0.0.1", port)
        await garbage.send_all(b"\x16\x03\x01 this is a TLS hello to a plain ws port\r\n\r\n")
        await read_to_eof(garbage)
        assert trio.current_time() - start < 1                      # a bad request ends at once
        not_ws = await net.connect("127.0.0.1", port)                 # HTTP, but no upgrade
        await not_ws.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await read_to_eof(not_ws)
        await read_to_eof(silent)
        await read_to_eof(half)
        assert 9.9 < trio.current_time() - start < 11
        ws = await ws_client(nursery, net, port)                      # still serving
        await ws.send_message(REGISTER)
        assert is_200(await ws.get_message())
        kinds = [e["kind"] for e in journal.entries(service="sip")]
        assert kinds.count("handshake_timeout") == 2 and kinds.count("bad_handshake") >= 1
        assert transport.active == 1 and len(core.flows()) == 1
        nursery.cancel_scope.cancel()


async def test_ws_one_bad_client_does_not_disturb_others(autojump_clock):
    net = VirtualNetwork()
    async with trio.open_nursery() as nursery:
        transport, core, journal = await start_ws(nursery, net, tls=None, max_message=1000)
        port = transport.listener.endpoint.port
        good = await ws_client(nursery, net, port)
        await good.send_message(REGISTER)
        assert is_200(await good.get_message())
        good_flow = core.received[-1][0]

        flooded = await ws_client(nursery, net, port)                 # outbox overflow closes it
        await flooded.send_message("FLOOD")
        await until(lambda: len(core.closed) == 1)
        assert [e["kind"] for e in journal.entries(kind="outbox_overflow")] == ["outbox_overflow"]

        crashing = await ws_client(nursery, net, port)                # a core exception closes only it
        await crashing.send_message("CRASH")
        await until(lambda: len(core.closed) == 2)

        big = await ws_client(nursery, net, port)                     # over max_message: close 1009
        await big.send_message("x" * 2000)
        with pytest.raises(trio_websocket.ConnectionClosed) as closed:
            await big.get_message()
        assert closed.value.reason.code == 1009
        await until(lambda: len(core.closed) == 3)

        dropped, dropped_stream = await ws_client_and_stream(nursery, net, port)  # TCP drop, no Close frame
        await dropped.send_message("OPTIONS")
        await until(lambda: len(core.received) == 4)
        await abort(dropped_stream)
        await until(lambda: len(core.closed) == 4)

        leaving = await ws_client(nursery, net, port)                 # the core closes gracefully
        await leaving.send_message("BYE-ME")
        assert await leaving.get_message() == "goodbye"
        with pytest.raises(trio_websocket.ConnectionClosed) as closed:
            await leaving.get_message()
        assert closed.value.reason.code == 1000
        await until(lambda: len(core.closed) == 5)

        assert good_flow not in core.closed and good_flow.alive
        await good.send_message(REGISTER.replace("CSeq: 1", "CSeq: 2"))
        assert (await good.get_message()).startswith("SIP/2.0 200 OK")
        assert len(set(core.closed)) == 5                              # each flow closed exactly once
        assert transport.active == 1
        assert [e["kind"] for e in journal.entries(kind="core_error")] == ["core_error"]
        nursery.cancel_scope.cancel()
    assert len(set(core.closed)) == 6                                  # shutdown closes the last one


# =================================================================================================
# SIP over TCP
# =================================================================================================


async def read_exactly(stream, n: int) -> bytes:
    buf = b""
    with trio.fail_after(5):
        while len(buf) < n:
            chunk = await stream.receive_some(n - len(buf))
            assert chunk, buf
            buf += chunk
    return buf


async def test_tcp_framing(network, vclock):
    core, journal = StubCore(), Journal(":memory:")
    transport = SipTcpTransport(core, network, journal)
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.serve, "127.0.0.1", 0)
        stream = await network.connect("127.0.0.1", transport.listener.endpoint.port)
        sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"
        one, two, three = message("OPTIONS", "c1"), message("INVITE", "c2", sdp), message("INFO", "c3", "é")
        # two merged messages and half a third in one write, the rest a byte at a time
        await stream.send_all(one + b"\r\n" + two + three[:40])
        await until(lambda: len(core.received) == 2)
        for i in range(40, len(three)):
            await stream.send_all(three[i:i + 1])
        await until(lambda: len(core.received) == 3)
        assert [d for _, d in core.received] == [one, two, three]      # exact bytes, bodies included
        flow = core.received[0][0]
        assert flow.transport == "TCP" and {f for f, _ in core.received} == {flow}
        # RFC 5626: a CRLFCRLF ping gets a CRLF pong; the core never sees keep-alives
        await stream.send_all(b"\r\n\r\n")
        assert await read_exactly(stream, 2) == b"\r\n"
        await stream.send_all(register(transport="TCP").encode())
        reply = await read_exactly(stream, 20)
        assert reply.startswith(b"SIP/2.0 200 OK")
        assert len(core.received) == 4
        # a malformed stream is closed cleanly, the flow reported closed
        await stream.send_all(b"NOT SIP AT ALL\r\n\r\n")
        await read_to_eof(stream)
        await until(lambda: core.closed == [flow])
        assert [e["kind"] for e in journal.entries(kind="bad_stream")] == ["bad_stream"]

        other = await network.connect("127.0.0.1", transport.listener.endpoint.port)
        await other.send_all(message("OPTIONS", "c9")[:30])               # cut inside a message
        await until(lambda: transport.active == 1)
        await other.aclose()
        await until(lambda: len(core.closed) == 2 and transport.active == 0)
        assert len(journal.entries(kind="bad_stream")) == 2
        nursery.cancel_scope.cancel()


async def test_tcp_core_close_and_overflow(autojump_clock):
    net = VirtualNetwork()
    core, journal = StubCore(), Journal(enabled=False)
    transport = SipTcpTransport(core, net, journal, answer_pings=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.serve, "127.0.0.1", 5060)
        leaving = await net.connect("127.0.0.1", 5060)
        await leaving.send_all(b"\r\n\r\n" + message("BYE-ME", "c1"))
        assert await read_exactly(leaving, 7) == b"goodbye"             # no pong: answer_pings=False
        await read_to_eof(leaving)
        flooded = await net.connect("127.0.0.1", 5060)
        await flooded.send_all(message("FLOOD", "c2"))
        await read_to_eof(flooded)
        await until(lambda: len(core.closed) == 2 and transport.active == 0)
        nursery.cancel_scope.cancel()


# =================================================================================================
# SIP over UDP
# =================================================================================================


async def udp_register(client, server: Endpoint, call_id: str = "gv06imipp3ksv3uqkck4pt") -> bytes:
    """Send a REGISTER, retransmitting like SIP Timer A until an answer comes back."""
    data = register(call_id, transport="UDP").encode()
    with trio.fail_after(5):
        while True:
            await client.sendto(data, server)
            with trio.move_on_after(0.2):
                while True:
                    reply, source = await client.recvfrom()
                    if source == server and call_id.encode() in reply:
                        return reply


async def test_udp_exchange_and_garbage_flood(network, vclock):
    core, journal = StubCore(), Journal(":memory:")
    transport = SipUdpTransport(core, network, journal)
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.serve, "127.0.0.1", 0)
        server = transport.listener.endpoint
        client = await network.udp_socket("ua", "127.0.0.1", 0)
        assert is_200(await udp_register(client, server))
        flow, data = core.received[0]
        assert data == register(transport="UDP").encode()
        assert flow.transport == "UDP" and not flow.reliable and flow.peer == client.endpoint
        await client.sendto(b"\r\n\r\n", server)                        # keep-alives are ignored
        rng = random.Random(7)
        flooder = await network.udp_socket("flood", "127.0.0.1", 0)
        for _ in range(10_000):
            await flooder.sendto(rng.randbytes(rng.randint(1, 1400)), server)
        assert is_200(await udp_register(client, server, "after-the-flood"), "after-the-flood")
        assert transport.garbage > 0 and flooder.endpoint not in transport.flows
        assert all(f is flow for f, _ in core.received)                 # one cached flow per peer
        assert core.closed == []                                          # UDP flows never close
        assert [e["kind"] for e in journal.entries(kind="garbage")][:1] == ["garbage"]
        await client.aclose()
        await flooder.aclose()
        nursery.cancel_scope.cancel()


async def test_udp_flow_cache_is_bounded(autojump_clock):
    net = VirtualNetwork()
    core = StubCore()
    transport = SipUdpTransport(core, net, Journal(enabled=False), max_flows=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.serve, "127.0.0.1", 5060)
        server = transport.listener.endpoint
        clients = [await net.udp_socket("ua", f"10.0.0.{i}", 5060) for i in range(5)]
        for i, c in enumerate(clients):
            assert is_200(await udp_register(c, server, f"call-{i}"), f"call-{i}")
        assert list(transport.flows) == [c.endpoint for c in clients[2:]]
        evicted = core.received[0][0]
        evicted.send(b"still deliverable")                               # an evicted flow keeps sending
        assert await clients[0].recvfrom() == (b"still deliverable", server)
        assert is_200(await udp_register(clients[0], server, "call-again"), "call-again")
        assert core.received[-1][0] is not evicted                        # a fresh flow for the returning peer
        assert list(transport.flows)[-1] == clients[0].endpoint and len(transport.flows) == 3
        transport.datagram(b"CRASH sip:x SIP/2.0\r\n\r\n", clients[1].endpoint)  # core error: dropped
        assert is_200(await udp_register(clients[1], server, "after-crash"), "after-crash")
        nursery.cancel_scope.cancel()
