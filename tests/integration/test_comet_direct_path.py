"""The comet delivery hot path over OS sockets under the link-condition seam (issue 14 after issue 10).

Issue 14 made a delivery one synchronous write from inside the publish (``_Outbox.deliver`` ->
:func:`emulator.net.network.nonblocking_send`), with the writer task only for a socket that would
block.  Issue 10 then wrapped every stream of a stack's network in a :class:`LinkStream`, whose
non-blocking writer only forwarded a virtual stream's: over OS sockets ``nonblocking_send`` gave
``None``, so every frame to every subscriber went through the writer task (a task switch per frame
and connection, about four times the CPU per frame) and nothing failed.  These checks are
structural, not timed: on a clean link the server's stream has the direct writer and no frame waits
for the writer task; the writer still honours link conditions set later, and the journal still
records every frame.
"""

from __future__ import annotations

import pytest
import trio

from emulator.config import Config
from emulator.net.links import Link, Links, LinkStream
from emulator.net.network import OSNetwork, nonblocking_send
from emulator.stack import open_stack
from tests.rawws import KEY, RawWS

DEV = 1
PIPE = "web_direct"


async def open_subscriber(port: int, uuid: str) -> RawWS:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    ws = RawWS(stream)
    path = f"/ws/sesion=undefined&myid=undefined&devid={DEV}&v=4.08&uuid={uuid}&api=js"
    await ws.stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    ws.response = await ws.read_until(b"\r\n\r\n")
    assert '"serverInfo"' in await ws.recv()
    await ws.send(f"subscription\n{PIPE}")
    return ws


async def test_a_clean_link_over_os_sockets_writes_every_frame_directly():
    """No link condition: every frame leaves from inside the publish; the writer task never gets one."""
    cfg = Config()
    cfg.free_ports()
    async with open_stack(cfg, network=OSNetwork()) as stack:
        assert stack.network.links is not None   # the seam wraps every stream, as in `cometbench serve`
        hub, n = stack.hub, 300
        subscribers = [await open_subscriber(stack.ports["ws"], f"direct{i:026d}") for i in range(3)]
        with trio.fail_after(10):
            while hub.pipe_users(DEV, PIPE) < len(subscribers):
                await trio.sleep(0.01)
        before = stack.comet.stats["queued_frames"]
        got: list[list[int]] = [[] for _ in subscribers]

        async def read(ws: RawWS, into: list[int]) -> None:
            while len(into) < n:
                into.append(int((await ws.recv()).split('"data":"m', 1)[1].split('"', 1)[0]))

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for ws, into in zip(subscribers, got):
                    nursery.start_soon(read, ws, into)
                for k in range(n):
                    assert hub.publish(DEV, PIPE, "ev", f"m{k}") == len(subscribers)
                    if k % 10 == 9:   # a few hundred bytes ahead of the readers: no socket would block
                        while any(len(into) <= k for into in got):
                            await trio.sleep(0.001)
        assert got == [list(range(n))] * len(subscribers)
        assert stack.comet.stats["queued_frames"] - before == 0   # the old wrapper queued all 900
        for conn in hub.connections.values():   # the journal still records every frame sent
            assert len([e for e in stack.journal.entries(kind="frame", conn_id=conn.id)
                        if e["direction"] == "out" and '"data":"m' in e["data"]]) == n
        for ws in subscribers:
            await ws.aclose()


@pytest.fixture
async def os_pair():
    """A connected (client, server) pair of OS streams with a link table, both ends in this process."""
    network = OSNetwork()
    network.links = Links(seed=1)
    listener = await network.listen("comet", "127.0.0.1", 0)
    client = await network.connect("127.0.0.1", listener.endpoint.port, client="alice")
    server = await listener.accept()
    try:
        yield network.links, client, server
    finally:
        for stream in (client, server):
            await stream.aclose()
        await listener.aclose()


async def test_a_link_stream_over_an_os_socket_has_the_direct_writer(os_pair):
    links, client, server = os_pair
    assert isinstance(server, LinkStream)
    send = nonblocking_send(server)
    assert send is not None
    assert send(b"hello") == 5
    with trio.fail_after(5):
        assert await client.receive_some(100) == b"hello"


async def test_the_direct_writer_keeps_link_conditions_set_later(os_pair):
    links, client, server = os_pair
    send = nonblocking_send(server)
    assert send is not None
    # latency: the bytes are written to the socket now and held by the receiving end for half the RTT
    links.set(Link(rtt_ms=400), client="alice")
    start = trio.current_time()
    assert send(b"late") == 4
    with trio.fail_after(5):
        assert await client.receive_some(100) == b"late"
    assert trio.current_time() - start >= 0.19   # a lower bound: a busy machine only adds to it
    links.clear(client="alice")
    # a half-open hang: the write "succeeds" and nothing ever arrives
    links.half_open(client="alice")
    assert send(b"lost") == 4
    with trio.move_on_after(0.3) as waited:
        await client.receive_some(100)
    assert waited.cancelled_caught
    # a reset: the writer raises as send_all would
    links.reset(client="alice")
    with pytest.raises(trio.BrokenResourceError):
        send(b"after the reset")
