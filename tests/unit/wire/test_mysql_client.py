"""Client side of the MySQL codec (emulator/wire/mysql.py) and the sans-IO CometQL client protocol
(bench/clients/cometql.py): greetings of CppComet, MySQL 8 and MariaDB, the handshake response
checked by our server's decoder and by an independent digest, OK/ERR/EOF/result sets, auth switches,
sequence ids, and fuzzing (only MalformedPacket / CometQLProtocolError may come out)."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymysql._auth import scramble_caching_sha2, scramble_native_password

from bench.clients.cometql import ClientProtocol, CometQLProtocolError, Failure, OkResult, Ready, Result, ResultSet
from emulator.wire import mysql as m

SCRAMBLE = bytes(range(0x21, 0x21 + 20))
PASSWORD = "CometQLPassword"


def mysql8_greeting(plugin: str = "caching_sha2_password", version: str = "8.0.36") -> bytes:
    """A greeting as MySQL 8 writes it (auth data length 21, plugin name at the end)."""
    caps = 0xDFFFFFFF & ~m.CLIENT_SSL
    return (b"\x0a" + version.encode() + b"\x00" + struct.pack("<I", 77) + SCRAMBLE[:8] + b"\x00"
            + struct.pack("<H", caps & 0xFFFF) + bytes((255,)) + struct.pack("<H", 2)
            + struct.pack("<H", caps >> 16) + bytes((21,)) + b"\x00" * 10 + SCRAMBLE[8:] + b"\x00"
            + plugin.encode() + b"\x00")


def test_parse_cppcomet_greeting_both_profiles():
    for caps in (m.CAPABILITIES_CPPCOMET, m.CAPABILITIES_LENIENT):
        g = m.parse_initial_handshake(m.build_initial_handshake(connection_id=39, scramble=SCRAMBLE, capabilities=caps))
        assert g.server_version == m.SERVER_VERSION and g.connection_id == 39
        assert g.scramble == SCRAMBLE and g.capabilities == caps
        assert g.charset == m.CHARSET_LATIN1 and g.status == 2 and g.auth_plugin == "mysql_native_password"


def test_parse_mysql8_and_mariadb_greetings():
    g = m.parse_initial_handshake(mysql8_greeting())
    assert (g.server_version, g.scramble, g.auth_plugin) == ("8.0.36", SCRAMBLE, "caching_sha2_password")
    g = m.parse_initial_handshake(mysql8_greeting("mysql_native_password", "5.5.5-10.11.6-MariaDB-0+deb12u1"))
    assert g.server_version.startswith("5.5.5-10.11") and g.auth_plugin == "mysql_native_password"


def test_a_scramble_ending_in_nul_keeps_its_bytes():
    scramble = SCRAMBLE[:19] + b"\x00"
    g = m.parse_initial_handshake(m.build_initial_handshake(connection_id=1, scramble=scramble))
    assert g.scramble == scramble


@pytest.mark.parametrize("payload", [b"", b"\x09abc\x00", b"\x0aCppComet", b"\x0av\x00\x01\x02"])
def test_malformed_greetings(payload):
    with pytest.raises(m.MalformedPacket):
        m.parse_initial_handshake(payload)


@given(st.binary(max_size=200))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_greeting_fuzz_raises_only_malformed(data):
    try:
        m.parse_initial_handshake(data)
    except m.MalformedPacket:
        pass


def test_handshake_response_is_read_by_our_server_and_authenticates():
    token = m.native_password_token(PASSWORD, SCRAMBLE)
    assert token == scramble_native_password(PASSWORD.encode(), SCRAMBLE)   # independent implementation
    payload = m.build_handshake_response("15", token, database="CometQL_v1")
    parsed = m.parse_handshake_response(payload)
    assert (parsed.user, parsed.database_name, parsed.auth_plugin) == ("15", "CometQL_v1", "mysql_native_password")
    assert parsed.capabilities & m.CLIENT_SSL == 0 and parsed.capabilities & m.CLIENT_PROTOCOL_41
    assert m.check_auth(parsed, SCRAMBLE, PASSWORD) is m.AuthResult.AUTHENTICATED
    assert m.check_auth(parsed, SCRAMBLE, "other") is m.AuthResult.BAD_PASSWORD
    bare = m.parse_handshake_response(m.build_handshake_response("15", token, database=None, auth_plugin=None))
    assert bare.database is None and bare.auth_plugin is None


def test_caching_sha2_token_matches_pymysql():
    assert m.caching_sha2_token(PASSWORD, SCRAMBLE) == scramble_caching_sha2(PASSWORD.encode(), SCRAMBLE)
    assert m.caching_sha2_token("", SCRAMBLE) == b""


def test_ok_err_eof_decoders():
    assert m.parse_ok(m.OK_CONSTANT) == m.OkPacket(0, 0, 2, 0, b"")
    assert m.parse_ok(m.build_ok(1, 5)) == m.OkPacket(1, 5, 0x0200, 0, b"\x00")
    assert m.parse_ok(m.build_ok(70000, 0, fd_bug=False, status=2, info=b"")).affected_rows == 70000
    assert m.parse_err(m.build_err(12, "field 'name' is required")) == m.ErrPacket(12, "HY000",
                                                                                   "field 'name' is required")
    assert m.parse_err(b"\xff\x10\x04Too many connections") == m.ErrPacket(1040, "", "Too many connections")
    assert m.parse_eof(m.EOF_PAYLOAD) == m.EofPacket(0, 2) and m.is_eof_packet(m.EOF_PAYLOAD)
    assert not m.is_eof_packet(b"\xfe" + b"x" * 9)   # a row value starting with 0xFE
    for bad, fn in ((b"\x01", m.parse_ok), (b"\xff\x01", m.parse_err), (b"\x00", m.parse_eof)):
        with pytest.raises(m.MalformedPacket):
            fn(bad)


def test_column_definition_and_rows_round_trip():
    col = m.parse_column_definition(m.build_column_definition("hash"))
    assert (col.catalog, col.name, col.charset, col.length, col.column_type) == ("def", "hash", 33, 77, 0xFD)
    row = m.build_text_row(["5", "x" * 300, None], null_as_empty=False)
    assert m.parse_text_row(row, 3) == (b"5", b"x" * 300, None)
    with pytest.raises(m.MalformedPacket):
        m.parse_text_row(row, 2)     # bytes left over
    with pytest.raises(m.MalformedPacket):
        m.parse_text_row(b"\x05ab", 1)   # value cut short


def test_auth_switch_request_decoder():
    req = m.parse_auth_switch_request(m.build_auth_switch_request(SCRAMBLE))
    assert req == m.AuthSwitchRequest("mysql_native_password", SCRAMBLE)
    assert m.parse_auth_switch_request(b"\xfe").plugin == "mysql_old_password"


# --- ClientProtocol -----------------------------------------------------------------------------------


def handshake(proto: ClientProtocol, greeting: bytes | None = None) -> bytes:
    """Feed a greeting; return the client's response payload."""
    greeting = greeting or m.build_initial_handshake(connection_id=5, scramble=SCRAMBLE)
    assert proto.receive_data(m.frame_packet(greeting, 0)) == []
    reader = m.PacketReader()
    reader.feed(proto.data_to_send())
    (packet,) = list(reader)
    assert packet.sequence_id == 1
    return packet.payload


