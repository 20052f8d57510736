"""Property tests of CometQL: the Executor on random statements, and the server on random packets.

Executor (no I/O, both profiles):

* every call returns a :class:`Result` of kind rows / ok / ok_constant / err and never raises;
  rows are lists of ``str`` with one entry per column, error codes come from the catalogue
  (cometql.md 12), and what the transport would send (the MySQL packets) can be encoded;
* tenants never mix: whatever dev_id A runs, what dev_id B's SELECTs return (users_auth,
  users_data, users_messages, users_time, pipes_settings, pipes_messages, pipes, users_in_pipes,
  revoked_tokens, SHOW STATUS) stays the same, and B's WebSocket connections receive nothing and
  are not closed.

Statements come from a grammar strategy (SELECT / INSERT / DELETE / SHOW / SET / DESCRIBE / the
odd forms, catalogue tables plus junk, random column lists, WHERE with = < > LIKE IN AND OR, ORDER
BY, LIMIT, values with quotes, backslashes, unicode and undecodable bytes) and from fully random
text.

Server (VirtualNetwork, autojump clock): after a valid login, random byte packets (framed commands,
garbage, wrong sequence ids, hostile length headers) get OK / ERR / EOF / well-formed result sets or
a clean close; the listener survives and another logged-in connection still answers
``SHOW DATABASES``.
"""

from __future__ import annotations

import re
import struct

import jwt
import pytest
import trio
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from emulator.clock import ManualClock
from emulator.comet.hub import Hub
from emulator.cometql.tables import TABLES, Executor, Result, Session
from emulator.config import Config
from emulator.net.network import VirtualNetwork
from emulator.profiles import Quirk, get_profile
from emulator.stack import open_stack
from emulator.state import StateStore
from emulator.wire import mysql as m
from tests.conftest import FakeConn, url
from tests.fuzzing import fuzz_settings

pytestmark = pytest.mark.fuzz("cometql")

PROFILES = ("cppcomet-4.09", "lenient")
ERR_CODES = frozenset({2, 3, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 403, 500})
KINDS = frozenset({"rows", "ok", "ok_constant", "err"})
PASSWORD = "CometQLPassword"
EPOCH = 1_700_000_000
DEV_A, DEV_B = 1, 11  # "1" is a prefix of "11": keys built by string concatenation would collide


def _token(dev_id: int, user_id: int, exp: int = EPOCH + 10**6) -> str:
    return jwt.encode({"user_id": user_id, "exp": exp}, PASSWORD + str(dev_id), algorithm="HS256")


TOKENS = [_token(DEV_A, 1), _token(DEV_A, 2), _token(DEV_B, 1), _token(DEV_B, 2), _token(DEV_B, 3),
          _token(DEV_A, 1, exp=EPOCH - 5), "not.a.jwt"]

# =================================================================================================
# Grammar strategy
# =================================================================================================

JUNK_TABLES = ["dialogs", "Pipes", "USERS_AUTH", "pipe_messages", "dev_config", "log_query", "users", "x", "t" * 70,
               "select", "CometQL_v1"]
TABLE_NAMES = sorted(TABLES) * 6 + JUNK_TABLES  # mostly real tables, to get past ERR 15
ALL_COLUMNS = sorted({c for t in TABLES.values() for c in t.columns})
JUNK_COLUMNS = ["ID", "Name", "foo", "users_auth", "time_", "_", "x" * 70, "from"]
PIPES = ["web_a", "web_b", "track_a", "trust_x", "web_hist", "user_status_1", "user_status_2", "msg", "ab",
         "p" * 64, "q" * 65, "web a", "wéb_a", "web%", "web_a'", "-1"]
HASHES = ["hashA1", "hashB1", "a+b/c=_", "bad-hash", "h" * 32, "h" * 33, ""]
SPECIAL_TEXT = ["'", '"', "\\", "''", '""', "\\'", '\\"', "\\\\", "`", "%", "_", ";", "\n", "\t", "ä", "€", "😀",
                "\x00", "\udc80", "\udcff", "{\"a\":\"b\"}", "-- c", "/*", "*/", "@@x", "(", ")", ",", "="]
INTS = st.one_of(st.integers(-3, 12), st.sampled_from([0, 65535, 65536, 2**31 - 1, 2**31, 2**32 + 1, 2**63 - 1,
                                                       2**63, 2**64, 10**20, 10**40]))
KEYWORD_CASE = st.sampled_from([str.upper, str.lower, str.title, str.upper])
SEP = st.sampled_from([" "] * 40 + ["  ", "\n", "\t", "\r\n", ""])  # "" glues words: rare


_NAME_OR_INT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")


