"""A closed comet WebSocket connection leaves nothing behind (issue 8, item 2).

``cometbench serve`` raises the cyclic collector's thresholds so that full collections do not
stall a fan-out (bench/cli.py: tune_gc), so every object of a closed connection must be freed by
reference counting alone.  These tests open and close thousands of connections in every way a
connection can end, with the collector disabled, and check that the number of objects the
collector tracks comes back to where it was.  (Before this was fixed each connection left ~60
objects in reference cycles: the outbox channel, the closures around it, wsproto's parser.)

When one fails, find the cycle with ``gc.set_debug(gc.DEBUG_SAVEALL)`` + ``gc.collect()`` and
``gc.get_referrers`` - and note that a cycle through a suspended generator is broken by the
generator's finaliser, so DEBUG_SAVEALL may show nothing: compare ``Counter(type(o).__name__ for
o in gc.get_objects())`` before and after instead.

The RSS of ``cometbench serve`` over rounds of 3,000 real connections is measured by
``tests/perf/bench_comet_ws.py --phases e`` (docs/performance.md).
"""

from __future__ import annotations

import gc
import socket
import struct
from collections import Counter
from typing import Any, cast

import pytest
import trio

from emulator.config import Config
from emulator.net.network import OSNetwork, VirtualNetwork
from emulator.stack import open_stack
from tests.rawws import RawWS, frame

DEV = 1
HANDSHAKE_TIMEOUT = 1.0

# per connection: how it is used, then how it ends
ENDINGS = ("fin", "close_frame", "ping", "unmasked", "fragmented", "kicked", "url_error", "plain_http", "eof_in_head")


BAD = {"close_frame": frame(struct.pack("!H", 1000), opcode=0x8),
       "ping": frame(b"?", opcode=0x9),
       "unmasked": frame("pipe_count", mask=False),
       "fragmented": frame("pipe", fin=False) + frame("_count", opcode=0x0)}


def path(uuid: str, key: str = "undefined", user: str = "undefined") -> str:
    return f"/ws/sesion={key}&myid={user}&devid={DEV}&v=4.08&uuid={uuid}&api=js"


async def one_connection(stack, network, i: int, ending: str) -> None:
    port = stack.ports["ws"]
    uuid = f"{i:032d}"
    if ending == "url_error":
        ws = await RawWS.open(network, port, "/ws/sesion=x&myid=1")
        await ws.recv()
        assert await ws.closed_by_server()
        await ws.aclose()
        return
    if ending in ("plain_http", "eof_in_head"):
        stream = await network.connect("127.0.0.1", port)
        await stream.send_all(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n" if ending == "plain_http" else b"GET /ws/")
        if ending == "eof_in_head":
            await stream.send_eof()
        while await stream.receive_some(65536):
            pass
        await stream.aclose()
        return
    user = 1 + i % 7  # authorised users, several connections each: presence events on every change
    ws = await RawWS.open(network, port, path(uuid, key=f"hash{user}", user=str(user)))
    assert '"authorized":true' in await ws.recv()
    await ws.send("subscription\nweb_room\ntrack_room\nuser_status_1")
    await ws.send("pipe_count\nweb_room\nmarker1\n")
    await ws.recv()  # a frame back: the count, or a presence event of another connection
    stack.hub.publish(DEV, "web_room", "ev", f"hello {i}")  # a fan-out to everyone still here
    if ending == "fin":
        await ws.aclose()
        return
    if ending == "kicked":
        conn = next(c for c in stack.hub.connections.values() if c.uuid == uuid)
        stack.hub.close_connection(conn, "kicked by the test")
    else:
        await ws.stream.send_all(BAD[ending])
    assert await ws.closed_by_server()
    await ws.aclose()


async def churn(stack, network, start: int, n: int, parallel: int) -> None:
    """n connections, ``parallel`` alive at a time, each ending the next way in ENDINGS."""
    limiter = trio.CapacityLimiter(parallel)

    async def one(i: int) -> None:
        async with limiter:
            await one_connection(stack, network, i, ENDINGS[i % len(ENDINGS)])

    async with trio.open_nursery() as nursery:
        for i in range(start, start + n):
            nursery.start_soon(one, i)
    with trio.fail_after(30):
        while stack.hub.connections or stack.comet.active:
            await trio.sleep(0.01)
    # trio keeps the deadlines of exited cancel scopes (the handshake timeout, a drain's 2 s) in its
    # heap until they pass: not garbage, but they hold their scopes until then
    await trio.sleep(HANDSHAKE_TIMEOUT + 2.5)


def tracked() -> Counter:
    return Counter(type(o).__name__ for o in gc.get_objects())


@pytest.mark.slow
@pytest.mark.parametrize("journal", [False, True], ids=["journal_off", "journal_on"])
async def test_thousands_of_closed_connections_are_freed_by_reference_counting(journal, autojump_clock):
    cfg = Config(journal=journal, handshake_timeout=HANDSHAKE_TIMEOUT)
    cfg.free_ports()
    network = VirtualNetwork()
    async with open_stack(cfg, network=network) as stack:
        for user in range(1, 8):
            stack.hub.set_hash(DEV, user, f"hash{user}")
        await churn(stack, network, 0, 2 * len(ENDINGS), 5)  # warm-up: first-use allocations, caches
        gc.collect()
        gc.disable()
        try:
            before = tracked()
            await churn(stack, network, 1000, 3000, 50)
            after = tracked()
        finally:
            gc.enable()
        growth = sum(after.values()) - sum(before.values())
        grown = {name: count for name, count in (after - before).most_common(10)}
        assert growth < 300, f"{growth} more tracked objects after 3,000 connections: {grown}"
        assert stack.hub.stats["connects"] >= 2000


@pytest.mark.slow
async def test_closed_os_socket_connections_are_freed_by_reference_counting():
    """The same over real sockets (fewer connections: real time), including resets."""
    cfg = Config(journal=False, handshake_timeout=HANDSHAKE_TIMEOUT)
    cfg.free_ports()
    network = OSNetwork()
    async with open_stack(cfg, network=network) as stack:
        for user in range(1, 8):
            stack.hub.set_hash(DEV, user, f"hash{user}")

        async def reset_round(start: int, n: int) -> None:
            for i in range(start, start + n):
                ws = await RawWS.open(network, stack.ports["ws"], path(f"{i:032d}", key="hash1", user="1"))
                await ws.recv()
                cast(Any, ws.stream).socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                await ws.aclose()

        await churn(stack, network, 0, 2 * len(ENDINGS), 5)
        await reset_round(0, 10)
        gc.collect()
        gc.disable()
        try:
            before = tracked()
            await churn(stack, network, 1000, 300, 30)
            await reset_round(5000, 100)
            with trio.fail_after(10):
                while stack.hub.connections or stack.comet.active:
                    await trio.sleep(0.01)
            await trio.sleep(HANDSHAKE_TIMEOUT + 0.5)
            after = tracked()
        finally:
            gc.enable()
        growth = sum(after.values()) - sum(before.values())
        grown = {name: count for name, count in (after - before).most_common(10)}
        assert growth < 150, f"{growth} more tracked objects after 400 connections: {grown}"
