"""Link conditions: latency, jitter, loss, bandwidth, partitions, half-open hangs and resets, per
client and per protocol, applied where every byte passes (the network seam, :mod:`emulator.net.network`).

A :class:`Links` table belongs to one :class:`~emulator.net.network.Network` (``network.links``;
:func:`emulator.stack.open_stack` gives the network one if it has none).  Every stream the network
hands out (``Network.wrap``) and every UDP endpoint (``Network.wrap_datagram``) then goes through it.
Nothing changes while no condition is set: a clean link costs a few attribute checks per write.

Public API (what scenarios, faults and the control plane call)::

    links = stack.network.links                           # or Links(seed=...) given to a network
    links.set("4g", client="patient")                     # a named profile for every protocol of one actor
    links.set(Link(rtt_ms=200), client="*", protocol="sip")
    links.update(client="doctor", loss=0.2)               # change one field of the effective link
    links.clear(client="patient")                         # back to no conditions
    links.partition(client="patient", duration=20)        # everything stalls / is dropped for 20 s
    links.heal(client="patient")
    links.half_open(client="doctor", protocol="comet")    # existing connections hang, bytes vanish
    links.lose_network(client="patient", duration=60)     # the device's own network goes (Wi-Fi drops)
    links.reset(client="doctor")                          # both ends see ECONNRESET, clients reconnect
    links.at(30.0, "partition", client="patient", duration=10)   # scheduled, t = seconds since run()
    links.after(5.0, "set", "3g", client="doctor", duration=60)  # relative to now
    links.link("doctor", "sip")                           # the effective Link
    links.watch(callback)                                 # told of every change (LinkChange)

Selectors: ``client`` is the name a client passes to ``network.connect(..., client=NAME)`` (the
actors use their actor name; the app backend uses ``"backend"``), ``"*"`` for every client;
``protocol`` is one of :data:`PROTOCOLS` or ``"*"``.  The most specific rule wins: (client,
protocol), then (client, ``*``), then (``*``, protocol), then (``*``, ``*``).  A stream's protocol is
its listener's service (``comet`` WebSocket, ``cometql``, ``sip`` over WS/WSS/TCP, ``directory``,
``esl``); ``media`` is the media model's path between a browser and the FreeSWITCH node (no bytes:
:mod:`emulator.freeswitch.media_link` reads it for the media start delay, and partitions of it stop a
member's media).  A stream accepted by a listener is matched to the connecting client's name: on the
:class:`~emulator.net.network.VirtualNetwork` the peer's host *is* that name; on OS sockets the table
remembers which local port each named client connected from.

What each condition does
------------------------
Streams model TCP, one direction at a time, with the sender stamping when each write arrives and
the receiving end holding bytes until then (both ends are wrapped; no task per connection):

* **latency** ``rtt_ms``: half of it each way; a new connection first pays the handshake (the client
  may send after one RTT, the server after one and a half), so TLS and WebSocket upgrades cost what
  they cost on a real path.
* **jitter** ``jitter_ms``: a normal variation (one standard deviation) of each write's one-way delay;
  TCP keeps the order, so a late write holds up the writes behind it.
* **loss** (0..1, per 1448-byte segment): a lost segment is retransmitted after one retransmission
  timeout, ``RTO = max(200 ms, rtt + 4 * jitter)``, doubling for each repeated loss of the same
  segment (Linux).  Nothing is lost; it is late.  UDP datagrams are dropped.
* **bandwidth** ``bandwidth_kbps`` (0 = unlimited): serialisation delay per byte, one transmitter per
  direction per connection.
* **partition**: nothing arrives.  Bytes written meanwhile (and bytes in flight) stall; when the
  partition heals they arrive at the sender's next retransmission (the RTO doubling from the write,
  capped at 120 s) plus the one-way delay.  A write stalled longer than Linux's 15 retransmissions
  (about 925 s at the minimum RTO) aborts the connection: the sending end gets ``ETIMEDOUT``
  (``trio.BrokenResourceError``), the other end hears nothing and is reset when the partition heals.
  A connection opened during a partition is not established until its SYN gets through (SYN
  retransmissions at 1, 3, 7, 15, 31 and 63 s; after 127 s both ends are reset as a connect timeout).
  Datagrams are dropped.  A partition of ``media`` stops the member's media (see media_link).
* **half-open hang** (:meth:`Links.half_open`): the connections that exist at that moment stop
  carrying anything in either direction, forever, and neither end is told: writes succeed, reads
  wait, a close is not seen by the other end (a NAT that forgot the flow, a peer that lost power).
  New connections are unaffected.
* **lost network** (:meth:`Links.lose_network`, :meth:`Links.regain_network`): the client's own
  network goes away -- a Wi-Fi that drops, a phone in a tunnel.  The device's stack knows: its ends of
  every connection fail at once (``trio.BrokenResourceError``: the browser's WebSockets close uncleanly,
  1006) and its new connections fail at once (``OSError`` ENETUNREACH) until the network is back.  The
  servers know nothing: their ends hang as in a half-open hang, and everything of the client is
  partitioned (its datagrams and media too).  When the network comes back, the far ends are reset (their
  next segment meets the device, which no longer knows the connection and answers RST).
* **reset** (:meth:`Links.reset`): both ends of the matching connections see a connection reset at
  once (``trio.BrokenResourceError``; the socket is closed with RST on OS sockets).  For the virtual
  browser this is what a real one sees: the comet client's WebSocket closes uncleanly (1006) and it
  reconnects with its back-off; JsSIP's transport closes and it reconnects and registers again.

On OS sockets the stream conditions apply to connections whose two ends are both in this process
(virtual actors against the in-process stack); an outside client (a real browser, sipp) or an
outside server (``--target``) has only one wrapped end, where resets and half-open hangs still work
but delays do not (use the kernel's netem for those).  Datagram delays need :meth:`Links.run` (the
stack runs it); without it a datagram is only dropped or passed on at once.

Everything random is seeded: each (client, protocol) pair has its own generator derived from the
table's seed, the client and the protocol (:meth:`Links.rng`), so one link's traffic never shifts
another link's draws.  Times are trio's clock, so under ``MockClock`` a partition of ten minutes
costs nothing.

Profiles: :func:`load_profiles` reads ``fixtures/network_profiles.toml`` (the media model's presets
share the file; the ``[network.*]`` tables are the network layer's own): loopback, lan, dsl, 4g, 3g,
bad-wifi, wifi, lossy and call-drop.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import math
import random
import socket
import struct
import tomllib
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from emulator.net.network import nonblocking_send

if TYPE_CHECKING:  # pragma: no cover - network.py hands its streams to this module
    from emulator.net.network import Endpoint

__all__ = [
    "PROTOCOLS", "SERVICE_PROTOCOL", "Link", "LinkError", "LinkChange", "Links", "LinkStream", "LinkDatagram",
    "load_profiles", "profile_names", "get_profile", "MSS", "RTO_MIN", "RTO_MAX", "TCP_RETRIES2",
]

#: The protocols a rule can name (``"*"`` matches all).
PROTOCOLS = ("comet", "cometql", "sip", "media", "directory", "esl")
#: Listener service name -> protocol.
SERVICE_PROTOCOL = {"comet": "comet", "cometql": "cometql", "sip_ws": "sip", "sip": "sip",
                    "directory": "directory", "esl": "esl"}

MSS = 1448                  # TCP payload bytes per segment (Ethernet MTU, timestamps on)
RTO_MIN = 0.2               # Linux TCP_RTO_MIN
RTO_MAX = 120.0             # Linux TCP_RTO_MAX
TCP_RETRIES2 = 15           # net.ipv4.tcp_retries2: retransmissions before a connection is aborted
SYN_RETRY_TIMES = (1.0, 3.0, 7.0, 15.0, 31.0, 63.0)   # SYN retransmissions (tcp_syn_retries = 6)
SYN_TIMEOUT = 127.0         # ... and the connect timeout after the last one


class LinkError(ValueError):
    """A link value or selector that cannot be used; the message names the field and what works."""


@dataclass(frozen=True)
class Link:
    """The conditions of one path, the same in both directions.

    ``rtt_ms`` round trip added (half each way); ``jitter_ms`` standard deviation of the one-way
    delay; ``loss`` probability 0..1 per TCP segment or datagram; ``bandwidth_kbps`` capacity per
    direction, 0 = unlimited.  ``Link()`` is a clean link (no conditions)."""

    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    bandwidth_kbps: float = 0.0
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for name in ("rtt_ms", "jitter_ms", "loss", "bandwidth_kbps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise LinkError(f"link {name} must be a number, got {value!r}")
            if value < 0:
                raise LinkError(f"link {name} must be >= 0, got {value!r}")
            if math.isinf(value):
                raise LinkError(f"link {name} must be finite, got {value!r}")
        if self.loss > 1:
            raise LinkError(f"link loss is a probability 0..1 (0.2 = 20 %), got {self.loss!r} "
                            f"({self.loss * 100:g} % is over 100 %)")

    @property
    def clean(self) -> bool:
        return self.rtt_ms == 0 and self.jitter_ms == 0 and self.loss == 0 and self.bandwidth_kbps == 0

    @property
    def one_way(self) -> float:
        """Seconds each direction adds (half the round trip)."""
        return self.rtt_ms / 2000.0

    @property
    def rto(self) -> float:
        """TCP's first retransmission timeout on this path: ``max(200 ms, rtt + 4 * rttvar)`` with the
        jitter standing in for rttvar."""
        return max(RTO_MIN, (self.rtt_ms + 4.0 * self.jitter_ms) / 1000.0)

    @classmethod
    def from_table(cls, table: dict, where: str = "link") -> Link:
        """A link from a TOML table (``rtt_ms``, ``jitter_ms``, ``loss``, ``bandwidth_kbps``,
        ``description``); unknown keys are a :class:`LinkError` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise LinkError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        kw: dict[str, Any] = {k: (str(v) if k == "description" else v) for k, v in table.items()}
        try:
            return cls(**kw)
        except LinkError as exc:
            raise LinkError(f"{where}: {exc}") from None