def _text() -> st.SearchStrategy[str]:
    pieces = st.one_of(st.sampled_from(SPECIAL_TEXT), st.text(max_size=6),
                       st.text(alphabet="abcxyz_-019 ", max_size=8))
    return st.lists(pieces, max_size=6).map("".join)


def _quote(content: str, q: str, mode: str) -> str:
    if mode == "doubled":
        content = content.replace(q, q + q)
    elif mode == "backslash":
        content = content.replace("\\", "\\\\").replace(q, "\\" + q)
    return q + content + q  # mode "raw": may well break the string


@st.composite
def value(draw) -> str:
    kind = draw(st.sampled_from(["int", "int", "int", "pipe", "pipe", "hash", "token", "text", "text", "name"]))
    if kind == "int":
        n = draw(INTS)
        text = str(n)
        if draw(st.integers(0, 3)) == 0:
            return _quote(text, draw(st.sampled_from("'\"`")), "raw")
        return text
    content = {
        "pipe": lambda: draw(st.sampled_from(PIPES)),
        "hash": lambda: draw(st.sampled_from(HASHES)),
        "token": lambda: draw(st.sampled_from(TOKENS)),
        "text": lambda: draw(_text()),
        "name": lambda: draw(st.sampled_from(["abc", "utf8", "undefined", "e1", "ev_1", "NAMES"])),
    }[kind]()
    if kind == "name" and draw(st.booleans()):
        return content
    q = draw(st.sampled_from(["'", "'", "'", '"', "`"]))
    if q == "`" and draw(st.integers(0, 7)) and not _NAME_OR_INT.fullmatch(content):
        q = "'"  # backticks only quote names and integers; keep that syntax error rare
    mode = draw(st.sampled_from(["doubled"] * 4 + ["backslash"] * 3 + ["raw"]))
    return _quote(content, q, mode)


REQUIRED = {"users_auth": ("id", "hash"), "users_data": ("id", "data"), "users_messages": ("id", "event", "message"),
            "pipes_messages": ("name", "event", "message"), "pipes_settings": ("name",), "revoked_tokens": ("token",),
            "conference": ("name", "user_id", "message")}
TYPED = {"id": "small_int", "user_id": "small_int", "caller_id": "small_int", "length": "small_int",
         "stream": "small_int", "name": "pipe", "event": "event", "hash": "hash", "token": "token",
         "message": "text", "data": "text", "profile": "event"}
EVENTS = ["e1", "ev_1", "", "undefined", "user_status_x", "e" * 65, "bad event", "évent"]


@st.composite
def typed_value(draw, col: str) -> str:
    """Mostly a value of the right shape for the column (to get past the checks), else any value."""
    kind = TYPED.get(col)
    if kind is None or draw(st.integers(0, 4)) == 0:
        return draw(value())
    if kind == "small_int":
        n = draw(st.sampled_from([1, 2, 3, 5, 7, 0, -1]))
        return str(n) if draw(st.integers(0, 3)) else f"'{n}'"
    content = draw(st.sampled_from({"pipe": PIPES, "event": EVENTS, "hash": HASHES, "token": TOKENS}[kind])) \
        if kind != "text" else draw(_text())
    return _quote(content, draw(st.sampled_from(["'", "'", '"'])), draw(st.sampled_from(["doubled", "backslash"])))


@st.composite
def column(draw, table: str) -> str:
    own = TABLES[table].columns if table in TABLES else ()
    if own and draw(st.integers(0, 11)):
        name = draw(st.sampled_from(own))
    else:
        name = draw(st.sampled_from(ALL_COLUMNS + JUNK_COLUMNS))
    if draw(st.integers(0, 5)) == 0:
        name = draw(st.sampled_from("'\"`")).join(("", name, ""))
    return name


def _kw(draw, word: str) -> str:
    return draw(KEYWORD_CASE)(word)


@st.composite
def where(draw, table: str) -> list[str]:
    out = [_kw(draw, "WHERE")]
    n = draw(st.sampled_from([1, 1, 1, 2, 2, 3, 11]))
    for i in range(n):
        if i:
            out.append(_kw(draw, draw(st.sampled_from(["AND", "AND", "AND", "OR"]))))
        key = TABLES[table].key if table in TABLES else None
        out.append(key if i == 0 and key and draw(st.integers(0, 3)) else draw(column(table)))
        op = draw(st.sampled_from(["="] * 4 + ["IN"] * 4 + [">", "<", "LIKE", "LIKE", "!=", ">="]))
        if op == "IN":
            many = draw(st.integers(0, 30)) == 0
            values = draw(st.lists(value(), min_size=1, max_size=6)) if not many else ["1"] * 4001
            out += [_kw(draw, "IN"), "(", ", ".join(values), ")"]
        else:
            out += [_kw(draw, op) if op == "LIKE" else op, draw(typed_value(out[-1].strip("'\"`")))]
    return out


