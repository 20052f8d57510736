"""The ESL listener (FreeSWITCH mod_event_socket, inbound mode) over the network seam.

Per connection: ``auth/request``; ``auth <password>`` (a wrong one gets ``-ERR invalid`` and a
disconnect notice, as FreeSWITCH does); then ``api``, ``bgapi`` (Job-UUID, ``BACKGROUND_JOB``
event), ``event plain|json|xml ...``, ``nixevent``, ``noevents``, ``exit`` and a few accepted no-ops
(``log``, ``nolog``, ``filter``, ``linger``, ``nolinger``).  ``api`` commands go to the bridge
(``conference ...``) or are answered here (``status``, ``version``, ``uptime``, ``hostname``).

Events come from the bridge's subscriber callback into a bounded per-connection queue drained by
one writer task; a listener that stops reading is disconnected rather than allowed to hold memory.

Timeouts (``emulator/net/timeouts.py``): ``auth`` must succeed within ``auth_timeout`` seconds of
the connect (mod_event_socket reads the first command with a 25 s limit; here the limit holds until
``auth`` succeeds, so a client cannot keep an unauthenticated connection by sending other commands
slowly); after that, ``idle_timeout`` seconds without traffic either way close the connection
(FreeSWITCH has no such limit: the default 0 keeps it that way).  A timeout is journaled once
(``auth_timeout`` / ``idle_timeout``) and closes without a disconnect notice, as FreeSWITCH does.
Every other way a client leaves or misbehaves ends in one journal record and no log line.
"""

from __future__ import annotations

import itertools
import uuid as _uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from emulator.config import DEFAULT_ESL_PASSWORD
from emulator.freeswitch.events import Event
from emulator.journal import Journal
from emulator.net.network import Listener, Network, forget_traceback, is_peer_gone, quiet_close
from emulator.net.timeouts import ESL_AUTH_TIMEOUT, NEVER, ReadDeadline
from emulator.wire import esl as e

EVENT_QUEUE = 100000   # mod_event_socket's queue: events beyond it are dropped ...
MAX_LOST_EVENTS = 500  # ... and a listener that lost more than this is disconnected
FS_VERSION = "1.6.20"


@dataclass
class _ConnectionState:
    """One ESL connection's event subscription and how many events it lost."""

    unsubscribe: Callable[[], None] | None = None
    closing: bool = False
    lost: int = 0


class EslBridge(Protocol):
    """What the ESL listener needs of the node (:class:`emulator.freeswitch.conference.Bridge`)."""

    def api(self, command_line: str) -> str: ...

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]: ...

    def session_count(self) -> int: ...


