"""The network seam: where every listener and every in-process client gets its byte streams.

Two kinds of network share one interface:

* :class:`OSNetwork` hands out real OS sockets (TCP on loopback by default).  Needed by real
  clients (PHP mysqli, node, Chromium, sipp).  Use with the real clock.
* :class:`VirtualNetwork` hands out in-memory stream pairs.  No file descriptors, no kernel; with
  ``trio.testing.MockClock(autojump_threshold=0)`` a long call runs in milliseconds and the same
  seed gives the same timeline.  Only in-process clients can reach it.

Every stream, accepted or connected, passes through :meth:`Network.wrap`, the single place where
link conditions (latency, loss, partition, reset) are applied per client and per protocol: it
records the stream's peer so services can report remote addresses, and when the network has a link
table (``network.links``, :class:`emulator.net.links.Links`) it hands the stream to it.

Streams that can take bytes without blocking say so through :func:`nonblocking_send`: a
synchronous "write what fits now" for OS sockets and for virtual streams, so a transport can write
from a non-async callback (the comet hub's fan-out) and fall back to ``send_all`` in a task when the
peer is not reading.  A link-condition end (:class:`emulator.net.links.LinkStream`) offers the
writer of the stream it wraps, stamped with the link's timing, so a clean link keeps the direct path
over OS sockets too (issue 14's figures depend on it: ``tests/integration/test_comet_direct_path.py``).
Any other stream (TLS) returns ``None`` and only gets ``send_all``.

Datagrams (SIP over UDP) use the same seam: :meth:`Network.udp_socket` binds a
:class:`DatagramEndpoint` (a trio UDP socket, or an in-memory endpoint that delivers to other virtual
endpoints, loses datagrams sent to unbound addresses and drops on a full receive buffer, as UDP does),
and every endpoint passes through :meth:`Network.wrap_datagram`, the datagram twin of ``wrap``.

Never mix OS sockets with an autojumping clock: the clock jumps while bytes are in flight.

Every listener is served the same way, by :meth:`Network.listen_and_serve` (streams) and
:meth:`Network.bind_and_serve` (datagrams): bind, report the bound port to whoever started the
task (``port = await nursery.start(...)``), run each connection's handler guarded (a bug closes
that connection, never the listener; a full file table is waited out), and close the listener,
shielded, however the task ends.

What every listener shares about ending connections lives here too: :func:`quiet_close` (the one
way a transport ends a connection it is done with: at once, without a goodbye, never raising),
:func:`is_peer_gone` (a peer that went away is not worth a log line), :func:`forget_traceback` and
:func:`release_ssl_stream` (a finished connection leaves no reference cycle behind, so reference
counting frees it); the read timeouts are in ``timeouts.py``.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import socket
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import trio
import trio.testing

if TYPE_CHECKING:  # pragma: no cover - links.py wraps this module's streams
    from emulator.net.links import Links

log = logging.getLogger("cometbench.net")

#: A connection handler: runs one accepted stream to its end.
Handler = Callable[[trio.abc.Stream], Awaitable[None]]

#: ``accept`` errors that mean "out of resources for now" (no file descriptor, no buffer memory):
#: a server under a connection flood waits a moment and keeps serving instead of dying.
ACCEPT_RETRY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: How long ``accept`` waits before trying again after one of those.
ACCEPT_RETRY_PAUSE = 0.05

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


#: The largest UDP payload over IPv4 (65535 - 8 byte UDP header - 20 byte IP header).
MAX_DATAGRAM = 65507
#: Receive buffer of a virtual UDP endpoint, in payload bytes (Linux's default rmem is 208 KiB).
VIRTUAL_UDP_BUFFER = 256 * 1024


class DatagramEndpoint(Protocol):
    """What :meth:`Network.udp_socket` returns: a bound UDP endpoint.

    ``recvfrom`` waits for the next datagram; ``sendto`` sends one (a datagram to an address
    nobody has bound is silently lost; one over :data:`MAX_DATAGRAM` bytes raises ``OSError``
    EMSGSIZE).  After ``aclose`` both raise :class:`trio.ClosedResourceError`, including a
    ``recvfrom`` already waiting.
    """

    endpoint: Endpoint

    async def recvfrom(self) -> tuple[bytes, Endpoint]: ...

    async def sendto(self, data: bytes, destination: Endpoint) -> None: ...

    async def aclose(self) -> None: ...


class Network:
    """Base class; see the module docstring."""

    kind = "abstract"
    #: The link conditions of this network (:class:`emulator.net.links.Links`), or None: no conditions
    #: and no wrapping at all.  ``open_stack`` gives the network one when it has none.
    links: Links | None = None

    async def listen(self, service: str, host: str, port: int, *, backlog: int = 4096) -> Listener:
        raise NotImplementedError

    async def connect(self, host: str, port: int, *, client: str = "") -> trio.abc.Stream:
        raise NotImplementedError

    async def udp_socket(self, service: str, host: str, port: int, *, client: str = "",
                         buffer: int | None = None) -> DatagramEndpoint:
        """Bind a UDP endpoint on ``host:port`` (port 0 picks a free one).

        ``buffer`` is the receive buffer in bytes (``SO_RCVBUF`` on an OS socket; the queue bound
        of a virtual endpoint, default :data:`VIRTUAL_UDP_BUFFER`).  ``client`` names the bench
        client owning the endpoint, for per-client link conditions.
        """
        raise NotImplementedError

    def wrap_datagram(self, endpoint: DatagramEndpoint, *, service: str, client: str = "") -> DatagramEndpoint:
        """Hook for link conditions on datagrams, the twin of :meth:`wrap`."""
        if self.links is not None:
            return self.links.wrap_datagram(endpoint, service=service, client=client)
        return endpoint

    def wrap(self, stream: trio.abc.Stream, *, service: str, client: str, peer: Endpoint) -> trio.abc.Stream:
        """Hook for link conditions.  Sets ``stream.cometbench_peer`` for services to read."""
        try:
            stream.cometbench_peer = peer  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - streams with __slots__
            pass
        if self.links is not None:
            return self.links.wrap_stream(stream, service=service, client=client, peer=peer)
        return stream

    async def serve(self, listener: Listener, handler: Handler, *, service: str,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept forever on an open listener, running ``handler(stream)`` in a child task per
        connection; ``task_status.started`` gets the listener's bound port.

        Accept errors caused by resource exhaustion (:data:`ACCEPT_RETRY_ERRNOS`) are retried after
        a short pause instead of killing the service, as a server under a connection flood should do.
        """
        task_status.started(listener.endpoint.port)
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno in ACCEPT_RETRY_ERRNOS:
                        await trio.sleep(ACCEPT_RETRY_PAUSE)
                        continue
                    raise
                nursery.start_soon(_guarded, handler, stream, service)

    async def listen_and_serve(self, service: str, host: str, port: int, handler: Handler, *,
                               on_listen: Callable[[Listener], None] | None = None,
                               task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """The one way a stream listener runs: listen on ``host:port`` (0: any free port), tell
        ``on_listen`` the listener, report the bound port (``port = await nursery.start(
        network.listen_and_serve, ...)``), serve until cancelled (:meth:`serve`), then close the
        listener, shielded, so a cancelled service frees its port before its task is gone."""
        listener = await self.listen(service, host, port)
        try:
            if on_listen is not None:
                on_listen(listener)
            await self.serve(listener, handler, service=service, task_status=task_status)
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()

    async def bind_and_serve(self, service: str, host: str, port: int,
                             run: Callable[[DatagramEndpoint], Awaitable[None]], *, buffer: int | None = None,
                             on_bind: Callable[[DatagramEndpoint], None] | None = None,
                             task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """The datagram twin of :meth:`listen_and_serve`: bind a UDP endpoint (:meth:`udp_socket`),
        tell ``on_bind``, report the bound port, ``await run(endpoint)`` (the service's receive and
        send loops), and close the endpoint, shielded, however that ends."""
        endpoint = await self.udp_socket(service, host, port, buffer=buffer)
        try:
            if on_bind is not None:
                on_bind(endpoint)
            task_status.started(endpoint.endpoint.port)
            await run(endpoint)
        finally:
            with trio.CancelScope(shield=True):
                await endpoint.aclose()


#: What a peer going away (or a stream already closed under us) raises inside a handler.
PEER_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError)


def is_peer_gone(exc: BaseException, extra: tuple[type[BaseException], ...] = ()) -> bool:
    """Whether ``exc`` (possibly an exception group from a per-connection nursery) only says that the
    peer went away: an ordinary end of a connection, not worth a log line."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_peer_gone(e, extra) for e in exc.exceptions)
    return isinstance(exc, PEER_GONE + extra)


def forget_traceback(exc: BaseException) -> None:
    """Drop the tracebacks of a handled exception, its group members, causes and contexts.

    A traceback holds the frames it passed through, and a frame often holds the exception (trio's
    nursery code keeps the group it raises in a local, h11 re-raises ``self``): a reference cycle
    per failed connection, freed only by the cyclic collector.  Call this on an exception that has
    been dealt with (logged or journaled) and is about to be dropped.
    """
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        e.__traceback__ = None
        stack += [e.__cause__, e.__context__]
        if isinstance(e, BaseExceptionGroup):
            stack += list(e.exceptions)


async def quiet_close(stream: trio.abc.Stream) -> None:
    """End a connection at once: no goodbye (no TLS close_notify, no WebSocket Close frame), never
    an exception (the stream may be broken or closed already), shielded from cancellation so a
    cancelled task still frees its file descriptor.  The one way transports and the bench's
    clients drop a connection (a client that vanishes, an abort in a test)."""
    with trio.CancelScope(shield=True):
        try:
            await trio.aclose_forcefully(stream)
        except Exception:  # noqa: BLE001 - closing a dead stream can raise anything its layer raises
            pass


#: A client that goes away without a goodbye: the same thing as :func:`quiet_close`, named for the
#: side that does it (tests and the bench drop their own connections this way).
abort = quiet_close


async def _guarded(handler: Handler, stream: trio.abc.Stream, service: str) -> None:
    """Run one connection's handler; a bug in it closes that connection, never the listener.

    A peer that vanished is not a bug: it ends the connection without a log line.
    """
    try:
        await handler(stream)
    except Exception as exc:  # one connection's failure must not reach the service's nursery
        if not is_peer_gone(exc):
            log.exception("%s: connection handler failed; closing that connection", service)
        forget_traceback(exc)
        await quiet_close(stream)


def nonblocking_send(stream: trio.abc.Stream) -> Callable[[bytes], int] | None:
    """A synchronous writer for ``stream``, or ``None`` when it has none.

    The writer takes as many bytes of ``data`` as the stream accepts at once and returns how many
    (0 when it would block, e.g. an OS socket whose send buffer is full); it raises
    :class:`trio.ClosedResourceError` once the stream is closed and :class:`trio.BrokenResourceError`
    when the peer has gone (reset, closed).  It never blocks and never yields, so it may be called
    from synchronous code; the caller must not call it while a ``send_all`` on the same stream is
    in progress (bytes would interleave).
    """
    if isinstance(stream, trio.SocketStream):
        return _socket_writer(stream.socket)
    return getattr(stream, "cometbench_try_send", None)


def _socket_writer(sock: trio.socket.SocketType) -> Callable[[bytes], int]:
    def try_send(data: bytes) -> int:
        fd = sock.fileno()  # -1 once trio has closed the socket, so a reused number is never written
        if fd < 0:
            raise trio.ClosedResourceError("socket was already closed")
        try:
            return os.write(fd, data)  # trio sockets are non-blocking
        except BlockingIOError:
            return 0
        except OSError as exc:  # EPIPE, ECONNRESET, ...
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc

    return try_send


def peer_of(stream: trio.abc.Stream) -> Endpoint:
    """The remote endpoint of a stream handed out by a :class:`Network`."""
    peer = getattr(stream, "cometbench_peer", None)
    if peer is not None:
        return peer
    inner = getattr(stream, "transport_stream", None)  # SSL
    if inner is not None:
        return peer_of(inner)
    return Endpoint("?", 0)


def release_ssl_stream(stream: trio.abc.Stream | None) -> None:
    """Break the reference cycle of a finished :class:`trio.SSLStream` (call after its last use).

    An SSLStream keeps its handshake as a ``_Once`` wrapping a bound method of itself, so every TLS
    connection would wait for the cyclic garbage collector; dropping that attribute lets reference
    counting free it (and its SSL object and buffers) at once.  Other streams: no-op.
    """
    if isinstance(stream, trio.SSLStream):
        stream.__dict__.pop("_handshook", None)


# --- real sockets ---------------------------------------------------------------------------------


class _OSListener:
    def __init__(self, network: OSNetwork, service: str, listener: trio.SocketListener):
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
        if self.links is not None:
            self.links.check_connect(client)   # a client that lost its network fails at once
        stream = await trio.open_tcp_stream(host, port)
        return self.wrap(stream, service="", client=client, peer=Endpoint(host, port))

    async def udp_socket(self, service: str, host: str, port: int, *, client: str = "",
                         buffer: int | None = None) -> DatagramEndpoint:
        sock = trio.socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if buffer is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
            await sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
        return self.wrap_datagram(_OSDatagramEndpoint(sock), service=service, client=client)


class _OSDatagramEndpoint:
    def __init__(self, sock: trio.socket.SocketType):
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.endpoint = Endpoint(host, port)
        self._closed = False

    async def recvfrom(self) -> tuple[bytes, Endpoint]:
        if self._closed:
            await trio.lowlevel.checkpoint()
            raise trio.ClosedResourceError("UDP endpoint closed")
        try:
            data, address = await self._sock.recvfrom(65536)
        except OSError:
            if self._closed:
                raise trio.ClosedResourceError("UDP endpoint closed") from None
            raise
        return data, Endpoint(address[0], address[1])

    async def sendto(self, data: bytes, destination: Endpoint) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            raise trio.ClosedResourceError("UDP endpoint closed")
        await self._sock.sendto(data, (destination.host, destination.port))

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()  # wakes a waiting recvfrom with ClosedResourceError
        await trio.lowlevel.checkpoint()


# --- in-memory network ----------------------------------------------------------------------------


class _VirtualListener:
    def __init__(self, network: VirtualNetwork, service: str, endpoint: Endpoint):
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


class _VirtualDatagramEndpoint:
    """An in-memory UDP endpoint: a bounded receive queue, filled by other endpoints' ``sendto``."""

    def __init__(self, network: VirtualNetwork, endpoint: Endpoint, buffer: int):
        self._network = network
        self.endpoint = endpoint
        self._buffer = buffer
        self._queue: deque[tuple[bytes, Endpoint]] = deque()
        self._queued_bytes = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self.dropped = 0  # datagrams lost to a full receive buffer

    def _deliver(self, data: bytes, source: Endpoint) -> None:
        if self._closed:
            return
        if self._queued_bytes + len(data) > self._buffer:
            self.dropped += 1  # a full kernel buffer drops, it never blocks the sender
            return
        self._queue.append((data, source))
        self._queued_bytes += len(data)
        self._lot.unpark()

    async def recvfrom(self) -> tuple[bytes, Endpoint]:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._closed:
                raise trio.ClosedResourceError("UDP endpoint closed")
            if self._queue:
                data, source = self._queue.popleft()
                self._queued_bytes -= len(data)
                await trio.lowlevel.cancel_shielded_checkpoint()
                return data, source
            await self._lot.park()

    async def sendto(self, data: bytes, destination: Endpoint) -> None:
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise trio.ClosedResourceError("UDP endpoint closed")
        if len(data) > MAX_DATAGRAM:
            raise OSError(errno.EMSGSIZE, f"datagram of {len(data)} bytes is too long")
        host = "127.0.0.1" if destination.host == "localhost" else destination.host
        target = self._network._datagram_endpoints.get(Endpoint(host, destination.port))
        if target is not None:  # else: lost, as UDP to a closed port is
            target._deliver(bytes(data), self.endpoint)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._network._datagram_endpoints.get(self.endpoint) is self:
                del self._network._datagram_endpoints[self.endpoint]
            self._queue.clear()
            self._queued_bytes = 0
            self._lot.unpark_all()
        await trio.lowlevel.checkpoint()


def _one_way_pipe() -> tuple[trio.testing.MemorySendStream, trio.testing.MemoryReceiveStream, Callable[[bytes], int]]:
    """``trio.testing.memory_stream_one_way_pair`` without its reference cycle, plus a sync writer.

    trio's pair hooks closures onto the send stream that refer back to it, so a closed virtual
    connection is only freed by the cyclic collector; here the hooks hold a weak reference.  The
    data path is the same: every ``send_all`` pumps at once into the receive stream.
    """
    send = trio.testing.MemorySendStream()
    receive = trio.testing.MemoryReceiveStream()
    ref = weakref.ref(send)

    def pump() -> None:
        sender = ref()
        if sender is not None:
            trio.testing.memory_stream_pump(sender, receive)

    async def pump_async() -> None:  # the hook must be async
        pump()

    send.send_all_hook = pump_async
    send.close_hook = pump

    def try_send(data: bytes) -> int:
        sender = ref()
        if sender is None:
            raise trio.ClosedResourceError("virtual stream was closed")
        try:
            pending = sender.get_data_nowait()
        except trio.WouldBlock:
            pending = None  # open, nothing buffered (the usual case: send_all pumps at once)
        else:
            if not pending:
                raise trio.ClosedResourceError("virtual stream was closed")
        try:
            if pending:
                receive.put_data(pending)
            receive.put_data(data)
        except trio.ClosedResourceError:
            raise trio.BrokenResourceError("the peer closed the virtual connection") from None
        return len(data)

    return send, receive, try_send


def _virtual_stream_pair() -> tuple[trio.StapledStream, trio.StapledStream]:
    """Two connected in-memory stream ends (as ``trio.testing.memory_stream_pair``), each with a
    synchronous writer for :func:`nonblocking_send`."""
    a_send, a_receive, a_try = _one_way_pipe()
    b_send, b_receive, b_try = _one_way_pipe()
    one, two = trio.StapledStream(a_send, b_receive), trio.StapledStream(b_send, a_receive)
    one.cometbench_try_send = a_try  # type: ignore[attr-defined]
    two.cometbench_try_send = b_try  # type: ignore[attr-defined]
    return one, two


class VirtualNetwork(Network):
    """In-memory streams.  Hosts are names; ports are allocated like an OS would for port 0."""

    kind = "virtual"

    def __init__(self) -> None:
        self._listeners: dict[Endpoint, _VirtualListener] = {}
        self._ports = itertools.count(20000)
        self._client_ports = itertools.count(40000)
        self._datagram_endpoints: dict[Endpoint, _VirtualDatagramEndpoint] = {}
        self._datagram_ports = itertools.count(20000)

    async def listen(self, service: str, host: str, port: int, *, backlog: int = 4096) -> Listener:
        if port == 0:
            port = next(self._ports)
            while Endpoint(host, port) in self._listeners:
                port = next(self._ports)
        endpoint = Endpoint(host, port)
        if endpoint in self._listeners:
            raise OSError(errno.EADDRINUSE, f"address already in use: {endpoint}")
        listener = _VirtualListener(self, service, endpoint)
        self._listeners[endpoint] = listener
        return listener

    async def connect(self, host: str, port: int, *, client: str = "") -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        if self.links is not None:
            self.links.check_connect(client)   # a client that lost its network fails at once
        if host == "localhost":
            host = "127.0.0.1"
        listener = self._listeners.get(Endpoint(host, port))
        if listener is None:
            raise ConnectionRefusedError(f"nothing listens on {host}:{port} in the virtual network")
        client_end, server_end = _virtual_stream_pair()
        client_peer = Endpoint(client or "127.0.0.1", next(self._client_ports))
        listener._offer(server_end, client_peer)
        client_end.cometbench_local = client_peer  # type: ignore[attr-defined]  # links pair the two ends
        client_end.cometbench_service = listener._service  # type: ignore[attr-defined]
        return self.wrap(client_end, service="", client=client, peer=Endpoint(host, port))

    async def udp_socket(self, service: str, host: str, port: int, *, client: str = "",
                         buffer: int | None = None) -> DatagramEndpoint:
        await trio.lowlevel.checkpoint()
        if host == "localhost":
            host = "127.0.0.1"
        if port == 0:
            port = next(self._datagram_ports)
            while Endpoint(host, port) in self._datagram_endpoints:
                port = next(self._datagram_ports)
        endpoint = Endpoint(host, port)
        if endpoint in self._datagram_endpoints:
            raise OSError(errno.EADDRINUSE, f"address already in use: {endpoint} (udp)")
        bound = _VirtualDatagramEndpoint(self, endpoint, VIRTUAL_UDP_BUFFER if buffer is None else buffer)
        self._datagram_endpoints[endpoint] = bound
        return self.wrap_datagram(bound, service=service, client=client)