@st.composite
def order_limit(draw, table: str) -> list[str]:
    out = []
    if draw(st.integers(0, 6)) == 0:
        out += [_kw(draw, "ORDER BY"), draw(column(table))]
        out += draw(st.sampled_from([[], ["ASC"], ["DESC"]]))
    if draw(st.integers(0, 3)) == 0:
        out += [_kw(draw, "LIMIT"), str(draw(INTS).__abs__())]
        if draw(st.booleans()):
            out += [",", str(draw(INTS).__abs__())]
    return out


@st.composite
def select(draw) -> list[str]:
    table = draw(st.sampled_from(TABLE_NAMES))
    if draw(st.integers(0, 2)) == 0:
        cols = ["*"]
    else:
        n = draw(st.sampled_from([1, 1, 2, 3, 4, 21]))
        cols = [", ".join(draw(column(table)) for _ in range(n))]
    out = [_kw(draw, "SELECT"), *cols, _kw(draw, "FROM"), table]
    if draw(st.integers(0, 5)):
        out += draw(where(table))
    return out + draw(order_limit(table))


@st.composite
def insert(draw) -> list[str]:
    table = draw(st.sampled_from(TABLE_NAMES))
    own = list(TABLES[table].columns) if table in TABLES else ["id", "name"]
    form = draw(st.integers(0, 9))
    if form == 0:
        cols = None
        n = draw(st.sampled_from([len(own), len(own), 1, 21]))
        values = [draw(typed_value(own[i])) if i < len(own) else draw(value()) for i in range(n)]
    else:
        if form <= 5 and table in REQUIRED:  # the required columns plus some others, in any order
            extra = draw(st.lists(st.sampled_from(own), max_size=3, unique=True))
            cols = draw(st.permutations(list(dict.fromkeys(list(REQUIRED[table]) + extra))))
        else:
            cols = draw(st.lists(st.sampled_from(own), min_size=1, max_size=len(own), unique=True))
        if draw(st.integers(0, 7)) == 0:
            cols += draw(st.lists(column(table), min_size=1, max_size=3))
        if draw(st.integers(0, 9)):
            values = [draw(typed_value(c)) for c in cols]
        else:
            values = [draw(value()) for _ in range(draw(st.integers(1, 5)))]
    out = [_kw(draw, "INSERT"), _kw(draw, "INTO"), table]
    if cols is not None:
        out += ["(", ", ".join(cols), ")"]
    return out + [_kw(draw, "VALUES"), "(", ", ".join(values), ")"]


@st.composite
def delete(draw) -> list[str]:
    table = draw(st.sampled_from(TABLE_NAMES))
    out = [_kw(draw, "DELETE"), _kw(draw, "FROM"), table]
    if draw(st.integers(0, 5)):
        out += draw(where(table))
    return out + draw(order_limit(table))


FIXED = [
    "SHOW DATABASES", "SHOW TABLES", "SHOW TABLE STATUS", "SHOW TABLE  STATUS", "SHOW PROCESSLIST", "SHOW STATUS",
    "SHOW GLOBAL STATUS", "SHOW SESSION STATUS", "SHOW FILESYSTEM STATUS", "SHOW RAM STATUS", "SHOW AVG STATUS",
    "SHOW UPTIME STATUS", "SHOW VARIABLES LIKE 'lower_case%'", "SHOW GLOBAL VARIABLES LIKE 'x%'",
    "SHOW RAM VARIABLES LIKE '%'", "SHOW VARIABLES LIKE 'lower_case_table_names'", "SHOW VARIABLES",
    "SHOW WARNINGS", "SHOW CREATE TABLE pipes", "SELECT @@version_comment LIMIT 1", "SELECT @@version",
    "SELECT @@session.auto_increment_increment", "SELECT @@a, @@b", "SELECT @@x LIMIT 2, 1", "SELECT DATABASE()",
    "SELECT 1", "SELECT NOW()", "SELECT COUNT(*) FROM pipes", "SET NAMES utf8", "set names 'utf8mb4'",
    "SET AUTOCOMMIT = 0", "SET autocommit=1", "SET @@session.x 1", "SET a b c", "SET x=1",
    "SET NAMES utf8mb4 COLLATE utf8mb4_general_ci", "SET CHARACTER SET utf8", "COMMIT", "ROLLBACK", "BEGIN",
    "START TRANSACTION", "USE CometQL_v1", "UPDATE pipes SET users = 1", "DESC users_auth", "....", "", "ab",
    "abc;", ";;;;", "  ;  ", "'''", "\x00SELECT * FROM pipes WHERE name = 'web_a'",
]


