"""Fan-out under bad subscribers, over real sockets (issue 14, "Bad input").

A publisher sends thousands of numbered frames to one pipe while some subscribers misbehave: one
stops reading, one stops for a while and catches up, one vanishes (reset) while the server is
writing to it, one closes and reconnects again and again.  The well-behaved subscribers must get
every frame exactly once and in order; the one that stopped reading is closed as a slow consumer
(as before); nobody ever gets a frame twice, not even across a reconnect.

These runs exercise both write paths of the comet transport: frames written straight from the
publish while a socket takes them, and frames queued for the writer task once it would block.
"""

from __future__ import annotations

import logging
import socket
import struct

import pytest
import trio

from emulator.config import Config
from emulator.net.network import OSNetwork
from emulator.stack import open_stack
from tests.rawws import KEY, RawWS

DEV = 1
PIPE = "web_fan"
PAD = "p" * 1000  # ~1 KB frames


def path(uuid: str) -> str:
    return f"/ws/sesion=undefined&myid=undefined&devid={DEV}&v=4.08&uuid={uuid}&api=js"


async def open_client(port: int, uuid: str, *, small_buffer: bool = False) -> RawWS:
    """A subscriber of PIPE.  ``small_buffer``: a 4 KB receive buffer, so that a client that stops
    reading fills the server's socket quickly (as a phone on a bad link would)."""
    sock = trio.socket.socket()
    if small_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    ws = RawWS(trio.SocketStream(sock))
    await ws.stream.send_all(f"GET {path(uuid)} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    ws.response = await ws.read_until(b"\r\n\r\n")
    assert '"serverInfo"' in await ws.recv()
    await ws.send(f"subscription\n{PIPE}")
    return ws


def seq_of(text: str) -> int:
    return int(text.split('"data":"s', 1)[1].split(":", 1)[0])


async def read_all(ws: RawWS, into: list[int], until: int) -> None:
    """Record the sequence number of every frame until ``until`` has arrived (or EOF)."""
    try:
        while True:
            n = seq_of(await ws.recv())
            into.append(n)
            if n == until:
                return
    except (EOFError, trio.BrokenResourceError):
        return


class Stage:
    def __init__(self, stack):
        self.stack = stack
        self.hub = stack.hub
        self.port = stack.ports["ws"]

    async def until(self, condition, timeout: float = 10) -> None:
        with trio.fail_after(timeout):
            while not condition():
                await trio.sleep(0.01)

    async def publish(self, n: int, keep_up: list[list[int]], *, burst: int = 100,
                      pause_at: dict | None = None) -> None:
        """Frames s0..s<n-1>, in bursts (the fan-out is synchronous; the clients read between bursts).

        The well-behaved readers (what they got so far: ``keep_up``) are never left more than 1,000
        frames behind, however loaded the machine, so only the misbehaving ones can overflow.
        ``pause_at``: {sequence number: async callable} run just before that frame is published."""
        for k in range(n):
            if pause_at and k in pause_at:
                await pause_at[k]()
            self.hub.publish(DEV, PIPE, "ev", f"s{k}:{PAD}")
            if k % burst == burst - 1:
                await trio.sleep(0.001)
                with trio.fail_after(10):
                    while any(len(got) < k - 1000 for got in keep_up):
                        await trio.sleep(0.001)

    def subscribed(self, uuid: str) -> bool:
        return any(c.uuid == uuid for c in self.hub.users_in_pipe(DEV, PIPE))


@pytest.fixture
async def stage():
    cfg = Config()
    cfg.free_ports()
    async with open_stack(cfg, network=OSNetwork()) as stack:
        yield Stage(stack)


def assert_exactly_once_in_order(got: list[int], n: int, who: str) -> None:
    assert got == list(range(n)), f"{who}: {len(got)} frames, first problems at " \
        f"{[i for i, (a, b) in enumerate(zip(got, range(n))) if a != b][:5]}"


async def test_a_subscriber_that_stops_reading_is_closed_and_the_others_get_everything(stage, caplog):
    caplog.set_level(logging.WARNING)
    n = 10_000
    readers = [await open_client(stage.port, f"reader{i:026d}") for i in range(4)]
    stalled = await open_client(stage.port, "stalled" + "0" * 25, small_buffer=True)  # never reads again
    await stage.until(lambda: stage.hub.pipe_users(DEV, PIPE) == 5)
    stalled_conn = next(c for c in stage.hub.connections.values() if c.uuid.startswith("stalled"))
    got: list[list[int]] = [[] for _ in readers]
    async with trio.open_nursery() as nursery:
        for ws, into in zip(readers, got):
            nursery.start_soon(read_all, ws, into, n - 1)
        await stage.publish(n, got)
    for i, into in enumerate(got):
        assert_exactly_once_in_order(into, n, f"reader {i}")
    # the stalled one was closed as a slow consumer, as before ...
    assert not stalled_conn.open
    (record,) = stage.stack.journal.entries(kind="disconnect", conn_id=stalled_conn.id)
    assert record["data"] == "slow consumer: outbox full"
    # ... and what it had been sent before is a gap-free, duplicate-free prefix
    prefix: list[int] = []
    await read_all(stalled, prefix, n - 1)
    assert prefix == list(range(len(prefix))) and len(prefix) < n
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    for ws in [*readers, stalled]:
        await ws.aclose()


async def test_a_subscriber_that_pauses_catches_up_in_order(stage):
    """It stops reading for 3,000 frames: they wait in its outbox (the writer task's path) while
    the others keep being written to directly; then it gets all of them, in order, once."""
    n = 6000
    readers = [await open_client(stage.port, f"reader{i:026d}") for i in range(3)]
    sluggish = await open_client(stage.port, "sluggish" + "0" * 24)
    await stage.until(lambda: stage.hub.pipe_users(DEV, PIPE) == 4)
    got: list[list[int]] = [[] for _ in readers]
    late: list[int] = []
    queued_before = stage.stack.comet.stats["queued_frames"]

    async def sluggish_reader() -> None:
        await read_all(sluggish, late, 999)
        await resume.wait()
        await read_all(sluggish, late, n - 1)

    async def let_it_resume() -> None:
        resume.set()

    resume = trio.Event()
    async with trio.open_nursery() as nursery:
        for ws, into in zip(readers, got):
            nursery.start_soon(read_all, ws, into, n - 1)
        nursery.start_soon(sluggish_reader)
        await stage.publish(n, got, pause_at={4000: let_it_resume})
    for i, into in enumerate(got):
        assert_exactly_once_in_order(into, n, f"reader {i}")
    assert_exactly_once_in_order(late, n, "the one that paused")
    assert stage.stack.comet.stats["queued_frames"] - queued_before > 1000  # the slow path did run
    for ws in [*readers, sluggish]:
        await ws.aclose()


async def test_a_subscriber_vanishing_mid_write_does_not_disturb_the_others(stage, caplog):
    caplog.set_level(logging.WARNING)
    n = 6000
    readers = [await open_client(stage.port, f"reader{i:026d}") for i in range(3)]
    vanishing = await open_client(stage.port, "vanish" + "0" * 26, small_buffer=True)
    await stage.until(lambda: stage.hub.pipe_users(DEV, PIPE) == 4)
    vanishing_conn = next(c for c in stage.hub.connections.values() if c.uuid.startswith("vanish"))
    got: list[list[int]] = [[] for _ in readers]

    async def vanish() -> None:  # it stopped reading long ago; now it resets, frames still queued for it
        vanishing.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await vanishing.aclose()

    async with trio.open_nursery() as nursery:
        for ws, into in zip(readers, got):
            nursery.start_soon(read_all, ws, into, n - 1)
        await stage.publish(n, got, pause_at={2000: vanish})
    for i, into in enumerate(got):
        assert_exactly_once_in_order(into, n, f"reader {i}")
    await stage.until(lambda: not vanishing_conn.open)
    (record,) = stage.stack.journal.entries(kind="disconnect", conn_id=vanishing_conn.id)
    assert record["data"].startswith(("write failed", "client closed the connection")), record
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    for ws in readers:
        await ws.aclose()


class Reconnecting:
    """A subscriber that closes its connection and opens a new one whenever told to."""

    def __init__(self, stage: Stage, nursery: trio.Nursery, last: int):
        self.stage, self.nursery, self.last = stage, nursery, last
        self.sessions: list[list[int]] = []   # the sequence numbers each connection got
        self.ws: RawWS | None = None
        self.scope = trio.CancelScope()
        self.done = trio.Event()

    async def connect(self) -> None:
        uuid = f"again{len(self.sessions):027d}"
        self.ws = await open_client(self.stage.port, uuid)
        await self.stage.until(lambda: self.stage.subscribed(uuid))
        session: list[int] = []
        self.sessions.append(session)
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.nursery.start_soon(self._read, self.ws, session, self.scope, self.done)

    async def _read(self, ws: RawWS, session: list[int], scope: trio.CancelScope, done: trio.Event) -> None:
        try:
            with scope:
                await read_all(ws, session, self.last)
        finally:
            done.set()

    async def reconnect(self) -> None:
        # the reader must be gone before its socket closes: closing a socket another task waits on
        # wakes that task with ClosedResourceError, which can beat the cancellation (a flaky failure)
        self.scope.cancel()
        await self.done.wait()
        assert self.ws is not None
        await self.ws.aclose()
        await self.connect()


async def test_a_subscriber_reconnecting_mid_fan_out_gets_nothing_twice(stage):
    n = 6000
    readers = [await open_client(stage.port, f"reader{i:026d}") for i in range(3)]
    got: list[list[int]] = [[] for _ in readers]
    async with trio.open_nursery() as nursery:
        again = Reconnecting(stage, nursery, n - 1)
        await again.connect()
        await stage.until(lambda: stage.hub.pipe_users(DEV, PIPE) == 4)
        for ws, into in zip(readers, got):
            nursery.start_soon(read_all, ws, into, n - 1)
        points = (1500, 3000, 4500)
        await stage.publish(n, got, pause_at={k: again.reconnect for k in points})
    for i, into in enumerate(got):
        assert_exactly_once_in_order(into, n, f"reader {i}")
    sessions = again.sessions
    assert len(sessions) == 4
    everything = [k for s in sessions for k in s]
    assert len(everything) == len(set(everything)), "a frame arrived twice across the reconnects"
    for s, first in zip(sessions, (0, *points)):  # each connection's frames: gap-free from its first
        assert s == list(range(first, first + len(s)))
    assert sessions[-1][-1] == n - 1  # the last connection got everything since it subscribed
    for ws in readers:
        await ws.aclose()
    assert again.ws is not None
    await again.ws.aclose()
