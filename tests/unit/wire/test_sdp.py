"""Unit tests of emulator.wire.sdp: parsing a Chrome WebRTC offer, the fake FreeSWITCH answer,
direction / hold detection, limits and fuzzing (spec real-video-client.md 4.2, 6.4;
video-call-flow.md 1.2, 2.7)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from emulator.wire import sdp as s
from emulator.wire.sip import SipParseError
from tests.fuzzing import fuzz_settings

pytestmark = pytest.mark.fuzz("sdp")

# A Chrome 12x-style offer as JsSIP 2.0.6 sends it through cometVideoApi (real-video-client.md
# 4.2): non-trickle (host candidates already in), BUNDLE 0 1, opus 111 first, VP8 96 first, rtx,
# red/ulpfec, ice-options:trickle still advertised, setup:actpass, rtcp-mux/rsize, msid + ssrc
# lines, and the b=AS lines cometVideoApi inserts right after each m= line.
OFFER_LINES = [
    "v=0",
    "o=- 7394827516093645121 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS 3d0c7f5e-8a1b-4c2d-9e6f-0a1b2c3d4e5f",
    "m=audio 50123 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
    "b=AS:32",
    "c=IN IP4 192.168.56.10",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:2999745851 1 udp 2122260223 192.168.56.10 50123 typ host generation 0 network-id 1",
    "a=candidate:1510613869 1 udp 2122197247 fd00::1c5a 50124 typ host generation 0 network-id 2",
    "a=candidate:4233069003 1 tcp 1518280447 192.168.56.10 9 typ host tcptype active generation 0 network-id 1",
    "a=ice-ufrag:Qx7v",
    "a=ice-pwd:yK4m2kPq9sTnW8rVb3cXz1aL",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 4B:1F:9C:7A:22:E0:5D:83:0C:6E:91:AF:38:B2:D4:17:5A:C9:60:3E:F1:8D:27:4C:99:0B:E6:12:A7:5F:C3:88",
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=sendrecv",
    "a=msid:3d0c7f5e-8a1b-4c2d-9e6f-0a1b2c3d4e5f 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:13 CN/8000",
    "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:126 telephone-event/8000",
    "a=ssrc:2893012345 cname:Vw3sQm9kLp2xR7tY",
    "a=ssrc:2893012345 msid:3d0c7f5e-8a1b-4c2d-9e6f-0a1b2c3d4e5f 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    "m=video 50123 UDP/TLS/RTP/SAVPF 96 97 102 103 104 107 108 109 114 115 116 117 39 40 45 46 98 99 100 101 118 119 120",
    "b=AS:256",
    "c=IN IP4 192.168.56.10",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:2999745851 1 udp 2122260223 192.168.56.10 50123 typ host generation 0 network-id 1",
    "a=candidate:1510613869 1 udp 2122197247 fd00::1c5a 50124 typ host generation 0 network-id 2",
    "a=candidate:4233069003 1 tcp 1518280447 192.168.56.10 9 typ host tcptype active generation 0 network-id 1",
    "a=ice-ufrag:Qx7v",
    "a=ice-pwd:yK4m2kPq9sTnW8rVb3cXz1aL",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 4B:1F:9C:7A:22:E0:5D:83:0C:6E:91:AF:38:B2:D4:17:5A:C9:60:3E:F1:8D:27:4C:99:0B:E6:12:A7:5F:C3:88",
    "a=setup:actpass",
    "a=mid:1",
    "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:13 urn:3gpp:video-orientation",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "a=sendrecv",
    "a=msid:3d0c7f5e-8a1b-4c2d-9e6f-0a1b2c3d4e5f 5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:96 VP8/90000",
    "a=rtcp-fb:96 goog-remb",
    "a=rtcp-fb:96 transport-cc",
    "a=rtcp-fb:96 ccm fir",
    "a=rtcp-fb:96 nack",
    "a=rtcp-fb:96 nack pli",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
    "a=rtpmap:102 H264/90000",
    "a=rtcp-fb:102 goog-remb",
    "a=rtcp-fb:102 transport-cc",
    "a=rtcp-fb:102 ccm fir",
    "a=rtcp-fb:102 nack",
    "a=rtcp-fb:102 nack pli",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
    "a=rtpmap:103 rtx/90000",
    "a=fmtp:103 apt=102",
    "a=rtpmap:104 H264/90000",
    "a=rtcp-fb:104 goog-remb",
    "a=rtcp-fb:104 transport-cc",
    "a=rtcp-fb:104 ccm fir",
    "a=rtcp-fb:104 nack",
    "a=rtcp-fb:104 nack pli",
    "a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f",
    "a=rtpmap:107 rtx/90000",
    "a=fmtp:107 apt=104",
    "a=rtpmap:108 H264/90000",
    "a=rtcp-fb:108 goog-remb",
    "a=rtcp-fb:108 transport-cc",
    "a=rtcp-fb:108 ccm fir",
    "a=rtcp-fb:108 nack",
    "a=rtcp-fb:108 nack pli",
    "a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    "a=rtpmap:109 rtx/90000",
    "a=fmtp:109 apt=108",
    "a=rtpmap:114 H264/90000",
    "a=rtcp-fb:114 goog-remb",
    "a=rtcp-fb:114 transport-cc",
    "a=rtcp-fb:114 ccm fir",
    "a=rtcp-fb:114 nack",
    "a=rtcp-fb:114 nack pli",
    "a=fmtp:114 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f",
    "a=rtpmap:115 rtx/90000",
    "a=fmtp:115 apt=114",
    "a=rtpmap:116 H264/90000",
    "a=rtcp-fb:116 goog-remb",
    "a=rtcp-fb:116 transport-cc",
    "a=rtcp-fb:116 ccm fir",
    "a=rtcp-fb:116 nack",
    "a=rtcp-fb:116 nack pli",
    "a=fmtp:116 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f",
    "a=rtpmap:117 rtx/90000",
    "a=fmtp:117 apt=116",
    "a=rtpmap:39 AV1/90000",
    "a=rtcp-fb:39 goog-remb",
    "a=rtcp-fb:39 transport-cc",
    "a=rtcp-fb:39 ccm fir",
    "a=rtcp-fb:39 nack",
    "a=rtcp-fb:39 nack pli",
    "a=fmtp:39 level-idx=5;profile=0;tier=0",
    "a=rtpmap:40 rtx/90000",
    "a=fmtp:40 apt=39",
    "a=rtpmap:45 AV1/90000",
    "a=rtcp-fb:45 goog-remb",
    "a=rtcp-fb:45 transport-cc",
    "a=rtcp-fb:45 ccm fir",
    "a=rtcp-fb:45 nack",
    "a=rtcp-fb:45 nack pli",
    "a=fmtp:45 level-idx=5;profile=1;tier=0",
    "a=rtpmap:46 rtx/90000",
    "a=fmtp:46 apt=45",
    "a=rtpmap:98 VP9/90000",
    "a=rtcp-fb:98 goog-remb",
    "a=rtcp-fb:98 transport-cc",
    "a=rtcp-fb:98 ccm fir",
    "a=rtcp-fb:98 nack",
    "a=rtcp-fb:98 nack pli",
    "a=fmtp:98 profile-id=0",
    "a=rtpmap:99 rtx/90000",
    "a=fmtp:99 apt=98",
    "a=rtpmap:100 VP9/90000",
    "a=rtcp-fb:100 goog-remb",
    "a=rtcp-fb:100 transport-cc",
    "a=rtcp-fb:100 ccm fir",
    "a=rtcp-fb:100 nack",
    "a=rtcp-fb:100 nack pli",
    "a=fmtp:100 profile-id=2",
    "a=rtpmap:101 rtx/90000",
    "a=fmtp:101 apt=100",
    "a=rtpmap:118 red/90000",
    "a=rtpmap:119 rtx/90000",
    "a=fmtp:119 apt=118",
    "a=rtpmap:120 ulpfec/90000",
    "a=ssrc-group:FID 1874650212 3309725847",
    "a=ssrc:1874650212 cname:Vw3sQm9kLp2xR7tY",
    "a=ssrc:1874650212 msid:3d0c7f5e-8a1b-4c2d-9e6f-0a1b2c3d4e5f 5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c",
    "a=ssrc:3309725847 cname:Vw3sQm9kLp2xR7tY",
    "a=ssrc:3309725847 msid:3d0c7f5e-8a1b-4c2d-9e6f-0a1b2c3d4e5f 5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c",
]
CHROME_OFFER = "\r\n".join(OFFER_LINES) + "\r\n"

UFRAG = "Fs9q"
PWD = "Zt4rW8pL2mQx7vK3nB6cY1dH"
FP_BYTES = bytes(range(32))
FP_TEXT = ":".join(f"{b:02X}" for b in FP_BYTES)


def answer(offer=CHROME_OFFER, **kw):
    args = dict(host_ip="127.0.0.1", port=40000, ice_ufrag=UFRAG, ice_pwd=PWD,
                fingerprint_sha256=FP_BYTES, rng=random.Random(7))
    args.update(kw)
    return s.build_webrtc_answer(offer, **args)


def media_attrs(media: s.SdpMedia) -> list[str]:
    return [f"{k}={v}" for k, v in media.lines]


# --- parsing the offer ---------------------------------------------------------------------------


def test_offer_session_level():
    o = s.parse_sdp(CHROME_OFFER)
    assert o.version == 0
    assert o.origin == s.Origin("-", "7394827516093645121", "2", "IN", "IP4", "127.0.0.1")
    assert o.session_name == "-"
    assert o.groups == [("BUNDLE", ["0", "1"])]
    assert o.bundle_mids == ["0", "1"]
    assert o.msid_semantic == "WMS 3d0c7f5e-8a1b-4c2d-9e6f-0a1b2c3d4e5f"
    assert o.has_attribute("extmap-allow-mixed")
    assert [m.kind for m in o.media] == ["audio", "video"]


def test_offer_audio_section():
    a = s.parse_sdp(CHROME_OFFER).media[0]
    assert (a.kind, a.port, a.port_count, a.proto) == (
        "audio", 50123, None, "UDP/TLS/RTP/SAVPF")
    assert a.formats == ["111", "63", "9", "0", "8", "13", "110", "126"]
    assert a.mid == "0"
    assert a.bandwidths == {"AS": 32}
    assert a.connection == s.Connection("IN", "IP4", "192.168.56.10")
    assert a.rtcp_port == 9
    assert a.ice_ufrag == "Qx7v" and a.ice_pwd == "yK4m2kPq9sTnW8rVb3cXz1aL"
    assert a.ice_options == ["trickle"]
    fp = next(line for line in OFFER_LINES if line.startswith("a=fingerprint")).split()[1]
    assert a.fingerprints == [("sha-256", fp)]
    assert a.setup == "actpass"
    assert a.rtcp_mux and a.rtcp_rsize
    assert a.direction == "sendrecv"
    assert a.msid == ("3d0c7f5e-8a1b-4c2d-9e6f-0a1b2c3d4e5f "
                      "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")
    assert a.rtpmaps[111] == s.RtpMap(111, "opus", 48000, 2)
    assert a.fmtps["111"] == "minptime=10;useinbandfec=1"
    assert a.rtcp_fbs == {"111": ["transport-cc"]}
    assert a.extmaps[0] == (1, "urn:ietf:params:rtp-hdrext:ssrc-audio-level")
    assert list(a.ssrcs) == [2893012345]
    assert a.ssrcs[2893012345]["cname"] == "Vw3sQm9kLp2xR7tY"
    assert not a.end_of_candidates


def test_offer_audio_codecs_in_m_line_order():
    codecs = s.parse_sdp(CHROME_OFFER).media[0].codecs
    assert [(c.payload_type, c.name, c.clock_rate) for c in codecs] == [
        (111, "opus", 48000), (63, "red", 48000), (9, "G722", 8000), (0, "PCMU", 8000),
        (8, "PCMA", 8000), (13, "CN", 8000), (110, "telephone-event", 48000),
        (126, "telephone-event", 8000)]
    assert codecs[0].channels == 2 and codecs[0].rtcp_fb == ("transport-cc",)
    assert codecs[1].fmtp == "111/111"


def test_offer_candidates():
    cands = s.parse_sdp(CHROME_OFFER).media[0].candidates
    assert len(cands) == 3
    c0, c1, c2 = cands
    assert (c0.foundation, c0.component, c0.transport, c0.priority, c0.address, c0.port,
            c0.type) == ("2999745851", 1, "udp", 2122260223, "192.168.56.10", 50123, "host")
    assert c0.extensions == (("generation", "0"), ("network-id", "1"))
    assert c1.address == "fd00::1c5a"
    assert c2.transport == "tcp" and c2.port == 9 and ("tcptype", "active") in c2.extensions
    tcp_line = next(line for line in OFFER_LINES if " tcp " in line)
    assert str(c2) == tcp_line[len("a=candidate:"):]


def test_offer_video_section():
    v = s.parse_sdp(CHROME_OFFER).media[1]
    assert v.mid == "1" and v.bandwidths == {"AS": 256}
    assert v.formats[:4] == ["96", "97", "102", "103"] and len(v.formats) == 23
    codecs = {c.payload_type: c for c in v.codecs}
    assert codecs[96].name == "VP8" and codecs[96].clock_rate == 90000
    assert codecs[96].rtcp_fb == ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli")
    assert codecs[97].name == "rtx" and codecs[97].fmtp == "apt=96"
    assert codecs[118].name == "red" and codecs[120].name == "ulpfec"
    assert v.ssrc_groups == [("FID", [1874650212, 3309725847])]
    assert list(v.ssrcs) == [1874650212, 3309725847]


def test_offer_round_trips_verbatim():
    assert s.parse_sdp(CHROME_OFFER).to_text() == CHROME_OFFER
    assert s.parse_sdp(CHROME_OFFER.encode()).encode() == CHROME_OFFER.encode()


def test_lf_only_offer_parses_and_reencodes_with_crlf():
    o = s.parse_sdp(CHROME_OFFER.replace("\r\n", "\n"))
    assert o.to_text() == CHROME_OFFER


def test_static_payload_without_rtpmap():
    text = ("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
            "m=audio 4000 RTP/AVP 0 3 101\r\na=rtpmap:101 telephone-event/8000\r\n")
    m = s.parse_sdp(text).media[0]
    assert [(c.payload_type, c.name, c.clock_rate) for c in m.codecs] == [
        (0, "PCMU", 8000), (3, "GSM", 8000), (101, "telephone-event", 8000)]


def test_session_level_transport_attributes():
    text = ("v=0\r\no=mozilla 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
            "a=fingerprint:sha-256 " + FP_TEXT + "\r\na=ice-ufrag:abcd\r\n"
            "a=ice-pwd:" + PWD + "\r\na=setup:actpass\r\n"
            "m=audio 9 UDP/TLS/RTP/SAVPF 109\r\nc=IN IP4 0.0.0.0\r\na=mid:a\r\n"
            "a=rtpmap:109 opus/48000/2\r\na=rtcp-mux\r\n")
    o = s.parse_sdp(text)
    assert o.fingerprints == [("sha-256", FP_TEXT)]
    assert o.ice_ufrag == "abcd" and o.media[0].ice_ufrag is None
    ans = answer(text)
    assert "a=ice-ufrag:" + UFRAG in media_attrs(ans.media[0])
    assert ans.media[0].port == 40000


# --- malformed SDP -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "",
    "\r\n\r\n",
    "o=- 1 1 IN IP4 1.1.1.1\r\nv=0\r\ns=-\r\n",
    "v=1\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\n",
    "v=0\r\ns=-\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\n",
    "v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n",
    "v=0\r\no=- x 1 IN IP4 1.1.1.1\r\ns=-\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nV=0\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nnot a line\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nc=IN IP5 1.1.1.1\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nb=AS\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nm=audio 1 RTP/AVP\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nm=audio 70000 RTP/AVP 0\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nm=audio -1 RTP/AVP 0\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nm=audio 1  RTP/AVP 0\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\ns=x\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:200 X/8000\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=fmtp:0\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=candidate:1 1 udp\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\n"
    "a=candidate:1 1 udp 5 1.1.1.1 99999 typ host\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=fingerprint:sha-256 XY\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=setup:sideways\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=ssrc:x cname:y\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=mid:\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=ice-ufrag:a b\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\na=group\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\na=extmap:x urn:y\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\na=a b:c\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\x00\r\n",
])
def test_malformed_sdp_raises_sdp_error(text):
    with pytest.raises(s.SdpError) as exc:
        s.parse_sdp(text)
    assert isinstance(exc.value, SipParseError) and exc.value.status == 400


def test_non_utf8_sdp():
    with pytest.raises(s.SdpError):
        s.parse_sdp(b"v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=\xff\r\n")


def test_oversized_sdp_is_rejected_before_parsing():
    big = CHROME_OFFER + "a=x-pad:" + "p" * (64 * 1024) + "\r\n"
    with pytest.raises(s.SdpError) as exc:
        s.parse_sdp(big)
    assert exc.value.status == 413
    s.parse_sdp(CHROME_OFFER, max_bytes=len(CHROME_OFFER))
    with pytest.raises(s.SdpError):
        s.parse_sdp(CHROME_OFFER, max_bytes=len(CHROME_OFFER) - 1)


# --- the answer, line by line --------------------------------------------------------------------


def test_answer_structure_line_by_line():
    ans = answer(session_id=1000)
    text = ans.to_text()
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    lines = text.split("\r\n")[:-1]
    stream = ans.msid_semantic.split()[1]
    audio_track = ans.media[0].msid.split()[1]
    video_track = ans.media[1].msid.split()[1]
    a_ssrc, v_ssrc = list(ans.media[0].ssrcs), list(ans.media[1].ssrcs)
    assert len(a_ssrc) == 1 and len(v_ssrc) == 1 and a_ssrc != v_ssrc
    cname = ans.media[0].ssrcs[a_ssrc[0]]["cname"]
    assert ans.media[1].ssrcs[v_ssrc[0]]["cname"] == cname
    transport = [
        "c=IN IP4 127.0.0.1",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host generation 0",
        "a=end-of-candidates",
        f"a=ice-ufrag:{UFRAG}",
        f"a=ice-pwd:{PWD}",
        f"a=fingerprint:sha-256 {FP_TEXT}",
        "a=setup:active",
    ]
    assert lines == [
        "v=0",
        "o=FreeSWITCH 1000 1001 IN IP4 127.0.0.1",
        "s=FreeSWITCH",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        f"a=msid-semantic: WMS {stream}",
        "m=audio 40000 UDP/TLS/RTP/SAVPF 111",
        *transport,
        "a=mid:0",
        "a=sendrecv",
        f"a=msid:{stream} {audio_track}",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        f"a=ssrc:{a_ssrc[0]} cname:{cname}",
        f"a=ssrc:{a_ssrc[0]} msid:{stream} {audio_track}",
        "m=video 40000 UDP/TLS/RTP/SAVPF 96",
        *transport,
        "a=mid:1",
        "a=sendrecv",
        f"a=msid:{stream} {video_track}",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 goog-remb",
        "a=rtcp-fb:96 transport-cc",
        "a=rtcp-fb:96 ccm fir",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli",
        f"a=ssrc:{v_ssrc[0]} cname:{cname}",
        f"a=ssrc:{v_ssrc[0]} msid:{stream} {video_track}",
    ]


def test_answer_reparses_and_matches_offer_mids():
    ans = answer()
    again = s.parse_sdp(ans.encode())
    assert again.to_text() == ans.to_text()
    assert [m.mid for m in again.media] == ["0", "1"]
    assert again.bundle_mids == ["0", "1"]
    assert all(m.candidates[0].type == "host" and m.end_of_candidates for m in again.media)


def test_answer_is_deterministic_for_a_seed():
    assert answer().to_text() == answer().to_text()
    assert answer().to_text() != answer(rng=random.Random(8)).to_text()


def test_answer_fingerprint_as_text_is_upper_cased():
    ans = answer(fingerprint_sha256=FP_TEXT.lower())
    assert ans.media[0].fingerprints == [("sha-256", FP_TEXT)]


def test_audio_profile_rejects_video_with_port_zero():
    # FreeSWITCH `audio` profile: absolute_codec_string=PCMU,GSM (video-call-flow.md 1.2)
    ans = answer(audio_codecs=("PCMU", "GSM"), allow_video=False, session_id=5)
    a, v = ans.media
    assert a.m_line == "audio 40000 UDP/TLS/RTP/SAVPF 0"
    assert "a=rtpmap:0 PCMU/8000" in media_attrs(a)
    assert v.m_line == "video 0 UDP/TLS/RTP/SAVPF 96"
    assert media_attrs(v) == ["c=IN IP4 127.0.0.1", "a=mid:1", "a=inactive"]
    assert ans.bundle_mids == ["0"]
    assert v.rejected and not a.rejected


def test_video_rejected_when_no_common_video_codec():
    ans = answer(video_codecs=("H265",))
    assert ans.media[1].port == 0 and ans.media[0].port == 40000
    assert ans.bundle_mids == ["0"]


def test_codec_preference_order_and_rate():
    assert answer(audio_codecs=("G722", "opus")).media[0].formats == ["9"]
    assert answer(audio_codecs=("pcma",)).media[0].formats == ["8"]
    assert answer(audio_codecs=("telephone-event/8000",)).media[0].formats == ["126"]
    assert answer(video_codecs=("h264", "VP8")).media[1].formats == ["102"]
    vp9 = answer(video_codecs=("VP9",)).media[1]
    assert vp9.formats == ["98"] and vp9.fmtps == {"98": "profile-id=0"}


def test_static_codec_chosen_without_rtpmap_gets_one():
    offer = CHROME_OFFER.replace("a=rtpmap:0 PCMU/8000\r\n", "")
    a = answer(offer, audio_codecs=("PCMU",)).media[0]
    assert a.formats == ["0"] and a.rtpmaps[0] == s.RtpMap(0, "PCMU", 8000)


def test_nothing_acceptable_is_488():
    with pytest.raises(s.SdpError) as exc:
        answer(audio_codecs=("AMR",), video_codecs=("H265",))
    assert exc.value.status == 488


def test_data_channel_and_plain_rtp_are_rejected():
    offer = CHROME_OFFER + (
        "m=application 50123 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 192.168.56.10\r\n"
        "a=mid:2\r\na=sctp-port:5000\r\n"
        "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.168.56.10\r\na=mid:3\r\n")
    ans = answer(offer)
    assert [m.port for m in ans.media] == [40000, 40000, 0, 0]
    assert ans.media[2].m_line == "application 0 UDP/DTLS/SCTP webrtc-datachannel"
    assert [m.mid for m in ans.media] == ["0", "1", "2", "3"]


def test_rejected_offer_line_stays_rejected():
    offer = CHROME_OFFER.replace("m=video 50123", "m=video 0")
    assert answer(offer).media[1].port == 0


def test_offer_without_ice_or_fingerprint_is_not_acceptable():
    no_fp = "".join(line + "\r\n" for line in OFFER_LINES if not line.startswith("a=fingerprint"))
    with pytest.raises(s.SdpError):
        answer(no_fp)
    no_ice = "".join(line + "\r\n" for line in OFFER_LINES if not line.startswith("a=ice-pwd"))
    with pytest.raises(s.SdpError):
        answer(no_ice)


@pytest.mark.parametrize("offer_setup,answer_setup", [
    ("actpass", "active"), ("passive", "active"), ("active", "passive")])
def test_setup_role(offer_setup, answer_setup):
    offer = CHROME_OFFER.replace("a=setup:actpass", f"a=setup:{offer_setup}")
    assert answer(offer).media[0].setup == answer_setup


def test_holdconn_is_not_acceptable():
    offer = CHROME_OFFER.replace("a=setup:actpass", "a=setup:holdconn")
    with pytest.raises(s.SdpError):
        answer(offer)


@pytest.mark.parametrize("offered,answered,msid", [
    ("sendrecv", "sendrecv", True), ("sendonly", "recvonly", False),
    ("recvonly", "sendonly", True), ("inactive", "inactive", False)])
def test_answer_direction_mirrors_offer(offered, answered, msid):
    offer = CHROME_OFFER.replace("a=sendrecv", f"a={offered}")
    ans = answer(offer)
    assert [m.direction for m in ans.media] == [answered, answered]
    assert (ans.media[0].msid is not None) is msid
    assert bool(ans.media[0].ssrcs) is msid
    assert (ans.msid_semantic is not None) is msid
    assert s.answer_direction(offered) == answered


def test_no_bundle_no_mid_offer():
    offer = "".join(line + "\r\n" for line in OFFER_LINES
                    if not line.startswith(("a=group", "a=mid")))
    ans = answer(offer)
    assert ans.groups == [] and [m.mid for m in ans.media] == [None, None]
    assert [m.port for m in ans.media] == [40000, 40000]


def test_no_rtcp_mux_offered_none_answered():
    offer = CHROME_OFFER.replace("a=rtcp-mux\r\n", "").replace("a=rtcp-rsize\r\n", "")
    a = answer(offer).media[0]
    assert not a.rtcp_mux and not a.rtcp_rsize


def test_ipv6_host():
    ans = answer(host_ip="::1")
    assert ans.origin.addrtype == "IP6"
    assert ans.media[0].connection == s.Connection("IN", "IP6", "::1")
    assert ans.media[0].candidates[0].address == "::1"


@pytest.mark.parametrize("kw", [
    {"host_ip": "localhost"}, {"port": 0}, {"port": 65536}, {"ice_ufrag": "abc"},
    {"ice_ufrag": "ab cd"}, {"ice_pwd": "short"}, {"fingerprint_sha256": b"\x00" * 20},
    {"fingerprint_sha256": "AB:CD"},
])
def test_bad_answer_arguments_raise_value_error(kw):
    with pytest.raises(ValueError) as exc:
        answer(**kw)
    assert not isinstance(exc.value, SipParseError)


def test_answer_takes_bytes_and_rejects_bad_offer():
    assert answer(CHROME_OFFER.encode()).media[0].port == 40000
    with pytest.raises(s.SdpError):
        answer(b"garbage")


# --- direction and hold --------------------------------------------------------------------------


def _two_streams(audio_extra: str = "", video_extra: str = "", session_extra: str = "",
                 conn: str = "10.0.0.1", video_port: int = 5002) -> s.SessionDescription:
    return s.parse_sdp(
        f"v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 {conn}\r\nt=0 0\r\n{session_extra}"
        f"m=audio 5000 RTP/AVP 0\r\n{audio_extra}"
        f"m=video {video_port} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n{video_extra}")


def test_direction_defaults_to_sendrecv():
    d = _two_streams()
    assert s.sdp_direction(d) == "sendrecv" and s.sdp_direction(d, 0) == "sendrecv"
    assert not s.is_hold(d)


def test_hold_with_sendonly_on_every_stream():
    d = _two_streams("a=sendonly\r\n", "a=sendonly\r\n")
    assert s.sdp_direction(d) == "sendonly" and s.is_hold(d)


def test_hold_with_session_level_inactive():
    d = _two_streams(session_extra="a=inactive\r\n")
    assert s.sdp_direction(d, d.media[1]) == "inactive" and s.is_hold(d)


def test_media_level_overrides_session_level():
    d = _two_streams(audio_extra="a=sendrecv\r\n", session_extra="a=sendonly\r\n")
    assert s.sdp_direction(d, 0) == "sendrecv" and s.sdp_direction(d, 1) == "sendonly"
    assert not s.is_hold(d)


def test_partial_hold_is_not_hold():
    d = _two_streams("a=sendonly\r\n")
    assert s.sdp_direction(d) == "sendrecv" and not s.is_hold(d)


def test_rfc2543_hold_with_zero_connection_address():
    d = _two_streams(conn="0.0.0.0")
    assert s.sdp_direction(d, 0) == "sendonly" and s.is_hold(d)
    d = _two_streams("a=recvonly\r\n", "a=recvonly\r\n", conn="0.0.0.0")
    assert s.sdp_direction(d) == "inactive" and s.is_hold(d)


def test_media_level_connection_zero():
    d = _two_streams("c=IN IP4 0.0.0.0\r\n", "c=IN IP4 0.0.0.0\r\n")
    assert s.is_hold(d)


def test_rejected_streams_do_not_count():
    d = _two_streams("a=sendonly\r\n", video_port=0)
    assert s.sdp_direction(d, 1) == "inactive" and s.is_hold(d)
    d = _two_streams(video_port=0)
    assert not s.is_hold(d)


def test_recvonly_is_not_hold():
    d = _two_streams("a=recvonly\r\n", "a=recvonly\r\n")
    assert s.sdp_direction(d) == "recvonly" and not s.is_hold(d)


def test_no_media_is_not_hold():
    d = s.parse_sdp("v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n")
    assert s.sdp_direction(d) == "inactive" and not s.is_hold(d)


def test_chrome_offer_is_not_hold_and_its_answer_is_sendrecv():
    o = s.parse_sdp(CHROME_OFFER)
    assert not s.is_hold(o)
    assert s.sdp_direction(answer()) == "sendrecv"


# --- fuzzing -------------------------------------------------------------------------------------

FAST = fuzz_settings(200, suppress_health_check=[HealthCheck.too_slow])


def _check_parsed(d: s.SessionDescription) -> None:
    """Every accessor of a parsed description works; re-encoding re-parses to the same text."""
    for sec in [d, *d.media]:
        _ = (sec.attributes, sec.connection, sec.bandwidths, sec.direction, sec.fingerprints,
             sec.ice_ufrag, sec.ice_options, sec.setup)
    _ = (d.groups, d.bundle_mids, d.origin)
    for m in d.media:
        _ = (m.codecs, m.candidates, m.ssrcs, m.ssrc_groups, m.extmaps, m.rtcp_port, m.mid,
             m.msid)
        s.sdp_direction(d, m)
    s.is_hold(d)
    assert s.parse_sdp(d.encode()).to_text() == d.to_text()


@FAST
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    try:
        d = s.parse_sdp(data)
    except s.SdpError:
        return
    _check_parsed(d)


@st.composite
def mutated_offer(draw):
    lines = list(OFFER_LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "dup", "truncate", "replace", "insert", "swap"]))
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif op == "replace":
            pos = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:pos] + draw(st.text(max_size=4)) + lines[i][pos + 1:]
        elif op == "insert":
            lines.insert(i, draw(st.text(max_size=30)))
        else:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    return "\r\n".join(lines) + "\r\n"


@FAST
@given(mutated_offer())
def test_fuzz_mutated_offer_parse_and_answer(text):
    try:
        d = s.parse_sdp(text)
    except s.SdpError:
        return
    _check_parsed(d)
    try:
        ans = answer(d)
    except s.SdpError as exc:
        assert exc.status == 488
        return
    again = s.parse_sdp(ans.encode())
    assert len(again.media) == len(d.media)
    assert [m.mid for m in again.media] == [m.mid for m in d.media]
    assert [m.kind for m in again.media] == [m.kind for m in d.media]
    assert any(not m.rejected for m in again.media)
