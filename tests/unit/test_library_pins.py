"""The private parts of libraries the emulator builds on: each test fails loudly when an upgrade moves one.

docs/decisions.md ("Libraries' private parts") says for each why it is used and what would replace
it.  The comet listener's overrides of trio-websocket are pinned next to their behaviour tests
(tests/integration/test_comet_quiet_close.py::test_trio_websocket_private_api_is_what_we_rely_on);
this module pins the rest:

* trio-websocket as the SIP-over-WebSocket transport drives it (``_reader_task``, ``_get_request``
  on a connection built from a bare ``WSConnection``) and as the bench's comet client reads it
  (``_wsproto.state``);
* wsproto's frame parser generator, whose reference cycle :func:`release_frame_parser` breaks;
* trio's ``SSLStream._handshook``, the cycle :func:`release_ssl_stream` breaks;
* hypercorn's per-connection ``TCPServer`` (and ``WorkerContext``, ``wrap_app``), which the directory
  endpoint runs on a stream of the network seam;
* trio's deterministic-scheduling switch (``trio._core._run._ALLOW_DETERMINISTIC_SCHEDULING`` and
  its generator ``_r``), which virtual runs turn on so equal seeds give equal journals;
* trio's deadline heap (``GLOBAL_RUN_CONTEXT.runner.deadlines``: ``_heap`` and ``_prune``), which the
  memory housekeeping prunes after a drop storm (``emulator.housekeeping.prune_trio_deadlines``).
"""

from __future__ import annotations

import inspect
import random
import ssl

import trio
import trio.testing
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import AcceptConnection, Request

from emulator.net.network import release_ssl_stream
from emulator.net.websocket import release_frame_parser


def test_trio_websocket_as_the_sip_transport_and_the_comet_client_use_it():
    """emulator/freeswitch/sip_transport.py runs the reader and waits for the upgrade request itself;
    bench/clients/comet.py reads the wsproto state to tell a clean close."""
    cls = trio_websocket.WebSocketConnection
    for name in ("_reader_task", "_get_request"):
        assert inspect.iscoroutinefunction(getattr(cls, name, None)), f"trio-websocket lost {name}"
    params = inspect.signature(cls.__init__).parameters
    for name in ("stream", "ws_connection", "message_queue_size", "max_message_size", "receive_buffer_size"):
        assert name in params, f"WebSocketConnection() lost its {name} parameter"
    ws = cls(trio.testing.memory_stream_pair()[0], WSConnection(ConnectionType.SERVER), message_queue_size=1)
    assert isinstance(ws._wsproto, WSConnection), "WebSocketConnection no longer keeps its wsproto in _wsproto"
    assert ws._wsproto.state is ConnectionState.CONNECTING
    assert {ConnectionState.CLOSED, ConnectionState.REMOTE_CLOSING} <= set(ConnectionState)


def _parser(connection: Connection):
    return connection._proto._parse_more


def test_wsproto_frame_parser_cycle_is_broken_by_release_frame_parser():
    """Both shapes release_frame_parser handles: a bare frame layer (the comet listener) and a
    WSConnection after its handshake (the SIP listener).  If the attribute path moves, the release
    silently does nothing and every WebSocket connection waits for the cyclic collector again."""
    bare = Connection(ConnectionType.SERVER)
    assert inspect.isgenerator(_parser(bare)), "wsproto's FrameProtocol no longer keeps _parse_more"

    class Holder:
        _wsproto = bare

    release_frame_parser(Holder())
    assert _parser(bare).gi_frame is None, "release_frame_parser no longer closes the parser (bare)"

    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="h", target="/")))
    assert isinstance(next(server.events()), Request)
    client.receive_data(server.send(AcceptConnection()))
    assert server.connection is not None, "WSConnection no longer exposes its frame layer as .connection"
    assert inspect.isgenerator(_parser(server.connection))
    Holder._wsproto = server
    release_frame_parser(Holder())
    assert _parser(server.connection).gi_frame is None, "release_frame_parser no longer closes the parser"


def test_trio_sslstream_keeps_its_handshake_where_release_ssl_stream_cuts_it():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    stream = trio.SSLStream(trio.testing.memory_stream_pair()[0], context, server_side=True)
    assert "_handshook" in stream.__dict__, "trio.SSLStream no longer keeps _handshook (release_ssl_stream)"
    release_ssl_stream(stream)
    assert "_handshook" not in stream.__dict__


