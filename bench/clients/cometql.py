"""A CometQL client: what an application backend (auth.php, call.php) does over the MySQL protocol.

The demo backend opens a fresh ``mysqli_connect(host, dev_id, password, "CometQL_v1", 3307)`` per
HTTP request, runs one statement and lets PHP close the link.  This module gives the bench the same
thing without PHP: a trio-native client on the project's own codec (:mod:`emulator.wire.mysql`), so
it runs over any :class:`~emulator.net.network.Network` -- real loopback sockets or the in-memory
network under a MockClock -- and is the client ``--target cometql=HOST:PORT`` points at a real server.

Two layers:

* :class:`ClientProtocol` -- sans-IO, no trio: feed it received bytes, take the bytes to send, read
  typed events (:class:`Ready`, :class:`Result`, :class:`Failure`).  It follows the MySQL protocol
  (connection phase with mysql_native_password, an auth switch to mysql_native_password or
  caching_sha2_password fast auth, text-protocol results, strict sequence ids) rather than our
  server's shortcuts, so a real MySQL or MariaDB server works too.
* :class:`CometQLClient` -- the trio driver: :meth:`CometQLClient.connect`, :meth:`query` and
  :meth:`close`.  Results are :class:`OkResult` or :class:`ResultSet`; an ERR answer raises
  :class:`CometQLServerError` (code, SQLSTATE, message); refusals and silence raise
  :class:`CometQLConnectionError` naming the address.

Deliberate limits: no TLS (CppComet advertises it without speaking it, so the client never asks),
no prepared statements, no compression, no LOCAL INFILE; a caching_sha2_password account that needs
full authentication (no cached password on the server) is refused with a clear message because it
requires TLS or RSA.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import trio

from emulator.net.network import Network, quiet_close
from emulator.wire import mysql as m

DEFAULT_DATABASE = "CometQL_v1"


# --- results and errors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OkResult:
    """An OK answer (INSERT, DELETE, SET ...)."""

    affected_rows: int
    insert_id: int
    status: int
    warnings: int
    info: str = ""


@dataclass(frozen=True)
class ResultSet:
    """A text result set: column names and rows of strings (``None`` for SQL NULL)."""

    columns: list[str]
    rows: list[tuple[str | None, ...]]
    status: int = 0
    warnings: int = 0
    column_definitions: list[m.ColumnDefinition] = field(default_factory=list, repr=False)

    def dicts(self) -> list[dict[str, str | None]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def __iter__(self) -> Iterator[tuple[str | None, ...]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


QueryResult = OkResult | ResultSet


class CometQLError(Exception):
    """Base class of every error this client raises."""


class CometQLServerError(CometQLError):
    """The server answered ERR."""

    def __init__(self, code: int, sqlstate: str, message: str, *, during: str = "query") -> None:
        super().__init__(f"CometQL error {code} ({sqlstate or '-----'}) during {during}: {message}")
        self.code = code
        self.sqlstate = sqlstate
        self.message = message
        self.during = during


class CometQLConnectionError(CometQLError):
    """The server could not be reached, closed the connection or did not answer in time."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"CometQL at {address}: {reason}")
        self.address = address
        self.reason = reason


class CometQLProtocolError(CometQLError):
    """The server sent something the MySQL protocol does not allow here."""


# --- sans-IO protocol -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    """The connection phase succeeded."""

    greeting: m.Greeting


@dataclass(frozen=True)
class Result:
    """A statement finished (``more`` results follow when the server set MORE_RESULTS_EXISTS)."""

    result: QueryResult
    more: bool = False


@dataclass(frozen=True)
class Failure:
    """An ERR packet: during the handshake (``fatal``) or as a statement's answer."""

    error: m.ErrPacket
    fatal: bool


Event = Ready | Result | Failure


class ConnectionState(StrEnum):
    """Where a :class:`ClientProtocol` is: greeting -> auth -> ready <-> busy; closed."""

    GREETING = "greeting"
    AUTH = "auth"
    READY = "ready"
    BUSY = "busy"
    CLOSED = "closed"