def _profiles_path() -> Path:
    from emulator.fixtures import path as fixture_path

    return fixture_path("network_profiles.toml")


_PROFILES: dict[str, Link] | None = None


def load_profiles(path: str | Path | None = None) -> dict[str, Link]:
    """Named links from a TOML file, one table per profile (default ``fixtures/network_profiles.toml``,
    read through importlib.resources so an installed copy finds it)."""
    with open(Path(path) if path is not None else _profiles_path(), "rb") as fh:
        data = tomllib.load(fh)
    tables = {name: table for name, table in data.items() if isinstance(table, dict) and name != "network"}
    tables.update({name: table for name, table in data.get("network", {}).items() if isinstance(table, dict)})
    return {name: Link.from_table(table, f"network profile {name!r}") for name, table in tables.items()}


def _profiles() -> dict[str, Link]:
    global _PROFILES
    if _PROFILES is None:
        _PROFILES = load_profiles()
    return _PROFILES


def profile_names() -> list[str]:
    return list(_profiles())


def get_profile(name: str) -> Link:
    """The named profile, or a :class:`LinkError` that lists the known names."""
    try:
        return _profiles()[name]
    except KeyError:
        raise LinkError(f"unknown network profile {name!r}; known: {', '.join(_profiles())}") from None


def _as_link(link: Link | str) -> Link:
    if isinstance(link, Link):
        return link
    if isinstance(link, str):
        return get_profile(link)
    raise LinkError(f"a link is a Link or a profile name, not {link!r}")


def _check_protocol(protocol: str) -> str:
    if protocol != "*" and protocol not in PROTOCOLS:
        raise LinkError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)} or *")
    return protocol


def _check_client(client: str) -> str:
    if not isinstance(client, str):
        raise LinkError(f"client must be a name (str) or *, not {client!r}")
    return client


@dataclass(frozen=True)
class LinkChange:
    """What :meth:`Links.watch` callbacks receive.

    ``kind``: ``set`` (a rule changed), ``partition``, ``heal``, ``half_open``, ``reset``, ``offline`` /
    ``online`` (:meth:`Links.lose_network` / :meth:`Links.regain_network`), ``media_open``, ``media_close``,
    ``media_break``.  ``client``/``protocol`` are the selector (``*``
    for all); ``call_id`` names the media path for the ``media_*`` kinds; ``count`` is how many
    connections a reset or half-open hit."""

    kind: str
    client: str
    protocol: str
    time: float
    call_id: str = ""
    count: int = 0


def _covers(pattern: str, value: str) -> bool:
    return pattern == "*" or pattern == value


_SELECTOR_ORDER = ((True, True), (True, False), (False, True), (False, False))


# --- one TCP connection ---------------------------------------------------------------------------


#: The empty ``entries``/``messages`` of a :class:`_Half` that has never had any: a tuple, so that
#: anything but reading it (an append that skipped ``add_entry``) fails loudly instead of sharing it.
_NOTHING: Any = ()