@st.composite
def show_describe(draw) -> list[str]:
    table = draw(st.sampled_from(TABLE_NAMES))
    form = draw(st.sampled_from(["describe", "columns", "full", "in"]))
    if form == "describe":
        return [_kw(draw, "DESCRIBE"), table]
    return [_kw(draw, "SHOW"), *(["FULL"] if form == "full" else []), _kw(draw, "COLUMNS"),
            "IN" if form == "in" else "FROM", table]


@st.composite
def grammar_statement(draw) -> str:
    tokens = draw(st.one_of(select(), select(), insert(), insert(), delete(), show_describe(),
                            st.sampled_from(FIXED).map(lambda s: [s])))
    text = tokens[0]
    for tok in tokens[1:]:
        text += draw(SEP) + tok
    return text + draw(st.sampled_from([""] * 12 + [";", ";", " ;", "; ", "'", " -- comment"]))


@st.composite
def statement(draw, *, cluster: bool = True) -> str:
    """A whole COM_QUERY text: one statement, several, or random text."""
    kind = draw(st.integers(0, 12))
    if kind <= 8:
        text = draw(grammar_statement())
    elif kind <= 10:
        text = "; ".join(draw(st.lists(grammar_statement(), min_size=2, max_size=3)))
    elif kind == 11:
        text = draw(st.one_of(st.text(max_size=120),
                              st.binary(max_size=120).map(lambda b: b.decode("utf-8", "surrogateescape")),
                              st.sampled_from(["x" * 8999, "x" * 9000, "SELECT * FROM pipes WHERE name IN ("
                                               + ",".join(["'web_a'"] * 1200) + ")"])))
    else:
        words = ["SELECT", "INSERT", "INTO", "VALUES", "FROM", "WHERE", "IN", "(", ")", ",", "=", "*", "'", '"',
                 "`", "@@v", "LIMIT", "1", "users_auth", "pipes", "id", "name", "AND", "OR", "SHOW", "SET",
                 "DELETE", "ORDER BY", "TABLE STATUS", "DATABASE", "STATUS", "LIKE"]
        text = " ".join(draw(st.lists(st.sampled_from(words), min_size=1, max_size=14)))
    if cluster and draw(st.integers(0, 15)) == 0:
        dev = draw(st.sampled_from(["1", "11", "0", "007", "99999", "100000", "-1", "x", "1234567890", ""]))
        text = f"cometqlcluster_v1 set dev_id={dev};" + draw(st.sampled_from([" ", ""])) + text
    return text


SHARED_IDS = ["0", "1", "2", "3", "5", "7", "'1'", "99"]
SHARED_PIPES = ["web_a", "web_b", "web_hist", "track_a", "trust_x", "user_status_1", "user_status_2"]
SHARED_TOKENS = TOKENS + [f"junk-token-{DEV_A}", f"junk-token-{DEV_B}", _token(DEV_A, 3), _token(DEV_B, 3)]


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@st.composite
def mutation(draw) -> str:
    """A well-formed write on keys that every tenant uses (so a leak would show in the other one)."""
    ids = st.sampled_from(SHARED_IDS)
    pipe = st.sampled_from(SHARED_PIPES).map(_q)
    event = st.sampled_from(["e1", "ev_2", ""]).map(_q)
    text = _text().map(_q)
    token = st.sampled_from(SHARED_TOKENS).map(_q)
    id_list = st.lists(ids, min_size=1, max_size=4).map(", ".join)
    pipe_list = st.lists(pipe, min_size=1, max_size=4).map(", ".join)
    forms = [
        st.builds("INSERT INTO users_auth (id, hash) VALUES ({}, {})".format, ids,
                  st.sampled_from(["'hashX'", "'hash11_1'", "''"])),
        st.builds("INSERT INTO users_data (id, data) VALUES ({}, {})".format, ids, text),
        st.builds("INSERT INTO users_messages (id, event, message) VALUES ({}, {}, {})".format, ids, event, text),
        st.builds("INSERT INTO pipes_messages (name, event, message) VALUES ({}, {}, {})".format, pipe, event,
                  text),
        st.builds("INSERT INTO pipes_settings (name, length) VALUES ({}, {})".format, pipe,
                  st.sampled_from(["0", "1", "3", "2000"])),
        st.builds("INSERT INTO revoked_tokens (token) VALUES ({})".format, token),
        st.builds("INSERT INTO conference (name, user_id, message) VALUES ({}, {}, 'm')".format, pipe, ids),
        st.builds("DELETE FROM users_auth WHERE id IN ({})".format, id_list),
        st.builds("DELETE FROM users_data WHERE id IN ({})".format, id_list),
        st.builds("DELETE FROM users_messages WHERE id IN ({})".format, id_list),
        st.builds("DELETE FROM pipes_messages WHERE name IN ({})".format, pipe_list),
        st.builds("DELETE FROM pipes_settings WHERE name IN ({})".format, pipe_list),
        st.builds("DELETE FROM revoked_tokens WHERE token IN ({})".format,
                  st.lists(token, min_size=1, max_size=3).map(", ".join)),
        st.builds("SELECT * FROM pipes_messages WHERE name IN ({})".format, pipe_list),
        st.builds("SELECT * FROM users_in_pipes WHERE name IN ({})".format, pipe_list),
    ]
    return draw(st.one_of(forms))


