"""Unit tests of emulator.wire.sip: the JsSIP 2.0.6 captures of real-video-client.md 4.2, the
header model, framing, URIs/addresses/Via, builders, digest auth and fuzzing."""

from __future__ import annotations

import contextlib
import hashlib
import random

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from emulator.wire import sip
from emulator.wire.sdp import parse_sdp
from tests.fuzzing import fuzz_settings
from tests.unit.wire.test_sdp import CHROME_OFFER

pytestmark = pytest.mark.fuzz("sip")

ALLOW = "Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO"
CONTACT_REG = ('Contact: <sip:v3vuq5sa@iusnucoqmctu.invalid;transport=ws>;+sip.instance='
               '"<urn:uuid:161e9fda-8ba8-49ef-9cda-f37d3287fa90>";reg-id=1;expires=600')
# The spec elides the hash ("5785f96e…"); it is only a format example.
SPEC_AUTHORIZATION = (
    'Digest algorithm=MD5, username="000015503", realm="127.0.0.1", nonce="6ac1vhrvfcz0349s", '
    'uri="sip:127.0.0.1", response="5785f96e\u2026", qop=auth, cnonce="fgh7s6kl5nb3", '
    'nc=00000001')
PASSWORD = "PassForUser503"


def crlf(*lines: str, body: str = "") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


# real-video-client.md 4.2, first REGISTER (r3), verbatim.
REGISTER_1 = crlf(
    "REGISTER sip:127.0.0.1 SIP/2.0",
    "Via: SIP/2.0/WSS iusnucoqmctu.invalid;branch=z9hG4bK6792419",
    "Max-Forwards: 69",
    "To: <sip:000015503@127.0.0.1>",
    'From: "000015503" <sip:000015503@127.0.0.1>;tag=hmc1su07jq',
    "Call-ID: gv06imipp3ksv3uqkck4pt",
    "CSeq: 1 REGISTER",
    CONTACT_REG,
    "Expires: 600",
    ALLOW,
    "Supported: path,gruu,outbound",
    "User-Agent: JsSIP 2.0.6",
    "Content-Length: 0",
)
# Second REGISTER: same Call-ID / tag / Contact, CSeq 2, new branch, Authorization.
REGISTER_2 = crlf(
    "REGISTER sip:127.0.0.1 SIP/2.0",
    "Via: SIP/2.0/WSS iusnucoqmctu.invalid;branch=z9hG4bK1350823",
    "Max-Forwards: 69",
    "To: <sip:000015503@127.0.0.1>",
    'From: "000015503" <sip:000015503@127.0.0.1>;tag=hmc1su07jq',
    "Call-ID: gv06imipp3ksv3uqkck4pt",
    "CSeq: 2 REGISTER",
    "Authorization: " + SPEC_AUTHORIZATION,
    CONTACT_REG,
    "Expires: 600",
    ALLOW,
    "Supported: path,gruu,outbound",
    "User-Agent: JsSIP 2.0.6",
    "Content-Length: 0",
)
INVITE_HEAD = [
    "INVITE sip:15*101*video@127.0.0.1 SIP/2.0",
    "Via: SIP/2.0/WSS iusnucoqmctu.invalid;branch=z9hG4bK7226310",
    "Max-Forwards: 69",
    "To: <sip:15*101*video@127.0.0.1>",
    'From: "000015503" <sip:000015503@127.0.0.1>;tag=pbm7fojsos',
    "Call-ID: ji3c3lcerub924iuejjn",
    "CSeq: 9543 INVITE",
    "Contact: <sip:v3vuq5sa@iusnucoqmctu.invalid;transport=ws;ob>",
    "Content-Type: application/sdp",
    ALLOW,
    "Supported: ice,replaces,outbound",
    "User-Agent: JsSIP 2.0.6",
]
# The capture's Content-Length (6196) is that of Chrome 156's offer; ours is our fixture's.
INVITE_1 = crlf(*INVITE_HEAD, f"Content-Length: {len(CHROME_OFFER)}", body=CHROME_OFFER)
ACK_407 = crlf(
    "ACK sip:15*101*video@127.0.0.1 SIP/2.0",
    "Via: SIP/2.0/WSS iusnucoqmctu.invalid;branch=z9hG4bK7226310",
    "Max-Forwards: 69",
    "To: <sip:15*101*video@127.0.0.1>;tag=fs407tag01",
    'From: "000015503" <sip:000015503@127.0.0.1>;tag=pbm7fojsos',
    "Call-ID: ji3c3lcerub924iuejjn",
    "CSeq: 9543 ACK",
    ALLOW,
    "Supported: outbound",
    "User-Agent: JsSIP 2.0.6",
    "Content-Length: 0",
)
INVITE_2 = crlf(
    *INVITE_HEAD[:1],
    "Via: SIP/2.0/WSS iusnucoqmctu.invalid;branch=z9hG4bK9910412",
    *INVITE_HEAD[2:6],
    "CSeq: 9544 INVITE",
    'Proxy-Authorization: Digest algorithm=MD5, username="000015503", realm="127.0.0.1", '
    'nonce="n0nce", uri="sip:15*101*video@127.0.0.1", response="00000000000000000000000000000000", '
    'qop=auth, cnonce="c0nce", nc=00000001',
    *INVITE_HEAD[7:],
    f"Content-Length: {len(CHROME_OFFER)}",
    body=CHROME_OFFER,
)
# The answered call (r4): ACK of the 200 and the client's BYE.
ACK_200 = crlf(
    "ACK sip:probe@127.0.0.1:7443;transport=wss SIP/2.0",
    "Via: SIP/2.0/WSS 2atebv9f54i4.invalid;branch=z9hG4bK2703262",
    "Max-Forwards: 69",
    "To: <sip:15*101*video@127.0.0.1>;tag=vk0xmihv67",
    'From: "000015504" <sip:000015504@127.0.0.1>;tag=iud0km0d8i',
    "Call-ID: 0a31dcirvp13ed3lvrle",
    "CSeq: 5537 ACK",
    ALLOW,
    "Supported: outbound",
    "User-Agent: JsSIP 2.0.6",
    "Content-Length: 0",
)
BYE_CLIENT = crlf(
    "BYE sip:probe@127.0.0.1:7443;transport=wss SIP/2.0",
    "Via: SIP/2.0/WSS 2atebv9f54i4.invalid;branch=z9hG4bK5540193",
    "Max-Forwards: 69",
    "To: <sip:15*101*video@127.0.0.1>;tag=vk0xmihv67",
    'From: "000015504" <sip:000015504@127.0.0.1>;tag=iud0km0d8i',
    "Call-ID: 0a31dcirvp13ed3lvrle",
    "CSeq: 5538 BYE",
    ALLOW,
    "Supported: outbound",
    "User-Agent: JsSIP 2.0.6",
    "Content-Length: 0",
)
# Hangup while the INVITE was pending after 100 Trying (r3), verbatim.
CANCEL = crlf(
    "CANCEL sip:15*101*video@127.0.0.1 SIP/2.0",
    "Via: SIP/2.0/WSS iusnucoqmctu.invalid;branch=z9hG4bK3173772",
    "To: <sip:15*101*video@127.0.0.1>",
    'From: "000015503" <sip:000015503@127.0.0.1>;tag=pbm7fojsos',
    "Call-ID: ji3c3lcerub924iuejjn",
    "CSeq: 9544 CANCEL",
    "Content-Length: 0",
)
# The client's 200 to our BYE (r11): Via/To/From/Call-ID/CSeq echoed, Supported: outbound.
OK_TO_SERVER_BYE = crlf(
    "SIP/2.0 200 OK",
    "Via: SIP/2.0/WSS 127.0.0.1:7443;branch=z9hG4bKq0l5v3c8n1x7m2p4",
    'To: "000015511" <sip:000015511@127.0.0.1>;tag=h3k2l9d0qa',
    "From: <sip:15*101*video@127.0.0.1>;tag=fsb7a1e0c2",
    "Call-ID: 6ldq1uv0mnk0l3rbc8te",
    "CSeq: 1 BYE",
    "Supported: outbound",
    "Content-Length: 0",
)

