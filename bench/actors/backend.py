"""The application actor: what the demo's auth.php and call.php do, plus the app-level call restore.

:class:`Backend` speaks CometQL (``bench/clients/cometql.py``) like the demo backend
(video-call-flow.md 2.1, 2.2, 6.4):

* :meth:`Backend.authorize` -- ``INSERT INTO users_auth (id, hash)``; the hash is the demo's
  ``PassForUser<id>`` or a seeded random 32-character one.  The same string is the browser's comet
  key and its SIP password.
* :meth:`Backend.invite` -- ``INSERT INTO conference (name, user_id, caller_id, message, profile)``
  (the demo invites every participant with caller_id = user_id).
* :meth:`Backend.leave` -- ``DELETE FROM conference WHERE name = .. AND user_id = ..``.
* :meth:`Backend.members` / :meth:`Backend.invitations` -- ``conference_members`` / ``conference``.

``room_name`` (identity by default) maps a room as a story names it to the room's name on the
deployment; every statement above applies it, and it must leave a mapped name as it is.  Against a
shared ``--target`` each call gets rooms of its own this way (bench/scenario/names.py).

``fresh_connection`` (default on) opens a new connection per request, logs in, runs the statement
and quits, as PHP's ``mysqli_connect`` per HTTP request does: that handshake is part of what stage L0
costs.  Off, one connection is kept and reused.

:class:`App` is the application as a whole: its backend plus what it believes about rooms (who the
app put in which room).  With ``restore=True`` it implements the recovery spec 6.2 and 6.4 tell
applications to write, which the real client needs because of its stale-call trap:

* on ``onCallEnd`` with a status other than ``hangup`` (and other than ``start_accept``: another of
  the user's own devices took the call, so the user *is* in the room), call ``hangup()`` to clear
  the stale call, then re-INSERT the user into the room and accept the new call at once;
* on page load (a new page after a refresh), re-INSERT the user into every room the app believes
  the user belongs to.

Without it (the default) a story shows what the bare client does.  :class:`App` drives a
participant (``bench/actors/participant.py``) through its public methods only.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from bench.clients.cometql import CometQLClient, OkResult, QueryResult, ResultSet
from emulator.config import DEFAULT_PASSWORD
from emulator.net.network import Network

if TYPE_CHECKING:  # pragma: no cover
    from bench.actors.participant import Participant

__all__ = ["Backend", "App", "sql_quote", "demo_hash"]

RESTORE_SKIPPED_STATUSES = ("hangup", "start_accept")


def sql_quote(value: Any) -> str:
    """A MySQL string literal (backslash and quote escaped)."""
    text = str(value)
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def demo_hash(user_id: int | str) -> str:
    """The demo page's key: ``"PassForUser" + user_id`` (video-call-flow.md 2.1)."""
    return f"PassForUser{user_id}"