# =================================================================================================
# Checks
# =================================================================================================


def check_result(result: object, profile_name: str) -> None:
    assert isinstance(result, Result), result
    assert result.kind in KINDS, result
    if result.kind == "rows":
        assert result.columns and all(isinstance(c, str) for c in result.columns), result
        for row in result.rows:
            assert isinstance(row, list) and len(row) == len(result.columns), (result.columns, row)
            assert all(isinstance(v, str) for v in row), row
        m.build_result_set(result.columns, result.rows)  # the transport can encode it
    elif result.kind == "err":
        assert result.code in ERR_CODES, result
        assert isinstance(result.message, str) and result.message, result
        m.build_err(result.code, result.message)
    elif result.kind == "ok":
        fd_bug = get_profile(profile_name).on(Quirk.COMETQL_LENENC_FD_BUG)
        m.build_ok(result.affected, result.insert_id, fd_bug=fd_bug)  # ValueError if not encodable


def make_executor(profile_name: str) -> tuple[Hub, Executor]:
    hub = Hub(StateStore(), get_profile(profile_name), clock=ManualClock(EPOCH))
    return hub, Executor(hub, hub.profile, sessions_of=lambda dev: 1)


SEED = [
    "INSERT INTO users_auth (id, hash) VALUES (1, 'hash{d}_1')",
    "INSERT INTO users_auth (id, hash) VALUES (2, 'hash{d}_2')",
    "INSERT INTO users_auth (id, hash) VALUES (5, 'hash{d}_5')",
    "INSERT INTO users_data (id, data) VALUES (1, 'data of {d}')",
    "INSERT INTO users_data (id, data) VALUES (5, '{{\"x\":{d}}}')",
    "INSERT INTO pipes_settings (name, length) VALUES ('web_a', 5)",
    "INSERT INTO pipes_settings (name, length) VALUES ('web_hist', 10)",
    "INSERT INTO pipes_messages (name, event, message) VALUES ('web_a', 'e1', 'first {d}')",
    "INSERT INTO pipes_messages (name, event, message) VALUES ('web_hist', 'e2', 'second {d}')",
    "INSERT INTO pipes_messages (name, event, message) VALUES ('trust_x', 'e3', 'trusted {d}')",
    "INSERT INTO users_messages (id, event, message) VALUES (7, 'ev', 'queued for 7 in {d}')",
    "INSERT INTO users_messages (id, event, message) VALUES (0, 'ev', 'queued for 0 in {d}')",
    "INSERT INTO revoked_tokens (token) VALUES ('{token3}')",
    "INSERT INTO revoked_tokens (token) VALUES ('junk-token-{d}')",
]
KEY_IDS = "0, 1, 2, 3, 5, 7, 99"
KEY_PIPES = ", ".join(f"'{p}'" for p in ("web_a", "web_b", "web_hist", "track_a", "trust_x", "user_status_1",
                                         "user_status_2"))
SNAPSHOT = [
    f"SELECT * FROM users_auth WHERE id IN ({KEY_IDS})",
    f"SELECT * FROM users_data WHERE id IN ({KEY_IDS})",
    f"SELECT * FROM users_messages WHERE id IN ({KEY_IDS})",
    f"SELECT * FROM users_time WHERE id IN ({KEY_IDS})",
    f"SELECT * FROM pipes_settings WHERE name IN ({KEY_PIPES})",
    f"SELECT * FROM pipes_messages WHERE name IN ({KEY_PIPES})",
    f"SELECT * FROM pipes WHERE name IN ({KEY_PIPES})",
    f"SELECT * FROM users_in_pipes WHERE name IN ({KEY_PIPES})",
    "SELECT * FROM revoked_tokens",
    "SHOW STATUS",
]