CAPTURES = {
    "REGISTER_1": REGISTER_1, "REGISTER_2": REGISTER_2, "INVITE_1": INVITE_1,
    "ACK_407": ACK_407, "INVITE_2": INVITE_2, "ACK_200": ACK_200, "BYE_CLIENT": BYE_CLIENT,
    "CANCEL": CANCEL, "OK_TO_SERVER_BYE": OK_TO_SERVER_BYE,
}
EXPECTED = {
    "REGISTER_1": ("REGISTER", "gv06imipp3ksv3uqkck4pt", (1, "REGISTER"), "z9hG4bK6792419"),
    "REGISTER_2": ("REGISTER", "gv06imipp3ksv3uqkck4pt", (2, "REGISTER"), "z9hG4bK1350823"),
    "INVITE_1": ("INVITE", "ji3c3lcerub924iuejjn", (9543, "INVITE"), "z9hG4bK7226310"),
    "ACK_407": ("ACK", "ji3c3lcerub924iuejjn", (9543, "ACK"), "z9hG4bK7226310"),
    "INVITE_2": ("INVITE", "ji3c3lcerub924iuejjn", (9544, "INVITE"), "z9hG4bK9910412"),
    "ACK_200": ("ACK", "0a31dcirvp13ed3lvrle", (5537, "ACK"), "z9hG4bK2703262"),
    "BYE_CLIENT": ("BYE", "0a31dcirvp13ed3lvrle", (5538, "BYE"), "z9hG4bK5540193"),
    "CANCEL": ("CANCEL", "ji3c3lcerub924iuejjn", (9544, "CANCEL"), "z9hG4bK3173772"),
    "OK_TO_SERVER_BYE": (200, "6ldq1uv0mnk0l3rbc8te", (1, "BYE"), "z9hG4bKq0l5v3c8n1x7m2p4"),
}


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def independent_digest(user, realm, password, method, uri, nonce, nc=None, cnonce=None,
                       qop=None):
    """RFC 2617 3.2.2.1, written out here independently of the module."""
    ha1 = md5(f"{user}:{realm}:{password}")
    ha2 = md5(f"{method}:{uri}")
    if qop is None:
        return md5(f"{ha1}:{nonce}:{ha2}")
    return md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# =================================================================================================
# The captures
# =================================================================================================


@pytest.mark.parametrize("name", list(CAPTURES))
def test_capture_parses(name):
    msg = sip.parse_message(CAPTURES[name])
    first, call_id, cseq, branch = EXPECTED[name]
    if isinstance(first, int):
        assert isinstance(msg, sip.SipResponse) and msg.status == first and msg.reason == "OK"
    else:
        assert isinstance(msg, sip.SipRequest) and msg.method == first
        assert msg.parsed_uri.host == "127.0.0.1"
    assert msg.call_id == call_id
    assert msg.cseq == cseq and msg.cseq.method == cseq[1]
    assert msg.branch == branch and msg.branch.startswith(sip.BRANCH_MAGIC_COOKIE)
    assert msg.top_via.transport == "WSS"
    assert msg.from_tag is not None


@pytest.mark.parametrize("name", list(CAPTURES))
def test_capture_reencodes_byte_for_byte(name):
    assert sip.parse_message(CAPTURES[name]).encode() == CAPTURES[name]


@pytest.mark.parametrize("name", list(CAPTURES))
def test_capture_through_stream_parser_byte_by_byte(name):
    parser = sip.SipStreamParser()
    out = []
    for i in range(len(CAPTURES[name])):
        out += parser.feed(CAPTURES[name][i:i + 1])
    assert out == [sip.parse_message(CAPTURES[name])]
    assert parser.buffered == 0


def test_register_details():
    msg = sip.parse_message(REGISTER_1)
    assert msg.uri == "sip:127.0.0.1" and msg.version == "SIP/2.0"
    via = msg.top_via
    assert (via.protocol, via.transport, via.host, via.port) == (
        "SIP/2.0", "WSS", "iusnucoqmctu.invalid", None)
    frm, to = msg.from_addr, msg.to_addr
    assert frm.display_name == "000015503" and frm.uri.user == "000015503"
    assert frm.tag == "hmc1su07jq"
    assert to.display_name is None and to.tag is None and str(to.uri) == "sip:000015503@127.0.0.1"
    (contact,) = msg.contacts
    assert contact.uri.user == "v3vuq5sa" and contact.uri.transport == "ws"
    assert contact.params == {
        "+sip.instance": '"<urn:uuid:161e9fda-8ba8-49ef-9cda-f37d3287fa90>"',
        "reg-id": "1", "expires": "600"}
    assert sip.unquote_string(contact.params["+sip.instance"]).startswith("<urn:uuid:")
    assert msg.headers.get_all("Allow") == [
        "INVITE", "ACK", "CANCEL", "BYE", "UPDATE", "MESSAGE", "OPTIONS", "REFER", "INFO"]
    assert msg.headers.get_all("Supported") == ["path", "gruu", "outbound"]
    assert msg.headers["Expires"] == "600" and msg.headers["user-agent"] == "JsSIP 2.0.6"
    assert msg.body == b""


def test_invite_details_and_sdp_body():
    msg = sip.parse_message(INVITE_1)
    uri = msg.parsed_uri
    assert (uri.scheme, uri.user, uri.host, uri.port) == ("sip", "15*101*video", "127.0.0.1", None)
    assert msg.content_type == "application/sdp"
    assert msg.contacts[0].uri.params == {"transport": "ws", "ob": None}
    assert str(msg.contacts[0]) == "<sip:v3vuq5sa@iusnucoqmctu.invalid;transport=ws;ob>"
    assert msg.body == CHROME_OFFER.encode()
    assert parse_sdp(msg.body).bundle_mids == ["0", "1"]


def test_invite_with_captured_content_length_and_short_body_is_truncated():
    data = crlf(*INVITE_HEAD, "Content-Length: 6196", body=CHROME_OFFER)
    with pytest.raises(sip.SipParseError) as exc:
        sip.parse_message(data)
    assert exc.value.status == 400 and "truncated" in str(exc.value)


def test_cancel_has_no_max_forwards_and_matches_invite_branch():
    cancel, invite = sip.parse_message(CANCEL), sip.parse_message(INVITE_1)
    assert "Max-Forwards" not in cancel.headers
    assert cancel.call_id == invite.call_id and cancel.from_tag == invite.from_tag


def test_spec_authorization_example_format():
    msg = sip.parse_message(REGISTER_2)
    params = sip.parse_digest_params(msg.headers["Authorization"])
    assert params == {
        "algorithm": "MD5", "username": "000015503", "realm": "127.0.0.1",
        "nonce": "6ac1vhrvfcz0349s", "uri": "sip:127.0.0.1", "response": "5785f96e\u2026",
        "qop": "auth", "cnonce": "fgh7s6kl5nb3", "nc": "00000001"}
    # the elided hash cannot verify, and must not raise
    assert sip.verify_digest(params, "REGISTER", PASSWORD) is False
    good = dict(params, response=independent_digest(
        "000015503", "127.0.0.1", PASSWORD, "REGISTER", "sip:127.0.0.1", "6ac1vhrvfcz0349s",
        "00000001", "fgh7s6kl5nb3", "auth"))
    assert sip.verify_digest(good, msg.method, PASSWORD) is True
    assert sip.verify_digest(good, msg.method, "PassForUser504") is False
    assert sip.verify_digest(good, "INVITE", PASSWORD) is False


def test_proxy_authorization_for_invite_verifies():
    msg = sip.parse_message(INVITE_2)
    params = sip.parse_digest_params(msg.headers["proxy-authorization"])
    assert params["uri"] == msg.uri
    params["response"] = independent_digest(
        "000015503", "127.0.0.1", PASSWORD, "INVITE", msg.uri, "n0nce", "00000001", "c0nce",
        "auth")
    assert sip.verify_digest(params, "INVITE", PASSWORD)


# =================================================================================================
# The header model
# =================================================================================================

MINIMAL = [
    "OPTIONS sip:fs@127.0.0.1 SIP/2.0",
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc",
    "From: <sip:a@10.0.0.1>;tag=1",
    "To: <sip:fs@127.0.0.1>",
    "Call-ID: x1",
    "CSeq: 1 OPTIONS",
]


