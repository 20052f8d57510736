"""CometQL statements executed against the comet hub: every virtual table, SHOW, SET, @@vars.

This is core code (no I/O): :meth:`Executor.execute` turns one COM_QUERY text into a
:class:`Result` — rows, an OK, or an ERR with the real server's code and text (spec cometql.md
sections 7-12).  The MySQL transport (``server.py``) encodes results into packets.

Table semantics follow the spec: the WHERE operator is ignored, the key column's values are an
exact list of keys in the order given, invalid keys are skipped silently, every value is text,
``LIMIT a, b`` means rows[b:a].  The two conference tables delegate to a :class:`ConferenceTables`
provider, which the FreeSWITCH side supplies; without one the server behaves like a CppComet with
no ``[sip] freeswitch`` configured.
"""

from __future__ import annotations

import dataclasses
import os
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Protocol

from emulator.comet.hub import HISTORY_READ, Hub
from emulator.profiles import Profile, Quirk, sql_options
from emulator.wire import cometql as q
from emulator.wire.cnum import c_int
from emulator.wire.comet import DEV_INDEX_SIZE, MAX_NAME, valid_name_chars
from emulator.wire.mysql import SERVER_VERSION

VERSION_COMMENT = SERVER_VERSION + "(comet-server.com, support@comet-server.com)"
DATABASE = "CometQL_v1"
QUEUE_READ = 10
HASH_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=+/_")


# --- results ---------------------------------------------------------------------------------------


class ResultKind(StrEnum):
    """What a statement answers: a result set, an OK, the constant OK of an empty statement, an ERR."""

    ROWS = "rows"
    OK = "ok"
    OK_CONSTANT = "ok_constant"
    ERR = "err"


@dataclass
class Result:
    kind: ResultKind
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    affected: int = 0
    insert_id: int = 0
    code: int = 0
    message: str = ""
    close: bool = False            # close the connection after sending
    sequence_id: int | None = None  # send with this sequence id instead of the right one (quirk)


def rows(columns: Sequence[str], data: Sequence[Sequence[object]]) -> Result:
    return Result(ResultKind.ROWS, list(columns), [["" if v is None else str(v) for v in row] for row in data])


def ok(affected: int = 0, insert_id: int = 0) -> Result:
    return Result(ResultKind.OK, affected=affected, insert_id=insert_id)


class SqlError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(code, message)
        self.code = code
        self.message = message


def err(code: int, message: str) -> Result:
    return Result(ResultKind.ERR, code=code, message=message)


E_ORDER_BY = (2, "Token ORDER BY is not yet implemented")
E_OR = (2, "Operator OR is not yet implemented")
E_NO_TABLE = (15, "Table doesn't exist")
E_NOT_COLUMN = (14, "Not a specific column")
E_COLUMNS_LIST = (14, "Error in columns list")
E_SELECT_KEY = (13, "Selection without transferring the requested values of the primary key is not supported")
E_DELETE_KEY = (13, "Deleting without transferring the requested values of the primary key is not supported")
E_DUP_SELECT = (13, "Each column in the select used only once")
E_DUP_WHERE = (13, "Each column in the conditions used only once")
E_DUP_INSERT = (13, "Each column in the insert used only once")
E_NAME_CHARS = (12, "The channel name can contain only the characters A-Za-z0-9_-")
E_NAME_LONG = (11, "Channel name is too long")
E_NAME_SHORT = (17, "Channel name is too short")
E_EVENT_LONG = (11, "Channel event_name is too long")
E_ID_NEGATIVE = (12, "The id field must be non-negative")
E_USER_ID_NEGATIVE = (12, "The user_id field must be non-negative")
E_SELECT_DB = (15, "Select database failure")
E_NO_FREESWITCH = (500, "field in ini file not set option `host` in section `sip`")


def required(column: str) -> SqlError:
    return SqlError(12, f"field `{column}` is required")


