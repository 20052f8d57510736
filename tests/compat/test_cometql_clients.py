"""Real MySQL clients against the CometQL server, both profiles.

Each client connects, runs the common statements (SHOW TABLES, INSERT/SELECT users_auth, INSERT
pipes_messages, SELECT pipes, an error case with its exact code and message) and reconnects (the
users_auth row written on the first connection is read back on a new one):

================================  ===========================================  ==========================
client                            faithful profile ``cppcomet-4.09``           ``lenient``
================================  ===========================================  ==========================
pymysql (``ssl_disabled=True``)   fails: version string (S2)                   works, default autocommit
mysql-connector-python (pure)     fails: version string (S2)                   works
PHP mysqli (``php-cli``)          works (spec 2.5), seed auth.php query        works
node ``mysql`` 2.x                works (spec 2.5)                             works
mariadb CLI ``--skip-ssl``        works, ``--table`` text = recorded session   works
mariadb CLI, default TLS          fails: ERROR 2026 TLS/SSL (S3)               works (no SSL advertised)
================================  ===========================================  ==========================

References: docs/quirks/cometql.md (the client table and the quirks) and the mariadb CLI session
recorded against the real server (fixtures/parity/mariadb-cli-4.09.json).  The emulator runs in-process
over OS sockets on 127.0.0.1 (``open_stack``).  Every client call is bounded: driver timeouts plus ``trio.fail_after``
(threads are abandoned on timeout), subprocesses are killed on timeout.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from emulator.cometql.tables import Session
from emulator.config import Config
from emulator.fixtures import path as fixture_path
from emulator.stack import open_stack
from tests.compat.conftest import NODE_MODULES, require_tool
from tests.rawws import RawWS

pytestmark = pytest.mark.compat

HERE = Path(__file__).parent
PHP_SCRIPT = HERE / "cometql_mysqli.php"
NODE_SCRIPT = HERE / "cometql_node_mysql.mjs"
REFERENCE = fixture_path("parity", "mariadb-cli-4.09.json")

PASSWORD = "CometQLPassword"
DEV = 1
TIMEOUT = 30  # per client run
FAITHFUL, LENIENT = "cppcomet-4.09", "lenient"
BOTH = pytest.mark.parametrize("profile", [FAITHFUL, LENIENT])

VERSION = {FAITHFUL: "CppComet community 4.09 (AGPL license)",
           LENIENT: "5.5.2-CppComet community 4.09 (AGPL license)"}

# cometql.md 10.1 / reference-observations.md 2
TABLES = ["users_auth", "users_time", "users_messages", "pipes_messages", "users_in_pipes", "pipes",
          "pipes_settings"]
# cometql.md 12, code 13; reference-observations.md 2 (SELECT * FROM pipes)
NO_KEY = (13, "Selection without transferring the requested values of the primary key is not supported")
SYNTAX = (3, "Syntax error in query")
VARCHAR = 253  # every column is VAR_STRING (cometql.md 4.4)
SERVER_STATUS_NO_BACKSLASH_ESCAPES = 0x0200  # OK "Variant B" (cometql.md 4.1)


@asynccontextmanager
async def emulator(profile: str, *, freeswitch: bool = True):
    cfg = Config(profile=profile, freeswitch_emulated=freeswitch)
    cfg.free_ports()
    async with open_stack(cfg) as stack:
        yield stack


async def in_thread(fn, *args):
    """A blocking client call, bounded: the driver has its own timeouts, this is the backstop."""
    with trio.fail_after(TIMEOUT):
        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


async def run_tool(argv: list[str], stdin: bytes = b"", timeout: float = TIMEOUT, env: dict | None = None
                   ) -> subprocess.CompletedProcess:
    with trio.fail_after(timeout):  # run_process kills the child when cancelled
        return await trio.run_process(argv, stdin=stdin, capture_stdout=True, capture_stderr=True, check=False,
                                      env={**os.environ, **(env or {})})


def queries_seen(stack) -> list[str]:
    return [e["data"] for e in stack.journal.entries(service="cometql", kind="query")]


def ws_path(key: str, user_id: int, dev: int = DEV) -> str:
    return f"/ws/sesion={key}&myid={user_id}&devid={dev}&v=4.08&uuid={'c' * 32}&api=js"


async def ws_server_info(stack, key: str, user_id: int) -> dict:
    """Log a raw WebSocket client in (the JS API's URL form) and return its serverInfo frame."""
    with trio.fail_after(10):
        ws = await RawWS.open(stack.network, stack.ports["ws"], ws_path(key, user_id))
        try:
            return json.loads(await ws.recv())
        finally:
            await ws.aclose()


def python_client(module: str):
    """A Python client library (a test dependency in pyproject.toml), through ``require_tool`` too."""
    require_tool(module, lambda: importlib.util.find_spec(module) is not None, "pip install -e '.[test]'")
    return importlib.import_module(module)


# --- pymysql -----------------------------------------------------------------------------------------


def pymysql_connect(port: int, **kw):
    pymysql = importlib.import_module("pymysql")
    return pymysql.connect(host="127.0.0.1", port=port, user=str(DEV), password=PASSWORD, database="CometQL_v1",
                           ssl_disabled=True, connect_timeout=5, read_timeout=5, write_timeout=5, **kw)


async def test_pymysql_faithful_profile_fails_on_the_version_string():
    """pymysql cannot connect to the faithful profile, exactly as to the real server.

    reference-observations.md S2: the greeting's version "CppComet community 4.09 (AGPL license)"
    does not start with a number, and pymysql's ``int(server_version.split(".", 1)[0])`` raises
    ``ValueError: invalid literal for int() with base 10: 'CppComet community 4'`` during
    authentication (``ssl_disabled=True`` already gets past S3).  This is the real server's
    behaviour, so the faithful profile must reproduce it.  Even past that, pymysql's default
    ``autocommit=False`` makes it send ``SET AUTOCOMMIT = 0``, which the faithful grammar answers
    with ERR 3 (cometql.md 2.5); that second barrier is checked on the server side here too.
    """
    python_client("pymysql")
    async with emulator(FAITHFUL) as stack:
        with pytest.raises(ValueError, match=r"invalid literal for int\(\) with base 10: 'CppComet community 4'"):
            await in_thread(pymysql_connect, stack.ports["cometql"])
        assert queries_seen(stack) == []  # it never got as far as a query
        answer = stack.cometql.executor.execute(Session(dev_id=DEV, database="CometQL_v1"), "SET AUTOCOMMIT = 0")
        assert (answer.kind, answer.code, answer.message) == ("err", *SYNTAX)


async def test_pymysql_lenient_profile_works_with_default_autocommit():
    """pymysql with its defaults (``autocommit=False``): it sends ``SET NAMES utf8mb4`` and
    ``SET AUTOCOMMIT = 0`` while connecting, and ``COMMIT`` on ``commit()``; lenient accepts all three."""
    pymysql = python_client("pymysql")
    async with emulator(LENIENT) as stack:
        port = stack.ports["cometql"]

        def session():
            db = pymysql_connect(port)
            out = {"version": db.get_server_info()}
            with db.cursor() as cur:
                cur.execute("SHOW TABLES")
                out["tables"] = (cur.fetchall(), [d[:2] for d in cur.description])
                cur.execute("INSERT INTO users_auth (id, hash) VALUES (1, 'abc')")
                out["auth_insert"] = (cur.rowcount, cur.lastrowid, db.server_status)
                cur.execute("SELECT * FROM users_auth WHERE id = 1")
                out["auth_select"] = (cur.fetchall(), [d[:2] for d in cur.description])
                cur.execute("INSERT INTO pipes_messages (name, event, message) VALUES ('web_test', 'ev', 'hello')")
                out["pipes_insert"] = (cur.rowcount, cur.lastrowid)
                cur.execute("SELECT * FROM pipes WHERE name = 'web_test'")
                out["pipes_select"] = cur.fetchall()
                try:
                    cur.execute("SELECT * FROM pipes")
                except pymysql.err.InternalError as exc:  # errno < 1000: InternalError (cometql.md 4.3)
                    out["error"] = exc.args
                cur.execute("SELECT * FROM users_auth WHERE id = 1")  # the link survives the error
                out["after_error"] = cur.fetchall()
            db.commit()
            db.ping(reconnect=False)
            db.close()
            db = pymysql_connect(port)  # reconnect
            with db.cursor() as cur:
                cur.execute("SELECT * FROM users_auth WHERE id = 1")
                out["reconnect_select"] = cur.fetchall()
            db.close()
            return out

        out = await in_thread(session)
        seen = queries_seen(stack)

    assert out["version"] == VERSION[LENIENT]
    assert out["tables"] == (tuple((t,) for t in TABLES), [("Tables", VARCHAR)])
    assert out["auth_insert"] == (1, 1, SERVER_STATUS_NO_BACKSLASH_ESCAPES)
    assert out["auth_select"] == ((("1", "abc"),), [("id", VARCHAR), ("hash", VARCHAR)])
    assert out["pipes_insert"] == (0, 0)
    assert out["pipes_select"] == (("web_test", "0"),)
    assert out["error"] == NO_KEY
    assert out["after_error"] == out["reconnect_select"] == (("1", "abc"),)
    # what pymysql sent by itself (cometql.md 2.5): all accepted by the lenient profile
    assert seen[:2] == ["SET NAMES utf8mb4", "SET AUTOCOMMIT = 0"]
    assert "COMMIT" in seen
    assert seen.count("SET NAMES utf8mb4") == 2 and seen.count("SET AUTOCOMMIT = 0") == 2  # both connections


# --- mysql-connector-python -----------------------------------------------------------------------------


def connector_connect(port: int):
    connector = importlib.import_module("mysql.connector")
    return connector.connect(host="127.0.0.1", port=port, user=str(DEV), password=PASSWORD, database="CometQL_v1",
                             use_pure=True, ssl_disabled=True, connection_timeout=5)


async def test_connector_python_faithful_profile_fails_on_the_version_string():
    """mysql-connector-python (pure) refuses the faithful greeting like pymysql does (S2): its
    version parser needs ``X.Y.Z`` and raises ``InterfaceError: Failed parsing MySQL version``."""
    mysql_connector = python_client("mysql.connector")
    async with emulator(FAITHFUL) as stack:
        with pytest.raises(mysql_connector.errors.InterfaceError, match="Failed parsing MySQL version"):
            await in_thread(connector_connect, stack.ports["cometql"])
        assert queries_seen(stack) == []


async def test_connector_python_lenient_profile_works():
    mysql_connector = python_client("mysql.connector")
    async with emulator(LENIENT) as stack:
        port = stack.ports["cometql"]

        def session():
            db = connector_connect(port)
            out = {"version": db.server_info}
            cur = db.cursor()
            cur.execute("SHOW TABLES")
            out["tables"] = cur.fetchall()
            cur.execute("INSERT INTO users_auth (id, hash) VALUES (1, 'abc')")
            out["auth_insert"] = (cur.rowcount, cur.lastrowid)
            cur.execute("SELECT * FROM users_auth WHERE id = 1")
            out["auth_select"] = (cur.fetchall(), [d[:2] for d in cur.description])
            cur.execute("INSERT INTO pipes_messages (name, event, message) VALUES ('web_test', 'ev', 'hello')")
            out["pipes_insert"] = (cur.rowcount, cur.lastrowid)
            cur.execute("SELECT * FROM pipes WHERE name = 'web_test'")
            out["pipes_select"] = cur.fetchall()
            try:
                cur.execute("SELECT * FROM pipes")
            except mysql_connector.errors.DatabaseError as exc:
                out["error"] = (exc.errno, exc.msg, exc.sqlstate)
            db.commit()
            cur.close()
            db.close()
            db = connector_connect(port)  # reconnect
            cur = db.cursor()
            cur.execute("SELECT * FROM users_auth WHERE id = 1")
            out["reconnect_select"] = cur.fetchall()
            cur.close()
            db.close()
            return out

        out = await in_thread(session)
        seen = queries_seen(stack)

    assert out["version"] == VERSION[LENIENT]
    assert out["tables"] == [(t,) for t in TABLES]
    assert out["auth_insert"] == (1, 1)
    assert out["auth_select"] == ([("1", "abc")], [("id", VARCHAR), ("hash", VARCHAR)])
    assert out["pipes_insert"] == (0, 0)
    assert out["pipes_select"] == [("web_test", "0")]
    assert out["error"] == (*NO_KEY, "HY000")
    assert out["reconnect_select"] == [("1", "abc")]
    # its own statements while connecting (the faithful grammar would answer both with ERR 3)
    assert seen[:2] == ["SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci'", "SET @@session.autocommit = OFF"]


# --- PHP mysqli -----------------------------------------------------------------------------------------


def php_mysqli_available() -> bool:
    php = shutil.which("php")
    if not php:
        return False
    done = subprocess.run([php, "-r", "echo function_exists('mysqli_connect') ? 'yes' : 'no';"],
                          capture_output=True, text=True, timeout=20)
    return done.stdout.strip() == "yes"


@BOTH
async def test_php_mysqli_runs_the_seed_auth_query(profile):
    """mysqli works with both profiles (cometql.md 2.5); the seed's auth.php INSERT text runs unchanged,
    and a WebSocket client logged in with the hash it wrote is authorised."""
    require_tool("php-cli + php-mysql (mysqli)", php_mysqli_available, "apt-get install php-cli php-mysql")
    user_id, user_key = 4242, "seedKey4242"
    async with emulator(profile) as stack:
        done = await run_tool([shutil.which("php"), str(PHP_SCRIPT), str(stack.ports["cometql"]), str(user_id),
                               user_key])
        assert done.returncode == 0, done.stderr.decode()
        out = json.loads(done.stdout)
        seen = queries_seen(stack)
        assert stack.hub.get_hash(DEV, user_id) == user_key
        info = await ws_server_info(stack, user_key, user_id)
        wrong = await ws_server_info(stack, "notTheKey", user_id)

    assert "connect_errno" not in out, out
    assert out["server_info"] == VERSION[profile]
    assert out["show_tables"] == {"kind": "rows", "fields": [["Tables", VARCHAR]], "rows": [[t] for t in TABLES]}
    # the seed's text reached the server byte for byte
    assert f"INSERT INTO users_auth (id, hash)VALUES('{user_id}', '{user_key}' );" in seen
    assert out["auth_insert"] == {"kind": "ok", "affectedRows": 1, "insertId": user_id}
    row = {"kind": "rows", "fields": [["id", VARCHAR], ["hash", VARCHAR]], "rows": [[str(user_id), user_key]]}
    assert out["auth_select"] == row
    assert out["pipes_insert"] == {"kind": "ok", "affectedRows": 0, "insertId": 0}
    assert out["pipes_select"] == {"kind": "rows", "fields": [["name", VARCHAR], ["users", VARCHAR]],
                                   "rows": [["web_test", "0"]]}
    assert out["error"] == {"kind": "error", "errno": NO_KEY[0], "message": NO_KEY[1], "sqlstate": "HY000"}
    assert out["syntax_error"] == {"kind": "error", "errno": SYNTAX[0], "message": SYNTAX[1], "sqlstate": "HY000"}
    assert out["ping_after_error"] is True and out["set_names"] is True
    assert out["reconnect_select"] == row
    # escaping follows the server status (cometql.md 4.1): backslashes right after connecting,
    # doubled quotes after an OK with NO_BACKSLASH_ESCAPES (the real server's INSERT answer)
    assert out["escaped_before"] == "it\\'s"
    if profile == FAITHFUL:
        assert out["escaped_after_insert"] == "it''s"
    else:
        assert out["escaped_after_insert"] in ("it''s", "it\\'s")

    assert info["authorized"] is True and info["data"] == user_key and info["event"] == "serverInfo"
    if profile == FAITHFUL:
        assert info["server"] == "CppComet community 4.09 (AGPL license)"
    assert wrong["authorized"] is False and wrong["data"] == ""


# --- node mysql -------------------------------------------------------------------------------------------


def node_mysql_available() -> bool:
    return shutil.which("node") is not None and (NODE_MODULES / "mysql" / "package.json").is_file()


async def run_node_mysql(port: int, steps: list) -> list[dict]:
    job = {"port": port, "user": str(DEV), "password": PASSWORD, "database": "CometQL_v1", "steps": steps}
    node = shutil.which("node")
    assert node is not None
    done = await run_tool([node, str(NODE_SCRIPT)], stdin=json.dumps(job).encode(),
                          env={"COMETQL_CLIENT_DEADLINE_MS": str((TIMEOUT - 5) * 1000)})
    assert done.returncode == 0, (done.stdout.decode()[-2000:], done.stderr.decode()[-2000:])
    return [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]


@BOTH
async def test_node_mysql_common_queries_and_reconnect(profile):
    require_tool("node + npm package mysql", node_mysql_available, "run `npm install` at the repository root")
    steps = ["SHOW TABLES",
             "INSERT INTO users_auth (id, hash) VALUES (1, 'abc')",
             "SELECT * FROM users_auth WHERE id = 1",
             "INSERT INTO pipes_messages (name, event, message) VALUES ('web_test', 'ev', 'hello')",
             "SELECT * FROM pipes WHERE name = 'web_test'",
             "SELECT * FROM pipes",
             {"op": "ping"},
             {"op": "reconnect"},
             "SELECT * FROM users_auth WHERE id = 1"]
    async with emulator(profile) as stack:
        lines = await run_node_mysql(stack.ports["cometql"], steps)

    row = {"kind": "rows", "fields": [["id", VARCHAR], ["hash", VARCHAR]], "rows": [["1", "abc"]]}
    ok = {"kind": "ok", "insertId": 0, "serverStatus": SERVER_STATUS_NO_BACKSLASH_ESCAPES}
    answers = [{k: v for k, v in line.items() if k != "sql"} for line in lines]
    assert answers == [
        {"ev": "connected", "serverVersion": VERSION[profile], "threadId": answers[0]["threadId"]},
        {"kind": "rows", "fields": [["Tables", VARCHAR]], "rows": [[t] for t in TABLES]},
        {**ok, "affectedRows": 1, "insertId": 1},
        row,
        {**ok, "affectedRows": 0},
        {"kind": "rows", "fields": [["name", VARCHAR], ["users", VARCHAR]], "rows": [["web_test", "0"]]},
        {"kind": "error", "errno": NO_KEY[0], "message": NO_KEY[1], "fatal": False},
        {"op": "ping", "ok": True},
        {"op": "reconnect"},
        {"ev": "connected", "serverVersion": VERSION[profile], "threadId": answers[9]["threadId"]},
        row,
        {"ev": "done"},
    ]


# --- mariadb CLI ------------------------------------------------------------------------------------------


def mariadb_cli() -> str:
    require_tool("mariadb CLI (mariadb-client)", lambda: shutil.which("mariadb"), "apt-get install mariadb-client")
    return shutil.which("mariadb")  # type: ignore[return-value]


def reference_cli_session() -> list[tuple[str, str]]:
    """(statement, verbatim output) pairs of the recorded mariadb CLI session (--table)."""
    if not REFERENCE.exists():
        pytest.fail(f"recorded CLI session missing: {REFERENCE}")
    session = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return [(step["statement"], "\n".join(step["output"])) for step in session["steps"]]


async def mariadb_run(cli: str, port: int, sql: str, *extra: str, skip_ssl: bool = True
                      ) -> subprocess.CompletedProcess:
    argv = [cli, "-h127.0.0.1", f"-P{port}", f"-u{DEV}", f"-p{PASSWORD}", "--connect-timeout=5"]
    if skip_ssl:
        argv.append("--skip-ssl")
    return await run_tool([*argv, *extra, "CometQL_v1", "-e", sql])


def cli_text(done: subprocess.CompletedProcess, sql: str) -> str:
    """What ``mariadb -vv --table -e SQL`` showed, without the echoed statement and the ``Bye``.

    The reference was taken with the same client (10.11) in verbose mode: ``7 rows in set``,
    ``Empty set``, ``Query OK, 1 row affected`` (no timings).  Errors go to stderr."""
    out = done.stdout.decode()
    echo = f"--------------\n{sql}\n--------------\n\n"
    assert out.startswith(echo), out
    body = out[len(echo):]
    assert body.endswith("Bye\n"), out
    body = body[:-len("Bye\n")].rstrip("\n")
    return "\n".join(part for part in (body, done.stderr.decode().rstrip("\n")) if part)


def test_reference_session_transcription():
    """Guard for the loader above: the statements of the recorded session."""
    statements = [s for s, _ in reference_cli_session()]
    assert statements[0] == "SHOW TABLES"
    assert statements[1] == statements[3] == "SELECT * FROM users_auth WHERE id = 1"
    assert statements[2] == "INSERT INTO users_auth (id, hash) VALUES (1, 'abc')"
    assert len(statements) == 10


@BOTH
async def test_mariadb_cli_skip_ssl_output_matches_the_reference_text(profile):
    """The whole reference session, one CLI run per statement (so every statement is also a reconnect),
    output compared with the verbatim text of the recorded session."""
    cli = mariadb_cli()
    # the reference was recorded with "config A": no FreeSWITCH node, so INSERT INTO conference is ERR 500
    async with emulator(profile, freeswitch=False) as stack:
        port = stack.ports["cometql"]
        for sql, expected in reference_cli_session():
            done = await mariadb_run(cli, port, sql, "--table", "-vv")
            got = cli_text(done, sql)
            is_error = expected.startswith("ERROR ")
            assert done.returncode == (1 if is_error else 0), (sql, done.stderr)
            if not is_error and expected.endswith("+") and not got.endswith("+"):
                # the reference's last table was copied without its "1 row in set" line
                assert re.fullmatch(r"\n\d+ rows? in set", got[len(expected):]), (sql, got)
                got = got[:len(expected)]
            assert got == expected, f"{sql}\n--- reference ---\n{expected}\n--- emulator ---\n{got}"


async def test_mariadb_cli_without_skip_ssl_fails_on_the_faithful_profile():
    """S3: CLIENT_SSL is advertised but there is no TLS.  The CLI (TLS preferred) sends an SSLRequest and
    a TLS ClientHello; the server's ERR packet is not a TLS record -> ``ERROR 2026 (HY000): TLS/SSL
    error: wrong version number``, the reference's exact text."""
    cli = mariadb_cli()
    async with emulator(FAITHFUL) as stack:
        done = await mariadb_run(cli, stack.ports["cometql"], "SHOW TABLES", "--table", skip_ssl=False)
        seen = queries_seen(stack)
    err = done.stderr.decode()
    assert done.returncode != 0 and done.stdout == b""
    assert re.search(r"SSL|TLS", err), err
    assert err.strip() == "ERROR 2026 (HY000): TLS/SSL error: wrong version number"
    assert seen == []


async def test_mariadb_cli_without_skip_ssl_works_on_the_lenient_profile():
    """Lenient does not advertise CLIENT_SSL, so the CLI's preferred TLS silently stays plain text."""
    cli = mariadb_cli()
    async with emulator(LENIENT) as stack:
        port = stack.ports["cometql"]
        done = await mariadb_run(cli, port, "SHOW TABLES", "--table", "-vv", skip_ssl=False)
        assert done.returncode == 0, done.stderr.decode()
        expected = dict(reference_cli_session())["SHOW TABLES"]
        assert cli_text(done, "SHOW TABLES") == expected
        done = await mariadb_run(cli, port, "INSERT INTO users_auth (id, hash) VALUES (1, 'abc')", skip_ssl=False)
        assert done.returncode == 0, done.stderr.decode()
        done = await mariadb_run(cli, port, "SELECT * FROM users_auth WHERE id = 1", "--batch", "--skip-column-names",
                                 skip_ssl=False)
        assert (done.returncode, done.stdout) == (0, b"1\tabc\n"), done.stderr.decode()
        done = await mariadb_run(cli, port, "SELECT * FROM pipes", skip_ssl=False)
        assert done.returncode == 1  # (the CLI echoes the failed statement to stderr first)
        assert done.stderr.decode().splitlines()[-1] == f"ERROR {NO_KEY[0]} (HY000) at line 1: {NO_KEY[1]}"