def test_protocol_login_query_and_errors():
    proto = ClientProtocol("15", PASSWORD)
    response = m.parse_handshake_response(handshake(proto))
    assert m.check_auth(response, SCRAMBLE, PASSWORD) is m.AuthResult.AUTHENTICATED
    (ready,) = proto.receive_data(m.frame_packet(m.OK_CONSTANT, 2))
    assert isinstance(ready, Ready) and proto.state == "ready"

    proto.query("SELECT * FROM users_auth WHERE id = 5")
    out = proto.data_to_send()
    assert out[3] == 0 and out[4] == m.COM_QUERY
    payloads = m.build_result_set(["id", "hash"], [["5", "PassForUser5"], ["6", ""]])
    (result,) = proto.receive_data(m.frame_packets(payloads, 1))
    assert isinstance(result, Result) and isinstance(result.result, ResultSet)
    assert result.result.columns == ["id", "hash"] and result.result.rows == [("5", "PassForUser5"), ("6", "")]
    assert result.result.dicts()[0] == {"id": "5", "hash": "PassForUser5"}

    proto.query("INSERT INTO users_auth (id, hash) VALUES (7, 'x')")
    proto.data_to_send()
    (ok,) = proto.receive_data(m.frame_packet(m.build_ok(1, 7), 1))
    assert ok.result == OkResult(1, 7, 0x0200, 0, "")

    proto.query("bad")
    proto.data_to_send()
    (err,) = proto.receive_data(m.frame_packet(m.build_err(3, "Syntax error in query"), 1))
    assert isinstance(err, Failure) and not err.fatal and err.error.code == 3 and proto.state == "ready"


