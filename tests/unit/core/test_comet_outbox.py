"""The comet transport's outbox with a scripted socket: direct writes, partial writes, the writer
task's fallback, order across both paths, the slow-consumer close and the drain of a server close."""

from __future__ import annotations

import pytest
import trio

from emulator.comet import server as comet_server
from emulator.comet.server import OUTBOX_FRAMES, _Outbox
from emulator.wire import comet as w
from tests.conftest import make_hub, url


class ScriptedSocket:
    """``try_send`` takes at most ``room`` bytes (0: would block); ``send_all`` waits for ``open_up``."""

    def __init__(self, room: int = 10**9):
        self.room = room
        self.wire = bytearray()
        self.direct = 0
        self.batches: list[bytes] = []
        self.unblocked = trio.Event()
        self.broken = False

    def try_send(self, data: bytes) -> int:
        if self.broken:
            raise trio.BrokenResourceError("reset by peer")
        n = min(self.room, len(data))
        self.room -= n
        self.wire += data[:n]
        self.direct += 1 if n else 0
        return n

    async def send_all(self, data: bytes) -> None:
        await self.unblocked.wait()
        self.batches.append(bytes(data))
        self.wire += data

    def open_up(self) -> None:
        self.room = 10**9
        self.unblocked.set()


def make_outbox(sock: ScriptedSocket):
    hub = make_hub(short_frame_truncation=False)
    stats = {"queued_frames": 0}
    outbox = _Outbox(hub, hub.journal, stats, sock.try_send)
    conn = hub.connect(w.parse_url(url()), deliver=outbox.deliver, drop=outbox.drop)
    outbox.conn_id = conn.id
    return hub, conn, outbox, stats


async def writer_ends_at(outbox: _Outbox, sock: ScriptedSocket) -> float:
    """Run the writer task until it returns; when it did (virtual time)."""
    await outbox.run_writer(sock)  # type: ignore[arg-type]
    return trio.current_time()


def frame(i: int) -> bytes:
    return w.encode_server_frame(f"frame {i}")  # type: ignore[return-value]


async def test_direct_partial_and_queued_writes_keep_the_order(autojump_clock):
    sock = ScriptedSocket()
    hub, conn, outbox, stats = make_outbox(sock)
    server_info = bytes(sock.wire)
    assert server_info.startswith(b"\x81") and sock.direct == 1       # written straight from connect()
    sock.room = 5
    outbox.deliver("", frame(1))                                      # 5 bytes fit, the tail waits
    outbox.deliver("", frame(2))                                      # queued behind it
    assert stats["queued_frames"] == 2
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.run_writer, sock)
        await trio.sleep(1)
        sock.room = 10**9
        outbox.deliver("", frame(3))      # the socket has room again, but frames are waiting: queue
        assert sock.direct == 2 and stats["queued_frames"] == 3
        sock.open_up()
        await trio.sleep(1)
        # the writer took what had accumulated when it woke (one send_all), then frame 3 after it
        assert sock.batches == [frame(1)[5:] + frame(2), frame(3)]
        outbox.deliver("", frame(4))      # nothing waiting, writer idle: direct again
        assert sock.direct == 3 and stats["queued_frames"] == 3
        outbox.drop()
    assert bytes(sock.wire) == server_info + frame(1) + frame(2) + frame(3) + frame(4)


async def test_a_full_outbox_closes_the_connection_as_a_slow_consumer(autojump_clock):
    sock = ScriptedSocket(room=0)
    hub, conn, outbox, stats = make_outbox(sock)  # even serverInfo had to wait
    for i in range(OUTBOX_FRAMES - 1):
        outbox.deliver("", frame(i))
    assert conn.open
    outbox.deliver("", frame(-1))  # the 4,097th waiting frame
    assert not conn.open and conn.id not in hub.connections and outbox.slow
    start = trio.current_time()
    assert await writer_ends_at(outbox, sock) == start  # no grace for a client that does not read
    assert sock.batches == []


async def test_a_server_close_drains_what_is_queued_for_at_most_two_seconds(autojump_clock):
    sock = ScriptedSocket(room=0)
    hub, conn, outbox, stats = make_outbox(sock)
    hub.close_connection(conn, "kicked")
    assert outbox.closed
    outbox.deliver("", frame(1))  # nothing is accepted after the close
    start = trio.current_time()
    # the socket never takes the queued serverInfo: the writer gives up after DRAIN_TIMEOUT
    assert await writer_ends_at(outbox, sock) == pytest.approx(start + comet_server.DRAIN_TIMEOUT)
    assert sock.batches == []


async def test_a_server_close_writes_the_queued_frames_first(autojump_clock):
    sock = ScriptedSocket(room=0)
    hub, conn, outbox, stats = make_outbox(sock)
    hub.close_connection(conn, "kicked")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer_ends_at, outbox, sock)
        await trio.sleep(0.5)
        sock.open_up()
    assert len(sock.batches) == 1 and b"serverInfo" in sock.batches[0]


async def test_a_write_to_a_vanished_client_ends_the_connection_quietly(autojump_clock):
    sock = ScriptedSocket()
    hub, conn, outbox, stats = make_outbox(sock)
    sock.broken = True
    outbox.deliver("", frame(1))
    assert outbox.closed and outbox.reason.startswith("write failed")
    start = trio.current_time()
    assert await writer_ends_at(outbox, sock) == start  # at once: the client is gone
    outbox.deliver("", frame(2))  # ignored, no exception into the publisher


async def test_frames_over_65535_bytes_are_dropped_with_a_journal_record(autojump_clock):
    from emulator.journal import Journal

    sock = ScriptedSocket()
    hub, conn, outbox, stats = make_outbox(sock)
    outbox.journal = Journal(enabled=True)
    before = bytes(sock.wire)
    outbox.deliver("x" * 70_000, None)
    assert bytes(sock.wire) == before
    assert [e["kind"] for e in outbox.journal.entries()] == ["frame_dropped"]