def read_only(table: str) -> SqlError:
    return SqlError(10, f"Table `{table}` is read only")


# --- sessions --------------------------------------------------------------------------------------


@dataclass
class Session:
    """One CometQL connection's state."""

    dev_id: int
    authenticated: bool = True
    database: str = ""          # "" until CometQL_v1 (or db_N) is selected
    conn_id: int = 0


def select_database(session: Session, name: str) -> bool:
    """COM_INIT_DB / handshake database rules (2.4).  Returns False for ERR 15."""
    if name == DATABASE:
        session.database = DATABASE
        return True
    if session.authenticated and name.startswith("db_") and name[3:].isdigit() and name[3:].isascii():
        dev = int(name[3:][:18])
        if 0 <= dev < DEV_INDEX_SIZE:
            session.dev_id = dev
            session.database = name
            return True
    return False


# --- conference provider (FreeSWITCH side) ------------------------------------------------------


class ConferenceTables(Protocol):
    """What the FreeSWITCH side provides for ``conference`` and ``conference_members``."""

    def insert_conference(self, dev_id: int, values: dict[str, str]) -> None: ...

    def select_conference(self, dev_id: int, names: list[str]) -> list[list[str]]: ...

    def delete_conference(self, dev_id: int, pairs: list[tuple[str, int | None]]) -> None: ...

    def select_members(self, dev_id: int, names: list[str] | None) -> list[list[str]]: ...


# --- table catalogue -------------------------------------------------------------------------------
#
# Each table owns what it does: ``select`` (the rows for the keys given; keys are None when the
# WHERE clause has no key and the table allows that), ``insert`` (the row's values by column) and
# ``delete`` (the WHERE clause's values by column).  The executor does what every table shares:
# names, columns, duplicate and OR checks, ORDER BY, LIMIT, the projection.


class Writes(Enum):
    """What INSERT and DELETE do with a table."""

    ALLOWED = "allowed"
    READ_ONLY = "read only"        # ERROR 10 Table `x` is read only
    NOT_READY = "not ready"        # ERROR 10 insert into / delete from `x` is not ready yet
    HIDDEN = "hidden"              # answered as if the table did not exist (profiler)


#: What a table's SELECT produces before LIMIT and the projection: rows of values.
Rows = Sequence[Sequence[object]]
Selector = Callable[["Executor", int, "list[q.Value] | None"], Rows]
Inserter = Callable[["Executor", int, "dict[str, q.Value]"], Result]
Deleter = Callable[["Executor", int, "dict[str, list[q.Value]]"], Result]


def _no_rows(ex: Executor, dev: int, keys: list[q.Value] | None) -> list[list[object]]:
    return []


def _refused(ex: Executor, dev: int, values: object) -> Result:  # pragma: no cover - never called
    raise AssertionError("a table whose writes are refused was written")


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    key: str | None              # column whose values select rows
    select: Selector = _no_rows
    insert: Inserter = _refused
    delete: Deleter = _refused
    key_optional: bool = False   # SELECT without the key is allowed
    writes: Writes = Writes.ALLOWED

    @property
    def read_only(self) -> bool:
        return self.writes is Writes.READ_ONLY

    def check_writable(self, verb: str) -> None:
        """Raise the real server's error for an INSERT (``verb`` "insert into") or DELETE ("delete
        from") this table refuses."""
        if self.writes is Writes.HIDDEN:
            raise SqlError(*E_NO_TABLE)
        if self.writes is Writes.NOT_READY:
            raise SqlError(10, f"{verb} `{self.name}` is not ready yet")
        if self.writes is Writes.READ_ONLY:
            raise read_only(self.name)

    def keys(self, where: dict[str, list[q.Value]]) -> list[q.Value]:
        """The key column's values of a DELETE's WHERE clause (ERROR 13 without them)."""
        if self.key is None or self.key not in where:
            raise SqlError(*E_SELECT_KEY)
        return where[self.key]