def test_compact_forms_are_expanded():
    data = crlf(
        "INVITE sip:15*101*video@127.0.0.1 SIP/2.0",
        "v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1",
        "f: <sip:a@b>;tag=x",
        "t: <sip:c@d>",
        "i: abc@host",
        "CSeq: 5 INVITE",
        "m: <sip:a@10.0.0.1>",
        "c: application/sdp",
        "k: timer, 100rel",
        "s: hello",
        "l: 2",
        "o: presence",
        "u: talk",
        "x: 1800",
        body="xy",
    )
    msg = sip.parse_message(data)
    assert [n for n, _ in msg.headers] == [
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Content-Type", "Supported",
        "Supported", "Subject", "Content-Length", "Event", "Allow-Events", "Session-Expires"]
    assert msg.call_id == "abc@host" and msg.body == b"xy"
    assert msg.headers.get("i") == msg.headers.get("CALL-id") == "abc@host"
    assert msg.headers.get_all("k") == ["timer", "100rel"]
    assert b"\r\nCall-ID: abc@host\r\n" in msg.encode()
    assert b"\r\nSupported: timer,100rel\r\n" in msg.encode()


def test_lookup_is_case_insensitive_and_unknown_names_keep_spelling():
    msg = sip.parse_message(crlf(*MINIMAL, "x-Comet-Thing: 1", "cseq2: no"))
    assert msg.headers.get("X-COMET-THING") == "1"
    assert "x-Comet-Thing: 1" in msg.encode().decode()
    assert msg.headers.get("cseq") == "1 OPTIONS"
    assert msg.headers.get("missing") is None and "missing" not in msg.headers
    with pytest.raises(KeyError):
        msg.headers["missing"]


def test_known_names_are_canonicalised():
    msg = sip.parse_message(crlf(*[
        line.replace("Call-ID", "call-id").replace("CSeq", "CSEQ") for line in MINIMAL],
        "www-authenticate: Digest realm=\"a\", nonce=\"b\""))
    assert [n for n, _ in msg.headers][-3:] == ["Call-ID", "CSeq", "WWW-Authenticate"]


def test_list_headers_are_split_outside_quotes_and_brackets():
    msg = sip.parse_message(crlf(
        *MINIMAL,
        "Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK2, "
        "SIP/2.0/TCP p2.example.com:5061;branch=z9hG4bK3",
        'Contact: "Doe, John" <sip:j@x;a=1>;q=0.5, <sip:k,l@y?Subject=a%2Cb>',
        "Route: <sip:r1;lr>,<sip:r2;lr>",
        "Record-Route: <sip:rr1;lr>",
        "Record-Route: <sip:rr2;lr>",
        'WWW-Authenticate: Digest realm="x", nonce="y", qop="auth,auth-int"',
    ))
    assert [v.branch for v in msg.vias] == ["z9hG4bKabc", "z9hG4bK2", "z9hG4bK3"]
    assert msg.vias[2].port == 5061
    assert [c.display_name for c in msg.contacts] == ["Doe, John", None]
    assert msg.contacts[1].uri.user == "k,l"
    assert msg.contacts[1].uri.headers == [("Subject", "a%2Cb")]
    assert msg.headers.get_all("Route") == ["<sip:r1;lr>", "<sip:r2;lr>"]
    assert msg.headers.count("Record-Route") == 2
    assert msg.headers.count("WWW-Authenticate") == 1


def test_header_order_is_preserved_on_output():
    lines = [*MINIMAL[:2], "Route: <sip:r1;lr>", *MINIMAL[2:], "Route: <sip:r2;lr>",
             "Supported: a", "Supported: b", "Require: c"]
    out = sip.parse_message(crlf(*lines)).encode().decode().split("\r\n")
    assert out[:8] == [*MINIMAL[:2], "Route: <sip:r1;lr>", *MINIMAL[2:], "Route: <sip:r2;lr>"]
    assert out[8:] == ["Supported: a,b", "Require: c", "Content-Length: 0", "", ""]


def test_empty_list_header_survives():
    msg = sip.parse_message(crlf(*MINIMAL, "Supported:", "Supported: timer"))
    assert msg.headers.get_all("Supported") == ["", "timer"]
    assert sip.parse_message(msg.encode()).encode() == msg.encode()


def test_sipheaders_editing():
    h = sip.SipHeaders([("v", "a"), ("To", "b"), ("Via", "c")])
    assert h.items() == [("Via", "a"), ("To", "b"), ("Via", "c")]
    h.insert(0, "Via", "z")
    assert h.get_all("via") == ["z", "a", "c"]
    h.set("via", "only")
    assert h.items() == [("Via", "only"), ("To", "b")]
    h.set("X-New", "1")
    assert h.names() == ["Via", "To", "X-New"] and len(h) == 3
    assert h.remove("x-new") == 1 and h.remove("x-new") == 0
    c = h.copy()
    c.add("To", "again")
    assert c != h and h == sip.SipHeaders([("Via", "only"), ("t", "b")])
    with pytest.raises(ValueError):
        h.add("Bad Name", "x")
    with pytest.raises(ValueError):
        h.add("X", "a\r\nInjected: 1")
    with pytest.raises(TypeError):
        h.add("X", 5)  # the wrong type on purpose


def test_lf_only_line_ends():
    lf = INVITE_1.replace(b"\r\n", b"\n")
    # the SDP body keeps LF line ends too, so compare the head and re-encode
    msg = sip.parse_message(crlf(*INVITE_HEAD, "Content-Length: 4", body="abcd").replace(
        b"\r\n", b"\n"))
    assert msg.call_id == "ji3c3lcerub924iuejjn" and msg.body == b"abcd"
    head = sip.parse_message(lf[: lf.index(b"\n\n") + 2] + CHROME_OFFER.encode())
    assert head.body == CHROME_OFFER.encode()


def test_mixed_line_ends_and_blank_line_variants():
    for end in (b"\r\n\r\n", b"\n\n", b"\r\n\n", b"\n\r\n"):
        data = "\r\n".join(MINIMAL).encode() + end + b"body"
        assert sip.parse_message(data).body == b"body"


def test_folded_header_lines():
    msg = sip.parse_message(crlf(
        MINIMAL[0], MINIMAL[1],
        "From: <sip:a@10.0.0.1>",
        "  ;tag=1",
        *MINIMAL[3:],
        "Subject: I know you're there,",
        "\tpick up the phone",
        "   and talk to me!",
    ))
    assert msg.from_tag == "1"
    assert msg.headers["Subject"] == "I know you're there, pick up the phone and talk to me!"
    assert sip.parse_message(msg.encode()).encode() == msg.encode()


def test_leading_crlfs_are_ignored():
    assert sip.parse_message(b"\r\n\r\n" + REGISTER_1) == sip.parse_message(REGISTER_1)


def test_datagram_body_rules():
    msg = sip.parse_message(crlf(*MINIMAL, "Content-Length: 3", body="abcdef"))
    assert msg.body == b"abc"
    msg = sip.parse_message(crlf(*MINIMAL, body="no length"))
    assert msg.body == b"no length"
    assert msg.encode().endswith(b"Content-Length: 9\r\n\r\nno length")


def test_encode_fixes_content_length():
    msg = sip.parse_message(crlf(*MINIMAL, "Content-Length: 0"))
    msg.body = b"12345"
    assert b"Content-Length: 5\r\n\r\n12345" in msg.encode()
    assert bytes(msg) == msg.encode()


def test_responses():
    for line, status, reason in [("SIP/2.0 180 Ringing", 180, "Ringing"),
                                 ("SIP/2.0 486 Busy Here", 486, "Busy Here"),
                                 ("SIP/2.0 200 ", 200, ""),
                                 ("sip/2.0 699 Some  odd  reason", 699, "Some  odd  reason")]:
        msg = sip.parse_message(crlf(line, *MINIMAL[1:]))
        assert (msg.status, msg.reason, msg.version) == (status, reason, "SIP/2.0")
    resp = sip.parse_message(crlf("SIP/2.0 401 Unauthorized", *MINIMAL[1:]))
    assert resp.cseq.method == "OPTIONS"


def test_is_keepalive():
    assert sip.is_keepalive(b"\r\n\r\n") and sip.is_keepalive(b"\r\n")
    assert not sip.is_keepalive(b"") and not sip.is_keepalive(REGISTER_1)
    with pytest.raises(sip.SipParseError):
        sip.parse_message(b"\r\n\r\n")


# =================================================================================================
# Malformed input
# =================================================================================================


def without(prefix: str) -> bytes:
    return crlf(*[line for line in MINIMAL if not line.startswith(prefix)])