class EslServer:
    def __init__(self, bridge: EslBridge, network: Network, journal: Journal, *, password: str = DEFAULT_ESL_PASSWORD,
                 clock: Callable[[], float] = trio.current_time, hostname: str = "cometbench",
                 auth_timeout: float = ESL_AUTH_TIMEOUT, idle_timeout: float = NEVER) -> None:
        self.bridge = bridge
        self.network = network
        self.journal = journal
        self.password = password
        self.auth_timeout = auth_timeout
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.hostname = hostname
        self.started = clock()
        self.listener: Listener | None = None
        self.connections = 0
        self._ids = itertools.count(1)
        self.new_uuid = lambda: str(_uuid.uuid4())   # Job-UUIDs of bgapi (a seeded one in virtual time)

    async def serve(self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        await self.network.listen_and_serve("esl", host, port, self.handle, on_listen=self._listening,
                                            task_status=task_status)

    def _listening(self, listener: Listener) -> None:
        self.listener = listener

    # -- api ---------------------------------------------------------------------------------------
    def api(self, command: str) -> str:
        word, _, rest = command.strip().partition(" ")
        word = word.lower()
        if word == "conference":
            return self.bridge.api(command.strip())
        if word == "status":
            up = int(self.clock() - self.started)
            days, rem = divmod(up, 86400)
            hours, rem = divmod(rem, 3600)
            minutes, seconds = divmod(rem, 60)
            sessions = self.bridge.session_count()
            return (f"UP 0 years, {days} days, {hours} hours, {minutes} minutes, {seconds} seconds, "
                    f"0 milliseconds, 0 microseconds\nFreeSWITCH (Version {FS_VERSION} cometbench) is ready\n"
                    f"{sessions} session(s) since startup\n{sessions} session(s) - peak {sessions}, last 5min "
                    f"{sessions} \n0 session(s) per Sec out of max 30, peak 0, last 5min 0 \n1000 session(s) max\n"
                    "min idle cpu 0.00/99.00\nCurrent Stack Size/Max 240K/8192K\n")
        if word == "version":
            return f"FreeSWITCH Version {FS_VERSION} (cometbench emulator)\n"
        if word == "uptime":
            return f"{int(self.clock() - self.started)}\n"
        if word == "hostname":
            return self.hostname
        return f"-ERR {word} Command not found!\n"

    # -- one connection ----------------------------------------------------------------------------
    async def handle(self, stream: trio.abc.Stream) -> None:
        conn_id = next(self._ids)
        self.connections += 1
        send, receive = trio.open_memory_channel[bytes | None](EVENT_QUEUE)
        sub = e.Subscription()
        state = _ConnectionState()
        deadline = ReadDeadline(start=self.auth_timeout)

        def push(data: bytes | None) -> None:
            try:
                send.send_nowait(data)
            except trio.WouldBlock:  # a listener that does not keep up: drop, then give up on it
                state.lost += 1
                if state.lost > MAX_LOST_EVENTS and not state.closing:
                    state.closing = True
                    self.journal.record("esl", "listener_dropped", conn_id=conn_id,
                                        data=f"lost {state.lost} events")
                    send.close()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass

        def on_event(event: Event) -> None:
            if sub.active and sub.matches(event.name, event.subclass):
                push(e.EVENT_FORMATS[sub.format](event.headers, event.body))

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, stream, receive, deadline)
                push(e.auth_request())
                try:
                    with deadline.scope:
                        await self._reader(stream, conn_id, sub, state, push, on_event, nursery, deadline)
                    if deadline.expired:
                        if deadline.expired == "start":
                            self.journal.record("esl", "auth_timeout", conn_id=conn_id)
                        else:
                            self.journal.record("esl", "idle_timeout", conn_id=conn_id)
                        nursery.cancel_scope.cancel()  # FreeSWITCH just closes: no notice
                finally:
                    if state.unsubscribe is not None:
                        state.unsubscribe()
                        state.unsubscribe = None
                    send.close()
        except Exception as exc:
            if not is_peer_gone(exc):
                raise
            forget_traceback(exc)
        finally:
            self.connections -= 1
            await quiet_close(stream)

    async def _writer(self, stream: trio.abc.Stream, receive: trio.MemoryReceiveChannel[bytes | None],
                      deadline: ReadDeadline) -> None:
        async for data in receive:
            if data is None:
                break
            try:
                await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
                break  # the listener went away; caught here so no exception group is made of it
            deadline.sent()
        await trio.aclose_forcefully(stream)

    async def _reader(self, stream: trio.abc.Stream, conn_id: int, sub: e.Subscription, state: _ConnectionState,
                      push: Callable[[bytes | None], None], on_event: Callable[[Event], None],
                      nursery: trio.Nursery, deadline: ReadDeadline) -> None:
        parser = e.CommandParser()
        authed = False
        while True:
            command = None
            try:
                command = parser.next_command()
            except e.EslError as exc:
                self.journal.record("esl", "bad_input", conn_id=conn_id, data=str(exc))
                push(e.disconnect_notice())
                push(None)
                return
            if command is None:
                try:
                    data = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
                    return
                if not data:
                    return
                try:
                    parser.feed(data)
                except e.EslError as exc:
                    self.journal.record("esl", "bad_input", conn_id=conn_id, data=str(exc))
                    push(e.disconnect_notice())
                    push(None)
                    return
                deadline.received(pending=parser.buffered > 0)
                continue
            if self.journal.enabled:
                self.journal.record("esl", "command", direction="in", conn_id=conn_id,
                                    data=command.line if not command.line.startswith("auth ") else "auth ***")
            word = command.word
            if not authed:
                if word == "auth":
                    if command.rest == self.password:
                        authed = True
                        deadline.settle(idle=self.idle_timeout)
                        push(e.command_reply("+OK accepted"))
                        continue
                    self.journal.record("esl", "auth_failed", conn_id=conn_id)
                    push(e.command_reply("-ERR invalid"))
                    push(e.disconnect_notice())
                    push(None)
                    return
                if word == "exit":
                    push(e.command_reply("+OK bye"))
                    push(e.disconnect_notice())
                    push(None)
                    return
                push(e.command_reply("-ERR command not found"))
                continue
            if word == "api":
                body = self.api(command.rest)
                push(e.api_response(body))
            elif word == "bgapi":
                job = self.new_uuid()
                push(e.command_reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)]))
                nursery.start_soon(self._background, command.rest, job, on_event)
            elif word == "event":
                parsed = e.parse_event_command(command.rest)
                if parsed is None:
                    push(e.command_reply("-ERR invalid format"))
                    continue
                sub.format = parsed[0]
                sub.add(parsed[1])
                if state.unsubscribe is None:
                    state.unsubscribe = self.bridge.subscribe(on_event)
                push(e.command_reply(f"+OK event listener enabled {sub.format}"))
            elif word == "nixevent":
                for word_ in command.rest.split():
                    sub.names.discard(word_.upper())
                    sub.subclasses.discard(word_)
                push(e.command_reply("+OK events nixed"))
            elif word == "noevents":
                sub.all, sub.names, sub.subclasses = False, set(), set()
                push(e.command_reply("+OK no longer listening for events"))
            elif word == "exit":
                push(e.command_reply("+OK bye"))
                push(e.disconnect_notice())
                push(None)
                return
            elif word in ("log", "nolog", "filter", "linger", "nolinger", "divert_events", "myevents"):
                push(e.command_reply("+OK"))
            else:
                push(e.command_reply("-ERR command not found"))

    async def _background(self, command: str, job: str, on_event: Callable[[Event], None]) -> None:
        await trio.lowlevel.checkpoint()
        body = self.api(command)
        word, _, arg = command.partition(" ")
        on_event(Event("BACKGROUND_JOB", "", [("Event-Name", "BACKGROUND_JOB"), ("Core-UUID", "cometbench"),
                                              ("Job-UUID", job), ("Job-Command", word), ("Job-Command-Arg", arg)],
                       body))