class _Half:
    """One direction of one connection: what the sending end wrote and when each byte arrives.

    ``entries`` are ``[start, end, deliver_at, sent_at]`` byte ranges in order (absolute offsets of
    this direction); ``deliver_at`` None means stalled (a partition).  Bytes not covered by an entry
    arrive as soon as they are read.  The sender drops entries that are due; the receiver drops
    entries it has delivered past.
    """

    __slots__ = ("_lot", "entries", "fin", "fin_at", "fin_sent_at", "free_at", "last", "messages", "sent", "watched")

    def __init__(self) -> None:
        self.sent = 0
        # ``entries`` and ``messages`` start as the shared empty :data:`_NOTHING` and become deques
        # at their first append (:meth:`add_entry`, :meth:`add_message`): four empty deques cost
        # ~3 KB per connection, and most connections (any clean link) never stamp a write.
        self.entries: deque[list] = _NOTHING
        self.free_at = 0.0          # the transmitter is busy until then (bandwidth)
        self.last = 0.0             # delivery time of the latest entry (TCP keeps order)
        self._lot: trio.lowlevel.ParkingLot | None = None   # made when an end first waits (see lot)
        self.fin = False            # the sender closed
        self.fin_at: float | None = None   # when the close arrives (None while stalled)
        self.fin_sent_at = 0.0
        self.watched = False        # a give-up check is scheduled for its stalled writes
        #: whole WebSocket messages of the message shortcut: [deliver_at, kind, payload, sent_at]
        self.messages: deque[list] = _NOTHING

    @property
    def lot(self) -> trio.lowlevel.ParkingLot:
        """Where the receiving end waits for bytes that are not due yet (made on first use: an idle
        connection on a clean link never waits here, and two lots cost ~0.5 KB per connection)."""
        lot = self._lot
        if lot is None:
            lot = self._lot = trio.lowlevel.ParkingLot()
        return lot

    def wake(self) -> None:
        """Wake the end waiting in :attr:`lot`, if any."""
        if self._lot is not None:
            self._lot.unpark_all()

    def add_entry(self, entry: list) -> None:
        if self.entries is _NOTHING:
            self.entries = deque()
        self.entries.append(entry)

    def add_message(self, message: list) -> None:
        if self.messages is _NOTHING:
            self.messages = deque()
        self.messages.append(message)


class _Conn:
    """A connection as the link table sees it: its client and protocol, its two directions, its ends."""

    __slots__ = (
        "__weakref__",
        "c2s",
        "client",
        "ends",
        "id",
        "key",
        "links",
        "message_offer",
        "opened",
        "protocol",
        "ready_client",
        "ready_server",
        "reset_at_heal",
        "s2c",
        "state",
    )

    def __init__(self, links: Links, key: Any, client: str, protocol: str, now: float) -> None:
        self.links = links
        self.id = next(links._conn_ids)
        self.key = key
        self.client = client
        self.protocol = protocol
        self.c2s, self.s2c = _Half(), _Half()
        self.ends: list[weakref.ref] = []   # weak: an end refers to its connection, not the reverse
        self.state = "open"         # open, half-open, reset
        self.opened = now
        self.ready_client: float | None = now   # when the client may send (SYN handshake done)
        self.ready_server: float | None = now
        self.reset_at_heal = False
        self.message_offer = False   # the client asked for the message shortcut (see MessageChannel)

    def halves(self) -> tuple[_Half, _Half]:
        return (self.c2s, self.s2c)

    def live_ends(self) -> list[LinkStream]:
        return [end for end in (ref() for ref in self.ends) if end is not None]

    def wake(self) -> None:
        for half in (self.c2s, self.s2c):
            half.wake()

    def reset(self, reason: str = "connection reset by peer") -> None:
        if self.state == "reset":
            return
        self.state = "reset"
        for end in self.live_ends():
            end._set_reset(reason)
        self.wake()
        self.links._forget(self)


