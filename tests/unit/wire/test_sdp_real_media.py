"""endpoint_offer / reskin_answer: a real endpoint's answer in FreeSWITCH's shape (emulator/wire/sdp.py)."""

from __future__ import annotations

import random

import pytest

from emulator.wire import sdp as s
from tests.unit.wire.test_sdp import CHROME_OFFER

FP = ":".join(["AB"] * 32)


def model_for(offer):
    return s.build_webrtc_answer(offer, host_ip="127.0.0.1", port=16384, ice_ufrag="abcd", ice_pwd="x" * 24,
                                 fingerprint_sha256=FP, rng=random.Random(1))


def endpoint_answer(narrowed: s.SessionDescription) -> str:
    """What aiortc writes for a narrowed offer (shape of aiortc 1.16.0's answers)."""
    lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
             "a=group:BUNDLE " + " ".join(str(m.mid) for m in narrowed.media), "a=msid-semantic:WMS *"]
    for m in narrowed.media:
        pt = m.formats[0]
        lines += [f"m={m.kind} 40000 UDP/TLS/RTP/SAVPF {pt}", "c=IN IP4 127.0.0.1", "a=sendrecv",
                  "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid", f"a=mid:{m.mid}", "a=msid:s t",
                  "a=rtcp:9 IN IP4 0.0.0.0", "a=rtcp-mux", "a=ssrc:1234 cname:c",
                  f"a=rtpmap:{m.rtpmaps[int(pt)]}",
                  "a=candidate:abc 1 udp 2130706431 127.0.0.1 40000 typ host", "a=end-of-candidates",
                  "a=ice-ufrag:wxyz", "a=ice-pwd:" + "p" * 22, "a=fingerprint:sha-256 " + ":".join(["CD"] * 32),
                  "a=fingerprint:sha-512 " + ":".join(["EF"] * 64), "a=setup:active"]
    return "\r\n".join(lines) + "\r\n"


def test_endpoint_offer_keeps_only_the_models_codec_and_accepted_lines():
    offer = s.parse_sdp(CHROME_OFFER)
    model = model_for(offer)
    narrowed = s.endpoint_offer(offer, model)
    assert [len(m.formats) for m in narrowed.media] == [1] * len(narrowed.media)
    assert [c.name for m in narrowed.media for c in m.codecs] == [c.name for m in model.media for c in m.codecs]
    for m in narrowed.media:   # the browser's transport lines stay
        assert m.ice_ufrag or narrowed.ice_ufrag
        assert not any(v.startswith("ssrc-group") for _, v in m.lines)


def test_reskin_keeps_the_endpoints_transport_and_rtp_lines_in_freeswitchs_shape():
    offer = s.parse_sdp(CHROME_OFFER)
    model = model_for(offer)
    answer = s.reskin_answer(endpoint_answer(s.endpoint_offer(offer, model)), model)
    assert answer.origin.username == "FreeSWITCH" and answer.session_name == "FreeSWITCH"
    assert answer.bundle_mids == [m.mid for m in model.media if not m.rejected]
    for m in answer.media:
        if m.rejected:
            continue
        assert m.port == 40000 and m.ice_ufrag == "wxyz" and m.setup == "active"
        assert [h for h, _ in m.fingerprints] == ["sha-256"] and m.fingerprints[0][1].startswith("CD")
        assert m.extmaps == [] and m.rtcp_port is None and m.ssrcs
        assert [c.address for c in m.candidates] == ["127.0.0.1"]
    assert s.parse_sdp(answer.encode()).encode() == answer.encode()


def test_reskin_refuses_an_endpoint_that_rejected_an_accepted_stream():
    offer = s.parse_sdp(CHROME_OFFER)
    model = model_for(offer)
    text = endpoint_answer(s.endpoint_offer(offer, model)).replace("m=video 40000", "m=video 0")
    with pytest.raises(s.SdpError) as err:
        s.reskin_answer(text, model)
    assert err.value.status == 488
