"""The network seam: both stream kinds carry bytes both ways, report peers, refuse unknown ports."""

from __future__ import annotations

import pytest
import trio

from emulator.net.network import OSNetwork, VirtualNetwork, peer_of


async def _echo_roundtrip(network, host="127.0.0.1"):
    listener = await network.listen("echo", host, 0)
    port = listener.endpoint.port
    assert port > 0
    got = []

    async def handler(stream):
        data = await stream.receive_some(100)
        got.append(peer_of(stream))
        await stream.send_all(data.upper())
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: network.serve(listener, handler, service="echo",
                                                               task_status=task_status))
        client = await network.connect(host, port, client="alice")
        await client.send_all(b"hello")
        assert await client.receive_some(100) == b"HELLO"
        assert await client.receive_some(100) == b""  # server closed
        await client.aclose()
        nursery.cancel_scope.cancel()
    await listener.aclose()
    return got[0]


async def test_os_network_roundtrip():
    peer = await _echo_roundtrip(OSNetwork())
    assert peer.host == "127.0.0.1" and peer.port > 0


async def test_virtual_network_roundtrip(autojump_clock):
    peer = await _echo_roundtrip(VirtualNetwork())
    assert peer.host == "alice" and peer.port >= 40000


async def test_virtual_refuses_unknown_port_and_duplicate_bind():
    net = VirtualNetwork()
    with pytest.raises(ConnectionRefusedError):
        await net.connect("127.0.0.1", 9)
    listener = await net.listen("x", "127.0.0.1", 5000)
    with pytest.raises(OSError):
        await net.listen("y", "127.0.0.1", 5000)
    await listener.aclose()
    with pytest.raises(ConnectionRefusedError):
        await net.connect("127.0.0.1", 5000)


async def test_os_network_refuses_closed_port():
    net = OSNetwork()
    listener = await net.listen("x", "127.0.0.1", 0)
    port = listener.endpoint.port
    await listener.aclose()
    with pytest.raises(OSError):
        await net.connect("127.0.0.1", port)
