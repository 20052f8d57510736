"""The per-actor relay of a browser actor (bench/browser/relay.py) on loopback sockets: bytes pass both
ways, a FIN is passed on as a FIN, a reset of the server's leg resets the browser's, a refused
upstream closes the browser's connection at once, and every upstream connection is opened through
``network.connect(..., client=<actor>)`` (where link conditions apply)."""

from __future__ import annotations

import socket
import struct

import trio

from bench.browser.relay import Relay
from emulator.net.network import OSNetwork


class RecordingNetwork(OSNetwork):
    def __init__(self) -> None:
        super().__init__()
        self.clients: list[str] = []

    async def connect(self, host, port, *, client=""):
        self.clients.append(client)
        return await super().connect(host, port, client=client)


async def start_server(nursery, handler) -> int:
    listeners = await nursery.start(trio.serve_tcp, handler, 0)
    return listeners[0].socket.getsockname()[1]


async def test_bytes_and_fin_pass_both_ways():
    async def echo(stream):
        async for chunk in stream:
            await stream.send_all(chunk.upper())
        await stream.aclose()                       # the client's FIN arrived: close our side too

    network = RecordingNetwork()
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, echo)
        relay = Relay(network, "127.0.0.1", port, "patient", "comet")
        local = await nursery.start(relay.run)
        with trio.fail_after(5):
            client = await trio.open_tcp_stream("127.0.0.1", local)
            await client.send_all(b"hello ")
            await client.send_all(b"relay")
            got = b""
            while len(got) < 11:
                got += await client.receive_some(100)
            assert got == b"HELLO RELAY"
            await client.send_eof()
            assert await client.receive_some(100) == b""      # the server's close came back as EOF
            await client.aclose()
        assert network.clients == ["patient"] and relay.connections == 1
        nursery.cancel_scope.cancel()


async def test_a_reset_upstream_resets_the_browser_side():
    async def reset(stream):
        await stream.receive_some(10)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, reset)
        relay = Relay(OSNetwork(), "127.0.0.1", port, "doctor", "sip")
        local = await nursery.start(relay.run)
        with trio.fail_after(5):
            client = await trio.open_tcp_stream("127.0.0.1", local)
            await client.send_all(b"x")
            try:
                data = await client.receive_some(10)
            except trio.BrokenResourceError as exc:
                assert isinstance(exc.__cause__, ConnectionResetError)
            else:
                raise AssertionError(f"expected a reset, got {data!r}")
        nursery.cancel_scope.cancel()


async def test_a_refused_upstream_closes_the_browser_side_at_once():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    async with trio.open_nursery() as nursery:
        relay = Relay(OSNetwork(), "127.0.0.1", closed, "nurse", "comet")
        local = await nursery.start(relay.run)
        with trio.fail_after(5):
            client = await trio.open_tcp_stream("127.0.0.1", local)
            try:
                data = await client.receive_some(10)
            except trio.BrokenResourceError:
                data = b""
            assert data == b""
        assert len(relay.failures) == 1 and "connect 127.0.0.1" in relay.failures[0]
        nursery.cancel_scope.cancel()
