"""The sans-IO comet codec: URL parameters, commands, frames, HTTP heads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.wire import comet as w
from emulator.wire import http
from emulator.wire.cnum import stoi
from tests.fuzzing import fuzz_settings

pytestmark = pytest.mark.fuzz("comet-ws")

UUID = "Xy3" + "a" * 29


def test_url_positional_parse():
    p = w.parse_url(f"/ws/sesion=abc&myid=5&devid=15&v=4.08&uuid={UUID}&api=js")
    assert (p.user_key, p.user_id, p.dev_id, p.major, p.minor, p.uuid, p.error) == ("abc", 5, 15, 4, 8, UUID, None)


def test_url_names_are_ignored_positions_count():
    p = w.parse_url(f"/ws/x=abc&abcd=7&abcde=3&v=4.08&uuid={UUID}&api=js")
    assert (p.user_key, p.user_id, p.dev_id) == ("abc", 7, 3)


@pytest.mark.parametrize("text,user", [("undefined", 0), ("007", 7), ("-3", 0), ("1x", 0), ("", 0)])
def test_url_user_id_coercion(text, user):
    assert w.parse_url(f"/ws/sesion=k&myid={text}&devid=1&v=4.08&uuid={UUID}&api=js").user_id == user


def test_url_dev_id_out_of_range_is_zero():
    assert w.parse_url(f"/ws/sesion=k&myid=1&devid=100000&v=4.08&uuid={UUID}").dev_id == 0
    assert w.parse_url(f"/ws/sesion=k&myid=1&devid=99999&v=4.08&uuid={UUID}").dev_id == 99999


def test_short_custom_uuid_swallows_the_request_tail():
    assert w.parse_url("/ws/sesion=k&myid=1&devid=1&v=4.08&uuid=short").uuid == "short HTTP/1.1\r\n"


@pytest.mark.parametrize("target,code", [
    ("/ws/nothing", 401),
    ("/ws/sesion=abc", 401),
    ("/ws/sesion=abc&myid=1", 406),
    ("/ws/sesion=abc&myid=1&devid=1", 418),
    ("/ws/sesion=abc&myid=1&devid=1&v=four&uuid=x", 418),
    ("/ws/sesion=abc&myid=1&devid=1&v=4&uuid=x", 418),
])
def test_url_errors(target, code):
    assert w.parse_url(target).error[0] == code


def test_url_error_frames():
    new = w.url_error_frame(423, w.URL_ERRORS["origin"][1], 1700000000, old_shape=False)
    assert w.dumps(new) == ('{"data":{"error":"Error code 423(Access denied, Request from unauthorized domain.)",'
                            '"error_code":423,"info":"Closed due to error. See last message."},"event":"error",'
                            '"message_send_time":1700000000,"pipe":"sys"}')
    old = w.url_error_frame(401, w.URL_ERRORS["no_session"][1], 1, old_shape=True)
    assert old["event_name"] == "error" and isinstance(old["data"], str)
    assert w.URL_ERRORS["no_version"][1].endswith("\n")


def test_command_prefix_recognition():
    assert w.parse_command("subscription\nweb_a\nweb_b").body == "web_a\nweb_b"
    assert w.parse_command("subscriptionXweb_a").name == "subscription"
    assert w.parse_command("pipe_log\np\nm\n").name == "pipe_log"
    assert w.parse_command("Subscription\nx").name == "unknown"


def test_web_pipe2_parse():
    m = w.parse_web_pipe2('web_chat\nmessage\n*\n{"text":"hi\nthere"}')
    assert (m.pipe, m.event, m.message, m.error) == ("web_chat", "message", '{"text":"hi\nthere"}', None)
    assert w.parse_web_pipe2("@web_x\ne\n*\nm").anonymous


def test_mysql_escape():
    assert w.mysql_escape("a'b\"c\\d\x00\n\r\x1a") == "a\\'b\\\"c\\\\d\\0\\n\\r\\Z"


def test_stoi():
    assert [stoi(s) for s in (" 12", "-3x", "+4", "x", "", "99999999999")] == [12, -3, 4, None, None, None]


def test_short_frame_quirk_only_touches_123_to_125_bytes():
    for n in (122, 126):
        text = "x" * n
        assert w.short_frame_quirk(text) == text
    for n in (123, 124, 125):
        out = w.short_frame_quirk("x" * n)
        assert len(out.encode()) == n and out.endswith("\x00" * (n - 122)) and out.startswith("x" * 122)


def test_dumps_matches_the_server_serialiser():
    assert w.dumps({"b": "é/'", "a": [1, "\n"]}) == '{"a":[1,"\\n"],"b":"é/\'"}'


@fuzz_settings(300)
@given(st.text(max_size=300))
def test_parsers_never_raise(text):
    w.parse_url(text)
    cmd = w.parse_command(text)
    w.parse_subscription(cmd.body)
    w.parse_web_pipe2(cmd.body)
    w.short_frame_quirk(text)


# --- HTTP heads ----------------------------------------------------------------------------------


def test_upgrade_response_is_byte_exact():
    # the key/accept pair of RFC 6455 section 1.3
    assert http.upgrade_response("dGhlIHNhbXBsZSBub25jZQ==", with_protocol=False) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert b"Sec-WebSocket-Protocol: chat\r\n" in http.upgrade_response("x", with_protocol=True)


def test_parse_head_and_exact_header_names():
    head = http.parse_head(b"GET /ws/a=b HTTP/1.1\r\nsec-websocket-key: k\r\nUser-Agent: UA\r\n\r\n")
    assert head.target == "/ws/a=b" and head.header("Sec-WebSocket-Key", exact=True) is None
    assert head.header("Sec-WebSocket-Key") == "k" and head.header("User-Agent", exact=True) == "UA"
    with pytest.raises(http.HeadError):
        http.parse_head(b"garbage\r\n\r\n")


def test_plain_http_answers():
    def ask(line):
        return http.plain_http_response(http.parse_head(line.encode() + b"\r\n\r\n"))
    assert ask("GET / HTTP/1.1").startswith(b"HTTP/1.1 200 OK")
    assert ask("GET /info HTTP/1.1").endswith(b'{"status":"ok","node":"n1________"}')
    assert ask("GET /favicon.ico HTTP/1.1").startswith(b"HTTP/1.1 301 OK")
    assert ask("OPTIONS / HTTP/1.1").endswith(b"+OK")
    assert ask("POST /sesion=x HTTP/1.1").startswith(b"HTTP/1.1 404")


# --- server frames on the wire (1.3) -------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 122, 125, 126, 127, 1000, 65535])
def test_encode_server_frame_matches_an_independent_framer(n):
    """Byte for byte what wsproto (the framer the transport used before) writes for a server text frame."""
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import TextMessage

    text = "é" * (n // 2) + "x" * (n % 2)
    assert w.encode_server_frame(text) == Connection(ConnectionType.SERVER).send(TextMessage(data=text))


def test_encode_server_frame_headers_and_the_size_limit():
    assert w.encode_server_frame("hi") == b"\x81\x02hi"
    assert w.encode_server_frame("x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert w.encode_server_frame("x" * 65535)[:4] == b"\x81\x7e\xff\xff"
    assert w.encode_server_frame("x" * 65536) is None      # not sent at all: never the 64-bit form
    assert w.encode_server_frame("é" * 32768) is None      # the limit is in bytes, not characters
    assert w.encode_server_frame("a\ud800b") == b"\x81\x03a?b"  # a lone surrogate cannot fail a fan-out


def test_encode_server_frame_of_a_truncated_short_frame_states_the_full_length():
    """short_frame_truncation (S10, S18): NULs in place of the lost bytes, the header unchanged."""
    text = w.short_frame_quirk("y" * 124)
    frame = w.encode_server_frame(text)
    assert frame[:2] == b"\x81\x7c" and frame[2:] == b"y" * 122 + b"\x00\x00"