def test_protocol_results_split_across_reads():
    proto = ClientProtocol("15", PASSWORD)
    handshake(proto)
    proto.receive_data(m.frame_packet(m.OK_CONSTANT, 2))
    proto.query("SHOW TABLES")
    data = m.frame_packets(m.build_result_set(["Tables"], [["users_auth"], ["pipes"]]), 1)
    events = []
    for i in range(len(data)):
        events += proto.receive_data(data[i:i + 1])
    assert [e.result.rows for e in events] == [[("users_auth",), ("pipes",)]]


def test_protocol_refused_login_and_greeting_error():
    proto = ClientProtocol("15", "wrong")
    handshake(proto)
    (failure,) = proto.receive_data(m.frame_packet(m.build_err(*m.ERR_AUTH_FAILURE), 2))
    assert isinstance(failure, Failure) and failure.fatal and proto.state == "closed"
    busy = ClientProtocol("15", PASSWORD)
    (failure,) = busy.receive_data(m.frame_packet(b"\xff\x10\x04Too many connections", 0))
    assert failure.fatal and failure.error.code == 1040


def test_protocol_out_of_order_sequence_is_an_error():
    proto = ClientProtocol("15", PASSWORD)
    handshake(proto)
    proto.receive_data(m.frame_packet(m.OK_CONSTANT, 2))
    proto.query("DESCRIBE pipes")
    proto.data_to_send()
    with pytest.raises(CometQLProtocolError, match="out of order"):
        proto.receive_data(m.frame_packet(m.build_err(15, "x"), 9))   # what the faithful server does
    assert proto.state == "closed"


def test_protocol_auth_switch_to_native_password():
    proto = ClientProtocol("root", PASSWORD, database=None)
    handshake(proto, mysql8_greeting("mysql_native_password"))
    new = bytes(range(0x41, 0x41 + 20))
    assert proto.receive_data(m.frame_packet(m.build_auth_switch_request(new), 2)) == []
    reader = m.PacketReader()
    reader.feed(proto.data_to_send())
    (packet,) = list(reader)
    assert packet.sequence_id == 3 and packet.payload == scramble_native_password(PASSWORD.encode(), new)
    (ready,) = proto.receive_data(m.frame_packet(m.OK_CONSTANT, 4))
    assert isinstance(ready, Ready)


def test_protocol_caching_sha2_fast_auth_and_full_auth_refusal():
    proto = ClientProtocol("root", PASSWORD, database=None)
    response = m.parse_handshake_response(handshake(proto, mysql8_greeting()))
    assert response.auth_plugin == "caching_sha2_password"
    assert response.auth_response == scramble_caching_sha2(PASSWORD.encode(), SCRAMBLE)
    assert proto.receive_data(m.frame_packet(b"\x01\x03", 2)) == []
    (ready,) = proto.receive_data(m.frame_packet(m.OK_CONSTANT, 3))
    assert isinstance(ready, Ready)
    slow = ClientProtocol("root", PASSWORD, database=None)
    handshake(slow, mysql8_greeting())
    with pytest.raises(CometQLProtocolError, match="full authentication"):
        slow.receive_data(m.frame_packet(b"\x01\x04", 2))


def test_protocol_multiple_results():
    proto = ClientProtocol("15", PASSWORD)
    handshake(proto)
    proto.receive_data(m.frame_packet(m.OK_CONSTANT, 2))
    proto.query("SELECT 1; SELECT 2")
    proto.data_to_send()
    first = m.build_ok(0, 0, status=m.SERVER_MORE_RESULTS_EXISTS | 2, info=b"")
    events = proto.receive_data(m.frame_packet(first, 1) + m.frame_packet(m.build_ok(0, 0), 2))
    assert [e.more for e in events] == [True, False] and proto.state == "ready"


def test_query_outside_ready_is_a_programming_error():
    proto = ClientProtocol("15", PASSWORD)
    with pytest.raises(RuntimeError):
        proto.query("SELECT 1")


@given(st.binary(max_size=300))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_protocol_fuzz_after_login(data):
    proto = ClientProtocol("15", PASSWORD)
    handshake(proto)
    proto.receive_data(m.frame_packet(m.OK_CONSTANT, 2))
    proto.query("SELECT * FROM users_auth")
    proto.data_to_send()
    try:
        proto.receive_data(data)
    except CometQLProtocolError:
        assert proto.state == "closed"


def test_independent_native_digest():
    stage1 = hashlib.sha1(PASSWORD.encode()).digest()
    mix = hashlib.sha1(SCRAMBLE + hashlib.sha1(stage1).digest()).digest()
    assert m.native_password_token(PASSWORD, SCRAMBLE) == bytes(a ^ b for a, b in zip(stage1, mix))
