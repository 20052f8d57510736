"""The CometQL server end to end: handshake, commands, bad input, side effects on WebSocket clients."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import jwt
import pymysql
import pytest
import trio

from emulator.config import Config
from emulator.net.network import OSNetwork, VirtualNetwork
from emulator.stack import open_stack
from tests.rawmysql import RawMySQL, err_of, rows_of
from tests.rawws import RawWS

PASSWORD = "CometQLPassword"


def config(profile="cppcomet-4.09", **kw) -> Config:
    cfg = Config(profile=profile, **kw)
    cfg.free_ports()
    return cfg


def ws_path(key, user, dev=1):
    return f"/ws/sesion={key}&myid={user}&devid={dev}&v=4.08&uuid={'u' * 32}&api=js"


# --- handshake -------------------------------------------------------------------------------------


async def test_faithful_greeting_and_login(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        c = await RawMySQL.open(net, stack.ports["cometql"])
        g = await c.greeting()
        assert g["version"] == "CppComet community 4.09 (AGPL license)"
        assert len(g["raw"]) == 106 and g["caps"] == 0xC00FFFFF and g["charset"] == 8 and g["status"] == 2
        assert g["plugin"] == "mysql_native_password" and len(g["scramble"]) == 20
        from pymysql._auth import scramble_native_password
        await c.send(c.response("1", scramble_native_password(PASSWORD.encode(), g["scramble"])), 1)
        assert await c.read_packet() == (2, bytes.fromhex("00000002000000"))
        answer = await c.query("INSERT INTO users_auth (id, hash) VALUES (501, 'validkey501')")
        # reference-observations.md section 3: OK 00 01 fcf901 0002 0000 00 (here id 501 = 0x01f5)
        assert answer == [(1, bytes.fromhex("00" "01" "fcf501" "0002" "0000" "00"))]


async def test_lenient_greeting_drops_ssl_and_numbers_the_version(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config("lenient"), network=net) as stack:
        g = await (await RawMySQL.open(net, stack.ports["cometql"])).greeting()
        assert g["version"][0].isdigit() and not g["caps"] & 0x800


@pytest.mark.parametrize("user,password,database,error", [
    ("1", "wrong", "CometQL_v1", (16, "Authentication failure")),
    ("1", PASSWORD, "nosuchdb", (15, "Select database failure")),
    ("1", PASSWORD, "cometql_v1", (15, "Select database failure")),
])
async def test_refused_logins_get_err_then_close(user, password, database, error, autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        c = await RawMySQL.open(net, stack.ports["cometql"])
        seq, payload = await c.login(user, password, database)
        assert seq == 2 and err_of((seq, payload)) == error
        assert await c.closed()
        assert stack.cometql.sessions == {}


async def test_empty_password_and_ssl_request(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        c = await RawMySQL.open(net, stack.ports["cometql"])
        await c.greeting()
        await c.send(c.response("1", b""), 1)
        assert err_of(await c.read_packet()) == (16, "Authentication failure, authDataLen!=20")
        assert await c.closed()
        c = await RawMySQL.open(net, stack.ports["cometql"])
        await c.greeting()
        await c.send((0x000FA68D | 0x800).to_bytes(4, "little") + (1 << 24).to_bytes(4, "little") + b"\x21"
                     + b"\0" * 23, 1)
        assert err_of(await c.read_packet())[0] == 16
        assert await c.closed()


@pytest.mark.parametrize("profile,switched", [("cppcomet-4.09", False), ("lenient", True)])
async def test_caching_sha2_client_gets_auth_switch_only_when_lenient(profile, switched, autojump_clock):
    from pymysql._auth import scramble_native_password
    net = VirtualNetwork()
    async with open_stack(config(profile), network=net) as stack:
        c = await RawMySQL.open(net, stack.ports["cometql"])
        await c.greeting()
        await c.send(c.response("1", b"\x01" * 32, plugin="caching_sha2_password"), 1)
        seq, payload = await c.read_packet()
        if not switched:
            assert err_of((seq, payload)) == (16, "Authentication failure, authDataLen!=20")
            return
        assert payload[0] == 0xFE and payload[1:].startswith(b"mysql_native_password\0")
        scramble = payload[len(b"\xfemysql_native_password\0"):][:20]
        await c.send(scramble_native_password(PASSWORD.encode(), scramble), seq + 1)
        assert (await c.read_packet())[1][0] == 0


async def test_user_name_selects_the_tenant_and_db_switch(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        for user, dev in (("root", 0), ("0", 0), ("0042", 42)):
            c = await RawMySQL.open(net, stack.ports["cometql"])
            await c.login(user)
            await c.query("SHOW STATUS")
            assert stack.cometql.sessions[max(stack.cometql.sessions)].dev_id == dev
        c = await RawMySQL.open(net, stack.ports["cometql"])
        assert (await c.login("1", database=None))[1][0] == 0
        assert rows_of(await c.query("SELECT DATABASE()")) == [[""]]
        await c.send(b"\x02db_7", 0)  # COM_INIT_DB db_7 switches the tenant
        assert (await c.read_packet())[1][0] == 0
        await c.query("INSERT INTO users_auth (id, hash) VALUES (3, 'seven')")
        assert stack.hub.get_hash(7, 3) == "seven" and stack.hub.get_hash(1, 3) is None
        await c.send(b"\x02nope", 0)
        assert err_of(await c.read_packet()) == (15, "Select database failure")
        assert rows_of(await c.query("SHOW DATABASES")) == [["CometQL_v1"]]  # still open


# --- commands and bad input ------------------------------------------------------------------------


async def test_other_commands(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        c = await RawMySQL.open(net, stack.ports["cometql"])
        await c.login()
        await c.send(b"\x0e", 0)  # COM_PING
        assert await c.read_packet() == (1, bytes.fromhex("0000000002000000"))
        await c.send(b"\x16SELECT ?", 0)  # COM_STMT_PREPARE
        assert err_of(await c.read_packet())[0] == 2
        await c.send(b"\x04users_auth\0", 0)  # COM_FIELD_LIST
        assert await c.read_packet() == (1, bytes.fromhex("fe00000200"))
        assert rows_of(await c.query("SHOW DATABASES")) == [["CometQL_v1"]]
        await c.send(b"\x1b\x00\x00", 0)  # COM_SET_OPTION: EOF is the protocol's answer
        assert (await c.read_packet())[1][0] == 0xFE
        await c.send(b"\x1f", 0)  # COM_RESET_CONNECTION
        assert (await c.read_packet())[1][0] == 0
        await c.send(b"\x09", 0)  # COM_STATISTICS: a bare text string
        assert (await c.read_packet())[1].startswith(b"Uptime: ")
        await c.send(b"\x01", 0)  # COM_QUIT: the original answers OK
        assert (await c.read_packet())[1][0] == 0


async def test_change_user_reauthenticates_and_switches_tenant(autojump_clock):
    from pymysql._auth import scramble_native_password
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        c = await RawMySQL.open(net, stack.ports["cometql"])
        g = await c.greeting()
        token = scramble_native_password(PASSWORD.encode(), g["scramble"])
        await c.send(c.response("1", token), 1)
        await c.read_packet()
        await c.send(b"\x11" + b"9\0" + bytes([20]) + token + b"CometQL_v1\0" + b"\x21\x00", 0)
        assert (await c.read_packet())[1][0] == 0
        await c.query("INSERT INTO users_auth (id, hash) VALUES (1, 'nine')")
        assert stack.hub.get_hash(9, 1) == "nine"
        bad = scramble_native_password(b"wrong", g["scramble"])
        await c.send(b"\x11" + b"9\0" + bytes([20]) + bad + b"\0", 0)
        assert err_of(await c.read_packet()) == (16, "Authentication failure")
        assert await c.closed()


async def test_bad_packets_get_a_clean_end_and_others_carry_on(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        good = await RawMySQL.open(net, stack.ports["cometql"])
        await good.login()
        # wrong sequence id on a command
        c = await RawMySQL.open(net, stack.ports["cometql"])
        await c.login()
        await c.send(b"\x03SHOW TABLES", 5)
        assert err_of(await c.read_packet())[0] == 1 and await c.closed()
        # garbage instead of the handshake response
        c = await RawMySQL.open(net, stack.ports["cometql"])
        await c.greeting()
        await c.stream.send_all(b"\x05\x00\x00\x01hello")
        assert err_of(await c.read_packet())[0] == 16 and await c.closed()
        # a packet header announcing more than the maximum
        c = await RawMySQL.open(net, stack.ports["cometql"])
        await c.login()
        await c.stream.send_all(b"\xff\xff\xfe\x00\x03")
        assert err_of(await c.read_packet())[0] == 1 and await c.closed()
        # truncated packet, then the client vanishes
        c = await RawMySQL.open(net, stack.ports["cometql"])
        await c.login()
        await c.stream.send_all(b"\x20\x00\x00\x00\x03SHOW")
        await c.stream.aclose()
        # empty command packet
        c = await RawMySQL.open(net, stack.ports["cometql"])
        await c.login()
        await c.send(b"", 0)
        assert err_of(await c.read_packet())[0] == 1 and await c.closed()
        # a query of several MB
        c = await RawMySQL.open(net, stack.ports["cometql"])
        await c.login()
        assert err_of((await c.query("SELECT " + "x" * 5_000_000))[0]) == (11, "Data is too long")
        assert rows_of(await c.query("SHOW DATABASES")) == [["CometQL_v1"]]
        # broken SQL of several kinds
        for sql in ("SELEC * FROM pipes", "INSERT INTO users_auth (id, hash) VALUES (1, 'x", "'", "\x00\x01\x02\x03",
                    "DELETE FROM users_auth WHERE", "SELECT * FROM pipes WHERE name IN ()"):
            assert err_of((await c.query(sql))[0]) is not None or sql == "\x00\x01\x02\x03"
        await trio.sleep(1)
        assert rows_of(await good.query("SHOW DATABASES")) == [["CometQL_v1"]]


async def test_handshake_that_never_finishes_is_closed(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(handshake_timeout=2.0), network=net) as stack:
        c = await RawMySQL.open(net, stack.ports["cometql"])
        await c.greeting()
        start = trio.current_time()
        assert await c.closed()
        assert 1.9 <= trio.current_time() - start <= 2.5


async def test_unauthenticated_haproxy_check_session_gets_403(autojump_clock):
    net = VirtualNetwork()
    async with open_stack(config(), network=net) as stack:
        c = await RawMySQL.open(net, stack.ports["cometql"])
        await c.greeting()
        await c.send(c.response("haproxy_check", b"", database=None), 1)
        assert (await c.read_packet())[1] == bytes.fromhex("00000002000000")
        assert err_of((await c.query("SHOW TABLES"))[0]) == (403, "Access denied")


# --- side effects on WebSocket clients -------------------------------------------------------------


def _pymysql(port, user="1", **kw):
    return pymysql.connect(host="127.0.0.1", port=port, user=user, password=PASSWORD, database="CometQL_v1",
                           ssl_disabled=True, autocommit=True, **kw)


async def test_backend_writes_reach_websocket_clients():
    net = OSNetwork()
    async with open_stack(config("lenient"), network=net) as stack:
        db = await trio.to_thread.run_sync(_pymysql, stack.ports["cometql"])
        cur = db.cursor()

        def run(sql):
            return trio.to_thread.run_sync(cur.execute, sql)

        await run("INSERT INTO users_auth (id, hash) VALUES (501, 'validkey501')")
        await run("INSERT INTO users_messages (id, event, message) VALUES (501, 'uev', 'queued text')")
        ws = await RawWS.open(net, stack.ports["ws"], ws_path("validkey501", 501))
        assert json.loads(await ws.recv())["authorized"] is True
        queued = json.loads(await ws.recv())
        assert (queued["data"], queued["fromQueue"]) == ("queued text", True)
        await ws.send("subscription\nweb_test\nref_pipe")
        while stack.hub.pipe_users(1, "ref_pipe") == 0:
            await trio.sleep(0.01)
        await run("""INSERT INTO pipes_messages (name, event, message) VALUES ('ref_pipe', 'ev2', '{"k":"v","n":1}')""")
        head, payload = await ws.recv_raw()
        assert payload.decode().startswith('{"data":"{\\"k\\":\\"v\\",\\"n\\":1}","event":"ev2","message_send_time":')
        await run("INSERT INTO users_messages (id, event, message) VALUES (501, 'uev', 'user message text')")
        assert await ws.recv() == '{"data":"user message text","event":"uev","pipe":"msg"}'
        await run("SELECT * FROM users_in_pipes WHERE name = 'web_test'")
        (row,) = cur.fetchall()
        assert row[:3] == ("web_test", "501", "u" * 32) and row[4] == "127.0.0.1"
        await run("SELECT * FROM users_time WHERE id IN (501, 502)")
        assert cur.fetchall() == (("501", "0"), ("502", "-1"))
        await run("DELETE FROM users_auth WHERE id = 501")
        assert await ws.closed_by_server()
        await trio.to_thread.run_sync(db.close)


async def test_revoking_a_valid_jwt_closes_its_user():
    net = OSNetwork()
    async with open_stack(config("lenient"), network=net) as stack:
        token = jwt.encode({"user_id": 9, "exp": 9_983_311_200}, PASSWORD + "1", algorithm="HS256")
        ws = await RawWS.open(net, stack.ports["ws"], ws_path(token, 9))
        assert json.loads(await ws.recv())["authorized"] is True
        db = await trio.to_thread.run_sync(_pymysql, stack.ports["cometql"])
        cur = db.cursor()
        await trio.to_thread.run_sync(cur.execute, f"INSERT INTO revoked_tokens (token) VALUES ('{token}')")
        assert (cur.rowcount, cur.lastrowid) == (1, 1)
        assert await ws.closed_by_server()
        again = await RawWS.open(net, stack.ports["ws"], ws_path(token, 9))
        assert json.loads(await again.recv())["authorized"] is False
        await trio.to_thread.run_sync(db.close)


async def test_tenants_are_apart_over_the_wire():
    net = OSNetwork()
    async with open_stack(config("lenient"), network=net) as stack:
        one = await trio.to_thread.run_sync(_pymysql, stack.ports["cometql"], "1")
        two = await trio.to_thread.run_sync(_pymysql, stack.ports["cometql"], "2")
        c1, c2 = one.cursor(), two.cursor()
        await trio.to_thread.run_sync(c1.execute, "INSERT INTO users_auth (id, hash) VALUES (5, 'one')")
        await trio.to_thread.run_sync(c2.execute, "SELECT * FROM users_auth WHERE id = 5")
        assert c2.fetchall() == ()
        await trio.to_thread.run_sync(c2.execute, "DELETE FROM users_auth WHERE id = 5")
        await trio.to_thread.run_sync(c1.execute, "SELECT * FROM users_auth WHERE id = 5")
        assert c1.fetchall() == (("5", "one"),)
        await trio.to_thread.run_sync(one.close)
        await trio.to_thread.run_sync(two.close)


# --- persistence ------------------------------------------------------------------------------------


def test_acknowledged_writes_survive_sigkill(tmp_path):
    state = tmp_path / "state.sqlite"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}

    def start():
        proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "serve", "--free-ports", "--profile", "lenient",
                                 "--state", str(state)], stdout=subprocess.PIPE, text=True, env=env)
        return proc, json.loads(proc.stdout.readline())

    proc, ready = start()
    try:
        db = _pymysql(ready["cometql"], "3")
        cur = db.cursor()
        for sql in ["INSERT INTO users_auth (id, hash) VALUES (11, 'h11')",
                    "INSERT INTO users_data (id, data) VALUES (11, 'd11')",
                    "INSERT INTO pipes_settings (name, length) VALUES ('web_log', 5)",
                    "INSERT INTO pipes_messages (name, event, message) VALUES ('web_log', 'e', 'kept')",
                    "INSERT INTO users_messages (id, event, message) VALUES (12, 'e', 'waiting')",
                    "INSERT INTO revoked_tokens (token) VALUES ('a.b.c')"]:
            cur.execute(sql)
        proc.send_signal(signal.SIGKILL)  # right after the last OK
        proc.wait(timeout=10)
    finally:
        proc.kill()
    proc, ready = start()
    try:
        db = _pymysql(ready["cometql"], "3")
        cur = db.cursor()
        checks = {"SELECT * FROM users_auth WHERE id = 11": (("11", "h11"),),
                  "SELECT * FROM users_data WHERE id = 11": (("11", "d11"),),
                  "SELECT * FROM pipes_settings WHERE name = 'web_log'": (("web_log", "5"),),
                  "SELECT event, message FROM pipes_messages WHERE name = 'web_log'": (("e", "kept"),),
                  "SELECT event, message FROM users_messages WHERE id = 12": (("e", "waiting"),),
                  "SELECT * FROM revoked_tokens WHERE token = 'a.b.c'": (("a.b.c",),)}
        for sql, expected in checks.items():
            cur.execute(sql)
            assert cur.fetchall() == expected, sql
        db.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