def seed_tenant(hub: Hub, executor: Executor, dev: int) -> list[FakeConn]:
    """State and live connections for one tenant; the same user ids and pipes in every tenant."""
    session = Session(dev_id=dev, database="CometQL_v1")
    for sql in SEED:
        result = executor.execute(session, sql.format(d=dev, token3=_token(dev, 3)))
        assert result.kind == "ok", (sql, result)
    conns = [
        FakeConn(hub, url(f"hash{dev}_1", 1, dev, uuid="a" * 32)),
        FakeConn(hub, url(_token(dev, 2), 2, dev, uuid="b" * 32)),
        FakeConn(hub, url("undefined", "undefined", dev, uuid="c" * 32)),
        FakeConn(hub, url(f"hash{dev}_5", 5, dev, uuid="d" * 32, v="3.24")),
    ]
    for c in conns:
        c.send("subscription\nweb_a\nweb_b\ntrack_a\nuser_status_1\nuser_status_2\ntrust_x")
    assert all(c.conn.authorized for c in (conns[0], conns[1], conns[3])), "seeding: connections not authorised"
    return conns


def snapshot(executor: Executor, dev: int) -> list[tuple]:
    session = Session(dev_id=dev, database="CometQL_v1")
    out = []
    for sql in SNAPSHOT:
        r = executor.execute(session, sql)
        out.append((sql, r.kind, r.columns, r.rows, r.code))
    return out


# =================================================================================================
# Executor properties
# =================================================================================================


@pytest.mark.parametrize("profile_name", PROFILES)
@fuzz_settings(220, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(statement(), min_size=1, max_size=8))
def test_every_statement_gets_a_well_formed_result(profile_name, texts):
    hub, executor = make_executor(profile_name)
    conns = seed_tenant(hub, executor, DEV_A)
    session = Session(dev_id=DEV_A)
    for text in texts:
        try:
            result = executor.execute(session, text)
        except Exception as exc:  # noqa: BLE001 - the property is "never raises"
            pytest.fail(f"{profile_name}: execute({text!r}) raised {type(exc).__name__}: {exc}")
        check_result(result, profile_name)
    for c in conns:
        assert all(isinstance(f, str) for f in c.frames)


@pytest.mark.parametrize("profile_name", PROFILES)
@fuzz_settings(120, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.one_of(mutation(), mutation(), statement(cluster=False)), min_size=1, max_size=10))
def test_statements_of_one_tenant_never_touch_another(profile_name, texts):
    hub, executor = make_executor(profile_name)
    conns_a = seed_tenant(hub, executor, DEV_A)
    conns_b = seed_tenant(hub, executor, DEV_B)
    for c in conns_a + conns_b:
        c.frames.clear()
    before = snapshot(executor, DEV_B)
    session = Session(dev_id=DEV_A, database="CometQL_v1")
    for text in texts:
        try:
            executor.execute(session, text)
        except Exception:  # noqa: BLE001 - reported by the test above; here only isolation matters
            pass
        # the cluster prefix (excluded here) and USE db_N are the only ways to switch tenant
        assert session.dev_id == DEV_A or "db_" in text, text
        session.dev_id = DEV_A
    after = snapshot(executor, DEV_B)
    for b, a in zip(before, after):
        assert a == b, f"dev_id {DEV_B} changed by statements of dev_id {DEV_A}: {texts!r}\nbefore {b}\nafter  {a}"
    for c in conns_b:
        assert not c.frames, f"dev_id {DEV_B} connection received {c.frames} from {texts!r}"
        assert not c.dropped and c.conn.open, f"dev_id {DEV_B} connection closed by {texts!r}"


def test_isolation_check_itself_sees_changes():
    """The snapshot notices a change in B (guards against a vacuous isolation property)."""
    hub, executor = make_executor("cppcomet-4.09")
    seed_tenant(hub, executor, DEV_B)
    before = snapshot(executor, DEV_B)
    executor.execute(Session(dev_id=DEV_B), "DELETE FROM revoked_tokens WHERE token = 'junk-token-11'")
    assert snapshot(executor, DEV_B) != before


@pytest.mark.parametrize("profile_name", PROFILES)
@pytest.mark.parametrize("sql", [
    "SELECT * FROM users_auth WHERE id = 99999999999999999999",
    "SELECT * FROM users_time WHERE id IN (1, 18446744073709551616)",
    "INSERT INTO users_auth (id, hash) VALUES (99999999999999999999, 'h')",
    "INSERT INTO users_messages (id, event, message) VALUES (9223372036854775808, 'e', 'm')",
    "INSERT INTO users_data (id, data) VALUES (1, 'a\udc80b')",
    "INSERT INTO users_messages (id, event, message) VALUES (7, 'e', '\udcff')",
    "INSERT INTO revoked_tokens (token) VALUES ('\udc80')",
    "INSERT INTO pipes_messages (name, event, message) VALUES ('web_a', 'e', 'x\udc80')",
    "INSERT INTO pipes_messages (name, event, message) VALUES ('web_hist', 'e', 'x\udc80')",
])
def test_regressions_found_by_the_fuzzer(profile_name, sql):
    """Inputs that crashed the executor (huge integers into SQLite, undecodable bytes)."""
    hub, executor = make_executor(profile_name)
    seed_tenant(hub, executor, DEV_A)
    check_result(executor.execute(Session(dev_id=DEV_A), sql), profile_name)