def _int_keys(values: list[q.Value], *, min_value: int) -> list[int]:
    out = []
    for v in values:
        n = c_int(v.to_int())
        if n >= min_value:
            out.append(n)
    return out


def _require(values: dict[str, q.Value], *columns: str) -> None:
    for column in columns:
        if column not in values:
            raise required(column)


# users_auth ------------------------------------------------------------------------------------------
def _select_users_auth(ex: Executor, dev: int, keys: list[q.Value] | None) -> list[list[object]]:
    out: list[list[object]] = []
    for uid in _int_keys(keys or [], min_value=1):
        h = ex.hub.store.get_hash(dev, uid)
        if h is not None:
            out.append([uid, h])
    return out


def _insert_users_auth(ex: Executor, dev: int, v: dict[str, q.Value]) -> Result:
    _require(v, "id", "hash")
    uid = c_int(v["id"].to_int())
    if uid <= 0:
        raise SqlError(*E_ID_NEGATIVE)
    hash_ = v["hash"].text
    if any(ch not in HASH_CHARS for ch in hash_):
        raise SqlError(12, "Contains an invalid characters in the string hash")
    if len(hash_.encode("utf-8", "surrogateescape")) > 32:
        raise SqlError(11, "Hash string is too long")
    ex.hub.set_hash(dev, uid, hash_)
    return ok(1, uid)


def _delete_users_auth(ex: Executor, dev: int, where: dict[str, list[q.Value]]) -> Result:
    for uid in _int_keys(TABLES["users_auth"].keys(where), min_value=1):
        ex.hub.delete_hash(dev, uid)
    return ok()


# users_data ------------------------------------------------------------------------------------------
def _select_users_data(ex: Executor, dev: int, keys: list[q.Value] | None) -> list[list[object]]:
    out: list[list[object]] = []
    for uid in _int_keys(keys or [], min_value=1):
        d = ex.hub.store.get_user_data(dev, uid)
        if d is not None:
            out.append([uid, d])
    return out


def _insert_users_data(ex: Executor, dev: int, v: dict[str, q.Value]) -> Result:
    _require(v, "id", "data")
    uid = c_int(v["id"].to_int())
    if uid <= 0:
        raise SqlError(*E_ID_NEGATIVE)
    ex.hub.set_user_data(dev, uid, v["data"].text)
    return ok(1, uid)


def _delete_users_data(ex: Executor, dev: int, where: dict[str, list[q.Value]]) -> Result:
    for uid in _int_keys(TABLES["users_data"].keys(where), min_value=1):
        ex.hub.store.delete_user_data(dev, uid)
    return ok()


# users_messages --------------------------------------------------------------------------------------
def _select_users_messages(ex: Executor, dev: int, keys: list[q.Value] | None) -> list[list[object]]:
    out: list[list[object]] = []
    for uid in _int_keys(keys or [], min_value=0):
        for m in ex.hub.store.queued_messages(dev, uid, limit=QUEUE_READ):
            out.append([uid, m["uuid"], m["event"], m["message"]])
    return out


def _insert_users_messages(ex: Executor, dev: int, v: dict[str, q.Value]) -> Result:
    _require(v, "id", "event", "message")
    uid = c_int(v["id"].to_int())
    if uid < 0:
        raise SqlError(*E_ID_NEGATIVE)
    event = v["event"].text
    check_event_for_insert(event)
    ex.hub.send_to_user(dev, uid, event, v["message"].text)
    return ok(0, uid)


def _delete_users_messages(ex: Executor, dev: int, where: dict[str, list[q.Value]]) -> Result:
    keys = TABLES["users_messages"].keys(where)
    same_second = ex.profile.on(Quirk.COMETQL_USERS_MESSAGES_DELETE_SAME_SECOND)
    for uid in _int_keys(keys, min_value=0):
        if same_second:
            ex.hub.store.delete_queued(dev, uid, older_than=ex.hub.now())
        else:
            ex.hub.store.delete_queued(dev, uid)
    return ok()


