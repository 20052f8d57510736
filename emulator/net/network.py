"""The network seam: where every listener and every in-process client gets its byte streams.

Two kinds of network share one interface:

* :class:`OSNetwork` hands out real OS sockets (TCP on loopback by default).  Needed by real
  clients (PHP mysqli, node, Chromium, sipp).  Use with the real clock.
* :class:`VirtualNetwork` hands out in-memory stream pairs.  No file descriptors, no kernel; with
  ``trio.testing.MockClock(autojump_threshold=0)`` a long call runs in milliseconds and the same
  seed gives the same timeline.  Only in-process clients can reach it.

Every stream, accepted or connected, passes through :meth:`Network.wrap`, the single place where
link conditions (latency, loss, partition, reset) will be applied per client and per protocol by
the bench.  Today it records the stream's peer so services can report remote addresses.

Never mix OS sockets with an autojumping clock: the clock jumps while bytes are in flight.
"""

from __future__ import annotations

import itertools
import socket
from dataclasses import dataclass
from typing import Protocol

import trio
import trio.testing


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class Listener(Protocol):
    """What :meth:`Network.listen` returns: accept streams; know the bound endpoint."""

    endpoint: Endpoint

    async def accept(self) -> trio.abc.Stream: ...

    async def aclose(self) -> None: ...


class Network:
    """Base class; see the module docstring."""

    kind = "abstract"

    async def listen(self, service: str, host: str, port: int, *, backlog: int = 4096) -> Listener:
        raise NotImplementedError

    async def connect(self, host: str, port: int, *, client: str = "") -> trio.abc.Stream:
        raise NotImplementedError

    def wrap(self, stream: trio.abc.Stream, *, service: str, client: str, peer: Endpoint) -> trio.abc.Stream:
        """Hook for link conditions.  Sets ``stream.cometbench_peer`` for services to read."""
        try:
            stream.cometbench_peer = peer  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - streams with __slots__
            pass
        return stream

    async def serve(self, listener: Listener, handler, *, service: str,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Accept forever, running ``handler(stream)`` in a child task per connection.

        Accept errors caused by resource exhaustion (EMFILE) are retried after a short pause instead
        of killing the service, as a server under a connection flood should do.
        """
        task_status.started()
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # EMFILE/ENFILE/ENOBUFS: back off, keep serving
                    if exc.errno in (24, 23, 105, 12):
                        await trio.sleep(0.05)
                        continue
                    raise
                nursery.start_soon(handler, stream)


def peer_of(stream: trio.abc.Stream) -> Endpoint:
    """The remote endpoint of a stream handed out by a :class:`Network`."""
    peer = getattr(stream, "cometbench_peer", None)
    if peer is not None:
        return peer
    inner = getattr(stream, "transport_stream", None)  # SSL
    if inner is not None:
        return peer_of(inner)
    return Endpoint("?", 0)


# --- real sockets ---------------------------------------------------------------------------------


class _OSListener:
    def __init__(self, network: "OSNetwork", service: str, listener: trio.SocketListener):
        self._network = network
        self._service = service
        self._listener = listener
        host, port = listener.socket.getsockname()[:2]
        self.endpoint = Endpoint(host, port)

    async def accept(self) -> trio.abc.Stream:
        stream = await self._listener.accept()
        try:
            host, port = stream.socket.getpeername()[:2]
        except OSError:
            host, port = "?", 0
        return self._network.wrap(stream, service=self._service, client="", peer=Endpoint(host, port))

    async def aclose(self) -> None:
        await self._listener.aclose()


class OSNetwork(Network):
    """Loopback (or any host you name) OS sockets."""

    kind = "os"

    async def listen(self, service: str, host: str, port: int, *, backlog: int = 4096) -> Listener:
        sock = trio.socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await sock.bind((host, port))
        sock.listen(backlog)
        return _OSListener(self, service, trio.SocketListener(sock))

    async def connect(self, host: str, port: int, *, client: str = "") -> trio.abc.Stream:
        stream = await trio.open_tcp_stream(host, port)
        return self.wrap(stream, service="", client=client, peer=Endpoint(host, port))


# --- in-memory network ----------------------------------------------------------------------------


class _VirtualListener:
    def __init__(self, network: "VirtualNetwork", service: str, endpoint: Endpoint):
        self._network = network
        self._service = service
        self.endpoint = endpoint
        self._send, self._receive = trio.open_memory_channel[tuple[trio.abc.Stream, Endpoint]](4096)

    async def accept(self) -> trio.abc.Stream:
        try:
            stream, peer = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("listener closed") from None
        return self._network.wrap(stream, service=self._service, client="", peer=peer)

    def _offer(self, stream: trio.abc.Stream, peer: Endpoint) -> None:
        try:
            self._send.send_nowait((stream, peer))
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            raise ConnectionRefusedError(f"connection refused by {self.endpoint}") from None

    async def aclose(self) -> None:
        self._network._listeners.pop(self.endpoint, None)
        await self._send.aclose()
        await self._receive.aclose()


class VirtualNetwork(Network):
    """In-memory streams.  Hosts are names; ports are allocated like an OS would for port 0."""

    kind = "virtual"

    def __init__(self) -> None:
        self._listeners: dict[Endpoint, _VirtualListener] = {}
        self._ports = itertools.count(20000)
        self._client_ports = itertools.count(40000)

    async def listen(self, service: str, host: str, port: int, *, backlog: int = 4096) -> Listener:
        if port == 0:
            port = next(self._ports)
            while Endpoint(host, port) in self._listeners:
                port = next(self._ports)
        endpoint = Endpoint(host, port)
        if endpoint in self._listeners:
            raise OSError(98, f"address already in use: {endpoint}")
        listener = _VirtualListener(self, service, endpoint)
        self._listeners[endpoint] = listener
        return listener

    async def connect(self, host: str, port: int, *, client: str = "") -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        if host == "localhost":
            host = "127.0.0.1"
        listener = self._listeners.get(Endpoint(host, port))
        if listener is None:
            raise ConnectionRefusedError(f"nothing listens on {host}:{port} in the virtual network")
        client_end, server_end = trio.testing.memory_stream_pair()
        client_peer = Endpoint(client or "127.0.0.1", next(self._client_ports))
        listener._offer(server_end, client_peer)
        return self.wrap(client_end, service="", client=client, peer=Endpoint(host, port))