def test_hypercorn_per_connection_server_is_what_the_directory_runs():
    """emulator/comet/directory.py: ``TCPServer(app, config, context, state, stream).run()`` per
    accepted stream, ``server.protocol`` cut afterwards; ``WorkerContext(None)``; ``wrap_app``."""
    from hypercorn.trio.tcp_server import TCPServer
    from hypercorn.trio.worker_context import WorkerContext
    from hypercorn.utils import wrap_app

    assert list(inspect.signature(TCPServer.__init__).parameters) == [
        "self", "app", "config", "context", "state", "stream"], "hypercorn's TCPServer() changed"
    assert inspect.iscoroutinefunction(TCPServer.run)
    assert "self.protocol" in inspect.getsource(TCPServer), "TCPServer no longer keeps its protocol in .protocol"
    assert list(inspect.signature(WorkerContext.__init__).parameters) == ["self", "max_requests"]
    assert list(inspect.signature(wrap_app).parameters) == ["app", "wsgi_max_body_size", "mode"]


def test_trio_deterministic_scheduling_switch():
    """emulator/ids.py and bench/scenario/runner.py ``deterministic_scheduling``: trio's batch order
    under a seeded generator.  Without it, virtual runs with equal seeds interleave differently."""
    import trio._core._run as trio_run

    assert isinstance(trio_run._ALLOW_DETERMINISTIC_SCHEDULING, bool), "trio renamed its scheduling switch"
    assert isinstance(trio_run._r, random.Random), "trio's scheduler no longer draws from _r"
    source = inspect.getsource(trio_run)
    assert "if _ALLOW_DETERMINISTIC_SCHEDULING:" in source, "trio's scheduler no longer reads the switch"
    assert "_r.shuffle(batch)" in source, "trio no longer shuffles a ready batch with _r"


async def test_trio_deadline_heap_as_the_housekeeping_prunes_it():
    """emulator.housekeeping.prune_trio_deadlines: the runner's ``deadlines`` keeps a heap ``_heap`` of
    ``(deadline, id, scope)`` and prunes its stale entries with ``_prune()``.  Without them the
    housekeeping leaves a storm's exited time-outs in the heap (and returns ``None``)."""
    from trio._core._run import GLOBAL_RUN_CONTEXT

    deadlines = GLOBAL_RUN_CONTEXT.runner.deadlines
    with trio.move_on_after(100):
        await trio.lowlevel.checkpoint()
    assert isinstance(deadlines._heap, list), "trio moved its deadline heap"
    stale = [e for e in deadlines._heap if e[2]._registered_deadline != e[0]]
    assert stale, "an exited scope no longer stays in trio's deadline heap until pruned"
    deadlines._prune()
    assert all(e[2]._registered_deadline == e[0] for e in deadlines._heap), "trio's _prune changed"


def test_aioice_host_addresses_as_the_media_worker_patches_them():
    """emulator/freeswitch/aioice_loopback.py: aioice 0.13.0's ``get_host_addresses(use_ipv4, use_ipv6)``
    skips loopback and ``Connection.gather_candidates`` looks it up by name at call time; the adapter
    replaces it so the endpoint gathers 127.0.0.1.  An upgrade that renames or inlines it fails here."""
    import pytest

    aioice_ice = pytest.importorskip("aioice.ice")
    import aioice

    from emulator.freeswitch.aioice_loopback import gather_only

    assert aioice.__version__ == "0.13.0"
    current = aioice_ice.get_host_addresses   # another test in this process (tests/media) may have patched it
    original = getattr(current, "__wrapped_original__", current)
    assert original.__module__ == "aioice.ice"
    assert list(inspect.signature(original).parameters) == ["use_ipv4", "use_ipv6"]
    assert "get_host_addresses(" in inspect.getsource(aioice_ice.Connection.gather_candidates)
    assert "127.0.0.1" not in original(True, False)   # why the adapter exists
    try:
        installed = gather_only("127.0.0.1")
        assert aioice_ice.get_host_addresses is installed

        async def gather() -> list[str]:
            connection = aioice_ice.Connection(ice_controlling=True, components=1)
            await connection.gather_candidates()
            hosts = [c.host for c in connection.local_candidates]
            await connection.close()
            return hosts

        import asyncio

        assert asyncio.run(gather()) == ["127.0.0.1"]
    finally:
        aioice_ice.get_host_addresses = current