# =================================================================================================
# Server on random packets (VirtualNetwork)
# =================================================================================================

LOGIN_CAPS = (m.CLIENT_LONG_PASSWORD | m.CLIENT_PROTOCOL_41 | m.CLIENT_SECURE_CONNECTION | m.CLIENT_PLUGIN_AUTH
              | m.CLIENT_CONNECT_WITH_DB | m.CLIENT_TRANSACTIONS)
QUIET = 2.0  # virtual seconds of silence that end a read


class WireClient:
    """A minimal MySQL client over a raw stream: login, send bytes, collect answers."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.reader = m.PacketReader()
        self.closed = False

    @classmethod
    async def login(cls, network: VirtualNetwork, port: int, user: bytes, db: bytes = b"CometQL_v1"
                    ) -> WireClient:
        client = cls(await network.connect("127.0.0.1", port))
        greeting = await client.packet()
        payload = greeting.payload
        assert payload[0] == 0x0A
        pos = payload.index(b"\x00", 1) + 1 + 4
        scramble = payload[pos:pos + 8]
        pos += 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10
        scramble += payload[pos:pos + 12]
        token = m.native_password_token(PASSWORD, scramble)
        response = (struct.pack("<IIB23s", LOGIN_CAPS, 1 << 24, 33, b"\x00" * 23) + user + b"\x00"
                    + bytes([len(token)]) + token + db + b"\x00" + b"mysql_native_password\x00")
        await client.stream.send_all(m.frame_packet(response, 1))
        ok = await client.packet()
        assert ok.payload[:1] == b"\x00", ok
        return client

    async def packet(self) -> m.Packet:
        while (p := self.reader.next_packet()) is None:
            data = await self.stream.receive_some(65536)
            assert data, "server closed during login"
            self.reader.feed(data)
        return p

    async def drain(self) -> bytes:
        """Everything the server sends until it is quiet for QUIET seconds or closes."""
        out = bytearray()
        while not self.closed:
            with trio.move_on_after(QUIET):
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    self.closed = True
                out += data
                continue
            break
        return bytes(out)

    async def query(self, sql: str) -> list[bytes]:
        await self.stream.send_all(m.frame_packet(b"\x03" + sql.encode(), 0))
        reader = m.PacketReader()
        reader.feed(await self.drain())
        return [p.payload for p in reader]


def _lenenc_strings(payload: bytes, pos: int = 0) -> list[bytes]:
    out = []
    while pos < len(payload):
        n, pos = m.decode_lenenc_int(payload, pos)
        assert n is not None and pos + n <= len(payload), payload
        out.append(payload[pos:pos + n])
        pos += n
    return out


def check_answers(payloads: list[bytes]) -> None:
    """The server's packets split into whole answers: OK, ERR, EOF or a well-formed result set."""
    i = 0
    while i < len(payloads):
        p = payloads[i]
        i += 1
        assert p, "empty packet from the server"
        if p[0] == 0x00:
            assert len(p) >= 7, p
        elif p[0] == 0xFF:
            code = int.from_bytes(p[1:3], "little")
            assert p[3:9] == b"#HY000", p
            assert code in ERR_CODES | {1}, p  # 1: the emulator's own "Protocol error" / "out of order"
        elif p[0] == 0xFE and len(p) < 9:
            pass  # a lone EOF (COM_FIELD_LIST, COM_SET_OPTION)
        elif p.startswith(b"Uptime: "):
            pass  # COM_STATISTICS: a bare string, as MySQL answers it
        else:
            count, _ = m.decode_lenenc_int(p)
            assert count and 1 <= count <= 64, p
            for _ in range(count):
                assert i < len(payloads), "result set cut short in the column definitions"
                assert _lenenc_strings(payloads[i][:-13])[0] == b"def", payloads[i]
                i += 1
            assert payloads[i] == m.EOF_PAYLOAD, payloads[i]
            i += 1
            while True:
                assert i < len(payloads), "result set without its final EOF"
                row = payloads[i]
                i += 1
                if row == m.EOF_PAYLOAD:
                    break
                assert len(_lenenc_strings(row)) == count, row


