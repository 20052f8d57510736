"""Unit tests of emulator.wire.mysql (spec cometql.md 2-4, reference-observations.md 2)."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from emulator.wire import mysql as m
from tests.fuzzing import fuzz_settings

pytestmark = pytest.mark.fuzz("mysql")

SCRAMBLE = bytes(range(1, 21))
PASSWORD = "CometQLPassword"


def hx(text: str) -> bytes:
    """Hex with spaces/bars allowed, as written in the spec."""
    return bytes.fromhex(text.replace("|", " "))


def independent_token(password: str, scramble: bytes) -> bytes:
    """mysql_native_password computed here, independently of the module."""
    stage1 = hashlib.sha1(password.encode()).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mix = hashlib.sha1(scramble + stage2).digest()
    return bytes(x ^ y for x, y in zip(stage1, mix))


def handshake_response(
    *,
    user: bytes = b"15",
    token: bytes | None = None,
    database: bytes | None = b"CometQL_v1",
    plugin: bytes | None = b"mysql_native_password",
    caps: int | None = None,
    attrs: bytes = b"",
    lenenc: bool = False,
) -> bytes:
    """A HandshakeResponse41 as libmysqlclient / node mysql / pymysql build it."""
    if token is None:
        token = independent_token(PASSWORD, SCRAMBLE)
    if caps is None:
        caps = m.CLIENT_PROTOCOL_41 | m.CLIENT_SECURE_CONNECTION | m.CLIENT_LONG_PASSWORD
        if database is not None:
            caps |= m.CLIENT_CONNECT_WITH_DB
        if plugin is not None:
            caps |= m.CLIENT_PLUGIN_AUTH
        if attrs:
            caps |= m.CLIENT_CONNECT_ATTRS
        if lenenc:
            caps |= m.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    out = struct.pack("<IIB", caps, 1 << 24, 33) + b"\x00" * 23 + user + b"\x00"
    out += bytes((len(token),)) + token
    if database is not None:
        out += database + b"\x00"
    if plugin is not None:
        out += plugin + b"\x00"
    return out + attrs


# =================================================================================================
# Greeting (spec 2.1, reference-observations 2 "greeting (110 bytes incl. header)")
# =================================================================================================


def test_greeting_is_byte_exact_with_the_reference_capture():
    salt = bytes(range(0x41, 0x41 + 20))
    payload = m.build_initial_handshake(connection_id=0x27, scramble=salt)
    framed = m.frame_packet(payload, 0)
    expected = (
        hx("6a0000 00 0a")
        + b"CppComet community 4.09 (AGPL license)\x00"
        + hx("27000000")
        + salt[:8]
        + hx("00 | ffff | 08 | 0200 | 0fc0 | 15")
        + b"\x00" * 10
        + salt[8:]
        + b"\x00"
        + b"mysql_native_password\x00"
    )
    assert framed == expected
    assert len(framed) == 110
    assert len(payload) == 106


def test_greeting_is_parsed_by_pymysql():
    """pymysql's own greeting parser (a real client's view of spec 2.1)."""
    from pymysql.connections import Connection
    from pymysql.protocol import MysqlPacket

    payload = m.build_initial_handshake(connection_id=7, scramble=SCRAMBLE)
    conn = Connection.__new__(Connection)
    conn._read_packet = lambda *a, **k: MysqlPacket(payload, "utf-8")
    conn._get_server_information()
    assert conn.protocol_version == 10
    assert conn.server_version == m.SERVER_VERSION
    assert conn.server_thread_id == (7,)
    assert conn.salt == SCRAMBLE
    assert conn.server_capabilities == 0xC00FFFFF
    assert conn.server_status == 2 and conn.server_language == 8
    assert conn._auth_plugin_name == "mysql_native_password"


def test_greeting_capabilities_and_status_are_parameters():
    payload = m.build_initial_handshake(
        connection_id=1, scramble=SCRAMBLE, capabilities=m.CAPABILITIES_LENIENT
    )
    # 1 protocol + 39 version + 4 conn id + 8 salt + 1 filler = offset 53
    low = int.from_bytes(payload[53:55], "little")
    high = int.from_bytes(payload[58:60], "little")
    caps = low | high << 16
    assert caps == m.CAPABILITIES_LENIENT
    assert not caps & m.CLIENT_SSL and not caps & m.CLIENT_COMPRESS
    assert caps & m.CLIENT_PROTOCOL_41 and caps & m.CLIENT_SECURE_CONNECTION
    assert caps & m.CLIENT_PLUGIN_AUTH and caps & m.CLIENT_CONNECT_WITH_DB
    assert not caps & m.CLIENT_DEPRECATE_EOF
    assert payload[55] == 0x08 and payload[56:58] == b"\x02\x00"


def test_faithful_capabilities_word():
    caps = m.CAPABILITIES_CPPCOMET
    assert caps == 0xC00FFFFF
    for flag in (m.CLIENT_SSL, m.CLIENT_COMPRESS, m.CLIENT_MULTI_STATEMENTS, m.CLIENT_PLUGIN_AUTH,
                 m.CLIENT_SSL_VERIFY_SERVER_CERT, m.CLIENT_REMEMBER_OPTIONS):
        assert caps & flag
    for flag in (m.CLIENT_CONNECT_ATTRS, m.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
                 m.CLIENT_SESSION_TRACK, m.CLIENT_DEPRECATE_EOF):
        assert not caps & flag


def test_greeting_rejects_bad_scramble_length():
    with pytest.raises(ValueError):
        m.build_initial_handshake(connection_id=1, scramble=b"short")


def test_generate_scramble_faithful_range_allows_zero():
    raw = bytes([0, 253, 254, 255] + list(range(16)))
    s = m.generate_scramble(lambda n: raw)
    assert len(s) == 20
    assert s[:4] == bytes([0, 253, 0, 1])
    assert all(b <= 0xFD for b in s)


def test_generate_scramble_nonzero_variant():
    s = m.generate_scramble(lambda n: bytes([0, 126, 127, 255] * 5), nonzero=True)
    assert all(1 <= b <= 0x7F for b in s)
    assert len(m.generate_scramble()) == 20


def test_generate_scramble_checks_randbytes():
    with pytest.raises(ValueError):
        m.generate_scramble(lambda n: b"x")


# =================================================================================================
# HandshakeResponse / SSLRequest (spec 2.2)
# =================================================================================================


def test_parse_handshake_response_full():
    attrs = b"\x05\x03_os\x05Linux"
    resp = m.parse_handshake_response(handshake_response(attrs=attrs))
    assert resp.user == "15" and resp.username == b"15"
    assert resp.auth_response == independent_token(PASSWORD, SCRAMBLE)
    assert resp.database == b"CometQL_v1" and resp.database_name == "CometQL_v1"
    assert resp.auth_plugin == "mysql_native_password"
    assert resp.charset == 33 and resp.max_packet_size == 1 << 24
    assert resp.secure_connection


def test_parse_handshake_response_without_database_or_plugin():
    resp = m.parse_handshake_response(handshake_response(database=None, plugin=None))
    assert resp.database is None and resp.database_name is None and resp.auth_plugin is None


def test_parse_handshake_response_lenenc_auth_data():
    resp = m.parse_handshake_response(handshake_response(lenenc=True))
    assert len(resp.auth_response) == 20


def test_parse_handshake_response_empty_token_and_caching_sha2():
    resp = m.parse_handshake_response(handshake_response(token=b"", plugin=b"caching_sha2_password"))
    assert resp.auth_response == b"" and resp.auth_plugin == "caching_sha2_password"
    resp = m.parse_handshake_response(handshake_response(token=bytes(32), plugin=b"caching_sha2_password"))
    assert len(resp.auth_response) == 32


def test_parse_handshake_response_pre41_auth():
    caps = m.CLIENT_PROTOCOL_41
    resp = m.parse_handshake_response(struct.pack("<IIB", caps, 0, 8) + bytes(23) + b"root\x00pw\x00")
    assert not resp.secure_connection and resp.auth_response == b"pw"


SECURE_HEADER = struct.pack("<IIB", m.CLIENT_PROTOCOL_41 | m.CLIENT_SECURE_CONNECTION, 0, 8) + bytes(23)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00\x02",
        struct.pack("<I", m.CLIENT_PROTOCOL_41) + b"\x00\x00",
        struct.pack("<IIB", m.CLIENT_PROTOCOL_41, 0, 8) + bytes(10),
        SECURE_HEADER + b"user",
        SECURE_HEADER + b"u\x00",
        SECURE_HEADER + b"u\x00\x14abc",
    ],
)
def test_parse_handshake_response_malformed(payload):
    with pytest.raises(m.MalformedPacket):
        m.parse_handshake_response(payload)


def test_ssl_request_detection():
    caps = m.CLIENT_PROTOCOL_41 | m.CLIENT_SSL | m.CLIENT_SECURE_CONNECTION
    ssl_request = struct.pack("<IIB", caps, 1 << 24, 33) + bytes(23)
    assert len(ssl_request) == 32
    assert m.is_ssl_request(ssl_request)
    with pytest.raises(m.MalformedPacket):
        m.parse_handshake_response(ssl_request)
    assert not m.is_ssl_request(handshake_response())
    no_ssl = struct.pack("<IIB", caps & ~m.CLIENT_SSL, 1 << 24, 33) + bytes(23)
    assert not m.is_ssl_request(no_ssl)


# =================================================================================================
# mysql_native_password and the auth decision (spec 2.2, 2.3, 2.5)
# =================================================================================================


def test_native_password_matches_independent_computation():
    assert m.native_password_token(PASSWORD, SCRAMBLE) == independent_token(PASSWORD, SCRAMBLE)


def test_native_password_matches_pymysql():
    from pymysql import _auth

    for pw, scr in [(PASSWORD, SCRAMBLE), ("password", bytes(20)), ("пароль", bytes(range(200, 220)))]:
        token = _auth.scramble_native_password(pw.encode(), scr)
        assert m.verify_native_password(scr, token, pw)
        assert m.verify_native_password(scr, token, pw.encode())


def test_native_password_rejects_wrong_inputs():
    token = independent_token(PASSWORD, SCRAMBLE)
    assert m.verify_native_password(SCRAMBLE, token, PASSWORD)
    assert not m.verify_native_password(SCRAMBLE, token, "password")
    assert not m.verify_native_password(bytes(20), token, PASSWORD)
    assert not m.verify_native_password(SCRAMBLE, token[:19], PASSWORD)
    assert m.native_password_token("", SCRAMBLE) == b""
    assert m.verify_native_password(SCRAMBLE, b"", "")


def _resp(**kw) -> m.HandshakeResponse:
    return m.parse_handshake_response(handshake_response(**kw))


A = m.AuthResult


@pytest.mark.parametrize(
    ("kwargs", "faithful", "lenient"),
    [
        ({}, A.AUTHENTICATED, A.AUTHENTICATED),
        ({"token": independent_token("wrong", SCRAMBLE)}, A.BAD_PASSWORD, A.BAD_PASSWORD),
        ({"token": b""}, A.BAD_LENGTH, A.AUTH_SWITCH),
        ({"token": b"", "user": b"haproxy_check_x"}, A.UNAUTHENTICATED, A.UNAUTHENTICATED),
        ({"token": bytes(32), "plugin": b"caching_sha2_password"}, A.BAD_LENGTH, A.AUTH_SWITCH),
        ({"token": bytes(19)}, A.BAD_LENGTH, A.AUTH_SWITCH),
        ({"plugin": b"caching_sha2_password"}, A.AUTHENTICATED, A.AUTH_SWITCH),
        ({"user": b"haproxy_check"}, A.AUTHENTICATED, A.AUTHENTICATED),
    ],
)
def test_check_auth_decision_table(kwargs, faithful, lenient):
    resp = _resp(**kwargs)
    assert m.check_auth(resp, SCRAMBLE, PASSWORD) is faithful
    assert m.check_auth(resp, SCRAMBLE, PASSWORD, auth_switch=True) is lenient


def test_check_auth_pre41_is_unauthenticated():
    header = struct.pack("<IIB", m.CLIENT_PROTOCOL_41, 0, 8) + bytes(23)
    resp = m.parse_handshake_response(header + b"1\x00\x00")
    assert m.check_auth(resp, SCRAMBLE, PASSWORD) is m.AuthResult.UNAUTHENTICATED
    assert m.AuthResult.UNAUTHENTICATED.skips_database_check
    assert not m.AuthResult.AUTHENTICATED.skips_database_check


def test_auth_switch_request_and_response():
    new = bytes(range(100, 120))
    payload = m.build_auth_switch_request(new)
    assert payload == b"\xfemysql_native_password\x00" + new + b"\x00"
    reply = independent_token(PASSWORD, new)
    assert m.verify_native_password(new, m.parse_auth_switch_response(reply), PASSWORD)
    assert not m.verify_native_password(SCRAMBLE, m.parse_auth_switch_response(reply), PASSWORD)
    assert m.check_auth_switch_response(reply, new, PASSWORD) is A.AUTHENTICATED
    assert m.check_auth_switch_response(reply, SCRAMBLE, PASSWORD) is A.BAD_PASSWORD
    assert m.check_auth_switch_response(b"", new, PASSWORD) is A.BAD_LENGTH
    with pytest.raises(ValueError):
        m.build_auth_switch_request(b"123")


def test_handshake_error_texts():
    assert m.build_err(*m.ERR_AUTH_BAD_LENGTH) == b"\xff\x10\x00#HY000Authentication failure, authDataLen!=20"
    assert m.build_err(*m.ERR_AUTH_FAILURE).endswith(b"#HY000Authentication failure")
    assert m.build_err(*m.ERR_SELECT_DB) == b"\xff\x0f\x00#HY000Select database failure"
    assert m.build_err(*m.ERR_ACCESS_DENIED) == b"\xff\x93\x01#HY000Access denied"


@pytest.mark.parametrize(
    ("name", "dev_id"),
    [
        ("root", 0), ("0", 0), ("15", 15), ("0015", 15), ("000", 0), ("", 0),
        ("123456789012345678", 123456789012345678), ("1234567890123456789", -1),
        ("00000123456789012345678", 123456789012345678), ("abc", -1), ("15a", -1), ("Root", -1),
        (b"99955", 99955), ("-1", -1), (" 1", -1),
    ],
)
def test_dev_id_from_username(name, dev_id):
    assert m.dev_id_from_username(name) == dev_id


# =================================================================================================
# Command phase (spec 3)
# =================================================================================================


def test_parse_command_kinds():
    assert m.parse_command(b"\x01") == m.ComQuit()
    assert m.parse_command(b"\x0e") == m.ComPing()
    q = m.parse_command(b"\x03SHOW TABLES")
    assert q == m.ComQuery(b"SHOW TABLES") and q.text == "SHOW TABLES"
    db = m.parse_command(b"\x02CometQL_v1")
    assert isinstance(db, m.ComInitDb) and db.database == "CometQL_v1"
    assert m.parse_command(b"\x02db_35\x00junk").database == "db_35"
    other = m.parse_command(b"\x16SELECT ?")
    assert other == m.ComOther(m.COM_STMT_PREPARE, b"SELECT ?")
    assert m.parse_command(b"\x04users_auth\x00") == m.ComOther(m.COM_FIELD_LIST, b"users_auth\x00")
    assert m.parse_command(b"\x1f").command == m.COM_RESET_CONNECTION


def test_parse_command_empty_is_malformed():
    with pytest.raises(m.MalformedPacket):
        m.parse_command(b"")


def test_com_query_keeps_raw_bytes():
    q = m.parse_command(b"\x03INSERT \xff\xfe")
    assert q.query == b"INSERT \xff\xfe"
    assert q.text.encode("utf-8", "surrogateescape") == b"INSERT \xff\xfe"


# =================================================================================================
# OK / ERR / EOF (spec 4.1-4.3, reference-observations 2)
# =================================================================================================


def test_ok_variant_a_handshake_bytes():
    assert m.frame_packet(m.build_ok_constant(), 2) == hx("07 00 00 02 00 00 00 02 00 00 00")
    assert m.OK_CONSTANT == hx("00 00 00 02 00 00 00")
    assert m.build_ok(0, 0, status=m.SERVER_STATUS_AUTOCOMMIT, info=b"") == m.OK_CONSTANT


@pytest.mark.parametrize(
    ("affected", "insert_id", "payload"),
    [
        (0, 504, "00 00 fcf801 0002 0000 00"),  # INSERT users_messages
        (1, 505, "00 01 fcf901 0002 0000 00"),  # INSERT users_auth
        (0, 0, "00 00 00 0002 0000 00"),  # INSERT pipes_messages
        (1, 12, "00 01 0c 00 02 00 00 00"),  # spec 4.1 example
    ],
)
def test_ok_variant_b_matches_reference_packets(affected, insert_id, payload):
    assert m.build_ok(affected, insert_id) == hx(payload)


def test_ok_variant_b_frame_from_spec():
    assert m.frame_packet(m.build_ok(1, 12), 1) == hx("08 00 00 01 | 00 01 0c 00 02 00 00 00")


def test_ok_variant_b_status_is_512_for_pymysql():
    from pymysql.protocol import MysqlPacket, OKPacketWrapper

    ok = OKPacketWrapper(MysqlPacket(m.build_ok(1, 505), "utf-8"))
    assert (ok.affected_rows, ok.insert_id, ok.server_status, ok.warning_count) == (1, 505, 512, 0)


def test_ok_correct_variant():
    from pymysql.protocol import MysqlPacket, OKPacketWrapper

    payload = m.build_ok(0, 99955, status=m.SERVER_STATUS_AUTOCOMMIT, info=b"", fd_bug=False)
    assert payload == hx("00 00 fd 73 86 01 02 00 00 00")
    ok = OKPacketWrapper(MysqlPacket(payload, "utf-8"))
    assert (ok.insert_id, ok.server_status, ok.warning_count) == (99955, 2, 0)


def test_ok_fd_bug_reproduces_client_view():
    """Spec 4.2: a 3-byte insert id gets a spurious 0x00; clients read status 0, 2 warnings."""
    from pymysql.protocol import MysqlPacket, OKPacketWrapper

    payload = m.build_ok(0, 99955)
    assert payload == hx("00 00 fd 73 86 01 00 00 02 00 00 00")
    ok = OKPacketWrapper(MysqlPacket(payload, "utf-8"))
    assert (ok.insert_id, ok.server_status, ok.warning_count) == (99955, 0, 2)


def test_ok_cluster_minus_one():
    assert m.build_ok(-1, 0) == hx("00 ff 00 00 02 00 00 00")
    with pytest.raises(ValueError):
        m.build_ok(-1, 0, fd_bug=False)


def test_err_packet_syntax_error_frame():
    expected = hx("1e 00 00 01 ff 03 00 23 48 59 30 30 30") + b"Syntax error in query"
    assert m.frame_packet(m.build_err(3, "Syntax error in query"), 1) == expected


def test_err_packet_with_pymysql():
    from pymysql import err
    from pymysql.protocol import MysqlPacket

    pkt = MysqlPacket(m.build_err(13, "Each column in the select used only once"), "utf-8")
    assert pkt.is_error_packet()
    with pytest.raises(err.InternalError) as info:
        pkt.raise_for_error()
    assert info.value.args == (13, "Each column in the select used only once")


def test_err_rejects_bad_sqlstate():
    with pytest.raises(ValueError):
        m.build_err(1, "x", sqlstate="HY00")


def test_eof_packet():
    assert m.build_eof() == hx("fe 00 00 02 00") == m.EOF_PAYLOAD
    assert m.frame_packet(m.build_eof(), 4) == hx("05 00 00 04 fe 00 00 02 00")
    assert m.build_eof(warnings=1, status=0x0200) == hx("fe 01 00 00 02")


# =================================================================================================
# Result sets (spec 4.4)
# =================================================================================================


def test_column_definition_is_byte_exact():
    expected = hx("03646566 00 00 00 026964 00 0c 2100 4d000000 fd 0100 1f 0000")
    assert m.build_column_definition("id") == expected


def test_column_definition_parsed_by_pymysql():
    from pymysql.protocol import FieldDescriptorPacket

    field = FieldDescriptorPacket(m.build_column_definition("hash"), "utf-8")
    assert field.name == "hash" and field.type_code == 253 and field.charsetnr == 33
    assert field.length == 77 and field.flags == 1 and field.scale == 31 and field.catalog == b"def"


def test_text_row_reference():
    assert m.build_text_row(["501", "validkey501"]) == b"\x03501\x0bvalidkey501"


def test_text_row_null_handling():
    assert m.build_text_row([None, ""]) == b"\x00\x00"
    assert m.build_text_row([None, "a"], null_as_empty=False) == b"\xfb\x01a"


def test_text_row_long_values_and_bytes():
    v = "x" * 251
    assert m.build_text_row([v]) == b"\xfc\xfb\x00" + v.encode()
    assert m.build_text_row([b"\xff"]) == b"\x01\xff"
    assert m.build_text_row(["é"]) == b"\x02\xc3\xa9"


def test_result_set_reference_capture_users_auth():
    payloads = m.build_result_set(["id", "hash"], [["501", "validkey501"]])
    assert payloads[0] == b"\x02"
    assert payloads[1] == hx("03646566 00 00 00 026964 00 0c 2100 4d000000 fd 0100 1f 0000")
    assert payloads[3] == hx("fe 0000 0200")
    assert payloads[4] == hx("03") + b"501" + hx("0b") + b"validkey501"
    assert payloads[5] == hx("fe 0000 0200")
    assert len(payloads) == 6


def test_result_set_worked_example_from_spec():
    """Spec 4.4: SELECT * FROM pipes WHERE name = 'abc' (client packet seq 0)."""
    data = m.frame_packets(m.build_result_set(["name", "users"], [["abc", "0"]]), 1)
    reader = m.PacketReader()
    reader.feed(data)
    packets = list(reader)
    assert [p.sequence_id for p in packets] == [1, 2, 3, 4, 5, 6]
    assert m.frame_packet(packets[0].payload, 1) == hx("01 00 00 01 02")
    assert m.frame_packet(packets[3].payload, 4) == hx("05 00 00 04 fe 00 00 02 00")
    assert m.frame_packet(packets[4].payload, 5) == hx("06 00 00 05 03 61 62 63 01 30")
    assert packets[5].payload == m.EOF_PAYLOAD


def test_result_set_without_rows():
    payloads = m.build_result_set(["name", "users"], [])
    assert payloads[-2:] == [m.EOF_PAYLOAD, m.EOF_PAYLOAD]
    assert len(payloads) == 5


def test_result_set_answer_buffer_truncation():
    rows = [[str(i)] for i in range(100)]
    assert len(m.build_result_set(["c"], rows)) == 3 + 100 + 1
    limited = m.build_result_set(["c"], rows, answer_buf_size=2000 + 200)
    header = 3
    kept = len(limited) - header - 1
    assert 0 < kept < 100
    assert limited[-1] == m.EOF_PAYLOAD
    assert len(m.build_result_set(["c"], rows, answer_buf_size=100)) == header + 1


def test_result_set_parsed_by_pymysql_reader():
    """Drive pymysql's own result reader over our bytes (a real client's view)."""
    from pymysql.connections import MySQLResult

    data = m.frame_packets(m.build_result_set(["name", "users"], [["web_a", "0"], ["web_b", "2"]]), 1)
    reader = m.PacketReader()
    reader.feed(data)
    packets = [p.payload for p in reader]

    class FakeConnection:
        encoding = "utf-8"
        charset = "utf8mb4"
        use_unicode = True
        decoders: dict = {}
        _sock = None

        def __init__(self):
            from pymysql.protocol import MysqlPacket

            self._queue = [MysqlPacket(p, "utf-8") for p in packets]

        def _read_packet(self, packet_type=None):
            from pymysql.protocol import MysqlPacket

            pkt = self._queue.pop(0)
            if packet_type is not None and packet_type is not MysqlPacket:
                return packet_type(pkt.get_all_data(), "utf-8")
            return pkt

    conn = FakeConnection()
    result = MySQLResult(conn)
    result.read()
    assert [f.name for f in result.fields] == ["name", "users"]
    assert result.rows == (("web_a", "0"), ("web_b", "2"))


def test_eof_parsed_by_pymysql():
    from pymysql.protocol import EOFPacketWrapper, MysqlPacket

    eof = EOFPacketWrapper(MysqlPacket(m.build_eof(), "utf-8"))
    assert (eof.warning_count, eof.server_status) == (0, 2)


# =================================================================================================
# Length-encoded integers (spec 4.2)
# =================================================================================================


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"), (250, "fa"), (251, "fcfb00"), (65535, "fcffff"), (65536, "fd000001"),
        (0xFFFFFF, "fdffffff"), (1 << 24, "fe0000000100000000"), ((1 << 64) - 1, "fe" + "ff" * 8),
    ],
)
def test_lenenc_int_correct(value, encoded):
    assert m.encode_lenenc_int(value, fd_bug=False) == bytes.fromhex(encoded)
    assert m.decode_lenenc_int(bytes.fromhex(encoded)) == (value, len(encoded) // 2)


def test_lenenc_int_fd_bug():
    assert m.encode_lenenc_int(65536) == bytes.fromhex("fd00000100")
    assert m.encode_lenenc_int(65535) == bytes.fromhex("fcffff")
    assert m.encode_lenenc_int(1 << 24) == bytes.fromhex("fe0000000100000000")


def test_lenenc_int_errors():
    with pytest.raises(ValueError):
        m.encode_lenenc_int(1 << 64)
    with pytest.raises(ValueError):
        m.encode_lenenc_int(-2)
    for bad in (b"", b"\xfc\x01", b"\xff", b"\xfe\x00"):
        with pytest.raises(m.MalformedPacket):
            m.decode_lenenc_int(bad)
    assert m.decode_lenenc_int(b"\xfb") == (None, 1)
    assert m.decode_lenenc_int(b"\x00\x05", 1) == (5, 2)


def test_lenenc_str():
    assert m.encode_lenenc_str("") == b"\x00"
    assert m.encode_lenenc_str("def") == b"\x03def"
    assert m.encode_lenenc_str(b"\x00\x01") == b"\x02\x00\x01"


# =================================================================================================
# Framing (PacketReader / frame_packet)
# =================================================================================================


def test_reader_single_and_merged_reads():
    data = m.frame_packet(b"\x03SHOW TABLES", 0) + m.frame_packet(b"\x0e", 0) + m.frame_packet(b"\x01", 0)
    reader = m.PacketReader()
    reader.feed(data)
    packets = list(reader)
    assert [p.payload for p in packets] == [b"\x03SHOW TABLES", b"\x0e", b"\x01"]
    assert all(p.sequence_id == 0 and p.reply_sequence_id == 1 for p in packets)
    assert reader.next_packet() is None and reader.buffered == 0


def test_reader_byte_by_byte():
    data = m.frame_packet(b"hello", 1) + m.frame_packet(b"", 2)
    reader = m.PacketReader()
    got = []
    for b in data:
        reader.feed(bytes([b]))
        got.extend(reader)
    assert [(p.sequence_id, p.payload) for p in got] == [(1, b"hello"), (2, b"")]


def test_reader_partial_header_and_body():
    reader = m.PacketReader()
    reader.feed(b"\x05\x00")
    assert reader.next_packet() is None
    reader.feed(b"\x00\x07abc")
    assert reader.next_packet() is None
    assert reader.buffered == 7
    reader.feed(b"de")
    assert reader.next_packet() == m.Packet(7, b"abcde", 7)


def test_reply_sequence_wraps():
    reader = m.PacketReader()
    reader.feed(m.frame_packet(b"x", 255))
    assert reader.next_packet().reply_sequence_id == 0


def test_frame_and_read_16mb_continuation():
    payload = bytes(range(256)) * (0x10000) + b"tail"  # 16 MiB + 4 bytes
    framed = m.frame_packet(payload, 3)
    assert framed[:4] == b"\xff\xff\xff\x03"
    second = 4 + m.MAX_PACKET_CHUNK
    assert framed[second: second + 4] == bytes([len(payload) - m.MAX_PACKET_CHUNK, 0, 0, 4])
    reader = m.PacketReader(max_payload=len(payload))
    for i in range(0, len(framed), 5_000_000):
        reader.feed(framed[i: i + 5_000_000])
    pkt = reader.next_packet()
    assert pkt.payload == payload and pkt.sequence_id == 3 and pkt.last_sequence_id == 4
    assert pkt.reply_sequence_id == 5


def test_exact_chunk_payload_ends_with_empty_packet():
    payload = b"a" * m.MAX_PACKET_CHUNK
    framed = m.frame_packet(payload, 0)
    assert len(framed) == 4 + m.MAX_PACKET_CHUNK + 4
    assert framed[-4:] == b"\x00\x00\x00\x01"
    reader = m.PacketReader()
    reader.feed(framed)
    pkt = reader.next_packet()
    assert pkt.payload == payload and pkt.last_sequence_id == 1
    assert reader.next_packet() is None


def test_frame_packets_counts_split_chunks():
    payloads = [b"a" * m.MAX_PACKET_CHUNK, b"b"]
    framed = m.frame_packets(payloads, 1)
    assert framed[-5:] == b"\x01\x00\x00\x03b"


def test_reader_oversize_is_rejected_before_the_body_arrives():
    reader = m.PacketReader(max_payload=100)
    reader.feed(b"\x65\x00\x00\x00")
    with pytest.raises(m.PacketTooLarge):
        reader.next_packet()
    with pytest.raises(m.PacketTooLarge):  # the reader stays dead
        reader.feed(b"x")
    with pytest.raises(m.ProtocolError):
        reader.next_packet()


def test_reader_oversize_across_continuation():
    reader = m.PacketReader(max_payload=m.MAX_PACKET_CHUNK + 5)
    reader.feed(b"\xff\xff\xff\x00" + b"a" * m.MAX_PACKET_CHUNK + b"\x06\x00\x00\x01")
    with pytest.raises(m.PacketTooLarge):
        reader.next_packet()


def test_reader_bad_continuation_sequence():
    reader = m.PacketReader()
    reader.feed(b"\xff\xff\xff\x00" + b"a" * m.MAX_PACKET_CHUNK + b"\x01\x00\x00\x05z")
    with pytest.raises(m.SequenceError):
        reader.next_packet()


def test_reader_eof_inside_packet():
    reader = m.PacketReader()
    reader.feed(m.frame_packet(b"abc", 0))
    reader.feed_eof()  # a complete, not yet taken packet is fine
    assert reader.next_packet().payload == b"abc"
    partial = m.PacketReader()
    partial.feed(b"\x03\x00\x00\x00ab")
    with pytest.raises(m.MalformedPacket):
        partial.feed_eof()
    header_only = m.PacketReader()
    header_only.feed(b"\x03\x00")
    with pytest.raises(m.MalformedPacket):
        header_only.feed_eof()
    continued = m.PacketReader()
    continued.feed(b"\xff\xff\xff\x00" + b"a" * m.MAX_PACKET_CHUNK)
    assert continued.next_packet() is None
    with pytest.raises(m.MalformedPacket):
        continued.feed_eof()
    m.PacketReader().feed_eof()


def test_reader_rejects_negative_limit():
    with pytest.raises(ValueError):
        m.PacketReader(max_payload=-1)


# =================================================================================================
# Property tests
# =================================================================================================

FAST = fuzz_settings(400, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(st.binary(max_size=64), max_size=12), st.integers(1, 1000))
def test_reader_random_bytes_never_raise_foreign_errors(chunks, limit):
    reader = m.PacketReader(max_payload=limit)
    try:
        for chunk in chunks:
            reader.feed(chunk)
            for pkt in reader:
                assert isinstance(pkt, m.Packet)
                assert len(pkt.payload) <= limit
        reader.feed_eof()
    except m.ProtocolError:
        pass


@FAST
@given(
    st.lists(st.binary(max_size=300), min_size=1, max_size=8),
    st.integers(0, 255),
    st.lists(st.integers(1, 50), min_size=1, max_size=20),
)
def test_frame_then_read_roundtrip_with_random_splits(payloads, seq, cuts):
    data = m.frame_packets(payloads, seq)
    reader = m.PacketReader()
    out: list[m.Packet] = []
    pos = 0
    i = 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        reader.feed(data[pos: pos + step])
        out.extend(reader)
        pos += step
        i += 1
    assert [p.payload for p in out] == payloads
    assert [p.sequence_id for p in out] == [(seq + k) & 0xFF for k in range(len(payloads))]
    reader.feed_eof()


@FAST
@given(st.binary(max_size=200))
def test_handshake_and_command_parsers_on_random_bytes(data):
    try:
        resp = m.parse_handshake_response(data)
        assert isinstance(resp, m.HandshakeResponse)
        m.check_auth(resp, SCRAMBLE, PASSWORD)
        m.check_auth(resp, SCRAMBLE, PASSWORD, auth_switch=True)
    except m.ProtocolError:
        pass
    try:
        cmd = m.parse_command(data)
        assert isinstance(cmd, (m.ComQuit, m.ComPing, m.ComInitDb, m.ComQuery, m.ComOther))
    except m.ProtocolError:
        pass
    m.is_ssl_request(data)


@FAST
@given(st.integers(0, (1 << 64) - 1))
def test_lenenc_roundtrip(value):
    encoded = m.encode_lenenc_int(value, fd_bug=False)
    assert m.decode_lenenc_int(encoded) == (value, len(encoded))


@FAST
@given(st.lists(st.one_of(st.none(), st.text(max_size=300)), max_size=6))
def test_text_row_decodes(values):
    row = m.build_text_row(values)
    pos = 0
    for v in values:
        n, pos = m.decode_lenenc_int(row, pos)
        text = row[pos: pos + n].decode("utf-8", "surrogateescape")
        assert text == ("" if v is None else v)
        pos += n
    assert pos == len(row)
