"""The bench's CometQL client (bench/clients/cometql.py) and the backend actor against the emulator, on
the in-memory network (autojump clock) and on loopback sockets; refusals and silence give errors
that name the address."""

from __future__ import annotations

import pytest
import trio

from bench.actors.backend import Backend, demo_hash, sql_quote
from bench.clients.cometql import (
    CometQLClient,
    CometQLConnectionError,
    CometQLProtocolError,
    CometQLServerError,
    OkResult,
    ResultSet,
)
from emulator.net.network import OSNetwork, VirtualNetwork
from tests.actorkit import stack_and_target


async def statements(network, profile: str = "cppcomet-4.09") -> None:
    async with stack_and_target(network, profile=profile) as (stack, target):
        port = stack.ports["cometql"]
        async with await CometQLClient.connect(network, "127.0.0.1", port, user=15, password="CometQLPassword",
                                               client="backend") as db:
            assert db.greeting is not None and db.greeting.connection_id >= 0
            ok = await db.query("INSERT INTO users_auth (id, hash) VALUES (5, 'PassForUser5')")
            assert isinstance(ok, OkResult) and ok.affected_rows == 1
            rows = await db.query("SELECT * FROM users_auth WHERE id = 5")
            assert isinstance(rows, ResultSet) and rows.rows == [("5", "PassForUser5")]
            with pytest.raises(CometQLServerError) as info:
                await db.query("SELECT * FROM nowhere")
            assert info.value.code > 0 and info.value.sqlstate == "HY000"
            tables = await db.query("SHOW TABLES")
            assert isinstance(tables, ResultSet) and tables.columns == ["Tables"]   # the link survives an ERR
        assert stack.hub.get_hash(15, 5) == "PassForUser5"


async def test_statements_virtual(autojump_clock):
    await statements(VirtualNetwork())


async def test_statements_virtual_lenient(autojump_clock):
    await statements(VirtualNetwork(), "lenient")


async def test_statements_loopback():
    await statements(OSNetwork())


async def test_refusals_name_the_address(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        port = stack.ports["cometql"]
        with pytest.raises(CometQLServerError, match="during login") as info:
            await CometQLClient.connect(net, "127.0.0.1", port, user=15, password="wrong")
        assert info.value.code == 16
        with pytest.raises(CometQLConnectionError, match=r"127\.0\.0\.1:9"):
            await CometQLClient.connect(net, "127.0.0.1", 9, user=15, password="x")


async def test_a_silent_server_times_out(autojump_clock):
    net = VirtualNetwork()
    listener = await net.listen("silent", "127.0.0.1", 0)
    held = []

    async with trio.open_nursery() as nursery:
        async def accept_and_hold() -> None:
            held.append(await listener.accept())
            await trio.sleep_forever()

        nursery.start_soon(accept_and_hold)
        t0 = trio.current_time()
        with pytest.raises(CometQLConnectionError, match=rf"127.0.0.1:{listener.endpoint.port}.*no answer within 5 s"):
            await CometQLClient.connect(net, "127.0.0.1", listener.endpoint.port, user=15, password="x", timeout=5)
        assert trio.current_time() - t0 == pytest.approx(5)
        nursery.cancel_scope.cancel()


async def test_a_server_that_closes_or_talks_nonsense(autojump_clock):
    net = VirtualNetwork()
    listener = await net.listen("rude", "127.0.0.1", 0)
    async with trio.open_nursery() as nursery:
        async def serve(payloads: list[bytes]) -> None:
            stream = await listener.accept()
            for data in payloads:
                await stream.send_all(data)
            await stream.aclose()

        nursery.start_soon(serve, [])
        with pytest.raises(CometQLConnectionError, match="closed the connection while logging in"):
            await CometQLClient.connect(net, "127.0.0.1", listener.endpoint.port, user=15, password="x")
        nursery.start_soon(serve, [b"\x05\x00\x00\x07hello"])   # wrong sequence id
        with pytest.raises(CometQLProtocolError, match="out of order"):
            await CometQLClient.connect(net, "127.0.0.1", listener.endpoint.port, user=15, password="x")


async def test_backend_fresh_connection_per_request_and_kept_connection(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        for fresh in (True, False):
            before = stack.journal.entries(service="cometql", kind="connect")
            backend = Backend(net, target.cometql_host, target.cometql_port, dev_id=15, fresh_connection=fresh)
            assert await backend.authorize(7) == demo_hash(7) == "PassForUser7"
            await backend.invite("101", 7)
            await backend.invite("101", 8, caller_id=7, message='{"who":"it\'s me"}')
            rows = await backend.invitations("101")
            assert sorted((r[1], r[2]) for r in rows.rows) == [("7", "7"), ("8", "7")]
            assert (await backend.members("101")).rows == []
            await backend.leave("101", 8)
            await backend.leave("101", 7)
            await backend.close()
            connects = len(stack.journal.entries(service="cometql", kind="connect")) - len(before)
            assert backend.requests == 7
            assert connects == (7 if fresh else 1)   # one login per request (PHP), or one in all


def test_sql_quote():
    assert sql_quote("it's") == "'it\\'s'" and sql_quote("a\\b") == "'a\\\\b'" and sql_quote(5) == "'5'"


async def test_random_hashes_come_from_the_seed(autojump_clock):
    import random

    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        hashes = []
        for _ in range(2):
            backend = Backend(net, target.cometql_host, target.cometql_port, dev_id=15, hash_style="random",
                              rng=random.Random(4))
            hashes.append(await backend.authorize(9))
        assert hashes[0] == hashes[1] and len(hashes[0]) == 32 and hashes[0].isalnum()
    with pytest.raises(ValueError):
        Backend(net, "h", 1, dev_id=1, hash_style="weird")