# users_time, pipes, users_in_pipes (read only) -------------------------------------------------------
def _select_users_time(ex: Executor, dev: int, keys: list[q.Value] | None) -> list[list[object]]:
    return [[uid, t] for uid, t in ex.hub.users_time(dev, _int_keys(keys or [], min_value=0))]


def _select_pipes(ex: Executor, dev: int, keys: list[q.Value] | None) -> list[list[object]]:
    return [[v.text, ex.hub.pipe_users(dev, v.text)] for v in keys or [] if valid_pipe(v.text)]


def _select_users_in_pipes(ex: Executor, dev: int, keys: list[q.Value] | None) -> list[list[object]]:
    out: list[list[object]] = []
    for v in keys or []:
        if valid_pipe(v.text):
            for c in ex.hub.users_in_pipe(dev, v.text):
                out.append([v.text, c.user_id, c.uuid, c.user_agent, c.ip, c.origin, c.language])
    return out


# pipes_messages --------------------------------------------------------------------------------------
def _select_pipes_messages(ex: Executor, dev: int, keys: list[q.Value] | None) -> list[list[object]]:
    out: list[list[object]] = []
    for v in keys or []:
        if not valid_pipe(v.text):
            continue
        for m in ex.hub.store.history(dev, v.text, HISTORY_READ):
            out.append([m["uuid"], m["time"], v.text, len(out), m["event"], m["message"], m["user_id"]])
    return out


def _insert_pipes_messages(ex: Executor, dev: int, v: dict[str, q.Value]) -> Result:
    _require(v, "name", "event", "message")
    name, event = v["name"].text, v["event"].text
    check_pipe_for_insert(name)
    check_event_for_insert(event)
    ex.hub.publish(dev, name, event, v["message"].text)
    return ok(0, 0)


def _delete_pipes_messages(ex: Executor, dev: int, where: dict[str, list[q.Value]]) -> Result:
    if "name" not in where and "id" not in where:   # by pipe name, or by message id
        raise SqlError(*E_SELECT_KEY)
    store = ex.hub.store
    for v in where.get("name", []):
        if valid_pipe(v.text):
            store.delete_history(dev, v.text)
    for v in where.get("id", []):
        if 3 <= len(v.text) <= MAX_NAME and valid_name_chars(v.text):
            store.delete_history(dev, uuid=v.text)
    return ok()


# pipes_settings --------------------------------------------------------------------------------------
def _select_pipes_settings(ex: Executor, dev: int, keys: list[q.Value] | None) -> list[list[object]]:
    out: list[list[object]] = []
    for v in keys or []:
        if valid_pipe(v.text):
            length = ex.hub.store.pipe_log_length(dev, v.text)
            if length is not None:
                out.append([v.text, length])
    return out


def _insert_pipes_settings(ex: Executor, dev: int, v: dict[str, q.Value]) -> Result:
    _require(v, "name")
    name = v["name"].text
    check_pipe_for_insert(name)
    length = c_int(v["length"].to_int()) if "length" in v else 0
    ex.hub.set_pipe_log_length(dev, name, length)
    return ok(1, 0)


def _delete_pipes_settings(ex: Executor, dev: int, where: dict[str, list[q.Value]]) -> Result:
    for v in TABLES["pipes_settings"].keys(where):
        if valid_pipe(v.text):
            ex.hub.store.delete_pipe_settings(dev, v.text)
    return ok()


# revoked_tokens --------------------------------------------------------------------------------------
def _select_revoked_tokens(ex: Executor, dev: int, keys: list[q.Value] | None) -> list[list[object]]:
    store = ex.hub.store
    if keys is None:
        return [[t] for t in store.revoked_tokens(dev)]
    return [[v.text] for v in keys if store.is_revoked(dev, v.text)]


def _insert_revoked_tokens(ex: Executor, dev: int, v: dict[str, q.Value]) -> Result:
    _require(v, "token")
    ex.hub.revoke_token(dev, v["token"].text)
    return ok(1, 1)


