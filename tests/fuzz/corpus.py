"""Seed inputs per protocol for the mutation campaign and the live fuzzer: valid messages as the
real clients send them (JsSIP, sipp, PHP mysqli, CometServerApi.js, FreeSWITCH's mod_xml_curl,
the comet server's libesl), so that mutations stay close to what a parser must handle.

The SIP and SDP captures are the ones the wire tests use (``tests/unit/wire``).
"""

from __future__ import annotations

import struct

from pymysql._auth import scramble_native_password

from tests.unit.wire.test_sdp import CHROME_OFFER
from tests.unit.wire.test_sip import SEEDS as SIP_CAPTURES

SIP_USER = "000001015"

SIPP_OFFER = ("v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
              "m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
AUDIO_ONLY_OFFER = "\r\n".join(line for line in CHROME_OFFER.split("\r\n")
                               if not line.startswith(("m=video", "a=rtpmap:96", "a=rtpmap:97"))) + "\r\n"
SDP = [CHROME_OFFER.encode(), SIPP_OFFER.encode(), AUDIO_ONLY_OFFER.encode(),
       b"v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0 8\r\nc=IN IP4 1.1.1.1\r\n"]


def sip_request(method: str, transport: str = "TCP", n: int = 0, body: bytes = b"", extra: str = "",
                uri: str = "sip:1*101*video@127.0.0.1") -> bytes:
    head = (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{transport} fuzz.invalid:5999;branch=z9hG4bKfz{n}\r\n"
            f"Max-Forwards: 70\r\nTo: <{uri}>\r\nFrom: \"fuzz\" <sip:{SIP_USER}@127.0.0.1>;tag=fz{n}\r\n"
            f"Call-ID: fuzz-{n}\r\nCSeq: 1 {method}\r\nContact: <sip:fz@fuzz.invalid;transport={transport.lower()}>\r\n"
            + extra + ("Content-Type: application/sdp\r\n" if body else "") + f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


SIP = [*SIP_CAPTURES, sip_request("OPTIONS"), sip_request("REGISTER", uri="sip:127.0.0.1"),
       sip_request("INVITE", body=SIPP_OFFER.encode()), sip_request("BYE"), sip_request("MESSAGE", body=b"hi"),
       sip_request("INFO", extra="Route: <sip:127.0.0.1;lr>\r\nRecord-Route: <sip:p.invalid;lr>\r\n"),
       b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKsrv\r\nFrom: <sip:a@b>;tag=1\r\n"
       b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
       b"\r\n\r\n"]

ESL = [b"auth ClueCon\n\n", b"api status\n\n", b"api conference xml_list\n\n", b"api conference list\n\n",
       b"api conference 1*101-FSdefaultDomain mute 1\n\n", b"bgapi status\n\n", b"bgapi conference list count\n\n",
       b"event plain ALL\n\n", b"event json CUSTOM conference::maintenance\n\n", b"event xml CHANNEL_CREATE\n\n",
       b"nixevent ALL\n\n", b"noevents\n\n", b"filter Event-Name CUSTOM\n\n", b"log 7\n\n", b"linger\n\n",
       b"sendmsg 1234\ncall-command: execute\nexecute-app-name: playback\nContent-Length: 5\n\nhello",
       b"api uptime\r\n\r\n", b"exit\n\n", b"\n\n\n"]

COMETQL = [
    "SELECT * FROM users_auth WHERE id = 15", "INSERT INTO users_auth (id, hash)VALUES('5', 'secret' );",
    "DELETE FROM users_auth WHERE id = 5", "SELECT * FROM users_data WHERE id IN (1, 2, 3)",
    "INSERT INTO users_data (id, data) VALUES (5, 'x\\'y')", "SELECT * FROM users_messages WHERE id = 5",
    "INSERT INTO users_messages (id, event, message)VALUES (5, 'ev', 'hello')", "SELECT * FROM users_time WHERE id = 5",
    "INSERT INTO pipes_messages (name, event, message)VALUES('web_chat', 'message', '{\"text\":\"hi\"}')",
    "SELECT * FROM pipes_messages WHERE name = 'web_chat'", "DELETE FROM pipes_messages WHERE name = 'web_chat'",
    "SELECT * FROM pipes WHERE name IN ('web_chat', 'track_a')", "SELECT * FROM users_in_pipes WHERE name = 'track_a'",
    "INSERT INTO pipes_settings (name, length) VALUES ('web_chat', 10)", "SELECT * FROM pipes_settings WHERE name = 'x'",
    "INSERT INTO revoked_tokens (token) VALUES ('a.b.c')", "SHOW TABLES", "SHOW DATABASES", "SHOW STATUS",
    "SHOW COLUMNS FROM users_auth", "DESCRIBE users_auth", "SET NAMES utf8", "USE CometQL_v1",
    "INSERT INTO conference (name, user_id, caller_id, message, profile) VALUES ('101', 5, 5, '{}', 'video')",
    "SELECT * FROM conference WHERE name = '101'", "DELETE FROM conference WHERE name = '101' AND user_id = 5",
    "SELECT * FROM conference_members WHERE name = '101'",
    "SELECT id, hash FROM users_auth WHERE id > 1 AND id < 9 OR id = 'x' ORDER BY id DESC LIMIT 2, 5",
]


def _packet(payload: bytes, seq: int) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def handshake_response(user: bytes = b"1", scramble: bytes = b"\x01" * 20, password: bytes = b"CometQLPassword",
                       database: bytes | None = b"CometQL_v1") -> bytes:
    """A HandshakeResponse41 payload as mysqli sends it (CONNECT_WITH_DB only with a database)."""
    caps = 0x000FA68D if database is not None else 0x000FA685
    token = scramble_native_password(password, scramble)
    out = struct.pack("<IIB", caps, 1 << 24, 33) + b"\0" * 23 + user + b"\0" + bytes([len(token)]) + token
    if database is not None:
        out += database + b"\0"
    return out + b"mysql_native_password\0"


MYSQL = [_packet(handshake_response(), 1), _packet(b"\x03" + COMETQL[0].encode(), 0), _packet(b"\x0e", 0),
         _packet(b"\x01", 0), _packet(b"\x02CometQL_v1", 0), _packet(b"\x04users_auth\0", 0),
         _packet(b"\x11" + b"1\0" + b"\x14" + b"\x02" * 20 + b"CometQL_v1\0", 0), _packet(b"\x16SELECT 1", 0),
         _packet(b"\x1b\x00\x00", 0), _packet(b"\x09", 0), _packet(b"\x1f", 0),
         _packet(b"\x20\x00\x00\x00\x01" + b"\0" * 27, 1)]

COMET_COMMANDS = ["subscription\nweb_chat\ntrack_room\nuser_status_5", "web_pipe2\nweb_chat\nmessage\n*\n{\"text\":\"hi\"}",
                  "pipe_log\nweb_chat\nmarker1", "track_pipe_users\ntrack_room\nm2", "user_data\nm3\n5",
                  "user_status\n5", "pipe_count\nweb_chat\nm4", "statistics\n{\"url\":\"http://x\"}",
                  "cgi_call\nx", "CometQL_call\nSHOW TABLES", "subscription\n" + "\n".join(f"web_{i:02d}" for i in range(34))]
COMET_URLS = ["/ws/sesion=hostileprobehash15&myid=15&devid=1&v=4.08&uuid=" + "u" * 32 + "&api=js",
              "/comet-server/ws/sesion=undefined&myid=undefined&devid=1&v=3.25&uuid=" + "v" * 32 + "&api=js",
              "//ws/sesion=eyJhbGciOiJIUzI1NiJ9.e30.x&myid=5&devid=99999&v=4.08&uuid=x&api=js",
              "/ws/sesion=&myid=&devid=&v=&uuid=&api="]
COMET = [t.encode() for t in COMET_COMMANDS + COMET_URLS]

HTTP = [b"GET /directory?hostname=fs&section=directory&tag_name=domain&key_name=name&key_value=FSdefaultDomain"
        b"&Event-Name=REQUEST_PARAMS&action=sip_auth&sip_auth_username=000001015&key=id&user=000001015"
        b"&domain=FSdefaultDomain&ip=127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1:8082\r\nUser-Agent: freeswitch-xml/1.0\r\n"
        b"Accept: */*\r\n\r\n",
        b"GET /comet-server-com/directory?user=000001015&x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"OPTIONS /directory HTTP/1.1\r\nHost: x\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /directory HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /directory?user=000001015&a=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]

SEEDS: dict[str, list[bytes]] = {"sip": SIP, "sdp": SDP, "esl": ESL, "cometql": [s.encode() for s in COMETQL],
                                 "mysql": MYSQL, "comet-ws": COMET, "http": HTTP}
