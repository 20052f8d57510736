"""The comet hub: the emulated CppComet server state machine, free of I/O.

The hub owns tenants (one per dev_id), their connections, pipes, presence, personal-message queues
and pipe history.  Everything it does is synchronous: transports call :meth:`Hub.connect`,
:meth:`Hub.command` and :meth:`Hub.disconnect`; the backend API (used by CometQL, scenarios, the
control plane and tests) calls :meth:`Hub.publish`, :meth:`Hub.send_to_user` and friends.  Frames
leave through each :class:`Connection`'s ``deliver(text, wire)`` callback, which the transport
implements without blocking (a write that fits, else an enqueue); closing goes through ``drop``.
``wire`` is the frame's bytes on the wire (:func:`emulator.wire.comet.encode_server_frame`), built
once per fan-out and shared by every recipient: server frames are unmasked, so a publish to 1,000
subscribers costs one serialisation and one encoding, not 1,000.  Time comes from a
:class:`WallClock` built on trio's clock, so a MockClock drives it.

Tenancy: every lookup goes through ``self.tenant(dev_id)``; a connection only ever sees its own
tenant's pipes, users, queues and data.
"""

from __future__ import annotations

import itertools
import uuid as _uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulator.clock import WallClock
from emulator.comet import auth as _auth
from emulator.config import DEFAULT_PASSWORD
from emulator.journal import Journal
from emulator.profiles import Profile, Quirk
from emulator.state import StateStore
from emulator.wire import comet as w
from emulator.wire.cnum import stoi

QUEUE_EXPIRY = 120          # seconds a queued personal message lives
TRUST_EXPIRY = 120          # seconds trust_* history lives
HISTORY_MAX_LENGTH = 1000   # pipes_settings clamp
HISTORY_READ = 99           # messages returned per pipe_log / SELECT
USER_CONNECTIONS = 16       # connections per user reachable for personal messages


@dataclass(eq=False)
class Connection:
    """One browser WebSocket connection as the hub sees it."""

    id: int
    dev_id: int
    user_id: int                 # 0 when anonymous or not authorised
    authorized: bool
    uuid: str
    major: int
    #: ``deliver(text, wire)``: the frame's JSON text (what the journal records) and its bytes on
    #: the wire, or ``None`` for a frame over 65535 bytes, which is not sent (spec 1.3)
    deliver: Callable[[str, bytes | None], None]
    drop: Callable[[], None]
    ip: str = ""
    user_agent: str = ""
    origin: str = ""
    language: str = ""
    key: str = ""                # the credential the URL carried (hash or JWT)
    auth_method: str = ""
    pipes: list[str] = field(default_factory=list)
    open: bool = True
    #: False for a transport that needs only the text (the virtual network's message shortcut): its
    #: ``deliver`` is then always given ``wire=None`` and no frame bytes are built for it
    raw: bool = True



class Tenant:
    """Live state of one dev_id."""

    def __init__(self, dev_id: int) -> None:
        self.dev_id = dev_id
        self.pipes: dict[str, dict[int, Connection]] = {}
        self.users: dict[int, dict[int, Connection]] = {}  # authorised connections per user id
        self.messages = 0  # messages published / sent in this tenant (SHOW STATUS)

    def subscribers(self, pipe: str) -> list[Connection]:
        return list(self.pipes.get(pipe, {}).values())