def _delete_revoked_tokens(ex: Executor, dev: int, where: dict[str, list[q.Value]]) -> Result:
    if "token" not in where:
        raise SqlError(*E_DELETE_KEY)
    for v in where["token"]:
        ex.hub.store.unrevoke_token(dev, v.text)
    return ok()


# conference, conference_members (the FreeSWITCH side's provider) ------------------------------------
def _select_conference(ex: Executor, dev: int, keys: list[q.Value] | None) -> Rows:
    names = [v.text for v in keys or [] if 1 <= len(v.text) <= MAX_NAME and valid_name_chars(v.text)]
    return ex.conference.select_conference(dev, names) if ex.conference else []


def _insert_conference(ex: Executor, dev: int, v: dict[str, q.Value]) -> Result:
    _require(v, "name", "user_id", "message")
    if c_int(v["user_id"].to_int()) < 0:
        raise SqlError(*E_USER_ID_NEGATIVE)
    if ex.conference is None:
        raise SqlError(*E_NO_FREESWITCH)
    ex.conference.insert_conference(dev, {k: val.text for k, val in v.items()})
    return ok(1, 0)


def _delete_conference(ex: Executor, dev: int, where: dict[str, list[q.Value]]) -> Result:
    keys = TABLES["conference"].keys(where)
    if ex.conference is not None:
        users = _int_keys(where.get("user_id", []), min_value=0)
        pairs: list[tuple[str, int | None]] = []
        for v in keys:
            if users:
                pairs.extend((v.text, u) for u in users)
            else:
                pairs.append((v.text, None))
        ex.conference.delete_conference(dev, pairs)
    return ok()


def _select_conference_members(ex: Executor, dev: int, keys: list[q.Value] | None) -> Rows:
    if ex.conference is None:
        return []
    names = None if keys is None else [v.text for v in keys]
    return ex.conference.select_members(dev, names)


TABLES: dict[str, Table] = {t.name: t for t in (
    Table("users_auth", ("id", "hash"), "id", _select_users_auth, _insert_users_auth, _delete_users_auth),
    Table("users_data", ("id", "data"), "id", _select_users_data, _insert_users_data, _delete_users_data),
    Table("users_messages", ("id", "index", "event", "message"), "id", _select_users_messages,
          _insert_users_messages, _delete_users_messages),
    Table("users_time", ("id", "time"), "id", _select_users_time, writes=Writes.READ_ONLY),
    Table("pipes_messages", ("id", "time", "name", "index", "event", "message", "user_id"), "name",
          _select_pipes_messages, _insert_pipes_messages, _delete_pipes_messages),
    Table("pipes", ("name", "users"), "name", _select_pipes, writes=Writes.READ_ONLY),
    Table("users_in_pipes", ("name", "user_id", "user_uuid", "user_agent", "ip", "origin", "language"), "name",
          _select_users_in_pipes, writes=Writes.READ_ONLY),
    Table("pipes_settings", ("name", "length"), "name", _select_pipes_settings, _insert_pipes_settings,
          _delete_pipes_settings),
    Table("revoked_tokens", ("token",), "token", _select_revoked_tokens, _insert_revoked_tokens,
          _delete_revoked_tokens, key_optional=True),
    Table("conference", ("name", "user_id", "caller_id", "message", "profile", "stream", "node"), "name",
          _select_conference, _insert_conference, _delete_conference),
    Table("conference_members", ("name", "user_id", "join_time", "last_talking"), "name",
          _select_conference_members, key_optional=True, writes=Writes.NOT_READY),
    Table("profiler", ("tag", "time", "calls"), None, key_optional=True, writes=Writes.HIDDEN),
)}
LISTED_TABLES = ("users_auth", "users_time", "users_messages", "pipes_messages", "users_in_pipes", "pipes",
                 "pipes_settings")