class Backend:
    """auth.php + call.php: CometQL requests on behalf of one application (one dev_id)."""

    def __init__(self, network: Network, host: str, port: int, *, dev_id: int, password: str = DEFAULT_PASSWORD,
                 database: str = "CometQL_v1", name: str = "backend", fresh_connection: bool = True,
                 rng: random.Random | None = None, hash_style: str = "demo", timeout: float | None = 30.0) -> None:
        if hash_style not in ("demo", "random"):
            raise ValueError(f"hash_style must be 'demo' or 'random', not {hash_style!r}")
        self.network = network
        self.host = host
        self.port = port
        self.dev_id = dev_id
        self.password = password
        self.database = database
        self.name = name
        self.fresh_connection = fresh_connection
        self.rng = rng or random.Random(0)
        self.hash_style = hash_style
        self.timeout = timeout
        self.requests = 0
        self.room_name: Callable[[str], str] = str    # a story's room -> the deployment's (module docstring)
        self._client: CometQLClient | None = None
        self._lock = trio.Lock()

    # -- requests --------------------------------------------------------------------------------
    async def authorize(self, user_id: int, user_hash: str | None = None) -> str:
        """auth.php: store the user's hash; returns it."""
        if user_hash is None:
            user_hash = demo_hash(user_id) if self.hash_style == "demo" else "".join(
                self.rng.choice(string.ascii_letters + string.digits) for _ in range(32))
        await self.execute(f"INSERT INTO users_auth (id, hash) VALUES ({int(user_id)}, {sql_quote(user_hash)})")
        return user_hash

    async def invite(self, room: str, user_id: int, *, caller_id: int | None = None, message: str = "{}",
                     profile: str = "video", on_sent: Callable[[], Any] | None = None) -> QueryResult:
        """call.php: ``INSERT INTO conference`` (the comet server pushes sys_sipCall to the user)."""
        caller = user_id if caller_id is None else caller_id
        room = self.room_name(room)
        sql = (f"INSERT INTO conference (name, user_id, caller_id, message, profile) VALUES ({sql_quote(room)}, "
               f"{int(user_id)}, {int(caller)}, {sql_quote(message)}, {sql_quote(profile)})")
        return await self.execute(sql, on_sent=on_sent)

    async def leave(self, room: str, user_id: int) -> QueryResult:
        """A deliberate leave: the invitation row goes (nobody is hung up by it)."""
        room = self.room_name(room)
        return await self.execute(f"DELETE FROM conference WHERE name = {sql_quote(room)} AND user_id = {int(user_id)}")

    async def members(self, room: str) -> ResultSet:
        """``conference_members`` of a room: presence as FreeSWITCH sees it, ghosts included."""
        result = await self.execute(f"SELECT * FROM conference_members WHERE name = {sql_quote(self.room_name(room))}")
        assert isinstance(result, ResultSet)
        return result

    async def invitations(self, room: str) -> ResultSet:
        result = await self.execute(f"SELECT * FROM conference WHERE name = {sql_quote(self.room_name(room))}")
        assert isinstance(result, ResultSet)
        return result

    async def execute(self, sql: str, *, on_sent: Callable[[], Any] | None = None) -> QueryResult:
        """One request: a fresh connection (like PHP) or the kept one."""
        self.requests += 1
        if self.fresh_connection:
            client = await self._connect()
            try:
                return await client.query(sql, on_sent=on_sent)
            finally:
                await client.close()
        async with self._lock:
            if self._client is None or self._client.closed:
                self._client = await self._connect()
            return await self._client.query(sql, on_sent=on_sent)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _connect(self) -> CometQLClient:
        return await CometQLClient.connect(self.network, self.host, self.port, user=str(self.dev_id),
                                           password=self.password, database=self.database, client=self.name,
                                           timeout=self.timeout)


class App:
    """The application: a :class:`Backend` and the rooms it believes each user is in."""

    def __init__(self, backend: Backend, *, restore: bool = False) -> None:
        self.backend = backend
        self.restore = restore
        self.rooms: dict[int, dict[str, str]] = {}     # user id -> {room: profile}
        self.restores: list[tuple[float, int, str, str]] = []   # (time, user, room, why)

    def rooms_of(self, user_id: int) -> dict[str, str]:
        return dict(self.rooms.get(int(user_id), {}))

    async def authorize(self, user_id: int, user_hash: str | None = None) -> str:
        return await self.backend.authorize(user_id, user_hash)

    async def invite(self, room: str, user_id: int, *, profile: str = "video", message: str = "{}",
                     caller_id: int | None = None, on_sent: Callable[[], Any] | None = None) -> QueryResult:
        """Put the user in the room (the app's belief) and INSERT the invitation."""
        self.rooms.setdefault(int(user_id), {})[room] = profile
        return await self.backend.invite(room, user_id, caller_id=caller_id, message=message, profile=profile,
                                         on_sent=on_sent)

    async def leave(self, room: str, user_id: int) -> OkResult | ResultSet:
        self.rooms.get(int(user_id), {}).pop(room, None)
        return await self.backend.leave(room, user_id)

    # -- the app-level call restore (spec 6.2, 6.4) ------------------------------------------------
    def wants_restore_after(self, status: Any) -> bool:
        return self.restore and status not in RESTORE_SKIPPED_STATUSES

    def on_call_end(self, participant: Participant, room: str, status: Any) -> bool:
        """Run inside the page's onCallEnd.  With restore on and a status other than ``hangup`` /
        ``start_accept``: ``hangup()`` at once (clears the stale call, sends out); True when the app
        still believes the user is in ``room``, so a re-INSERT should follow (:meth:`rejoin`)."""
        if not self.wants_restore_after(status):
            return False
        participant.hangup()
        return room in self.rooms_of(participant.user_id)

    async def rejoin(self, participant: Participant, room: str, why: str) -> None:
        """Re-INSERT the user into ``room``; the page accepts the new call at once."""
        profile = self.rooms_of(participant.user_id).get(room)
        if profile is None:
            return
        self.restores.append((trio.current_time(), participant.user_id, room, why))
        await participant.join(room, profile=profile, restoring=True)

    async def restore_on_page_load(self, participant: Participant) -> None:
        """A new page: re-INSERT the user into every room the app believes the user is in."""
        if not self.restore:
            return
        for room in self.rooms_of(participant.user_id):
            await self.rejoin(participant, room, "page load")