class Hub:
    def __init__(self, store: StateStore, profile: Profile, *, password: str = DEFAULT_PASSWORD,
                 clock: WallClock | None = None, journal: Journal | None = None) -> None:
        self.store = store
        self.profile = profile
        self.password = password
        self.clock = clock or WallClock()
        self.journal = journal or Journal(enabled=False)
        self.tenants: dict[int, Tenant] = {}
        self.connections: dict[int, Connection] = {}
        self._ids = itertools.count(1)
        self.stats = {"connects": 0, "disconnects": 0, "frames_in": 0, "frames_out": 0, "published": 0}
        self._short_frames = profile.on(Quirk.SHORT_FRAME_TRUNCATION)
        self._escape = profile.on(Quirk.WEB_PIPE2_MYSQL_ESCAPE)
        self._count_long = profile.on(Quirk.WEB_ANSWER_COUNTS_LONG_FRAMES)
        self._handlers: dict[str, Callable[[Connection, str], None]] = {
            name: getattr(self, "_cmd_" + name) for name in w.COMMAND_PREFIXES}
        #: ids of history entries, queued messages and minted JWT hashes (a seeded one in virtual time)
        self.new_uuid: Callable[[], str] = lambda: str(_uuid.uuid1())

    # -- helpers ---------------------------------------------------------------------------------
    def tenant(self, dev_id: int) -> Tenant:
        t = self.tenants.get(dev_id)
        if t is None:
            t = self.tenants[dev_id] = Tenant(dev_id)
        return t

    def now(self) -> int:
        return self.clock.seconds()

    def next_id(self) -> int:
        return next(self._ids)

    def encode(self, frame: dict, major: int) -> str:
        """The exact text a client of this major version receives for ``frame``."""
        text = w.dumps(w.for_client_version(frame, major))
        if self._short_frames:
            text = w.short_frame_quirk(text)
        return text

    def _send(self, conn: Connection, frame: dict) -> None:
        if conn.open:  # skip the encoding for a closed connection
            text = self.encode(frame, conn.major)
            self._send_text(conn, text, w.encode_server_frame(text) if conn.raw else None)

    def _send_text(self, conn: Connection, text: str, wire: bytes | None) -> None:
        if not conn.open:
            return
        self.stats["frames_out"] += 1
        if self.journal.enabled:
            self.journal.record("comet", "frame", direction="out", dev_id=conn.dev_id, user_id=conn.user_id,
                                conn_id=conn.id, data=text)
        conn.deliver(text, wire)

    def _fan_out(self, conns: list[Connection], frame: dict,
                 cache: dict[bool, tuple[str, bytes | None]] | None = None) -> int:
        """Send one frame to many connections, serialising and encoding once per client major version.

        This loop is the delivery hot path (a publish to a pipe of 1,000 subscribers runs it 1,000
        times), so it does per connection only what must be per connection: the open check, the
        journal record and the ``deliver`` call.  ``cache`` (major >= 4 -> (text, wire)), when
        given, is filled with what was encoded, for a caller that needs it again.
        """
        if cache is None:
            cache = {}
        journal = self.journal if self.journal.enabled else None
        stats = self.stats
        n = 0
        for conn in conns:
            if not conn.open:
                continue
            new = conn.major >= 4
            encoded = cache.get(new)
            if encoded is None:
                encoded = cache[new] = (self.encode(frame, conn.major), _LAZY)
            text, wire = encoded
            if not conn.raw:
                wire = None
            elif wire is _LAZY:   # the bytes are built once, for the first subscriber that needs them
                wire = w.encode_server_frame(text)
                cache[new] = (text, wire)
            stats["frames_out"] += 1
            if journal is not None:
                journal.record("comet", "frame", direction="out", dev_id=conn.dev_id, user_id=conn.user_id,
                               conn_id=conn.id, data=text)
            conn.deliver(text, wire)
            n += 1
        return n

    # -- connection lifecycle ----------------------------------------------------------------------
    def connect(self, params: w.UrlParams, *, deliver: Callable[[str, bytes | None], None], drop: Callable[[], None],
                ip: str = "", user_agent: str = "", origin: str = "", language: str = "") -> Connection:
        """Authenticate a new connection and send what the server sends on connect (2.4)."""
        result = _auth.authenticate(self.store, self.password, params.dev_id, params.user_id,
                                    params.user_key, self.clock.now(), new_uuid=self.new_uuid)
        conn = Connection(self.next_id(), params.dev_id, params.user_id if result.authorized else 0,
                          result.authorized, params.uuid, params.major, deliver, drop, ip=ip,
                          user_agent=user_agent[:250], origin=origin[:250], language=language[:64],
                          key=params.user_key, auth_method=result.method)
        self.connections[conn.id] = conn
        self.stats["connects"] += 1
        if self.journal.enabled:
            self.journal.record("comet", "connect", dev_id=conn.dev_id, user_id=params.user_id, conn_id=conn.id,
                                data=f"auth={result.method} authorized={result.authorized} {result.reason}".strip())
        self._send(conn, w.server_info(result.authorized, result.key, self.now()))
        if not result.authorized:
            return conn
        tenant = self.tenant(conn.dev_id)
        first = not tenant.users.get(conn.user_id)
        tenant.users.setdefault(conn.user_id, {})[conn.id] = conn
        self._deliver_queue(conn)
        if first:
            self._fan_out(tenant.subscribers(f"user_status_{conn.user_id}"), w.user_status_event(conn.user_id, True))
        return conn

    def _deliver_queue(self, conn: Connection) -> None:
        if self.profile.on(Quirk.QUEUE_TEN_PER_LOGIN):
            queued = self.store.queued_messages(conn.dev_id, conn.user_id, limit=10)
            for m in queued:
                self._send(conn, w.queued_message(m["event"], m["message"], m["time"]))
            self.store.delete_queued(conn.dev_id, conn.user_id, older_than=self.now())
        else:
            queued = self.store.queued_messages(conn.dev_id, conn.user_id)
            for m in queued:
                self._send(conn, w.queued_message(m["event"], m["message"], m["time"]))
            self.store.delete_queued(conn.dev_id, conn.user_id, seqs=[m["seq"] for m in queued])

    def disconnect(self, conn: Connection, reason: str = "") -> None:
        """Forget a connection whose TCP connection has closed (2.5).  Idempotent."""
        if self.connections.pop(conn.id, None) is None:
            return
        conn.open = False
        self.stats["disconnects"] += 1
        if self.journal.enabled:
            self.journal.record("comet", "disconnect", dev_id=conn.dev_id, user_id=conn.user_id, conn_id=conn.id,
                                data=reason)
        tenant = self.tenant(conn.dev_id)
        if conn.authorized:
            mine = tenant.users.get(conn.user_id)
            if mine is not None:
                mine.pop(conn.id, None)
                if not mine:
                    del tenant.users[conn.user_id]
                    self.store.set_last_online(conn.dev_id, conn.user_id, self.now())
                    self._fan_out(tenant.subscribers(f"user_status_{conn.user_id}"),
                                  w.user_status_event(conn.user_id, False))
        self._leave_all(tenant, conn)

    def close_connection(self, conn: Connection, reason: str) -> None:
        """Server-initiated close: a silent TCP close (no message, no Close frame)."""
        if conn.open:
            conn.drop()
        self.disconnect(conn, reason)

    def _leave_all(self, tenant: Tenant, conn: Connection) -> None:
        old, conn.pipes = conn.pipes, []
        for pipe in old:
            members = tenant.pipes.get(pipe)
            if members is None:
                continue
            members.pop(conn.id, None)
            if not members:
                del tenant.pipes[pipe]
            elif pipe.startswith("track_"):
                self._fan_out(list(members.values()),
                              w.track_event(pipe, "unsubscription", conn.user_id, conn.uuid, self.now()))

    # -- commands ----------------------------------------------------------------------------------
    def command(self, conn: Connection, text: str) -> None:
        """Handle one client frame.  Unknown commands close the connection (3)."""
        if not conn.open:
            return
        self.stats["frames_in"] += 1
        if self.journal.enabled:
            self.journal.record("comet", "frame", direction="in", dev_id=conn.dev_id, user_id=conn.user_id,
                                conn_id=conn.id, data=text)
        if text.startswith("web_pipe2"):   # the heartbeat's command; no other prefix can match it
            self._cmd_web_pipe2(conn, text[10:])
            return
        cmd = w.parse_command(text)
        handler = self._handlers.get(cmd.name)
        if handler is None:
            self.close_connection(conn, "unknown command")
            return
        handler(conn, cmd.body)

    def _error(self, conn: Connection, data: dict) -> None:
        self._send(conn, w.sys_error(data, self.now()))

    def _cmd_subscription(self, conn: Connection, body: str) -> None:
        parsed = w.parse_subscription(body)
        if parsed.fatal_error:
            self._error(conn, {"code": "403", "error": parsed.fatal_error})
            self.close_connection(conn, parsed.fatal_error)
            return
        tenant = self.tenant(conn.dev_id)
        self._leave_all(tenant, conn)
        for name in parsed.names:
            if name.startswith("private_") and not conn.authorized:
                if self.profile.on(Quirk.PRIVATE_SUBSCRIPTION_BUG):
                    break
                continue
            members = tenant.pipes.setdefault(name, {})
            if conn.id in members:
                continue
            if name.startswith("track_") and members:
                self._fan_out(list(members.values()),
                              w.track_event(name, "subscription", conn.user_id, conn.uuid, self.now()))
            members[conn.id] = conn
            conn.pipes.append(name)
        if parsed.too_many:
            self._error(conn, {"code": "403", "error": "Too many letters"})

    def _cmd_web_pipe2(self, conn: Connection, body: str) -> None:
        msg = w.parse_web_pipe2(body)
        if msg.error is None and msg.pipe.startswith("webauth_") and not conn.authorized:
            msg.error = {"error": "[webauth_pipe_msg2] Invalid user auth. In to channel with name like webauth_* "
                                  "can not send messages anonim users", "number_messages": -1}
        if msg.error is not None:
            self._error(conn, msg.error)
            return
        sender = 0 if msg.anonymous else conn.user_id
        now = self.now()
        escaped = w.mysql_escape(msg.message) if self._escape else msg.message
        tenant = self.tenant(conn.dev_id)
        tenant.messages += 1
        members = tenant.pipes.get(msg.pipe)
        targets = [c for c in members.values() if c is not conn] if members else []
        frame = w.pipe_message(msg.pipe, msg.event, escaped, now, sender)
        encoded: dict[bool, tuple[str, bytes | None]] = {}
        if targets:   # clients of version 4: the text without the generic encoder (w.pipe_message_text)
            text = w.pipe_message_text(msg.pipe, msg.event, escaped, now, sender)
            encoded[True] = (w.short_frame_quirk(text) if self._short_frames else text, _LAZY)
        n = self._fan_out(targets, frame, encoded)
        if targets and self._count_long:
            # the real writer reports success (0) only on its long-frame path (>= 126 bytes); the
            # short-frame quirk keeps a frame's byte length, so the encoded text's length is the one
            long = {}
            for new in {c.major >= 4 for c in targets}:
                text = encoded[new][0] if new in encoded else w.dumps(w.for_client_version(frame, 4 if new else 3))
                long[new] = w.frame_length(text) >= 126
            n = sum(1 for c in targets if c.open and long[c.major >= 4])
        self._store_history(conn.dev_id, msg.pipe, msg.event, msg.message, sender, now)
        if conn.major >= 4 and conn.open:
            text = w.web_answer_text(msg.pipe, escaped, n, now)
            if self._short_frames:
                text = w.short_frame_quirk(text)
            self._send_text(conn, text, w.encode_server_frame(text) if conn.raw else None)
        else:
            self._send(conn, w.web_answer(msg.pipe, escaped, n, now))

    def _cmd_pipe_log(self, conn: Connection, body: str) -> None:
        pipe, marker = w.split_marker_args(body, 2)
        err = w.check_pipe_name(pipe)
        if err is not None:
            self._error(conn, err)
            self._error(conn, {"error": "Invalid channel name.", "number_messages": -1})
            return
        if not w.valid_marker(marker):
            self._error(conn, w.check_pipe_name(marker) or {"error": "Invalid pipe name length", "number_messages": -1})
            self._error(conn, {"error": "Invalid marker value.", "number_messages": -1})
            return
        for m in self.store.history(conn.dev_id, pipe, HISTORY_READ):
            self._send(conn, w.history_message(pipe, m["event"], m["message"], m["time"], m["user_id"]))

    def _cmd_pipe_count(self, conn: Connection, body: str) -> None:
        pipe, marker = w.split_marker_args(body, 2)
        for value in (pipe, marker):
            err = w.check_pipe_name(value)
            if err is not None:
                self._error(conn, err)
                self._error(conn, {"error": "Invalid pipe name.", "number_messages": -1})
                return
        if not (pipe.startswith("web_") or pipe.startswith("track_")):
            self._error(conn, {"error": "[pipe_count] Invalid channel name. The channel should start with web_",
                               "number_messages": -1})
            return
        count = len(self.tenant(conn.dev_id).pipes.get(pipe, {}))
        self._send(conn, w.pipe_count_answer(count, marker, self.now(),
                                             array_shape=self.profile.on(Quirk.PIPE_COUNT_ARRAY)))

    def _cmd_track_pipe_users(self, conn: Connection, body: str) -> None:
        words = body.split()
        pipe = words[0][:MAX_WORD] if words else ""
        marker = words[1][:MAX_WORD] if len(words) > 1 else ""
        if not pipe.startswith("track_"):
            self._send(conn, w.sys_error({"error": "[track_pipe_users] Invalid channel name. The channel should "
                                                   "start with track_", "user_id": -1}, self.now()))
            return
        # the real server's list prepends, so the newest subscriber comes first (reference capture: B, A)
        entries = [{"user_id": c.user_id, "uuid": c.uuid} for c in reversed(self.tenant(conn.dev_id).subscribers(pipe))]
        self._send(conn, w.track_users_answer(entries, marker, self.now()))

    def _cmd_user_data(self, conn: Connection, body: str) -> None:
        marker, user = w.split_marker_args(body, 2)
        err = w.check_pipe_name(marker)
        if err is not None:
            self._error(conn, err)
            self._error(conn, {"error": "Invalid marker name.", "user_data": "", "user_id": -1})
            return
        user_id = stoi(user)
        if user_id is None:
            self._error(conn, {"error": "Invalid user id", "user_data": "", "user_id": -1})
            return
        data = self.store.get_user_data(conn.dev_id, user_id) or ""
        self._send(conn, w.user_data_answer(user_id, data, marker, self.now()))

    def _cmd_user_status(self, conn: Connection, body: str) -> None:
        text = body.split("\n", 1)[0].strip()
        if not text.isdigit() or not text.isascii():
            return
        user_id = int(text[:18])
        last = self.users_time(conn.dev_id, [user_id])[0][1]
        now = self.now()
        if last == 0 and not self.profile.on(Quirk.USER_STATUS_ONLINE_EPOCH):
            seconds = 0
        else:
            seconds = now - last
        self._send(conn, w.user_status_answer(user_id, seconds, last, now))

    def _cmd_statistics(self, conn: Connection, body: str) -> None:
        pass

    def _cmd_cgi_call(self, conn: Connection, body: str) -> None:
        pass

    def _cmd_CometQL_call(self, conn: Connection, body: str) -> None:
        pass

    # -- history -----------------------------------------------------------------------------------
    def _store_history(self, dev_id: int, pipe: str, event: str, message: str, user_id: int, now: int) -> None:
        if pipe.startswith("trust_"):
            keep = HISTORY_MAX_LENGTH
        else:
            keep = self.store.pipe_log_length(dev_id, pipe) or 0
        if keep > 0:
            self.store.append_history(dev_id, pipe, self.new_uuid(), now, event or "undefined", message,
                                      user_id, keep)

    # -- backend API (CometQL, scenarios, control plane, tests) --------------------------------------
    def publish(self, dev_id: int, pipe: str, event: str, message: str) -> int:
        """``INSERT INTO pipes_messages``: deliver to every subscriber of the pipe; log if enabled.

        Returns the number of connections the frame was written to.
        """
        now = self.now()
        self.stats["published"] += 1
        if self.journal.enabled:
            self.journal.record("comet", "publish", dev_id=dev_id, data=f"{pipe} {event} {message}")
        tenant = self.tenant(dev_id)
        tenant.messages += 1
        n = self._fan_out(tenant.subscribers(pipe), w.pipe_message(pipe, event, message, now))
        self._store_history(dev_id, pipe, event, message, 0, now)
        return n

    def send_to_user(self, dev_id: int, user_id: int, event: str, message: str) -> bool:
        """``INSERT INTO users_messages``: deliver to the user's live connections, else queue.

        Returns True when delivered live.
        """
        tenant = self.tenant(dev_id)
        tenant.messages += 1
        conns = list(tenant.users.get(user_id, {}).values())[:USER_CONNECTIONS]
        if self.journal.enabled:
            self.journal.record("comet", "user_message", dev_id=dev_id, user_id=user_id,
                                data=f"{event} {message} live={bool(conns)}")
        if conns:
            self._fan_out(conns, w.personal_message(event, message))
            return True
        self.store.queue_message(dev_id, user_id, self.new_uuid(), self.now(), event, message)
        return False

    def push_to_user(self, dev_id: int, user_id: int, frame: dict) -> int:
        """Write an arbitrary frame (e.g. ``msg.sys_sipCall``) to every connection of a user."""
        conns = list(self.tenant(dev_id).users.get(user_id, {}).values())[:USER_CONNECTIONS]
        return self._fan_out(conns, frame)

    def user_connections(self, dev_id: int, user_id: int) -> list[Connection]:
        return list(self.tenant(dev_id).users.get(user_id, {}).values())

    def set_hash(self, dev_id: int, user_id: int, hash_: str) -> None:
        self.store.set_hash(dev_id, user_id, hash_)
        if self.journal.enabled:
            self.journal.record("comet", "set_hash", dev_id=dev_id, user_id=user_id)

    def get_hash(self, dev_id: int, user_id: int) -> str | None:
        return self.store.get_hash(dev_id, user_id)

    def delete_hash(self, dev_id: int, user_id: int) -> int:
        """Delete a user's hash and close all of that user's connections (2.6).  Returns closed count."""
        self.store.delete_hash(dev_id, user_id)
        if self.journal.enabled:
            self.journal.record("comet", "delete_hash", dev_id=dev_id, user_id=user_id)
        return self.kick_user(dev_id, user_id, "hash deleted")

    def kick_user(self, dev_id: int, user_id: int, reason: str) -> int:
        conns = self.user_connections(dev_id, user_id)
        for c in conns:
            self.close_connection(c, reason)
        return len(conns)

    def revoke_token(self, dev_id: int, token: str) -> int | None:
        """Blacklist a JWT; if it is valid, delete its user's hash and close that user's connections.

        Returns the user id it applied to, or None for a token that does not verify.
        """
        self.store.revoke_token(dev_id, token, self.now())
        claims = _auth.decode_jwt(token, self.password, dev_id, self.clock.now())
        if self.journal.enabled:
            self.journal.record("comet", "revoke_token", dev_id=dev_id, data=f"valid={claims is not None}")
        if claims is None:
            return None
        user_id = claims.get("user_id")
        if isinstance(user_id, bool) or not isinstance(user_id, int):
            return None
        self.store.delete_hash(dev_id, user_id)
        self.kick_user(dev_id, user_id, "token revoked")
        return user_id

    def set_user_data(self, dev_id: int, user_id: int, data: str) -> None:
        self.store.set_user_data(dev_id, user_id, data)

    def set_pipe_log_length(self, dev_id: int, pipe: str, length: int) -> None:
        self.store.set_pipe_log_length(dev_id, pipe, max(0, min(HISTORY_MAX_LENGTH, length)))

    def pipe_names(self, dev_id: int) -> list[str]:
        return sorted(self.tenant(dev_id).pipes)

    def pipe_users(self, dev_id: int, pipe: str) -> int:
        return len(self.tenant(dev_id).pipes.get(pipe, {}))

    def users_in_pipe(self, dev_id: int, pipe: str) -> list[Connection]:
        """Subscribers, newest first, as the real server lists them (reference-observations.md 2)."""
        return list(reversed(self.tenant(dev_id).subscribers(pipe)))

    def users_time(self, dev_id: int, user_ids: list[int]) -> list[tuple[int, int]]:
        """(id, 0 if online / unix time of last disconnect / -1 if unknown) per requested id."""
        tenant = self.tenant(dev_id)
        out = []
        for uid in user_ids:
            if tenant.users.get(uid):
                out.append((uid, 0))
            else:
                last = self.store.last_online(dev_id, uid)
                out.append((uid, -1 if last is None else last))
        return out

    def housekeeping(self) -> None:
        """The real server's periodic purge: queued messages and trust_* history older than 120 s."""
        now = self.now()
        self.store.purge_queue(now - QUEUE_EXPIRY)
        self.store.purge_history("trust_", now - TRUST_EXPIRY)

    def snapshot(self) -> dict:
        """A JSON-able view for the control plane and tests."""
        return {
            "connections": len(self.connections),
            "tenants": {
                str(t.dev_id): {"pipes": {p: len(m) for p, m in t.pipes.items()},
                                "users_online": sorted(t.users)}
                for t in self.tenants.values() if t.pipes or t.users
            },
            "stats": dict(self.stats),
        }


MAX_WORD = 64
_LAZY: Any = object()   # stands for frame bytes not built yet (in _fan_out's cache)