#: Tables the real server names in its dialect without serving them: every statement on them is
#: refused (SELECT and DELETE as no table; INSERT with its own text).
UNBUILT_TABLES = {"dialogs": "Table `dialogs` is not ready yet"}


def valid_text(text: str) -> str:
    """Text whose undecodable bytes (surrogate escapes) are U+FFFD, one per byte."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # lone surrogates that were not byte escapes
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def valid_pipe(name: str) -> bool:
    return 3 <= len(name) <= MAX_NAME and valid_name_chars(name)


def check_pipe_for_insert(name: str) -> None:
    if len(name) > MAX_NAME:
        raise SqlError(*E_NAME_LONG)
    if len(name) < 3:
        raise SqlError(*E_NAME_SHORT)
    if not valid_name_chars(name):
        raise SqlError(*E_NAME_CHARS)


def check_event_for_insert(event: str) -> None:
    if len(event) > MAX_NAME:
        raise SqlError(*E_EVENT_LONG)
    if not valid_name_chars(event):
        raise SqlError(*E_NAME_CHARS)


# --- the executor ----------------------------------------------------------------------------------


class Executor:
    def __init__(self, hub: Hub, profile: Profile, *, conference: ConferenceTables | None = None,
                 sessions_of: Callable[[int], int] = lambda dev_id: 0, started: float | None = None) -> None:
        self.hub = hub
        self.profile = profile
        self.options = sql_options(profile)
        self._parse_options = dataclasses.replace(self.options, skip_length_check=True)
        self.conference = conference
        self.sessions_of = sessions_of
        self.started = _time.monotonic() if started is None else started

    # -- entry point -------------------------------------------------------------------------------
    def execute(self, session: Session, text: str) -> Result:
        if not session.authenticated:
            return err(403, "Access denied")
        try:
            dev, text = q.split_cluster_prefix(text, DEV_INDEX_SIZE)
            if dev is not None:
                session.dev_id = dev
            if not self.options.keep_nul:
                text = text.split("\x00", 1)[0]
            if not self.options.skip_length_check:
                q.check_length(text)  # on the raw bytes, as the real server counts them
            # bytes that are not UTF-8 (lone surrogates from the decoder) become U+FFFD only now, so
            # everything downstream (SQLite, JSON frames, the journal) sees valid text
            statements = q.parse(valid_text(text), self._parse_options)
        except q.ParseError as exc:
            return err(exc.code, exc.message)
        if not statements:
            return Result(ResultKind.OK_CONSTANT)
        result = ok()
        for statement in statements:  # faithfully one (merged); split_multi_statements gives several
            try:
                result = self._dispatch(session, statement)
            except SqlError as exc:
                return err(exc.code, exc.message)
            if result.kind is ResultKind.ERR:
                return result
        return result

    def _dispatch(self, session: Session, st: q.Statement) -> Result:
        if isinstance(st, q.Select):
            return self._select(session, st)
        if isinstance(st, q.Insert):
            return self._insert(session, st)
        if isinstance(st, q.Delete):
            return self._delete(session, st)
        if isinstance(st, q.SelectVariable):
            return rows(list(st.names), [[VERSION_COMMENT] * len(st.names)])
        if isinstance(st, q.SelectDatabase):
            return rows(["DATABASE()"], [[DATABASE if session.database == DATABASE else ""]])
        if isinstance(st, q.ShowDatabases):
            return rows(["Database"], [[DATABASE]])
        if isinstance(st, q.ShowTables):
            return rows(["Tables"], [[t] for t in LISTED_TABLES])
        if isinstance(st, q.ShowTableStatus):
            return self._show_table_status()
        if isinstance(st, q.ShowProcesslist):
            return rows(["ServiceName", "id", "status", "count"],
                        [["cometql", "0", "M", str(sum(self.sessions_of(d) for d in self._devs()))],
                         ["ws", "0", "0", str(len(self.hub.connections))], ["freeswitch", "0", "0", "0"],
                         ["cometqlproxy", "0", "0", "0"]])
        if isinstance(st, q.ShowStatus):
            return self._show_status(session, st.flag)
        if isinstance(st, q.ShowColumns):
            if st.table != "users_auth":
                result = err(*E_NO_TABLE)
                if st.describe and self.profile.on(Quirk.COMETQL_DESCRIBE_BAD_SEQUENCE):
                    result.sequence_id = 9
                    result.close = True
                return result
            return rows(["Field", "Type", "Null", "Key", "Default", "Extra"],
                        [["id", "int(11)", "NO", "PRI", "", ""], ["hash", "varchar(32)", "NO", "", "", ""]])
        if isinstance(st, q.ShowVariables):
            if st.flag in ("FILESYSTEM", "RAM", "AVG", "UPTIME"):
                return rows(["Variable_name", "Value"], [])
            return rows(["Variable_name", "Value"], [["lower_case_table_names", "0"]])
        if isinstance(st, (q.Set, q.Transaction)):
            return ok()
        if isinstance(st, q.UseDatabase):
            return ok() if select_database(session, st.database) else err(*E_SELECT_DB)
        return err(*q.ERR_SYNTAX)  # pragma: no cover - every statement type is handled above

    def _devs(self) -> list[int]:
        return list(self.hub.tenants) or [0]

    # -- common checks -----------------------------------------------------------------------------
    def _table(self, name: str) -> Table:
        table = TABLES.get(name)
        if table is None:
            raise SqlError(*E_NO_TABLE)
        return table

    @staticmethod
    def _check_where(table: Table, where: Sequence[q.Condition]) -> dict[str, list[q.Value]]:
        seen: dict[str, list[q.Value]] = {}
        for cond in where:
            if cond.column not in table.columns:
                raise SqlError(*E_NOT_COLUMN)
            if cond.column in seen:
                raise SqlError(*E_DUP_WHERE)
            seen[cond.column] = list(cond.values)
        for cond in where:
            if cond.connector == "OR":
                raise SqlError(*E_OR)
        return seen

    # -- SELECT ------------------------------------------------------------------------------------
    def _select(self, session: Session, st: q.Select) -> Result:
        table = self._table(st.table)
        columns = list(table.columns) if st.columns is None else list(st.columns)
        for c in columns:
            if c not in table.columns:
                raise SqlError(*E_NOT_COLUMN)
        if len(set(columns)) != len(columns):
            raise SqlError(*E_DUP_SELECT)
        where = self._check_where(table, st.where)
        if st.order_by is not None:
            raise SqlError(*E_ORDER_BY)
        if table.key is not None and table.key not in where and not table.key_optional:
            raise SqlError(*E_SELECT_KEY)
        keys = where.get(table.key or "", None)
        data = table.select(self, session.dev_id, keys)
        if st.limit is not None:
            data = st.limit.apply(data)
        index = [table.columns.index(c) for c in columns]
        return rows(columns, [[row[i] for i in index] for row in data])

    # -- INSERT ------------------------------------------------------------------------------------
    def _insert(self, session: Session, st: q.Insert) -> Result:
        if st.table in UNBUILT_TABLES:
            raise SqlError(10, UNBUILT_TABLES[st.table])
        table = self._table(st.table)
        table.check_writable("insert into")
        if st.columns is None:
            if len(st.values) != len(table.columns):
                raise SqlError(*E_COLUMNS_LIST)
            names = list(table.columns)
        else:
            names = list(st.columns)
            for c in names:
                if c not in table.columns:
                    raise SqlError(*E_NOT_COLUMN)
            if len(set(names)) != len(names):
                raise SqlError(*E_DUP_INSERT)
            if len(names) != len(st.values):
                raise SqlError(*E_COLUMNS_LIST)
        return table.insert(self, session.dev_id, dict(zip(names, st.values, strict=True)))

    # -- DELETE ------------------------------------------------------------------------------------
    def _delete(self, session: Session, st: q.Delete) -> Result:
        table = self._table(st.table)
        table.check_writable("delete from")
        where = self._check_where(table, st.where)
        if st.order_by is not None:
            raise SqlError(*E_ORDER_BY)
        return table.delete(self, session.dev_id, where)

    # -- SHOW ... STATUS -----------------------------------------------------------------------------
    def _show_status(self, session: Session, flag: str | None) -> Result:
        hub = self.hub
        cols = ["Variable_name", "Value"]
        if flag in (None, "SESSION"):
            tenant = hub.tenants.get(session.dev_id)
            online = sum(1 for c in hub.connections.values() if c.dev_id == session.dev_id)
            return rows(cols, [["flag", "session"], ["id", session.dev_id], ["user_online", online],
                               ["server_online", self.sessions_of(session.dev_id)],
                               ["messages", tenant.messages if tenant else 0]])
        uptime = _time.monotonic() - self.started
        if flag == "GLOBAL":
            s = hub.stats
            data: list[list[object]] = [
                    ["flag", "global"], ["uptime", int(uptime)], ["uptime_in_hours", int(uptime // 3600)],
                    ["uptime_in_days", f"{uptime / 86400:.2f}"], ["frontend_name", "ws"],
                    ["backend_name", "cometql"], ["frontend_stat_interval", 0], ["backend_stat_interval", 0],
                    ["frontend_online", len(hub.connections)],
                    ["backend_online", sum(self.sessions_of(d) for d in self._devs())],
                    ["frontend_messages", s["frames_out"]], ["backend_messages", s["published"]],
                    ["frontend_add_client", s["connects"]], ["backend_add_client", 0],
                    ["frontend_delete_client", s["disconnects"]], ["backend_delete_client", 0]]
            data += [[f"{n}_ps", "0.00"] for n in ("frontend_messages", "backend_messages", "frontend_add_client",
                                                    "backend_add_client", "frontend_delete_client",
                                                    "backend_delete_client")]
            data.append(["network_events", f"{float(s['frames_in'] + s['frames_out']):f}"])
            return rows(cols, data)
        if flag == "FILESYSTEM":
            st = os.statvfs("/")
            size, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
            used = size - st.f_bfree * st.f_frsize
            return rows(cols, [["flag", "filesystem"], ["filesystem", "/"], ["size", f"{size >> 30}G"],
                               ["used", f"{used >> 30}G"], ["available", f"{free >> 30}G"],
                               ["use", f"{(100 * used // size) if size else 0}%"]])
        if flag == "RAM":
            data = []
            try:
                with open("/proc/meminfo") as f:
                    for line in list(f)[:34]:
                        key, _, value = line.partition(":")
                        data.append([key.strip(), value.split()[0] if value.split() else "0"])
            except OSError:
                pass
            return rows(cols, data)
        if flag == "AVG":
            try:
                a1, a5, a15 = os.getloadavg()
            except OSError:
                a1 = a5 = a15 = 0.0
            return rows(cols, [["load_avg_1", f"{a1:.2f}"], ["load_avg_2", f"{a5:.2f}"], ["load_avg_3", f"{a15:.2f}"],
                               ["running_processes", 1], ["total_processes", 1]])
        if flag == "UPTIME":
            return rows(cols, [["os_uptime", f"{uptime:f}"], ["os_idle", f"{0.0:f}"]])
        return rows(cols, [])

    @staticmethod
    def _show_table_status() -> Result:
        columns = ["Name", "Engine", "Version", "Row_format", "Rows", "Avg_row_length", "Data_length",
                   "Max_data_length", "Index_length", "Data_free", "Auto_increment", "Create_time", "Update_time",
                   "Check_time", "Collation", "Checksum", "Create_options", "Comment"]
        return rows(columns, [["users", "StarComet", "1", "Compact", "0", "0", "0", "0", "0", "0", "0", "0", "", "",
                               "utf8_general_ci", "", "", "Table with authorization data for users"]])
