"""The CometQL listener: the MySQL client/server protocol on trio streams, CppComet style.

Per connection: send the v10 greeting, read the HandshakeResponse (bounded time), check the
password (``mysql_native_password`` against the server password; the user name picks the dev_id),
check the database, then answer commands one packet at a time.  Packet bytes come from the sans-IO
codec in ``emulator/wire/mysql.py``; statements run in :class:`emulator.cometql.tables.Executor`.

Bad input never takes the listener down: a malformed or oversize packet, a wrong sequence id or
garbage before the handshake gets an ERR where the protocol allows one and a clean close; other
connections are unaffected.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Awaitable, Callable

import trio

from emulator.cometql.tables import Executor, Result, ResultKind, Session, err, select_database
from emulator.journal import Journal
from emulator.net.network import Listener, Network, quiet_close
from emulator.net.timeouts import HANDSHAKE_TIMEOUT
from emulator.profiles import Profile, Quirk
from emulator.wire import mysql as m

log = logging.getLogger("cometbench.cometql")

MAX_PACKET = 8 * 1024 * 1024  # far above the 9000-byte query limit; larger headers close the link
LENIENT_VERSION = "5.5.2-" + m.SERVER_VERSION  # starts with a number, so every client can parse it


class CometQLServer:
    def __init__(self, executor: Executor, network: Network, profile: Profile, journal: Journal, *,
                 password: str, handshake_timeout: float = HANDSHAKE_TIMEOUT) -> None:
        self.executor = executor
        self.network = network
        self.profile = profile
        self.journal = journal
        self.password = password
        self.handshake_timeout = handshake_timeout
        self.listener: Listener | None = None
        self.sessions: dict[int, Session] = {}
        self._ids = itertools.count(1)
        self._started: float | None = None
        self.randbytes = os.urandom       # the greeting's scramble (a seeded source in virtual time)
        #: seconds every query waits before it is executed (the "slow CometQL" fault; 0 = none)
        self.query_delay = 0.0
        #: awaited before a statement that reads conference_members (an external FreeSWITCH node is
        #: asked over ESL first: emulator/cometql/esl_links.py); None = nothing to prepare
        self.prepare_members: Callable[[], Awaitable[None]] | None = None

    def sessions_of(self, dev_id: int) -> int:
        return sum(1 for s in self.sessions.values() if s.dev_id == dev_id and s.authenticated)

    async def serve(self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        self._started = trio.current_time()
        await self.network.listen_and_serve("cometql", host, port, self.handle, on_listen=self._listening,
                                            task_status=task_status)

    def _listening(self, listener: Listener) -> None:
        self.listener = listener

    # -- one connection ----------------------------------------------------------------------------
    async def handle(self, stream: trio.abc.Stream) -> None:
        conn_id = next(self._ids)
        link = _Link(stream)
        try:
            session = await self._handshake(link, conn_id)
            if session is None:
                return
            self.sessions[conn_id] = session
            try:
                await self._commands(link, session)
            finally:
                self.sessions.pop(conn_id, None)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError, EOFError):
            pass
        except m.ProtocolError as exc:
            self.journal.record("cometql", "protocol_error", conn_id=conn_id, data=str(exc))
            try:
                await link.send([m.build_err(1, f"Protocol error: {exc}"[:200])], link.seq or 0)
            except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
                pass
        finally:
            await quiet_close(stream)

    async def _handshake(self, link: _Link, conn_id: int) -> Session | None:
        scramble = m.generate_scramble(self.randbytes, nonzero=True)
        caps = m.CAPABILITIES_CPPCOMET if self.profile.on(Quirk.COMETQL_SSL_ADVERTISED) else m.CAPABILITIES_LENIENT
        version = m.SERVER_VERSION if self.profile.on(Quirk.COMETQL_VERSION_STRING) else LENIENT_VERSION
        await link.send([m.build_initial_handshake(connection_id=conn_id, scramble=scramble, capabilities=caps,
                                                   server_version=version)], 0)
        packet = None
        with trio.move_on_after(self.handshake_timeout):
            packet = await link.receive()
        if packet is None:
            self.journal.record("cometql", "handshake_timeout_or_eof", conn_id=conn_id)
            return None
        reply = packet.reply_sequence_id
        if m.is_ssl_request(packet.payload):
            # the original parses the SSLRequest as a full response and fails on the auth length
            await self._refuse(link, reply, m.ERR_AUTH_BAD_LENGTH, conn_id, "ssl request")
            return None
        try:
            response = m.parse_handshake_response(packet.payload)
        except m.ProtocolError as exc:
            await self._refuse(link, reply, m.ERR_AUTH_BAD_LENGTH, conn_id, f"bad handshake response: {exc}")
            return None
        result = m.check_auth(response, scramble, self.password,
                              auth_switch=not self.profile.on(Quirk.COMETQL_NO_AUTH_SWITCH))
        if result is m.AuthResult.AUTH_SWITCH:
            scramble = m.generate_scramble(self.randbytes, nonzero=True)
            await link.send([m.build_auth_switch_request(scramble)], reply)
            switched = None
            with trio.move_on_after(self.handshake_timeout):
                switched = await link.receive()
            if switched is None:
                return None
            reply = switched.reply_sequence_id
            result = m.check_auth_switch_response(switched.payload, scramble, self.password)
        user = response.user
        if result is m.AuthResult.BAD_LENGTH:
            await self._refuse(link, reply, m.ERR_AUTH_BAD_LENGTH, conn_id, f"user={user!r}")
            return None
        if result is m.AuthResult.BAD_PASSWORD:
            await self._refuse(link, reply, m.ERR_AUTH_FAILURE, conn_id, f"user={user!r}")
            return None
        session = Session(dev_id=m.dev_id_from_username(response.username),
                          authenticated=result is m.AuthResult.AUTHENTICATED, conn_id=conn_id)
        database = response.database_name
        if session.authenticated and database and not select_database(session, database):
            await self._refuse(link, reply, m.ERR_SELECT_DB, conn_id, f"database={database!r}")
            return None
        self.journal.record("cometql", "connect", dev_id=session.dev_id, conn_id=conn_id,
                            data=f"user={user!r} authenticated={session.authenticated} db={database!r}")
        await link.send([m.build_ok_constant()], reply)
        link.scramble = scramble
        return session

    async def _refuse(self, link: _Link, seq: int, error: tuple[int, str], conn_id: int, why: str) -> None:
        self.journal.record("cometql", "auth_failed", conn_id=conn_id, data=f"{error[1]} ({why})")
        await link.send([m.build_err(*error)], seq)

    async def _commands(self, link: _Link, session: Session) -> None:
        journal = self.journal
        while True:
            packet = await link.receive()
            if packet is None:
                return
            seq = packet.reply_sequence_id
            if packet.sequence_id != 0:
                await link.send([m.build_err(1, "Got packets out of order")], seq)
                return
            command = m.parse_command(packet.payload)
            if isinstance(command, m.ComQuery):
                text = command.text
                if journal.enabled:
                    journal.record("cometql", "query", direction="in", dev_id=session.dev_id,
                                   conn_id=session.conn_id, data=text[:4096])
                if self.query_delay > 0:
                    await trio.sleep(self.query_delay)
                if self.prepare_members is not None and "conference_members" in text.lower():
                    await self.prepare_members()
                try:
                    result = self.executor.execute(session, text)
                except Exception:  # a bug in one statement must not end the session
                    log.exception("cometql: statement failed: %r", text[:200])
                    result = err(500, "internal server error")
                if journal.enabled:
                    journal.record("cometql", "answer", direction="out", dev_id=session.dev_id,
                                   conn_id=session.conn_id, data=_summary(result))
                await link.send(self._encode(result), seq if result.sequence_id is None else result.sequence_id)
                if result.close:
                    return
            elif isinstance(command, m.ComPing):
                await link.send([self.ok_packet(0, 0)], seq)
            elif isinstance(command, m.ComQuit):
                await link.send([self.ok_packet(0, 0)], seq)
            elif isinstance(command, m.ComInitDb):
                if select_database(session, command.database):
                    await link.send([self.ok_packet(0, 0)], seq)
                else:
                    await link.send([m.build_err(15, "Select database failure")], seq)
            elif command.command == m.COM_FIELD_LIST:
                await link.send([m.build_eof()], seq)
            elif command.command == m.COM_SET_OPTION:  # the one command whose answer really is EOF
                await link.send([m.build_eof()], seq)
            elif command.command == m.COM_RESET_CONNECTION:
                await link.send([self.ok_packet(0, 0)], seq)
            elif command.command == m.COM_STATISTICS:  # answered with a bare text string
                await link.send([self._statistics().encode()], seq)
            elif command.command == m.COM_CHANGE_USER:
                if not await self._change_user(link, session, command.data, seq):
                    return
            else:
                journal.record("cometql", "unsupported_command", conn_id=session.conn_id, data=hex(command.command))
                await link.send([m.build_err(2, f"Command 0x{command.command:02x} is not supported")], seq)

    def _statistics(self) -> str:
        hub = self.executor.hub
        uptime = int(trio.current_time() - self._started) if self._started is not None else 0
        return (f"Uptime: {uptime}  Threads: {len(self.sessions)}  Questions: {hub.stats['published']}  "
                f"Slow queries: 0  Opens: 0  Open tables: 0  Queries per second avg: 0.000")

    async def _change_user(self, link: _Link, session: Session, data: bytes, seq: int) -> bool:
        """COM_CHANGE_USER: authenticate again against the connection's scramble (spec 3 [REC]).

        A 20-byte native token is checked directly; anything else gets an AuthSwitchRequest when the
        profile allows it.  Success switches the dev_id (and database); failure is ERR 16 and a close.
        """
        try:
            user, pos = m._cstring(data, 0, "user")  # same packet layout as the handshake
            length = data[pos]
            token = data[pos + 1:pos + 1 + length]
            database, _ = m._cstring(data, pos + 1 + length, "database", to_end=True)
        except (m.ProtocolError, IndexError):
            await link.send([m.build_err(*m.ERR_AUTH_BAD_LENGTH)], seq)
            return False
        ok = len(token) == 20 and m.verify_native_password(link.scramble, token, self.password)
        if not ok and len(token) != 20 and not self.profile.on(Quirk.COMETQL_NO_AUTH_SWITCH):
            scramble = m.generate_scramble(self.randbytes, nonzero=True)
            await link.send([m.build_auth_switch_request(scramble)], seq)
            packet = await link.receive()
            if packet is None:
                return False
            seq = packet.reply_sequence_id
            ok = m.check_auth_switch_response(packet.payload, scramble, self.password) is m.AuthResult.AUTHENTICATED
            link.scramble = scramble
        if not ok:
            error = m.ERR_AUTH_FAILURE if len(token) == 20 else m.ERR_AUTH_BAD_LENGTH
            await link.send([m.build_err(*error)], seq)
            return False
        session.dev_id = m.dev_id_from_username(user)
        session.authenticated = True
        session.database = ""
        name = database.split(b"\0", 1)[0].decode("utf-8", "replace")
        if name and not select_database(session, name):
            await link.send([m.build_err(*m.ERR_SELECT_DB)], seq)
            return False
        self.journal.record("cometql", "change_user", dev_id=session.dev_id, conn_id=session.conn_id,
                            data=f"user={user!r}")
        await link.send([self.ok_packet(0, 0)], seq)
        return True

    def ok_packet(self, affected: int, insert_id: int) -> bytes:
        """The OK packet this server sends, in its profile's form (quirks ``cometql_lenenc_fd_bug``
        and ``cometql_ok_status_no_backslash_escapes``)."""
        fd_bug = self.profile.on(Quirk.COMETQL_LENENC_FD_BUG)
        if self.profile.on(Quirk.COMETQL_OK_STATUS_NO_BACKSLASH_ESCAPES):
            return m.build_ok(affected, insert_id, fd_bug=fd_bug)
        return m.build_ok(affected, insert_id, status=m.SERVER_STATUS_AUTOCOMMIT, info=b"", fd_bug=fd_bug)

    def _encode(self, result: Result) -> list[bytes]:
        if result.kind is ResultKind.ROWS:
            return m.build_result_set(result.columns, result.rows)
        if result.kind is ResultKind.OK:
            return [self.ok_packet(result.affected, result.insert_id)]
        if result.kind is ResultKind.OK_CONSTANT:
            return [m.build_ok_constant()]
        return [m.build_err(result.code, result.message)]


def _summary(result: Result) -> str:
    if result.kind is ResultKind.ROWS:
        return f"rows {len(result.rows)} {result.columns}"
    if result.kind is ResultKind.ERR:
        return f"err {result.code} {result.message}"
    return f"{result.kind} {result.affected} {result.insert_id}"


class _Link:
    """A stream plus the packet reader: receive whole packets, send framed ones."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.reader = m.PacketReader(max_payload=MAX_PACKET)
        self.seq: int | None = None
        self.scramble = b""

    async def receive(self) -> m.Packet | None:
        while True:
            packet = self.reader.next_packet()
            if packet is not None:
                self.seq = packet.reply_sequence_id
                return packet
            data = await self.stream.receive_some(65536)
            if not data:
                self.reader.feed_eof()
                return None
            self.reader.feed(data)

    async def send(self, payloads: list[bytes], first_sequence_id: int) -> None:
        await self.stream.send_all(m.frame_packets(payloads, first_sequence_id))