@pytest.mark.parametrize("data,status", [
    (without("CSeq"), 400),
    (without("Via"), 400),
    (without("From"), 400),
    (without("To"), 400),
    (without("Call-ID"), 400),
    (crlf("OPTIONS  sip:fs@127.0.0.1 SIP/2.0", *MINIMAL[1:]), 400),
    (crlf("OPTIONS sip:fs@127.0.0.1 SIP/2.0 ", *MINIMAL[1:]), 400),
    (crlf("OPTIONS sip:fs@127.0.0.1", *MINIMAL[1:]), 400),
    (crlf("OPTIONS sip:fs@127.0.0.1 HTTP/1.1", *MINIMAL[1:]), 400),
    (crlf("GET / HTTP/1.1", "Host: x"), 400),
    (crlf("HTTP/1.1 200 OK", *MINIMAL[1:]), 400),
    (crlf("OPTIONS sip:fs@127.0.0.1 SIP/3.0", *MINIMAL[1:]), 505),
    (crlf("SIP/2.1 200 OK", *MINIMAL[1:]), 505),
    (crlf("SIP/2.0 99 Low", *MINIMAL[1:]), 400),
    (crlf("SIP/2.0 700 High", *MINIMAL[1:]), 400),
    (crlf("SIP/2.0 2000 OK", *MINIMAL[1:]), 400),
    (crlf("SIP/2.0 200", *MINIMAL[1:]), 400),
    (crlf("OPTIONS nocolon SIP/2.0", *MINIMAL[1:]), 400),
    (crlf("OPTIONS sip:@host SIP/2.0", *MINIMAL[1:]), 400),
    (crlf("OPTIONS sip:a@host:99999 SIP/2.0", *MINIMAL[1:]), 400),
    (crlf("OPT<IONS sip:a@host SIP/2.0", *MINIMAL[1:]), 400),
    (crlf(*MINIMAL, "Content-Length: -1"), 400),
    (crlf(*MINIMAL, "Content-Length: +1", body="x"), 400),
    (crlf(*MINIMAL, "Content-Length: 1x"), 400),
    (crlf(*MINIMAL, "Content-Length: \u0661"), 400),
    (crlf(*MINIMAL, "Content-Length: 1", "Content-Length: 1", body="x"), 400),
    (crlf(*MINIMAL, "Content-Length: 10", body="short"), 400),
    (crlf(*MINIMAL, "Content-Length: " + "9" * 5000), 400),
    (crlf(*MINIMAL, "CSeq: 2 OPTIONS"), 400),
    (crlf(*[m.replace("1 OPTIONS", "1 INVITE") for m in MINIMAL]), 400),
    (crlf(*[m.replace("1 OPTIONS", "2147483648 OPTIONS") for m in MINIMAL]), 400),
    (crlf(*[m.replace("1 OPTIONS", "OPTIONS") for m in MINIMAL]), 400),
    (crlf(*[m.replace("1 OPTIONS", "-1 OPTIONS") for m in MINIMAL]), 400),
    (crlf(*MINIMAL, "Max-Forwards: many"), 400),
    (crlf(*MINIMAL, "Max-Forwards: 70", "Max-Forwards: 69"), 400),
    (crlf(*MINIMAL, "To: <sip:x@y>"), 400),
    (crlf(*MINIMAL, "No colon here"), 400),
    (crlf(*MINIMAL, "Bad Name: x"), 400),
    (crlf(*MINIMAL, ": empty name"), 400),
    (crlf(MINIMAL[0], " folded-first: x", *MINIMAL[1:]), 400),
    (crlf(*MINIMAL, "X-Ctl: a\x00b"), 400),
    (crlf(*MINIMAL, "X-Ctl: a\rb"), 400),
    (crlf(*[m.replace("Call-ID: x1", "Call-ID: a b") for m in MINIMAL]), 400),
    (crlf(*[m.replace("Call-ID: x1", "Call-ID:") for m in MINIMAL]), 400),
    (crlf(*[m.replace("branch=z9hG4bKabc", "branch=z9hG4bKabc;branch=2") for m in MINIMAL]), 400),
    (crlf(*[m.replace("SIP/2.0/UDP 10.0.0.1:5060", "SIP/2.0 10.0.0.1") for m in MINIMAL]), 400),
    (crlf(*[m.replace("<sip:a@10.0.0.1>;tag=1", '"unterminated <sip:a@b>') for m in MINIMAL]), 400),
    (crlf(*[m.replace("<sip:a@10.0.0.1>;tag=1", "<sip:a@b;tag=1") for m in MINIMAL]), 400),
    (crlf(*[m.replace("<sip:a@10.0.0.1>;tag=1", "<sip:a@b> junk") for m in MINIMAL]), 400),
    (crlf(*[m.replace("<sip:a@10.0.0.1>;tag=1", "<sip:a@b>;tag=1;tag=2") for m in MINIMAL]), 400),
    (crlf(*[m.replace("<sip:a@10.0.0.1>;tag=1", "<mailto:a@b>") for m in MINIMAL]), 416),
    (crlf(*MINIMAL, "Contact: *", "Contact: <sip:a@b>"), 400),
    (crlf(*MINIMAL, "Contact: <sip:a@b"), 400),
    ("\r\n".join(MINIMAL).encode() + b"\r\n", 400),
    (b"garbage", 400),
    (b"\x00\x01\x02\xff", 400),
    (b"INVITE", 400),
    (crlf(*MINIMAL).replace(b"x1", b"\xc3\x28"), 400),
])
def test_malformed_messages_raise_sip_parse_error(data, status):
    with pytest.raises(sip.SipParseError) as exc:
        sip.parse_message(data)
    assert exc.value.status == status
    assert exc.value.reason == sip.reason_phrase(status)


def test_huge_headers_are_513_and_huge_body_413():
    big = crlf(*MINIMAL, "X-Pad: " + "p" * (70 * 1024))
    with pytest.raises(sip.SipParseError) as exc:
        sip.parse_message(big)
    assert exc.value.status == 513
    no_end = "\r\n".join([*MINIMAL, "X-Pad: " + "p" * (70 * 1024)]).encode()
    with pytest.raises(sip.SipParseError) as exc:
        sip.parse_message(no_end)
    assert exc.value.status == 513
    with pytest.raises(sip.SipParseError) as exc:
        sip.parse_message(crlf(*MINIMAL, body="b" * (1024 * 1024 + 1)))
    assert exc.value.status == 413
    with pytest.raises(sip.SipParseError) as exc:
        sip.parse_message(crlf(*MINIMAL, "Content-Length: 2000000"))
    assert exc.value.status == 413
    assert len(sip.parse_message(crlf(*MINIMAL, body="b" * 1024 * 1024)).body) == 1024 * 1024
    with pytest.raises(sip.SipParseError):
        sip.parse_message(REGISTER_1, max_header_bytes=100)
    with pytest.raises(sip.SipParseError):
        sip.parse_message(INVITE_1, max_body_bytes=100)


def test_many_small_headers_hit_the_limit():
    lines = [*MINIMAL] + [f"X-H{i}: v" for i in range(10000)]
    with pytest.raises(sip.SipParseError) as exc:
        sip.parse_message(crlf(*lines))
    assert exc.value.status == 513


def test_sip_parse_error_is_a_value_error():
    assert issubclass(sip.SipParseError, ValueError)
    err = sip.SipParseError("x", 488)
    assert (err.status, err.reason, str(err)) == (488, "Not Acceptable Here", "x")


# =================================================================================================
# Stream framing (RFC 3261 18.3)
# =================================================================================================


def test_stream_several_messages_in_one_chunk_and_pings():
    parser = sip.SipStreamParser()
    out = parser.feed(b"\r\n\r\n" + REGISTER_1 + b"\r\n\r\n" + INVITE_1 + ACK_407[:30])
    assert [m.method for m in out] == ["REGISTER", "INVITE"]
    assert parser.pings == 2
    assert parser.buffered == 30
    assert parser.feed(ACK_407[30:]) == [sip.parse_message(ACK_407)]
    parser.feed_eof()


def test_stream_pull_api():
    parser = sip.SipStreamParser()
    parser.receive_data(CANCEL + CANCEL)
    assert parser.next_message().method == "CANCEL"
    assert parser.next_message().method == "CANCEL"
    assert parser.next_message() is None


def test_stream_split_ping_and_single_crlf():
    parser = sip.SipStreamParser()
    for b in b"\r\n\r\n\r\n":
        parser.feed(bytes([b]))
    assert parser.pings == 1  # the third CRLF is half a ping
    assert parser.buffered == 0