class ClientProtocol:
    """The client side of one MySQL connection, sans-IO.

    ``receive_data(bytes)`` returns the events now complete; ``data_to_send()`` drains the outgoing
    bytes; ``query(sql)`` and ``quit()`` start commands.  States: ``greeting`` -> ``auth`` ->
    ``ready`` <-> ``busy``; ``closed`` after a fatal error or :meth:`quit`.  Any protocol violation
    raises :class:`CometQLProtocolError` and closes the protocol.
    """

    def __init__(self, user: str, password: str, database: str | None = DEFAULT_DATABASE, *,
                 charset: int = m.CHARSET_UTF8_GENERAL_CI,
                 capabilities: int = m.CLIENT_CAPABILITIES) -> None:
        self.user = user
        self.password = password
        self.database = database
        self.charset = charset
        self.capabilities = capabilities
        self.state = ConnectionState.GREETING
        self.greeting: m.Greeting | None = None
        self._reader = m.PacketReader()
        self._out = bytearray()
        self._seq = 0                   # the next sequence id we expect
        self._plugin = m.NATIVE_PASSWORD_PLUGIN
        self._scramble = b""
        # result-set parsing
        self._phase = ""                # "first", "columns", "rows"
        self._columns: list[m.ColumnDefinition] = []
        self._column_count = 0
        self._rows: list[tuple[str | None, ...]] = []

    # -- input / output ---------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def receive_data(self, data: bytes | bytearray) -> list[Event]:
        if self.state == ConnectionState.CLOSED:
            return []
        try:
            self._reader.feed(data)
            events: list[Event] = []
            for packet in self._reader:
                if packet.sequence_id != self._seq:
                    raise CometQLProtocolError(f"packets out of order: got sequence id {packet.sequence_id}, "
                                               f"expected {self._seq}")
                self._seq = packet.reply_sequence_id
                event = self._packet(packet.payload)
                if event is not None:
                    events.append(event)
            return events
        except m.ProtocolError as exc:
            self.state = ConnectionState.CLOSED
            raise CometQLProtocolError(str(exc)) from None
        except CometQLProtocolError:
            self.state = ConnectionState.CLOSED
            raise

    def query(self, sql: str | bytes) -> None:
        """Send COM_QUERY; its :class:`Result` or :class:`Failure` comes from :meth:`receive_data`."""
        if self.state != ConnectionState.READY:
            raise RuntimeError(f"cannot send a query in state {self.state.value!r}")
        self._send(m.build_command(m.COM_QUERY, sql), 0)
        self.state = ConnectionState.BUSY
        self._phase = "first"

    def quit(self) -> None:
        """Send COM_QUIT (servers close the connection; CppComet answers OK and waits)."""
        if self.state in (ConnectionState.READY, ConnectionState.BUSY):
            self._send(m.build_command(m.COM_QUIT), 0)
        self.state = ConnectionState.CLOSED

    def _send(self, payload: bytes, seq: int) -> None:
        self._out += m.frame_packet(payload, seq)
        self._seq = (seq + 1 + len(payload) // m.MAX_PACKET_CHUNK) & 0xFF

    # -- packets ------------------------------------------------------------------------------------
    def _packet(self, payload: bytes) -> Event | None:
        if self.state == ConnectionState.GREETING:
            return self._on_greeting(payload)
        if self.state == ConnectionState.AUTH:
            return self._on_auth(payload)
        if self.state == ConnectionState.BUSY:
            return self._on_result_packet(payload)
        raise CometQLProtocolError(f"unexpected packet in state {self.state.value!r} ({payload[:1].hex()})")

    def _on_greeting(self, payload: bytes) -> Event | None:
        if m.is_err_packet(payload):  # "Too many connections", "Host is not allowed" ...
            self.state = ConnectionState.CLOSED
            return Failure(m.parse_err(payload), fatal=True)
        greeting = m.parse_initial_handshake(payload)
        if not greeting.capabilities & m.CLIENT_PROTOCOL_41:
            raise CometQLProtocolError("the server does not speak protocol 4.1")
        self.greeting = greeting
        self._scramble = greeting.scramble[:20]
        plugin = greeting.auth_plugin or m.NATIVE_PASSWORD_PLUGIN
        # Answer in the server's default plugin when we know it, else in mysql_native_password
        # (the server may then switch us).
        self._plugin = plugin if plugin == m.CACHING_SHA2_PLUGIN else m.NATIVE_PASSWORD_PLUGIN
        token = self._token(self._plugin, self._scramble)
        caps = self.capabilities & (greeting.capabilities | m.CLIENT_CONNECT_WITH_DB | m.CLIENT_PLUGIN_AUTH)
        response = m.build_handshake_response(self.user, token, database=self.database,
                                              auth_plugin=self._plugin, capabilities=caps, charset=self.charset)
        self._send(response, self._seq)
        self.state = ConnectionState.AUTH
        return None

    def _token(self, plugin: str, scramble: bytes) -> bytes:
        if plugin == m.NATIVE_PASSWORD_PLUGIN:
            return m.native_password_token(self.password, scramble)
        if plugin == m.CACHING_SHA2_PLUGIN:
            return m.caching_sha2_token(self.password, scramble)
        raise CometQLProtocolError(f"the server asks for auth plugin {plugin!r}, which this client does not "
                                   "speak (only mysql_native_password and caching_sha2_password fast auth)")

    def _on_auth(self, payload: bytes) -> Event | None:
        if m.is_err_packet(payload):
            self.state = ConnectionState.CLOSED
            return Failure(m.parse_err(payload), fatal=True)
        if payload[:1] == b"\x00":
            m.parse_ok(payload)
            self.state = ConnectionState.READY
            assert self.greeting is not None
            return Ready(self.greeting)
        if payload[:1] == b"\xfe":
            switch = m.parse_auth_switch_request(payload)
            self._plugin = switch.plugin
            self._scramble = switch.data[:20]
            self._send(self._token(switch.plugin, self._scramble), self._seq)
            return None
        if payload[:1] == b"\x01":  # AuthMoreData (caching_sha2_password)
            more = payload[1:]
            if more == b"\x03":      # fast auth succeeded: the OK follows
                return None
            if more == b"\x04":
                raise CometQLProtocolError("caching_sha2_password needs full authentication (TLS or RSA), "
                                           "which this client does not do; give the account "
                                           "mysql_native_password or log in once with another client")
            raise CometQLProtocolError(f"unexpected auth data {more[:16].hex()}")
        raise CometQLProtocolError(f"unexpected packet during authentication ({payload[:1].hex()})")

    def _on_result_packet(self, payload: bytes) -> Event | None:
        if self._phase == "first":
            if m.is_err_packet(payload):
                self.state = ConnectionState.READY
                return Failure(m.parse_err(payload), fatal=False)
            if payload[:1] == b"\x00":
                ok = m.parse_ok(payload)
                more = bool(ok.status & m.SERVER_MORE_RESULTS_EXISTS)
                self._phase = "first" if more else ""
                self.state = ConnectionState.BUSY if more else ConnectionState.READY
                return Result(OkResult(ok.affected_rows, ok.insert_id, ok.status, ok.warnings,
                                       ok.info.rstrip(b"\x00").decode("utf-8", "replace")), more)
            if payload[:1] == b"\xfb":
                raise CometQLProtocolError("the server asked for LOCAL INFILE, which this client refuses")
            count, pos = m.decode_lenenc_int(payload, 0)
            if count is None or count == 0 or pos != len(payload):
                raise CometQLProtocolError(f"bad column count packet {payload[:16].hex()}")
            self._column_count = count
            self._columns = []
            self._rows = []
            self._phase = "columns"
            return None
        if self._phase == "columns":
            if m.is_eof_packet(payload):
                if len(self._columns) != self._column_count:
                    raise CometQLProtocolError(f"{len(self._columns)} column definitions for "
                                               f"{self._column_count} columns")
                self._phase = "rows"
                return None
            self._columns.append(m.parse_column_definition(payload))
            return None
        if self._phase == "rows":
            if m.is_eof_packet(payload):
                eof = m.parse_eof(payload)
                more = bool(eof.status & m.SERVER_MORE_RESULTS_EXISTS)
                self._phase = "first" if more else ""
                self.state = ConnectionState.BUSY if more else ConnectionState.READY
                result = ResultSet([c.name for c in self._columns], self._rows, eof.status, eof.warnings,
                                   self._columns)
                return Result(result, more)
            if m.is_err_packet(payload):  # an error in the middle of the rows ends the statement
                self._phase = ""
                self.state = ConnectionState.READY
                return Failure(m.parse_err(payload), fatal=False)
            values = m.parse_text_row(payload, self._column_count)
            self._rows.append(tuple(None if v is None else v.decode("utf-8", "replace") for v in values))
            return None
        raise CometQLProtocolError("packet outside a statement")


# --- trio driver --------------------------------------------------------------------------------------


class CometQLClient:
    """One CometQL connection over a :class:`Network` stream.

    ::

        async with await CometQLClient.connect(network, "127.0.0.1", 3307, user="15",
                                               password="CometQLPassword", client="doctor") as db:
            await db.query("INSERT INTO users_auth (id, hash) VALUES (5, 'PassForUser5')")
    """

    def __init__(self, stream: trio.abc.Stream, protocol: ClientProtocol, address: str,
                 timeout: float | None) -> None:
        self.stream = stream
        self.protocol = protocol
        self.address = address
        self.timeout = timeout
        self.greeting: m.Greeting | None = None
        self._pending: list[Event] = []
        self._lock = trio.Lock()
        self.closed = False

    @classmethod
    async def connect(cls, network: Network, host: str, port: int, *, user: str | int, password: str,
                      database: str | None = DEFAULT_DATABASE, client: str = "",
                      timeout: float | None = 30.0) -> CometQLClient:
        """Open a connection and log in; raises :class:`CometQLConnectionError` (unreachable, closed,
        silent for ``timeout`` seconds), :class:`CometQLServerError` (login refused) or
        :class:`CometQLProtocolError`."""
        address = f"{host}:{port}"
        with _deadline(timeout, address, "connecting"):
            try:
                stream = await network.connect(host, port, client=client)
            except OSError as exc:
                raise CometQLConnectionError(address, f"cannot connect: {exc.strerror or exc}") from None
        self = cls(stream, ClientProtocol(str(user), password, database), address, timeout)
        try:
            with _deadline(timeout, address, "logging in"):
                event = await self._next_event("logging in")
            if isinstance(event, Failure):
                raise CometQLServerError(event.error.code, event.error.sqlstate, event.error.message, during="login")
            if not isinstance(event, Ready):
                raise CometQLProtocolError(f"unexpected {event!r} during login")
            self.greeting = event.greeting
        except BaseException:
            await self._abort()
            raise
        return self

    async def query(self, sql: str | bytes, *, on_sent: Callable[[], Any] | None = None) -> QueryResult:
        """Run one statement; the last result if the server sent several.  ``on_sent`` is called
        once the COM_QUERY bytes are handed to the stream (a timing mark for benches)."""
        results = await self.query_all(sql, on_sent=on_sent)
        return results[-1]

    async def query_all(self, sql: str | bytes, *, on_sent: Callable[[], Any] | None = None) -> list[QueryResult]:
        async with self._lock:
            if self.closed:
                raise CometQLConnectionError(self.address, "the connection is closed")
            try:
                self.protocol.query(sql)
                with _deadline(self.timeout, self.address, "waiting for a query answer"):
                    await self._flush()
                    if on_sent is not None:
                        on_sent()
                    results: list[QueryResult] = []
                    while True:
                        event = await self._next_event("waiting for a query answer")
                        if isinstance(event, Failure):
                            raise CometQLServerError(event.error.code, event.error.sqlstate, event.error.message)
                        assert isinstance(event, Result)
                        results.append(event.result)
                        if not event.more:
                            return results
            except (CometQLConnectionError, CometQLProtocolError):
                await self._abort()
                raise

    async def close(self) -> None:
        """COM_QUIT, then close the stream (what PHP does at the end of a request)."""
        if self.closed:
            return
        self.protocol.quit()
        try:
            with trio.move_on_after(1.0):
                await self._flush()
        except CometQLError:
            pass
        await self._abort()

    async def __aenter__(self) -> CometQLClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- plumbing -----------------------------------------------------------------------------------
    async def _flush(self) -> None:
        data = self.protocol.data_to_send()
        if data:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise CometQLConnectionError(self.address, f"connection lost while sending ({exc!r})") from None

    async def _next_event(self, doing: str) -> Event:
        while not self._pending:
            await self._flush()
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise CometQLConnectionError(self.address, f"connection lost while {doing} ({exc!r})") from None
            if not data:
                raise CometQLConnectionError(self.address, f"the server closed the connection while {doing}")
            self._pending.extend(self.protocol.receive_data(data))
        await self._flush()
        return self._pending.pop(0)

    async def _abort(self) -> None:
        self.closed = True
        await quiet_close(self.stream)


class _deadline:
    """``trio.fail_after`` that raises :class:`CometQLConnectionError` naming the address."""

    def __init__(self, timeout: float | None, address: str, doing: str) -> None:
        self.timeout = timeout
        self.address = address
        self.doing = doing
        self._scope: trio.CancelScope | None = None

    def __enter__(self) -> _deadline:
        deadline = math.inf if self.timeout is None else trio.current_time() + self.timeout
        self._scope = trio.CancelScope(deadline=deadline)
        self._scope.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Literal[False]:
        assert self._scope is not None
        self._scope.__exit__(*exc)   # swallows only its own Cancelled, which becomes the error below
        if self._scope.cancelled_caught:
            raise CometQLConnectionError(self.address, f"no answer within {self.timeout:g} s while {self.doing}")
        return False


__all__ = [
    "DEFAULT_DATABASE", "ClientProtocol", "CometQLClient", "CometQLConnectionError", "CometQLError",
    "CometQLProtocolError", "CometQLServerError", "Failure", "OkResult", "QueryResult", "Ready", "Result",
    "ResultSet",
]
