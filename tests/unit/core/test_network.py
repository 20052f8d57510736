"""The network seam: both stream kinds carry bytes both ways, report peers, refuse unknown ports."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from emulator.net.network import OSNetwork, VirtualNetwork, nonblocking_send, peer_of


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


# --- non-blocking writes (the comet fan-out's direct path) ------------------------------------------


async def _pair(network):
    listener = await network.listen("t", "127.0.0.1", 0)
    client = await network.connect("127.0.0.1", listener.endpoint.port)
    server = await listener.accept()
    await listener.aclose()
    return client, server


async def test_virtual_nonblocking_send(autojump_clock):
    client, server = await _pair(VirtualNetwork())
    send = nonblocking_send(server)
    assert send is not None
    assert send(b"abc") == 3
    await server.send_all(b"def")           # the ordinary path and the direct one share the stream
    assert send(b"ghi") == 3
    assert await client.receive_some(100) == b"abcdefghi"
    await client.aclose()
    with pytest.raises(trio.BrokenResourceError):
        send(b"to nobody")
    await server.aclose()
    with pytest.raises(trio.ClosedResourceError):
        send(b"after close")


async def test_os_nonblocking_send_writes_what_fits_and_reports_a_dead_peer():
    import socket as _socket
    import struct

    client, server = await _pair(OSNetwork())
    send = nonblocking_send(server)
    assert send is not None and send(b"hello") == 5
    assert await client.receive_some(100) == b"hello"
    chunk = b"x" * 65536
    total = 0
    for _ in range(10_000):  # the client does not read: the kernel buffers fill, then 0 (would block)
        n = send(chunk)
        total += n
        if n == 0:
            break
    assert n == 0 and total > 0
    client.socket.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, struct.pack("ii", 1, 0))
    await client.aclose()  # a reset
    with trio.fail_after(5):
        while True:
            try:
                send(b"x")
            except trio.BrokenResourceError:
                break
            await trio.sleep(0.01)
    await server.aclose()
    with pytest.raises(trio.ClosedResourceError):
        send(b"after close")  # never written to a descriptor number the OS may have reused


def test_streams_without_a_direct_path_get_none():
    assert nonblocking_send(trio.testing.memory_stream_pair()[0]) is None  # e.g. TLS


async def test_closed_virtual_streams_are_freed_without_the_cyclic_collector(autojump_clock):
    import gc
    import weakref

    client, server = await _pair(VirtualNetwork())
    refs = [weakref.ref(client), weakref.ref(server), weakref.ref(server.send_stream)]
    await client.aclose()
    await server.aclose()
    gc.disable()
    try:
        del client, server
        assert [r() for r in refs] == [None, None, None]
    finally:
        gc.enable()