def test_stream_lf_only_message():
    data = crlf(*MINIMAL, "Content-Length: 2", body="hi").replace(b"\r\n", b"\n")
    (msg,) = sip.SipStreamParser().feed(data)
    assert msg.body == b"hi"


def test_stream_requires_content_length():
    parser = sip.SipStreamParser()
    with pytest.raises(sip.SipParseError) as exc:
        parser.feed(crlf(*MINIMAL))
    assert exc.value.status == 400 and "Content-Length" in str(exc.value)
    with pytest.raises(sip.SipParseError):
        parser.feed(REGISTER_1)  # dead after the error
    with pytest.raises(sip.SipParseError):
        parser.feed_eof()


def test_stream_header_limit_before_terminator():
    parser = sip.SipStreamParser(max_header_bytes=1000)
    parser.feed(b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: " + b"y" * 900)
    with pytest.raises(sip.SipParseError) as exc:
        parser.feed(b"y" * 200)
    assert exc.value.status == 513
    assert parser.buffered == 0


def test_stream_body_limit_checked_before_body_arrives():
    parser = sip.SipStreamParser(max_body_bytes=10)
    with pytest.raises(sip.SipParseError) as exc:
        parser.feed(crlf(*MINIMAL, "Content-Length: 11"))
    assert exc.value.status == 413


def test_stream_eof_inside_a_message():
    parser = sip.SipStreamParser()
    parser.feed(REGISTER_1[:-5])
    with pytest.raises(sip.SipParseError):
        parser.feed_eof()
    parser = sip.SipStreamParser()
    parser.feed(REGISTER_1 + b"\r\n")
    parser.feed_eof()


def test_stream_waits_for_body():
    parser = sip.SipStreamParser()
    head, body = INVITE_1.split(b"\r\n\r\n", 1)
    assert parser.feed(head + b"\r\n\r\n") == []
    assert parser.feed(body[:-1]) == []
    (msg,) = parser.feed(body[-1:])
    assert msg.body == CHROME_OFFER.encode()


# =================================================================================================
# URIs, addresses, Via
# =================================================================================================


@pytest.mark.parametrize("text", [
    "sip:127.0.0.1",
    "sip:15*101*video@127.0.0.1",
    "sip:probe@127.0.0.1:7443;transport=wss",
    "sip:3efblvpi@q9oq1a47fcbj.invalid;transport=ws;ob",
    "sips:alice:secret@atlanta.com:5061;maddr=239.255.255.1;ttl=15",
    "sip:alice;day=tuesday@atlanta.com",
    "sip:+1-212-555-1212:1234@gateway.com;user=phone",
    "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
    "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
    "sip:%61lice@[2001:db8::10]:5070;lr",
    "sip:user@host.example.",
])
def test_uri_round_trip(text):
    assert str(sip.parse_uri(text)) == text


def test_uri_fields():
    u = sip.parse_uri("SIPS:alice:secret@Atlanta.com:5061;Transport=TCP;lr?subject=x")
    assert (u.scheme, u.user, u.password, u.host, u.port) == (
        "sips", "alice", "secret", "Atlanta.com", 5061)
    assert u.params == {"transport": "TCP", "lr": None}
    assert u.transport == "TCP" and u.param("lr") is None and u.param("lr", "d") == "d"
    assert u.headers == [("subject", "x")] and u.hostport == "Atlanta.com:5061"
    v6 = sip.parse_uri("sip:[::1]:5060")
    assert (v6.host, v6.port, v6.user) == ("[::1]", 5060, None)
    semi = sip.parse_uri("sip:alice;day=tuesday@atlanta.com")
    assert semi.user == "alice;day=tuesday" and semi.params == {}


@pytest.mark.parametrize("text", [
    "sip:", "sip:@host", "sip:a@", "tel:+123", "http://x", "sip:a@b:", "sip:a@b:x",
    "sip:a@b:65536", "sip:a b@c", "sip:a@b@c", "sip:a@-", "sip:a@b..c", "sip:a@b;",
    "sip:a@b;x=1;x=2", "sip:a@b?x", "sip:a@b?=v", "sip:a@[::1", "sip:a@b;p=\"q\"",
    "sip:a@b c", "sip:a%zz@b", "sip:a:p@ss@b",
])
def test_bad_uris(text):
    with pytest.raises(sip.SipParseError):
        sip.parse_uri(text)


@pytest.mark.parametrize("text,display,uri,params", [
    ('"000015503" <sip:000015503@127.0.0.1>;tag=hmc1su07jq', "000015503",
     "sip:000015503@127.0.0.1", {"tag": "hmc1su07jq"}),
    ("<sip:15*101*video@127.0.0.1>", None, "sip:15*101*video@127.0.0.1", {}),
    ('"A \\"quoted\\" \\\\ name" <sip:a@b>', 'A "quoted" \\ name', "sip:a@b", {}),
    ('""<sip:a@b>', "", "sip:a@b", {}),
    ("Bob  Smith <sip:bob@b>;tag=9", "Bob Smith", "sip:bob@b", {"tag": "9"}),
    ("sip:a@b;tag=7;transport=tcp", None, "sip:a@b", {"tag": "7", "transport": "tcp"}),
    ("  <sip:a@b> ; expires = 60 ; q=0.7 ", None, "sip:a@b", {"expires": "60", "q": "0.7"}),
    ('<sip:a@b>;+sip.instance="<urn:uuid:1;2>";reg-id=1', None, "sip:a@b",
     {"+sip.instance": '"<urn:uuid:1;2>"', "reg-id": "1"}),
    ("<sip:a@b;lr>;received=[::1]", None, "sip:a@b;lr", {"received": "[::1]"}),
])
def test_name_addr(text, display, uri, params):
    na = sip.parse_name_addr(text)
    assert (na.display_name, str(na.uri), na.params) == (display, uri, params)
    assert sip.parse_name_addr(str(na)) == na


@pytest.mark.parametrize("text", [
    "*", "", "<>", '"x" sip:a@b', "<sip:a@b", "<sip:a@b> x", "Bad\"Name <sip:a@b>",
    "<sip:a@b>;", "<sip:a@b>; ", "<sip:a@b>;=x", "<sip:a@b>;tag=a b", "<sip:a@b>;;", "sip:a@b,c@d",
    '"unterminated <sip:a@b>', "<tel:+1>",
])
def test_bad_name_addr(text):
    with pytest.raises(sip.SipParseError):
        sip.parse_name_addr(text)


def test_name_addr_str_and_tags():
    na = sip.parse_name_addr('"000015503" <sip:000015503@127.0.0.1>')
    assert na.tag is None
    tagged = na.with_tag("abc")
    assert str(tagged) == '"000015503" <sip:000015503@127.0.0.1>;tag=abc' and na.tag is None
    assert str(tagged.without_params()) == '"000015503" <sip:000015503@127.0.0.1>'
    with pytest.raises(ValueError):
        na.with_tag("a b")


@pytest.mark.parametrize("text,transport,host,port,params", [
    ("SIP/2.0/WSS iusnucoqmctu.invalid;branch=z9hG4bK6792419", "WSS", "iusnucoqmctu.invalid",
     None, {"branch": "z9hG4bK6792419"}),
    ("SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKx", "UDP", "10.0.0.1", 5060,
     {"rport": None, "branch": "z9hG4bKx"}),
    ("SIP / 2.0 / tcp [2001:db8::1]:5061 ;branch=z9hG4bKy ; received=192.0.2.1;rport=4321",
     "TCP", "[2001:db8::1]", 5061,
     {"branch": "z9hG4bKy", "received": "192.0.2.1", "rport": "4321"}),
    ("SIP/2.0/WS host", "WS", "host", None, {}),
])
def test_via(text, transport, host, port, params):
    v = sip.parse_via(text)
    assert (v.transport, v.host, v.port, v.params) == (transport, host, port, params)
    assert sip.parse_via(str(v)) == v


def test_via_accessors():
    v = sip.parse_via("SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKx;received=1.2.3.4")
    assert v.has_rport and v.rport is None and v.received == "1.2.3.4" and v.branch == "z9hG4bKx"
    assert v.sent_by == "10.0.0.1:5060"
    v.params["rport"] = "5555"
    assert v.rport == 5555
    assert str(v) == "SIP/2.0/UDP 10.0.0.1:5060;rport=5555;branch=z9hG4bKx;received=1.2.3.4"
    built = sip.Via("WSS", "127.0.0.1", 7443, {"branch": "z9hG4bKabc"})
    assert str(built) == "SIP/2.0/WSS 127.0.0.1:7443;branch=z9hG4bKabc"


@pytest.mark.parametrize("text", [
    "", "SIP/2.0 host", "SIP/2.0/UDP", "SIP/2.0/UDP host:port", "SIP/2.0/UDP host;rport=x",
    "SIP/2.0/UDP host;branch=a;branch=b", "SIP/2.0/UDP ho st", "SIP/2.0/UDP host;",
    "SIP/2.0/UDP host;a=1;",
])
def test_bad_via(text):
    with pytest.raises(sip.SipParseError):
        sip.parse_via(text)


def test_split_header_list_and_quoting():
    assert sip.split_header_list('a, "b,c" , <d,e>,,f') == ["a", '"b,c"', "<d,e>", "f"]
    assert sip.split_header_list("  ") == [""]
    with pytest.raises(sip.SipParseError):
        sip.split_header_list('"open')
    assert sip.quote_string('a"b\\c') == '"a\\"b\\\\c"'
    assert sip.unquote_string(sip.quote_string('a"b\\c')) == 'a"b\\c'
    assert sip.unquote_string("token") == "token"
    assert sip.parse_params("") == {}
    assert sip.parse_params("a=1;B;c=\"x y\"") == {"a": "1", "b": None, "c": '"x y"'}


def test_canonical_header_name():
    assert sip.canonical_header_name("i") == "Call-ID"
    assert sip.canonical_header_name("WWW-AUTHENTICATE") == "WWW-Authenticate"
    assert sip.canonical_header_name("cseq") == "CSeq"
    assert sip.canonical_header_name("X-Odd-Case") == "X-Odd-Case"


# =================================================================================================
# Identifiers and builders
# =================================================================================================


def test_generators_are_seeded_and_well_formed():
    a, b = random.Random(1), random.Random(1)
    assert [sip.generate_tag(a), sip.generate_branch(a), sip.generate_call_id(a, "h")] == \
           [sip.generate_tag(b), sip.generate_branch(b), sip.generate_call_id(b, "h")]
    rng = random.Random(2)
    tags = {sip.generate_tag(rng) for _ in range(200)}
    assert len(tags) == 200 and all(len(t) == 10 and t.isalnum() for t in tags)
    branch = sip.generate_branch(rng)
    assert branch.startswith("z9hG4bK") and len(branch) == 23
    assert sip.parse_via(f"SIP/2.0/WSS h;branch={branch}").branch == branch
    assert sip.generate_call_id(rng, "127.0.0.1").endswith("@127.0.0.1")
    assert "@" not in sip.generate_call_id(rng)
    assert len(sip.generate_tag(rng, 16)) == 16


def test_401_to_register():
    reg = sip.parse_message(REGISTER_1)
    challenge = sip.make_digest_challenge("127.0.0.1", "abc123")
    assert challenge == 'Digest realm="127.0.0.1", nonce="abc123", algorithm=MD5, qop="auth"'
    resp = sip.make_response(reg, 401, to_tag="fs401", headers=[("WWW-Authenticate", challenge)])
    text = resp.encode().decode()
    assert text.split("\r\n") == [
        "SIP/2.0 401 Unauthorized",
        "Via: SIP/2.0/WSS iusnucoqmctu.invalid;branch=z9hG4bK6792419",
        'From: "000015503" <sip:000015503@127.0.0.1>;tag=hmc1su07jq',
        "To: <sip:000015503@127.0.0.1>;tag=fs401",
        "Call-ID: gv06imipp3ksv3uqkck4pt",
        "CSeq: 1 REGISTER",
        'WWW-Authenticate: Digest realm="127.0.0.1", nonce="abc123", algorithm=MD5, qop="auth"',
        "Content-Length: 0",
        "",
        "",
    ]
    again = sip.parse_message(resp.encode())
    assert again == resp
    assert sip.parse_digest_params(again.headers["WWW-Authenticate"]) == {
        "realm": "127.0.0.1", "nonce": "abc123", "algorithm": "MD5", "qop": "auth"}


def test_200_to_register_echoes_contact():
    reg = sip.parse_message(REGISTER_1)
    contact = reg.headers["Contact"]
    resp = sip.make_response(reg, 200, to_tag="t", headers=[
        ("Contact", contact.replace(";expires=600", "") + ";expires=600"), ("Expires", "600")])
    assert resp.contacts[0].uri == reg.contacts[0].uri
    assert resp.headers["Expires"] == "600" and resp.reason == "OK"


def test_make_response_rules():
    rr_invite = sip.parse_message(crlf(
        *INVITE_HEAD[:2], "Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp",
        "Record-Route: <sip:proxy.example.com;lr>", *INVITE_HEAD[2:], "Timestamp: 54",
        "Content-Length: 0"))
    trying = sip.make_response(rr_invite, 100)
    assert trying.to_tag is None and trying.headers["Timestamp"] == "54"
    assert "Record-Route" not in trying.headers
    assert [v.host for v in trying.vias] == ["iusnucoqmctu.invalid", "proxy.example.com"]
    ok = sip.make_response(rr_invite, 200, to_tag="vk0xmihv67", headers=[
        ("Contact", "<sip:probe@127.0.0.1:7443;transport=wss>"),
        ("Content-Type", "application/sdp")], body=b"v=0\r\n")
    assert ok.to_tag == "vk0xmihv67" and ok.headers["Record-Route"] == "<sip:proxy.example.com;lr>"
    assert "Timestamp" not in ok.headers
    assert [n for n, _ in ok.headers] == [
        "Via", "Via", "From", "To", "Call-ID", "CSeq", "Record-Route", "Contact", "Content-Type",
        "Content-Length"]
    assert ok.headers["Content-Length"] == "5" and ok.body == b"v=0\r\n"
    busy = sip.make_response(rr_invite, 486, to_tag="x")
    assert "Record-Route" not in busy.headers and busy.reason == "Busy Here"
    custom = sip.make_response(rr_invite, 480, "Room Full", to_tag="x")
    assert custom.start_line == "SIP/2.0 480 Room Full"
    assert sip.make_response(rr_invite, 299, to_tag="x").reason == "Unknown"


def test_make_response_keeps_existing_to_tag():
    bye = sip.parse_message(BYE_CLIENT)
    ok = sip.make_response(bye, 200, to_tag="other")
    assert ok.to_tag == "vk0xmihv67"
    assert sip.make_response(bye, 200).to_tag == "vk0xmihv67"


def test_make_response_errors():
    invite = sip.parse_message(INVITE_1)
    with pytest.raises(ValueError):
        sip.make_response(invite, 180)  # needs a To tag
    with pytest.raises(ValueError):
        sip.make_response(invite, 99, to_tag="x")
    with pytest.raises(ValueError):
        sip.make_response(invite, 200, to_tag="bad tag")
    with pytest.raises(ValueError):
        sip.make_response(sip.parse_message(ACK_200), 200, to_tag="x")


def test_cancel_flow_200_and_487():
    invite, cancel = sip.parse_message(INVITE_2), sip.parse_message(CANCEL)
    ok = sip.make_response(cancel, 200, to_tag="c1")
    terminated = sip.make_response(invite, 487, to_tag="c1")
    assert ok.cseq == (9544, "CANCEL") and terminated.cseq == (9544, "INVITE")
    assert terminated.reason == "Request Terminated"
    assert terminated.branch == invite.branch


def test_server_bye_to_client_contact():
    # r11: BYE to the INVITE's Contact, From/To swapped, our tag, CSeq 1 BYE
    invite = sip.parse_message(crlf(
        "INVITE sip:15*101*video@127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/WSS q9oq1a47fcbj.invalid;branch=z9hG4bK1111111",
        "Max-Forwards: 69",
        "To: <sip:15*101*video@127.0.0.1>",
        'From: "000015511" <sip:000015511@127.0.0.1>;tag=h3k2l9d0qa',
        "Call-ID: 6ldq1uv0mnk0l3rbc8te",
        "CSeq: 4321 INVITE",
        "Contact: <sip:3efblvpi@q9oq1a47fcbj.invalid;transport=ws;ob>",
        "Content-Length: 0"))
    via = sip.Via("WSS", "127.0.0.1", 7443, {"branch": "z9hG4bKq0l5v3c8n1x7m2p4"})
    bye = sip.make_in_dialog_request(invite, "BYE", local_tag="fsb7a1e0c2", cseq=1, via=via)
    assert bye.encode().decode().split("\r\n") == [
        "BYE sip:3efblvpi@q9oq1a47fcbj.invalid;transport=ws;ob SIP/2.0",
        "Via: SIP/2.0/WSS 127.0.0.1:7443;branch=z9hG4bKq0l5v3c8n1x7m2p4",
        "Max-Forwards: 70",
        'To: "000015511" <sip:000015511@127.0.0.1>;tag=h3k2l9d0qa',
        "From: <sip:15*101*video@127.0.0.1>;tag=fsb7a1e0c2",
        "Call-ID: 6ldq1uv0mnk0l3rbc8te",
        "CSeq: 1 BYE",
        "Content-Length: 0",
        "",
        "",
    ]
    assert sip.parse_message(bye.encode()) == bye
    # the client's 200 (as JsSIP builds it) matches OK_TO_SERVER_BYE in everything it echoes
    reply = sip.make_response(bye, 200, headers=[("Supported", "outbound")])
    captured = sip.parse_message(OK_TO_SERVER_BYE)
    assert reply.call_id == captured.call_id and reply.cseq == captured.cseq
    assert reply.branch == captured.branch and reply.from_tag == captured.from_tag == "fsb7a1e0c2"
    assert reply.to_tag == captured.to_tag == "h3k2l9d0qa"
    assert reply.headers["To"] == captured.headers["To"]
    assert reply.headers["From"] == captured.headers["From"]


def test_in_dialog_request_route_set_and_errors():
    invite = sip.parse_message(crlf(
        *INVITE_HEAD[:2], "Record-Route: <sip:p1;lr>, <sip:p2;lr>", *INVITE_HEAD[2:],
        "Content-Length: 0"))
    bye = sip.make_in_dialog_request(invite, "BYE", local_tag="t", cseq=7,
                                     via="SIP/2.0/WSS 127.0.0.1:7443;branch=z9hG4bKz")
    assert bye.headers.get_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    assert bye.uri == "sip:v3vuq5sa@iusnucoqmctu.invalid;transport=ws;ob"
    info = sip.make_in_dialog_request(invite, "INFO", local_tag="t", cseq=8, via=bye.top_via,
                                      body=b"x", content_type="text/plain")
    assert info.headers["Content-Type"] == "text/plain" and info.headers["Content-Length"] == "1"
    no_contact = sip.parse_message(crlf(*[h for h in INVITE_HEAD if not h.startswith("Contact")]))
    with pytest.raises(ValueError):
        sip.make_in_dialog_request(no_contact, "BYE", local_tag="t", cseq=1, via=bye.top_via)
    with pytest.raises(ValueError):
        sip.make_in_dialog_request(invite, "BYE", local_tag="bad tag", cseq=1, via=bye.top_via)
    tagged = sip.parse_message(BYE_CLIENT)  # To already carries a tag that is not "t"
    with pytest.raises(ValueError):
        sip.make_in_dialog_request(tagged, "BYE", local_tag="t", cseq=1, via=bye.top_via)


def test_make_request_in_jssip_order():
    rng = random.Random(3)
    via = sip.Via("WSS", "abc.invalid", None, {"branch": sip.generate_branch(rng)})
    frm = sip.parse_name_addr('"000015503" <sip:000015503@127.0.0.1>').with_tag(
        sip.generate_tag(rng))
    req = sip.make_request("REGISTER", sip.parse_uri("sip:127.0.0.1"), via=via, from_=frm,
                           to="<sip:000015503@127.0.0.1>", call_id=sip.generate_call_id(rng),
                           cseq=1, max_forwards=69, contact="<sip:x@abc.invalid;transport=ws>",
                           headers=[("Expires", "600")])
    assert [n for n, _ in req.headers] == [
        "Via", "Max-Forwards", "To", "From", "Call-ID", "CSeq", "Contact", "Expires",
        "Content-Length"]
    assert sip.parse_message(req.encode()) == req
    with pytest.raises(ValueError):
        sip.make_request("BAD METHOD", "sip:a@b", via=via, from_=frm, to=frm, call_id="c", cseq=1)
    with pytest.raises(ValueError):
        sip.make_request("BYE", "sip:a@b", via=via, from_=frm, to=frm, call_id="c", cseq=2 ** 31)


# =================================================================================================
# Digest
# =================================================================================================


def test_challenge_variants():
    assert sip.make_digest_challenge("FSdefaultDomain", "n", qop=None, algorithm=None) == \
        'Digest realm="FSdefaultDomain", nonce="n"'
    value = sip.make_digest_challenge('we"ird', "n", opaque="o", stale=True)
    assert value == ('Digest realm="we\\"ird", nonce="n", opaque="o", stale=true, '
                     'algorithm=MD5, qop="auth"')
    assert sip.parse_digest_params(value)["realm"] == 'we"ird'


@pytest.mark.parametrize("qop", [None, "auth"])
def test_verify_against_independent_digest(qop):
    nc, cnonce = ("00000001", "fgh7s6kl5nb3") if qop else (None, None)
    resp = independent_digest("000015503", "FSdefaultDomain", PASSWORD, "INVITE",
                              "sip:15*101*video@127.0.0.1", "abc", nc, cnonce, qop)
    params = {"username": "000015503", "realm": "FSdefaultDomain", "nonce": "abc",
              "uri": "sip:15*101*video@127.0.0.1", "response": resp.upper()}
    if qop:
        params.update(qop=qop, nc=nc, cnonce=cnonce)
    assert sip.verify_digest(params, "INVITE", PASSWORD)
    assert sip.digest_response(username="000015503", realm="FSdefaultDomain", password=PASSWORD,
                               method="INVITE", uri="sip:15*101*video@127.0.0.1", nonce="abc",
                               qop=qop, nc=nc, cnonce=cnonce) == resp


def test_md5_sess_and_auth_int():
    ha1 = md5(f"{md5('u:r:p')}:n:c")
    sess = md5(f"{ha1}:n:00000001:c:auth:{md5('REGISTER:sip:r')}")
    params = {"username": "u", "realm": "r", "nonce": "n", "uri": "sip:r", "response": sess,
              "qop": "auth", "nc": "00000001", "cnonce": "c", "algorithm": "MD5-sess"}
    assert sip.verify_digest(params, "REGISTER", "p")
    body = b"v=0\r\n"
    ha2 = md5(f"INVITE:sip:r:{hashlib.md5(body).hexdigest()}")
    auth_int = md5(f"{md5('u:r:p')}:n:00000001:c:auth-int:{ha2}")
    params = {"username": "u", "realm": "r", "nonce": "n", "uri": "sip:r", "response": auth_int,
              "qop": "auth-int", "nc": "00000001", "cnonce": "c"}
    assert sip.verify_digest(params, "INVITE", "p", body=body)
    assert not sip.verify_digest(params, "INVITE", "p")  # no body given
    assert not sip.verify_digest(params, "INVITE", "p", body=b"other")


def _valid_params() -> dict[str, str]:
    resp = independent_digest("u", "r", "p", "REGISTER", "sip:r", "n", "00000001", "c", "auth")
    return {"username": "u", "realm": "r", "nonce": "n", "uri": "sip:r", "response": resp,
            "qop": "auth", "nc": "00000001", "cnonce": "c"}


@pytest.mark.parametrize("change", [
    {"username": None}, {"realm": None}, {"nonce": None}, {"uri": None}, {"response": None},
    {"cnonce": None}, {"nc": None}, {"nc": "1"}, {"nc": "0000000g"}, {"qop": "auth-conf"},
    {"algorithm": "SHA-256"}, {"response": "x" * 32}, {"response": ""}, {"uri": "sip:other"},
    {"nonce": "m"}, {"realm": "R"}, {"username": "U"}, {"algorithm": "MD5-sess", "cnonce": None},
])
def test_verify_digest_rejects(change):
    params = _valid_params()
    assert sip.verify_digest(params, "REGISTER", "p")
    for k, v in change.items():
        if v is None:
            params.pop(k, None)
        else:
            params[k] = v
    assert sip.verify_digest(params, "REGISTER", "p") is False


def test_make_digest_authorization_matches_jssip_format():
    challenge = sip.parse_digest_params(sip.make_digest_challenge("127.0.0.1", "6ac1vhrvfcz0349s"))
    value = sip.make_digest_authorization(challenge, username="000015503", password=PASSWORD,
                                          method="REGISTER", uri="sip:127.0.0.1",
                                          cnonce="fgh7s6kl5nb3")
    expected = independent_digest("000015503", "127.0.0.1", PASSWORD, "REGISTER",
                                  "sip:127.0.0.1", "6ac1vhrvfcz0349s", "00000001",
                                  "fgh7s6kl5nb3", "auth")
    assert value == SPEC_AUTHORIZATION.replace("5785f96e\u2026", expected)
    params = sip.parse_digest_params(value)
    assert sip.verify_digest(params, "REGISTER", PASSWORD)
    no_qop = sip.make_digest_authorization({"realm": "r", "nonce": "n", "opaque": "o"},
                                           username="u", password="p", method="BYE",
                                           uri="sip:x", cnonce="c", nc=2)
    params = sip.parse_digest_params(no_qop)
    assert "qop" not in params and params["opaque"] == "o"
    assert sip.verify_digest(params, "BYE", "p")


@pytest.mark.parametrize("value", [
    "Basic dXNlcjpwYXNz", "Digest", "Digest   ", 'Digest realm="a", realm="b"',
    'Digest realm="unterminated', "Digest realm", "Digest realm=", 'Digest realm="a" junk',
    "Digest =x", "Digest realm=a b", "",
])
def test_bad_digest_headers(value):
    with pytest.raises(sip.SipParseError):
        sip.parse_digest_params(value)


def test_digest_params_are_lenient_about_spacing_and_case():
    assert sip.parse_digest_params('digest\tRealm = "a" ,NONCE="b",, qop=auth') == {
        "realm": "a", "nonce": "b", "qop": "auth"}


def test_nonce_manager():
    rng = random.Random(9)
    nonces = sip.NonceManager(b"secret")
    n = nonces.make(100.0, rng)
    assert nonces.check(n, 100.0) is sip.NonceStatus.VALID
    assert nonces.check(n, 160.0) is sip.NonceStatus.VALID
    assert nonces.check(n, 160.01) is sip.NonceStatus.STALE
    assert nonces.check(n, 99.0) is sip.NonceStatus.INVALID
    assert sip.NonceManager(b"other").check(n, 100.0) is sip.NonceStatus.INVALID
    tampered = ("0" if n[0] != "0" else "1") + n[1:]
    assert nonces.check(tampered, 100.0) is sip.NonceStatus.INVALID
    for junk in ("", "x", "6ac1vhrvfcz0349s", n + "0", n.upper()):
        assert nonces.check(junk, 100.0) is sip.NonceStatus.INVALID
    assert n != nonces.make(100.0, rng)
    short = sip.NonceManager(b"s", ttl=5)
    assert short.check(short.make(0.0, rng), 5.5) is sip.NonceStatus.STALE
    a = sip.NonceManager.from_rng(random.Random(1))
    b = sip.NonceManager.from_rng(random.Random(1))
    assert a.secret == b.secret and a.ttl == 60.0
    assert a.make(1.0, random.Random(2)) == b.make(1.0, random.Random(2))
    with pytest.raises(ValueError):
        nonces.make(-1.0, rng)
    with pytest.raises(ValueError):
        sip.NonceManager(b"")
    challenge = sip.make_digest_challenge("127.0.0.1", n)
    assert sip.parse_digest_params(challenge)["nonce"] == n


# =================================================================================================
# Fuzzing: parse_message and SipStreamParser return messages or raise SipParseError, nothing else
# =================================================================================================

FAST = fuzz_settings(250, suppress_health_check=[HealthCheck.too_slow])
SEEDS = [REGISTER_1, REGISTER_2, INVITE_1, ACK_407, ACK_200, BYE_CLIENT, CANCEL, OK_TO_SERVER_BYE,
         crlf(*MINIMAL)]


def _check_message(msg: sip.SipMessage) -> None:
    """Accessors of a parsed message never raise, and it survives a re-encode."""
    _ = (msg.call_id, msg.cseq, msg.from_addr, msg.to_addr, msg.from_tag, msg.to_tag,
         msg.vias, msg.top_via, msg.branch, msg.contacts, msg.content_type)
    if isinstance(msg, sip.SipRequest) and msg.uri.lower().startswith(("sip:", "sips:")):
        _ = msg.parsed_uri
    for value in msg.headers.get_all("Route") + msg.headers.get_all("Record-Route"):
        sip.parse_name_addr(value)
    wire = msg.encode()
    again = sip.parse_message(wire)
    assert again.encode() == wire and again.body == msg.body
    assert [(n, v) for n, v in again.headers if n != "Content-Length"] == \
        [(n, v) for n, v in msg.headers if n != "Content-Length"]


def _parse_or_error(data: bytes) -> None:
    try:
        msg = sip.parse_message(data)
    except sip.SipParseError:
        return
    _check_message(msg)


def _stream_or_error(chunks: list[bytes]) -> None:
    parser = sip.SipStreamParser(max_header_bytes=4096, max_body_bytes=8192)
    try:
        for chunk in chunks:
            for msg in parser.feed(chunk):
                _check_message(msg)
        parser.feed_eof()
    except sip.SipParseError:
        return


@FAST
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    _parse_or_error(data)
    _stream_or_error([data])


@FAST
@given(st.text(alphabet="INVTEACKSP/2.0 :;<>\"@,=\r\n\tabcxyz-1*", max_size=300))
def test_fuzz_sip_alphabet(text):
    data = text.encode()
    _parse_or_error(data)
    _stream_or_error([data])


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "dup", "truncate", "crlf"]))
        i = draw(st.integers(0, len(data)))
        if op == "flip" and i < len(data):
            data[i] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[i: i + draw(st.integers(1, 20))]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=12))
        elif op == "dup":
            j = draw(st.integers(0, len(data)))
            data[i:i] = data[j: j + draw(st.integers(1, 60))]
        elif op == "truncate":
            del data[i:]
        else:
            data[i:i] = draw(st.sampled_from([b"\r\n", b"\n", b"\r\n\r\n", b"\r\n ", b",", b";",
                                               b"\"", b"<", b">", b":"]))
    return bytes(data)