@st.composite
def wire_chunk(draw) -> bytes:
    kind = draw(st.integers(0, 15))
    if kind <= 5:  # a framed command, almost always with the right sequence id
        payload = draw(st.one_of(
            statement().map(lambda s: b"\x03" + s.encode("utf-8", "surrogateescape")),
            st.builds(lambda c, rest: bytes([c]) + rest, st.integers(0, 255), st.binary(max_size=40)),
            st.sampled_from([b"\x0e", b"\x01", b"\x02CometQL_v1", b"\x02db_11", b"\x02db_", b"\x02nope",
                             b"\x02CometQL_v1\x00junk", b"\x04users_auth\x00", b"\x16SELECT 1", b"\x11root\x00",
                             b"\x1f", b"\x09", b"\x1b\x00\x00", b"", b"\x03", b"\x03\x00\x00\x00\x00"]),
        ))
        seq = 0 if draw(st.integers(0, 15)) else draw(st.integers(1, 255))
        return m.frame_packet(payload, seq)
    if kind <= 10:  # a query from the grammar, as a client sends it
        return m.frame_packet(b"\x03" + draw(grammar_statement()).encode("utf-8", "surrogateescape"), 0)
    if kind == 11:  # garbage
        return draw(st.binary(min_size=1, max_size=48))
    if kind == 12:  # a header announcing a body that never (fully) comes, or a hostile length
        n = draw(st.sampled_from([1, 9000, 0xFFFFFF, 0x1000000 - 2]))
        return n.to_bytes(3, "little") + b"\x00" + draw(st.binary(max_size=16))
    if kind == 13:  # a 16 MB continuation chunk header followed by a bad continuation
        return b"\xff\xff\xff\x00" + b"\x03" * 8
    # several commands in one write (clients never pipeline, but bytes may merge)
    return b"".join(m.frame_packet(b"\x03" + s.encode("utf-8", "surrogateescape"), 0)
                    for s in draw(st.lists(grammar_statement(), min_size=2, max_size=3)))


@pytest.mark.parametrize("profile_name", PROFILES)
@pytest.mark.fuzz("mysql")
@fuzz_settings(100, report_multiple_bugs=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(wire_chunk(), min_size=1, max_size=8), user=st.sampled_from([b"1", b"11", b"root", b"x"]),
       journal=st.booleans())
async def test_random_packets_after_login(profile_name, chunks, user, journal, autojump_clock):
    network = VirtualNetwork()
    cfg = Config(journal=journal, profile=profile_name)  # the journal is on by default in `cometbench serve`
    cfg.free_ports()
    async with open_stack(cfg, network=network) as stack:
        port = stack.ports["cometql"]
        bystander = await WireClient.login(network, port, b"11")
        fuzzed = await WireClient.login(network, port, user)
        received = bytearray()
        for chunk in chunks:
            if fuzzed.closed:
                break
            try:
                await fuzzed.stream.send_all(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
            received += await fuzzed.drain()
        if not fuzzed.closed:  # our EOF: the server must close (possibly after an ERR)
            await fuzzed.stream.send_eof()
            received += await fuzzed.drain()
        assert fuzzed.closed, "the server neither answered nor closed after the client's EOF"
        reader = m.PacketReader(max_payload=1 << 26)
        reader.feed(bytes(received))
        check_answers([p.payload for p in reader])
        assert reader.buffered == 0, f"the server's output ends inside a packet: {bytes(received)[-40:]!r}"

        answer = await bystander.query("SHOW DATABASES")
        assert answer[-2:] == [b"\x0aCometQL_v1", m.EOF_PAYLOAD], answer
        fresh = await WireClient.login(network, port, b"1")
        assert (await fresh.query("SHOW DATABASES"))[-2] == b"\x0aCometQL_v1"
        await fresh.stream.aclose()
        await bystander.stream.aclose()


@pytest.mark.parametrize("journal", [False, True])
@pytest.mark.parametrize("sql", [
    b"SELECT * FROM users_auth WHERE id = 99999999999999999999",
    b"INSERT INTO users_data (id, data) VALUES (1, 'a\x80b')",
    b"SHOW TABLES \xff",
])
async def test_one_bad_query_does_not_take_the_listener_down(sql, journal, autojump_clock):
    network = VirtualNetwork()
    cfg = Config(journal=journal)
    cfg.free_ports()
    async with open_stack(cfg, network=network) as stack:
        port = stack.ports["cometql"]
        bystander = await WireClient.login(network, port, b"11")
        client = await WireClient.login(network, port, b"1")
        await client.stream.send_all(m.frame_packet(b"\x03" + sql, 0))
        reader = m.PacketReader()
        reader.feed(await client.drain())
        check_answers([p.payload for p in reader])
        assert (await bystander.query("SHOW DATABASES"))[-2] == b"\x0aCometQL_v1"