def _abort_inner(stream: trio.abc.Stream) -> None:
    """Close a stream synchronously the way a reset does (RST on a socket; closed memory pipes)."""
    sock = getattr(stream, "socket", None)
    if isinstance(stream, trio.SocketStream) and sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        sock.close()
        return
    for part in (getattr(stream, "send_stream", None), getattr(stream, "receive_stream", None)):
        close = getattr(part, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001  # pragma: no cover - an already closed pipe
                pass


class LinkStream(trio.abc.HalfCloseableStream):
    """One end of a connection under link conditions (see the module docstring).

    It wraps the network's stream; ``transport_stream`` is that stream, ``cometbench_peer`` the peer,
    ``socket`` the OS socket if any.  A reset end raises :class:`trio.BrokenResourceError`."""

    def __init__(self, links: Links, inner: trio.abc.Stream, conn: _Conn, *, server: bool) -> None:
        self._links = links
        self.transport_stream = inner
        self._conn = conn
        self._server = server
        self._out = conn.s2c if server else conn.c2s
        self._in = conn.c2s if server else conn.s2c
        self._buf = bytearray()
        self._offset = 0            # absolute offset (in this direction) of _buf[0]
        self._eof = False
        self._reset: str | None = None
        self._closed = False
        self._closed_messages = False
        self.cometbench_peer = getattr(inner, "cometbench_peer", None)

    # -- plumbing -------------------------------------------------------------------------------
    @property
    def socket(self) -> Any:
        return getattr(self.transport_stream, "socket", None)

    @property
    def client(self) -> str:
        return self._conn.client

    @property
    def protocol(self) -> str:
        return self._conn.protocol

    def _set_reset(self, reason: str) -> None:
        if self._reset is None:
            self._reset = reason
            _abort_inner(self.transport_stream)

    def _check(self) -> None:
        if self._reset is not None:
            raise trio.BrokenResourceError(self._reset)
        if self._closed:
            raise trio.ClosedResourceError("stream was closed")

    # -- sending -----------------------------------------------------------------------------------
    def _stamp(self, nbytes: int) -> None:
        """Record when the next ``nbytes`` written arrive (nothing if the link is clean and idle)."""
        half = self._out
        start = half.sent
        half.sent += nbytes
        if nbytes == 0:
            return
        at = self._links._arrival(self._conn, half, nbytes, server=self._server)
        if at is _IMMEDIATE:
            return
        half.add_entry([start, start + nbytes, at, trio.current_time()])

    @property
    def cometbench_messages(self) -> MessageChannel | None:
        """The message shortcut of this connection (virtual network only), or None (see MessageChannel)."""
        if not self._links.message_shortcut or getattr(self.transport_stream, "socket", None) is not None:
            return None
        return MessageChannel(self)

    @property
    def cometbench_try_send(self) -> Callable[[bytes], int] | None:
        """The non-blocking writer of the network's stream (an OS socket's ``os.write``, a virtual
        pipe's ``put_data``, see :func:`~emulator.net.network.nonblocking_send`), stamped like
        ``send_all``; None if the network's stream has none.

        A clean link costs this writer a few attribute checks and one stamp, so a comet fan-out over
        OS sockets keeps writing from inside the publish (issue 14's direct path) instead of waking
        a writer task per connection and frame; link conditions set later (delays, partitions,
        half-open hangs, resets) still apply to its writes.  A property returning a closure, so
        that no reference cycle is stored on the end.
        """
        inner = nonblocking_send(self.transport_stream)
        if inner is None:
            return None
        conn, links, half = self._conn, self._links, self._out

        def try_send(data: bytes) -> int:
            if self._reset is not None:
                raise trio.BrokenResourceError(self._reset)
            if self._closed:
                raise trio.ClosedResourceError("stream was closed")
            if conn.state == "half-open":   # the bytes vanish; the writer is none the wiser
                return len(data)
            written = inner(data)
            ready = conn.ready_server if self._server else conn.ready_client
            if (links._rules or links._partitions or half.entries or ready is None or ready > conn.opened):
                self._stamp(written)   # a condition, or bytes of one still in flight: time them
            else:
                half.sent += written   # a link clean since the connection opened: they arrive at once
            return written

        return try_send

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check()
        if self._conn.state == "half-open":  # the bytes vanish; the writer is none the wiser
            await trio.lowlevel.checkpoint()
            return
        self._stamp(len(data))
        try:
            await self.transport_stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if self._reset is not None:
                raise trio.BrokenResourceError(self._reset) from None
            raise

    async def wait_send_all_might_not_block(self) -> None:
        self._check()
        await self.transport_stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        self._check()
        self._links._fin(self._conn, self._out)
        send_eof = getattr(self.transport_stream, "send_eof", None)
        if send_eof is None:  # pragma: no cover - every network stream can half-close
            raise trio.ClosedResourceError("this stream cannot half-close")
        await send_eof()

    # -- receiving ---------------------------------------------------------------------------------
    def _deliverable(self, now: float) -> tuple[int, float | None]:
        """(bytes at the head of the buffer that have arrived, when the next ones arrive or None)."""
        entries = self._in.entries
        off = self._offset
        while entries and entries[0][1] <= off:
            entries.popleft()
        end = off + len(self._buf)
        pos = off
        for entry in entries:
            if pos >= end:
                break
            if entry[0] > pos:                  # bytes nobody stamped: clean, already here
                pos = min(end, entry[0])
                if pos >= end:
                    break
            at = entry[2]
            if at is None or at > now:
                return pos - off, at
            pos = min(end, entry[1])
        else:
            pos = end
        return pos - off, None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        half = self._in
        while True:
            self._check()
            if self._conn.state == "half-open":
                self._buf.clear()
                await self._drain_forever()
                continue
            if self._buf:
                n, wait = self._deliverable(trio.current_time())
                if n:
                    if max_bytes is not None:
                        n = min(n, max_bytes)
                    out = bytes(self._buf[:n])
                    del self._buf[:n]
                    self._offset += n
                    return out
                await self._wait(half, wait)
                continue
            if self._eof:
                if half.fin and (half.fin_at is None or half.fin_at > trio.current_time()):
                    await self._wait(half, half.fin_at)
                    continue
                return b""
            try:
                data = await self.transport_stream.receive_some(max_bytes)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                if self._reset is not None:
                    raise trio.BrokenResourceError(self._reset) from None
                raise
            if not data:
                self._eof = True
                continue
            self._buf += data

    async def _wait(self, half: _Half, until: float | None) -> None:
        if until is None:
            await half.lot.park()
        else:
            with trio.move_on_at(until):
                await half.lot.park()

    async def _drain_forever(self) -> None:
        """Half-open: read and throw away whatever arrives; never report an end."""
        while self._reset is None and not self._closed:
            try:
                data = await self.transport_stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                await self._in.lot.park()   # only a reset or a close wakes this end

    # -- closing -----------------------------------------------------------------------------------
    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._reset is None and self._conn.state == "open":
                self._links._fin(self._conn, self._out)
            self._links._end_closed(self._conn, self)
            self._in.wake()
        await self.transport_stream.aclose()


class MessageChannel:
    """Whole WebSocket messages between the two ends of one in-memory connection, instead of frames.

    On the virtual network both ends of a comet WebSocket are in this process, so after the HTTP
    upgrade (which still goes over the bytes) the virtual browser and the server can hand each other
    whole messages, skipping masking, framing and parsing on both sides (``CometServerApi.js``'s
    traffic in a long call is mostly heartbeat frames).  The client offers it (:meth:`offer`) before
    it sends the upgrade request; the server takes it when it sees the offer.  Each message is timed
    like the frame it stands for: ``wire_len`` bytes (payload, header and mask) go through the link's
    latency, jitter, loss, bandwidth and partitions; resets, half-open hangs and closes behave as on the
    bytes.  ``kind`` is ``"text"`` or ``"close"`` (a Close frame; payload = the code).
    """

    __slots__ = ("_end",)

    def __init__(self, end: LinkStream) -> None:
        self._end = end

    def offer(self) -> None:
        self._end._conn.message_offer = True

    @property
    def offered(self) -> bool:
        return self._end._conn.message_offer

    def send(self, kind: str, payload: Any, wire_len: int) -> None:
        """Send one message now (never blocks).  Raises like ``send_all`` on a reset or closed end."""
        end = self._end
        end._check()
        if end._closed_messages:
            raise trio.ClosedResourceError("the message channel was closed")
        conn = end._conn
        if conn.state == "half-open":
            return
        half = end._out
        now = trio.current_time()
        at = end._links._arrival(conn, half, wire_len, server=end._server, now=now)
        if at is _IMMEDIATE:
            at = now
        half.sent += wire_len
        half.add_message([at, kind, payload, now])
        lot = half._lot
        if lot:   # the reader is waiting (not when this is the second message of one moment)
            lot.unpark_all()

    async def receive(self) -> tuple[str, Any] | None:
        """The next message when it arrives; None at the end (the other end closed).

        A checkpoint as trio's own channels are: a receive that has to wait yields while it waits
        and returns when woken; only one that can return at once yields first (each message used
        to cost its receiver two task steps -- the wake-up and another yield on the way back in)."""
        end = self._end
        half = end._in
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            end._check()
            if end._closed_messages:
                if not waited:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return None
            if end._conn.state == "half-open":
                half.messages = _NOTHING
                await half.lot.park()
                waited = True
                continue
            messages = half.messages
            if messages:
                head = messages[0]
                if head[0] is not None and head[0] <= trio.current_time():
                    if not waited:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                        waited = True
                        continue   # look again: the yield may have changed what is there
                    messages.popleft()
                    return head[1], head[2]
                await end._wait(half, head[0])
                waited = True
                continue
            if half.fin:
                if half.fin_at is None or half.fin_at > trio.current_time():
                    await end._wait(half, half.fin_at)
                    waited = True
                    continue
                if not waited:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return None
            await half.lot.park()
            waited = True

    def receive_nowait(self) -> tuple[str, Any] | None:
        """The next message if one has arrived, else None (no checkpoint)."""
        end = self._end
        half = end._in
        if end._reset is not None or end._closed or end._conn.state != "open":
            return None
        messages = half.messages
        if messages and messages[0][0] is not None and messages[0][0] <= trio.current_time():
            head = messages.popleft()
            return head[1], head[2]
        return None

    def close(self) -> None:
        """This end closes (the FIN follows the messages already sent); its own receive ends too."""
        end = self._end
        if end._closed_messages:
            return
        end._closed_messages = True
        if not end._closed and end._reset is None and end._conn.state == "open":
            end._links._fin(end._conn, end._out)
        end._in.wake()


class _Immediate:
    pass


_IMMEDIATE: Any = _Immediate()


# --- datagrams --------------------------------------------------------------------------------------


class LinkDatagram:
    """A UDP endpoint under link conditions: lost and partitioned datagrams are dropped, the others
    leave after the link's one-way delay, jitter and serialisation time (needs :meth:`Links.run`)."""

    def __init__(self, links: Links, inner: Any, *, service: str, client: str) -> None:
        self._links = links
        self._inner = inner
        self.endpoint = inner.endpoint
        self.service = service
        self.client = client
        self.protocol = SERVICE_PROTOCOL.get(service, "sip")
        self._free_at = 0.0
        self.dropped = 0

    async def recvfrom(self) -> tuple[bytes, Endpoint]:
        return await self._inner.recvfrom()

    async def sendto(self, data: bytes, destination: Endpoint) -> None:
        client = self.client or self._links.client_of(destination)
        links = self._links
        link = links.link(client, self.protocol)
        if links.partitioned(client, self.protocol) or (
                link.loss > 0 and links.rng(client, self.protocol).random() < link.loss):
            self.dropped += 1
            await trio.lowlevel.checkpoint()
            return
        delay = 0.0
        if not link.clean:
            now = trio.current_time()
            if link.bandwidth_kbps:
                start = max(now, self._free_at)
                self._free_at = start + len(data) * 8 / (link.bandwidth_kbps * 1000.0)
                delay = self._free_at - now
            delay += max(0.0, link.one_way + links._jitter(client, self.protocol, link))
        if delay <= 0 or links._nursery is None:
            await self._inner.sendto(data, destination)
            return
        await trio.lowlevel.checkpoint()
        links._nursery.start_soon(self._later, trio.current_time() + delay, bytes(data), destination)

    async def _later(self, at: float, data: bytes, destination: Endpoint) -> None:
        await trio.sleep_until(at)
        try:
            await self._inner.sendto(data, destination)
        except (trio.ClosedResourceError, OSError):
            pass

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# --- the table ------------------------------------------------------------------------------------


class Links:
    """The link conditions of one network (see the module docstring).

    ``seed`` seeds every link's generator (with the client and protocol names).  ``profiles`` are the
    named links :meth:`set` accepts (default: ``fixtures/network_profiles.toml``)."""

    def __init__(self, *, seed: int | str = 0, profiles: dict[str, Link] | None = None,
                 message_shortcut: bool = True) -> None:
        self.seed = seed
        #: offer the comet WebSocket's message shortcut on virtual streams (MessageChannel)
        self.message_shortcut = message_shortcut
        self._profiles = profiles
        self._rules: dict[tuple[str, str], Link] = {}
        self._partitions: set[tuple[str, str]] = set()
        self._offline: set[str] = set()   # clients whose own network is gone (lose_network)
        # weak: a connection lives as long as one of its ends (a stream nobody closed is still freed)
        self._conns: weakref.WeakValueDictionary[int, _Conn] = weakref.WeakValueDictionary()
        self._pairing: weakref.WeakValueDictionary[Any, _Conn] = weakref.WeakValueDictionary()
        self._client_ports: dict[tuple[str, int], str] = {}
        self._services: dict[int, str] = {}
        self._rngs: dict[tuple[str, str], random.Random] = {}
        self._watchers: list[Callable[[LinkChange], None]] = []
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._conn_ids = itertools.count(1)
        self._wakeup: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        self._media: dict[tuple[str, str], str] = {}   # (client, call_id) -> "open" | "broken"
        self.t0: float | None = None
        self.history: list[LinkChange] = []

    # -- rules ---------------------------------------------------------------------------------
    def _resolve(self, link: Link | str) -> Link:
        if isinstance(link, str) and self._profiles is not None:
            try:
                return self._profiles[link]
            except KeyError:
                raise LinkError(f"unknown network profile {link!r}; known: {', '.join(self._profiles)}") from None
        return _as_link(link)

    def set(self, link: Link | str, *, client: str = "*", protocol: str = "*") -> Link:
        """Give the selected (client, protocol) pairs this link (a :class:`Link` or a profile name);
        returns the link set.  Connections already open follow the new link from their next write."""
        key = (_check_client(client), _check_protocol(protocol))
        resolved = self._resolve(link)
        if resolved.clean:
            self._rules.pop(key, None)
            if client == "*" and protocol == "*":
                self._rules[key] = resolved
        else:
            self._rules[key] = resolved
        self._changed("set", client, protocol)
        return resolved

    def update(self, *, client: str = "*", protocol: str = "*", **changes: float) -> Link:
        """Change fields of the effective link of the selector (``loss=0.2``, ``rtt_ms=300`` ...)."""
        _check_client(client)
        _check_protocol(protocol)
        self._check_fields(changes)
        base = self._rules.get((client, protocol)) or self.link(client, protocol)
        return self.set(replace(base, **changes), client=client, protocol=protocol)  # type: ignore[arg-type]  # checked above

    def clear(self, *, client: str = "*", protocol: str = "*") -> None:
        """Remove the rules the selector covers (``clear()`` removes every rule)."""
        _check_client(client)
        _check_protocol(protocol)
        for key in [k for k in self._rules if _covers(client, k[0]) and _covers(protocol, k[1])]:
            del self._rules[key]
        self._changed("set", client, protocol)

    def rule(self, client: str, protocol: str) -> Link | None:
        """The most specific rule that applies, or None when none does (no conditions)."""
        rules = self._rules
        if not rules:
            return None
        for exact_client, exact_protocol in _SELECTOR_ORDER:
            key = (client if exact_client else "*", protocol if exact_protocol else "*")
            found = rules.get(key)
            if found is not None:
                return found
        return None

    def link(self, client: str, protocol: str) -> Link:
        """The effective link of one client's protocol (``Link()`` when nothing applies)."""
        return self.rule(client, protocol) or _CLEAN

    def rules(self) -> dict[tuple[str, str], Link]:
        return dict(self._rules)

    # -- partitions --------------------------------------------------------------------------------
    def partitioned(self, client: str, protocol: str) -> bool:
        parts = self._partitions
        if not parts:
            return False
        return ((client, protocol) in parts or (client, "*") in parts or ("*", protocol) in parts
                or ("*", "*") in parts)

    def partition(self, *, client: str = "*", protocol: str = "*", duration: float | None = None) -> None:
        """Cut the selected paths: streams stall, datagrams and media are dropped, until :meth:`heal`
        (or ``duration`` seconds later)."""
        key = (_check_client(client), _check_protocol(protocol))
        if duration is not None and (duration < 0 or math.isnan(duration)):
            raise LinkError(f"duration must be >= 0 seconds, got {duration!r}")
        now = trio.current_time()
        self._partitions.add(key)
        for conn in list(self._conns.values()):   # bytes in flight are lost: they stall too
            if self.partitioned(conn.client, conn.protocol):
                for half in conn.halves():
                    for entry in half.entries:
                        if entry[2] is not None and entry[2] > now:
                            entry[2] = None
                    for message in half.messages:
                        if message[0] is not None and message[0] > now:
                            message[0] = None
                    if half.fin and half.fin_at is not None and half.fin_at > now:
                        half.fin_at = None
                    if any(e[2] is None for e in half.entries) or any(m[0] is None for m in half.messages):
                        self._watch_abort(conn, half)
        self._changed("partition", client, protocol)
        if duration is not None:
            self._at(now + duration, lambda: self.heal(client=client, protocol=protocol))

    def heal(self, *, client: str = "*", protocol: str = "*") -> None:
        """End the partitions the selector covers (``heal()`` ends them all); stalled bytes arrive at
        the senders' next retransmissions."""
        _check_client(client)
        _check_protocol(protocol)
        removed = [k for k in self._partitions if _covers(client, k[0]) and _covers(protocol, k[1])]
        if not removed:
            return
        for key in removed:
            self._partitions.discard(key)
        now = trio.current_time()
        for conn in list(self._conns.values()):
            if self.partitioned(conn.client, conn.protocol):
                continue
            if conn.reset_at_heal:
                conn.reset("connection reset by peer (it gave up during the partition)")
                continue
            self._restart_stalled(conn, now)
        self._changed("heal", client, protocol)

    def _restart_stalled(self, conn: _Conn, now: float) -> None:
        link = self.link(conn.client, conn.protocol)
        if conn.ready_client is None:   # the SYN gets through at its next retransmission
            syn = next((conn.opened + t for t in SYN_RETRY_TIMES if conn.opened + t >= now), now)
            conn.ready_client = syn + link.rtt_ms / 1000.0
            conn.ready_server = syn + 1.5 * link.rtt_ms / 1000.0
        for half in conn.halves():
            server = half is conn.s2c
            ready = (conn.ready_server if server else conn.ready_client) or now
            for entry in half.entries:
                if entry[2] is None:
                    retry = _next_retransmission(entry[3], link.rto, max(now, ready))
                    at = max(retry + link.one_way, half.last)
                    entry[2] = half.last = at
            for message in half.messages:
                if message[0] is None:
                    retry = _next_retransmission(message[3], link.rto, max(now, ready))
                    at = max(retry + link.one_way, half.last)
                    message[0] = half.last = at
            if half.fin and half.fin_at is None:
                retry = _next_retransmission(half.fin_sent_at, link.rto, max(now, ready))
                half.fin_at = max(retry + link.one_way, half.last)
            half.wake()

    # -- events on existing connections -------------------------------------------------------------
    def connections(self, *, client: str = "*", protocol: str = "*") -> list[dict]:
        """The live connections the selector covers: id, client, protocol, state."""
        return [{"id": c.id, "client": c.client, "protocol": c.protocol, "state": c.state,
                 "ends": len(c.live_ends())} for c in list(self._conns.values())
                if _covers(client, c.client) and _covers(protocol, c.protocol)]

    def reset(self, *, client: str = "*", protocol: str = "*") -> int:
        """Reset the selected connections: both ends see a connection reset.  Returns how many."""
        _check_client(client)
        _check_protocol(protocol)
        hit = [c for c in list(self._conns.values()) if _covers(client, c.client) and _covers(protocol, c.protocol)]
        for conn in hit:
            conn.reset()
        self._changed("reset", client, protocol, count=len(hit))
        return len(hit)

    def half_open(self, *, client: str = "*", protocol: str = "*") -> int:
        """Hang the selected connections: from now on nothing they carry arrives and no end is told.
        Returns how many."""
        _check_client(client)
        _check_protocol(protocol)
        hit = [c for c in list(self._conns.values())
               if c.state == "open" and _covers(client, c.client) and _covers(protocol, c.protocol)]
        for conn in hit:
            conn.state = "half-open"
            conn.wake()
        self._changed("half_open", client, protocol, count=len(hit))
        return len(hit)

    def lose_network(self, *, client: str, duration: float | None = None) -> int:
        """The client's own network goes away (see the module docstring): its ends of its connections
        fail now, the far ends hang, new connections fail (:meth:`check_connect`), everything of the
        client is partitioned -- until :meth:`regain_network` (or ``duration`` seconds later).  Returns
        how many connections it had."""
        _check_client(client)
        if client == "*" or not client:
            raise LinkError("lose_network takes one client's name (a device loses its own network), not *")
        if duration is not None and (not isinstance(duration, (int, float)) or duration != duration or duration < 0):
            raise LinkError(f"duration must be >= 0 seconds, got {duration!r}")
        self._offline.add(client)
        hit = [c for c in list(self._conns.values()) if c.client == client and c.state != "reset"]
        for conn in hit:
            for end in conn.live_ends():
                if not end._server:
                    end._set_reset("network is down")
            conn.state = "half-open"       # the far end hears nothing ...
            conn.reset_at_heal = True      # ... until the network is back and it meets an RST
            conn.wake()
        self._changed("offline", client, "*", count=len(hit))
        self.partition(client=client)
        if duration is not None:
            self._at(trio.current_time() + duration, lambda: self.regain_network(client=client))
        return len(hit)

    def regain_network(self, *, client: str) -> None:
        """The client's network is back: new connections work, the partition heals and the far ends of
        the connections it lost are reset."""
        if client not in self._offline:
            return
        self._offline.discard(client)
        self.heal(client=client)
        self._changed("online", client, "*")

    def offline(self, client: str) -> bool:
        """Whether ``client`` has lost its network (:meth:`lose_network`)."""
        return client in self._offline

    def check_connect(self, client: str) -> None:
        """Called by the network before it connects for ``client``: an ``OSError`` (ENETUNREACH) while
        that client has lost its network, as a device without a network fails at once."""
        if client and client in self._offline:
            raise OSError(errno.ENETUNREACH, f"network is unreachable ({client} has lost its network)")

    # -- media paths (no bytes: the media model's view of a browser's peer connection) ----------------
    def open_media(self, client: str, call_id: str) -> None:
        """The browser ``client`` has a peer connection up for the SIP call ``call_id``."""
        self._media[(client, call_id)] = "open"
        self._changed("media_open", client, "media", call_id=call_id)

    def close_media(self, client: str, call_id: str) -> None:
        """That peer connection is gone for good (the session ended, the page closed)."""
        if self._media.pop((client, call_id), None) is not None:
            self._changed("media_close", client, "media", call_id=call_id)

    def break_media(self, paths: Iterable[tuple[str, str]]) -> None:
        """The far end of these media paths died (a FreeSWITCH restart): the browsers' ICE will fail."""
        for client, call_id in paths:
            if self._media.get((client, call_id)) == "open":
                self._media[(client, call_id)] = "broken"
                self._changed("media_break", client, "media", call_id=call_id)

    def media_state(self, client: str, call_id: str) -> str:
        """``up`` (media can flow), ``partitioned`` (the link is cut), ``broken`` (the far end died),
        ``closed`` (no peer connection)."""
        state = self._media.get((client, call_id))
        if state is None:
            return "closed"
        if state == "broken":
            return "broken"
        return "partitioned" if self.partitioned(client, "media") else "up"

    # -- scheduling ------------------------------------------------------------------------------
    ACTIONS = ("set", "update", "clear", "partition", "heal", "half_open", "reset")

    def at(self, t: float, action: str, *args: Any, duration: float | None = None, **kwargs: Any) -> None:
        """Run ``action`` (one of :data:`ACTIONS`, with its arguments) ``t`` seconds after
        :meth:`run` started; with ``duration``, undo it that many seconds later (a rule is put back
        as it was, a partition heals).  Needs :meth:`run`."""
        self._validate(action, args, duration, kwargs)
        if self.t0 is None:
            raise LinkError("schedule changes with at() only while Links.run() is running; use after()")
        if not isinstance(t, (int, float)) or t != t:
            raise LinkError(f"the time of a scheduled change must be a number of seconds, got {t!r}")
        self._schedule(self.t0 + t, action, args, duration, kwargs)

    def after(self, delay: float, action: str, *args: Any, duration: float | None = None, **kwargs: Any) -> None:
        """Like :meth:`at`, ``delay`` seconds from now."""
        self._validate(action, args, duration, kwargs)
        if not isinstance(delay, (int, float)) or delay != delay or delay < 0:
            raise LinkError(f"a delay must be a number of seconds >= 0, got {delay!r}")
        self._schedule(trio.current_time() + delay, action, args, duration, kwargs)

    def _validate(self, action: str, args: tuple, duration: float | None, kwargs: dict) -> None:
        if action not in self.ACTIONS:
            raise LinkError(f"unknown link action {action!r}; known: {', '.join(self.ACTIONS)}")
        if duration is not None and (math.isnan(duration) or duration < 0):
            raise LinkError(f"duration must be >= 0 seconds, got {duration!r}")
        if duration is not None and action in ("heal", "half_open", "reset", "clear"):
            raise LinkError(f"{action} cannot be undone: give no duration")
        _check_client(kwargs.get("client", "*"))
        _check_protocol(kwargs.get("protocol", "*"))
        if action == "set":
            self._resolve(args[0] if args else kwargs["link"])
        if action == "update":
            self._check_fields({k: v for k, v in kwargs.items() if k not in ("client", "protocol")})

    def _schedule(self, when: float, action: str, args: tuple, duration: float | None, kwargs: dict) -> None:
        client = kwargs.get("client", "*")
        protocol = kwargs.get("protocol", "*")

        def apply() -> None:
            previous = self._rules.get((client, protocol))
            getattr(self, action)(*args, **kwargs)
            if duration is not None:
                if action == "partition":
                    self._at(trio.current_time() + duration, lambda: self.heal(client=client, protocol=protocol))
                else:
                    def undo() -> None:
                        if previous is None:
                            self._rules.pop((client, protocol), None)
                            self._changed("set", client, protocol)
                        else:
                            self.set(previous, client=client, protocol=protocol)
                    self._at(trio.current_time() + duration, undo)

        self._at(when, apply)

    @staticmethod
    def _check_fields(changes: dict) -> None:
        known = {"rtt_ms", "jitter_ms", "loss", "bandwidth_kbps"}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise LinkError(f"unknown link field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        replace(_CLEAN, **changes)  # the values (LinkError names the field)

    def _at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), fn))
        if self._wakeup is not None:
            self._wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The table's timers (scheduled changes, partition durations, TCP give-ups) and delayed
        datagrams.  Runs until cancelled; the stack starts it."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.t0 = trio.current_time()
            task_status.started()
            try:
                while True:
                    now = trio.current_time()
                    while self._heap and self._heap[0][0] <= now:
                        _, _, fn = heapq.heappop(self._heap)
                        fn()
                    self._wakeup = trio.Event()
                    with trio.move_on_at(self._heap[0][0] if self._heap else math.inf):
                        await self._wakeup.wait()
            finally:
                self._nursery = None
                self._wakeup = None

    # -- watching ----------------------------------------------------------------------------------
    def watch(self, callback: Callable[[LinkChange], None]) -> Callable[[], None]:
        """Call ``callback(change)`` after every change; returns the function that stops it."""
        self._watchers.append(callback)

        def remove() -> None:
            try:
                self._watchers.remove(callback)
            except ValueError:
                pass

        return remove

    def _changed(self, kind: str, client: str, protocol: str, *, call_id: str = "", count: int = 0) -> None:
        change = LinkChange(kind, client, protocol, trio.current_time(), call_id, count)
        if not kind.startswith("media_"):
            self.history.append(change)
        for callback in list(self._watchers):
            callback(change)

    # -- randomness --------------------------------------------------------------------------------
    def rng(self, client: str, protocol: str) -> random.Random:
        """The generator of one link: seeded by (seed, client, protocol), independent of the others."""
        key = (client, protocol)
        rng = self._rngs.get(key)
        if rng is None:
            rng = self._rngs[key] = random.Random(f"{self.seed}:link:{client}:{protocol}")
        return rng

    def _jitter(self, client: str, protocol: str, link: Link) -> float:
        if not link.jitter_ms:
            return 0.0
        return self.rng(client, protocol).gauss(0.0, link.jitter_ms / 1000.0)

    # -- the network seam --------------------------------------------------------------------------
    def client_of(self, peer: Any) -> str:
        """The client name of a peer endpoint (a stream accepted by a listener, a UDP source)."""
        host, port = getattr(peer, "host", ""), getattr(peer, "port", 0)
        name = self._client_ports.get((host, port))
        if name is not None:
            return name
        if host and not _is_address(host):
            return host          # the virtual network names the peer after its client
        return ""

    def learn_service(self, port: int, service: str) -> None:
        """Tell the table that ``port`` is served by ``service`` (OS sockets: a client's connection
        to it gets that protocol before the listener has accepted it)."""
        self._services[port] = service

    def wrap_stream(self, stream: trio.abc.Stream, *, service: str, client: str, peer: Any) -> trio.abc.Stream:
        """Called by ``Network.wrap`` for every stream: the :class:`LinkStream` end of its connection."""
        now = trio.current_time()
        server = bool(service)
        if server:
            local = _local_endpoint(stream)
            if local is not None and local[1]:
                self._services.setdefault(local[1], service)
            key = (getattr(peer, "host", ""), getattr(peer, "port", 0))
            protocol = SERVICE_PROTOCOL.get(service, "")
            client_name = self.client_of(peer)
        else:
            local = getattr(stream, "cometbench_local", None)
            if local is not None:
                key = (local.host, local.port)
            else:
                key = _local_endpoint(stream) or ("", 0)
            service_name = getattr(stream, "cometbench_service", None) or self._services.get(
                getattr(peer, "port", 0), "")
            protocol = SERVICE_PROTOCOL.get(service_name, "")
            client_name = client
            if client and key[1]:
                self._client_ports[key] = client
        conn = self._pairing.pop(key, None) if key[1] else None
        if conn is not None:
            waiting = conn.live_ends()
            if len(waiting) != 1 or waiting[0]._server == server or waiting[0]._closed:
                conn = None   # a stale entry (a reused port whose other end never came): do not pair
        if conn is None:
            conn = _Conn(self, key, client_name, protocol, now)
            self._start(conn, now)
            self._conns[conn.id] = conn
            if key[1]:
                self._pairing[key] = conn
        else:
            if not conn.protocol:
                conn.protocol = protocol
            if not conn.client:
                conn.client = client_name
        end = LinkStream(self, stream, conn, server=server)
        conn.ends.append(weakref.ref(end))
        return end

    def wrap_datagram(self, endpoint: Any, *, service: str, client: str) -> Any:
        """Called by ``Network.wrap_datagram``: a :class:`LinkDatagram`."""
        if client:
            self._client_ports[(endpoint.endpoint.host, endpoint.endpoint.port)] = client
        return LinkDatagram(self, endpoint, service=service, client=client)

    # -- the TCP model -------------------------------------------------------------------------------
    def _start(self, conn: _Conn, now: float) -> None:
        link = self.link(conn.client, conn.protocol)
        if self.partitioned(conn.client, conn.protocol):
            conn.ready_client = conn.ready_server = None
            self._at(now + SYN_TIMEOUT, lambda: self._syn_timeout(conn))
        elif link.rtt_ms:
            conn.ready_client = now + link.rtt_ms / 1000.0
            conn.ready_server = now + 1.5 * link.rtt_ms / 1000.0

    def _syn_timeout(self, conn: _Conn) -> None:
        if conn.ready_client is None and conn.state != "reset":
            conn.reset("connection timed out (no answer to SYN)")

    def _arrival(self, conn: _Conn, half: _Half, nbytes: int, *, server: bool, now: float | None = None) -> Any:
        """When ``nbytes`` written now arrive: a time, None (stalled), or _IMMEDIATE."""
        if now is None:
            now = trio.current_time()
        entries = half.entries
        while entries and entries[0][2] is not None and entries[0][2] <= now:
            entries.popleft()
        client, protocol = conn.client, conn.protocol
        ready = conn.ready_server if server else conn.ready_client
        if not self._rules and not self._partitions and not entries and ready is not None and ready <= now:
            return _IMMEDIATE
        if self.partitioned(client, protocol) or ready is None:
            self._watch_abort(conn, half)
            return None
        link = self.link(client, protocol)
        if link.clean and not entries and ready <= now:
            return _IMMEDIATE
        start = max(now, ready, half.free_at)
        if link.bandwidth_kbps:
            start += nbytes * 8 / (link.bandwidth_kbps * 1000.0)
        half.free_at = start
        at = start + link.one_way
        if link.jitter_ms:
            at += self._jitter(client, protocol, link)
        if link.loss:
            rng = self.rng(client, protocol)
            stall = 0.0
            for _ in range(max(1, -(-nbytes // MSS))):
                rto, spent, tries = link.rto, 0.0, 0
                while rng.random() < link.loss and tries < TCP_RETRIES2:
                    spent += rto
                    rto = min(rto * 2, RTO_MAX)
                    tries += 1
                stall = max(stall, spent)
            at += stall
        at = max(at, half.last, now)
        half.last = at
        return at

    def _fin(self, conn: _Conn, half: _Half) -> None:
        if half.fin:
            return
        half.fin = True
        now = trio.current_time()
        half.fin_sent_at = now
        if not self._rules and not self._partitions and not half.entries and half.last <= now:
            half.fin_at = now
            half.wake()
            return
        if self.partitioned(conn.client, conn.protocol):
            half.fin_at = None
            half.wake()
            return
        link = self.link(conn.client, conn.protocol)
        half.fin_at = max(half.last, now + link.one_way)
        half.wake()

    def _watch_abort(self, conn: _Conn, half: _Half) -> None:
        """A write stalls: if it is still stalled after TCP's last retransmission, the sender gives up
        (ETIMEDOUT); the other end hears nothing and is reset when the partition heals."""
        if half.watched:
            return
        half.watched = True
        link = self.link(conn.client, conn.protocol)
        first = min([e[3] for e in half.entries if e[2] is None] + [m[3] for m in half.messages if m[0] is None],
                    default=trio.current_time())
        ref = weakref.ref(conn)

        def check() -> None:
            half.watched = False
            conn = ref()
            if conn is None or conn.state == "reset":
                return
            stalled = [e[3] for e in half.entries if e[2] is None] + [m[3] for m in half.messages if m[0] is None]
            if not stalled:
                return
            if min(stalled) > first:   # newer stalled writes: their own deadline
                self._watch_abort(conn, half)
                return
            for end in conn.live_ends():
                if end._out is half:
                    end._set_reset("connection timed out (no acknowledgement)")
            conn.state = "half-open"
            conn.reset_at_heal = True
            conn.wake()

        self._at(first + _give_up_after(link.rto), check)

    def _end_closed(self, conn: _Conn, end: LinkStream) -> None:
        if all(e._closed for e in conn.live_ends()):
            self._forget(conn)

    def _forget(self, conn: _Conn) -> None:
        self._conns.pop(conn.id, None)
        if self._pairing.get(conn.key) is conn:
            del self._pairing[conn.key]
        if self._client_ports.get(conn.key) == conn.client:
            del self._client_ports[conn.key]

    # -- inspection ----------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        return {"rules": {f"{c}/{p}": vars(link) for (c, p), link in self._rules.items()},
                "partitions": [f"{c}/{p}" for c, p in sorted(self._partitions)],
                "offline": sorted(self._offline),
                "connections": len(self._conns), "media_paths": len(self._media)}


_CLEAN = Link()


def _next_retransmission(sent_at: float, rto: float, not_before: float) -> float:
    """The first retransmission of a segment first sent at ``sent_at`` that leaves at or after
    ``not_before`` (the timer doubles from ``rto``, capped at RTO_MAX)."""
    t, step = sent_at + rto, rto
    for _ in range(TCP_RETRIES2 + 1):
        if t >= not_before:
            return t
        step = min(step * 2, RTO_MAX)
        t += step
    return max(t, not_before)


def _give_up_after(rto: float) -> float:
    """Seconds from the first transmission until TCP aborts (15 retransmissions, the last one timed out)."""
    total, step = 0.0, rto
    for _ in range(TCP_RETRIES2 + 1):
        total += step
        step = min(step * 2, RTO_MAX)
    return total


def _is_address(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return host in ("localhost", "?")
    return True


def _local_endpoint(stream: trio.abc.Stream) -> tuple[str, int] | None:
    sock = getattr(stream, "socket", None)
    if sock is None:
        return None
    try:
        host, port = sock.getsockname()[:2]
    except OSError:
        return None
    return host, port