@FAST
@given(mutated())
def test_fuzz_mutated_captures_datagram(data):
    _parse_or_error(data)


@FAST
@given(mutated(), st.lists(st.integers(1, 200), max_size=8))
def test_fuzz_mutated_captures_stream(data, cuts):
    chunks, pos = [], 0
    for cut in cuts:
        chunks.append(data[pos: pos + cut])
        pos += cut
    chunks.append(data[pos:])
    _stream_or_error(chunks)
    _stream_or_error([data + data])


@FAST
@given(st.lists(st.sampled_from([*SEEDS[:-1], b"\r\n\r\n", b"\r\n"]), min_size=1,
                max_size=6),
       st.integers(1, 97))
def test_fuzz_valid_stream_any_chunking(messages, size):
    blob = b"".join(messages)
    parser = sip.SipStreamParser()
    out = []
    for i in range(0, len(blob), size):
        out += parser.feed(blob[i: i + size])
    parser.feed_eof()
    assert out == [sip.parse_message(m) for m in messages if not sip.is_keepalive(m)]


@FAST
@given(st.text(max_size=120))
def test_fuzz_helpers(text):
    for fn in (sip.parse_uri, sip.parse_name_addr, sip.parse_via, sip.parse_digest_params,
               sip.split_header_list, sip.parse_params):
        with contextlib.suppress(sip.SipParseError):
            fn(text)
    assert sip.NonceManager(b"k").check(text, 0.0) in set(sip.NonceStatus)


_PIECE = st.text(alphabet='"<>sip:@;=,a1 \t*[]:.?&%\\/-_~+!', max_size=40)


@FAST
@given(_PIECE, _PIECE, _PIECE, _PIECE, _PIECE)
def test_fuzz_structured_headers(via, frm, to, contact, uri):
    """Messages with a sane frame but hostile Via/From/To/Contact/Request-URI values; every
    value that parses also survives str() -> parse again."""
    lines = [f"INVITE sip:{uri} SIP/2.0", f"Via: SIP/2.0/UDP {via}", f"From: {frm}", f"To: {to}",
             "Call-ID: x", "CSeq: 1 INVITE", f"Contact: {contact}", "Content-Length: 0"]
    _parse_or_error(("\r\n".join(lines) + "\r\n\r\n").encode())
    for fn in (sip.parse_uri, sip.parse_name_addr, sip.parse_via):
        for value in (via, frm, to, contact, "sip:" + uri):
            try:
                parsed = fn(value)
            except sip.SipParseError:
                continue
            assert fn(str(parsed)) == parsed
