"""The browser-side model: Chrome-shaped offers the fake FreeSWITCH answers, cometVideoApi's b=AS
rewrite, and the device timing defaults (real-video-client.md 4)."""

from __future__ import annotations

import random

import pytest

from bench.clients.sip_ua import answer_is_usable
from bench.clients.video import rewrite_bandwidth
from bench.clients.webrtc import AUDIO_PAYLOADS, VIDEO_PAYLOADS, DeviceTimings, LocalMedia
from emulator.freeswitch.sip_core import quality_of
from emulator.wire import sdp as s


def test_offer_has_chrome_156_shape():
    text = LocalMedia(random.Random(1)).offer()
    offer = s.parse_sdp(text)
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    assert offer.bundle_mids == ["0", "1"] and offer.msid_semantic is not None
    audio, video = offer.media
    assert audio.m_line.endswith("UDP/TLS/RTP/SAVPF " + AUDIO_PAYLOADS)
    assert video.m_line.endswith("UDP/TLS/RTP/SAVPF " + VIDEO_PAYLOADS)
    assert audio.codecs[0].name.lower() == "opus" and video.codecs[0].name == "VP8"
    for media in (audio, video):
        assert media.ice_ufrag and media.ice_pwd and media.fingerprints and media.setup == "actpass"
        assert media.rtcp_mux and media.ssrcs and media.msid
        assert {c.transport.lower() for c in media.candidates} == {"udp", "tcp"}
        assert all(c.type == "host" for c in media.candidates)
        assert "trickle" in media.ice_options and s.sdp_direction(offer, media) == "sendrecv"
    assert "b=AS" not in text   # cometVideoApi's listener adds them


def test_the_emulator_answers_the_offer():
    offer = s.parse_sdp(LocalMedia(random.Random(2)).offer())
    answer = s.build_webrtc_answer(offer, host_ip="127.0.0.1", port=16384, ice_ufrag="abcdefgh",
                                   ice_pwd="a" * 24, fingerprint_sha256=":".join(["AB"] * 32), rng=random.Random(3))
    assert [m.port for m in answer.media] == [16384, 16384]
    assert answer_is_usable(answer.to_text())
    assert not answer_is_usable("v=0\r\nbroken") and not answer_is_usable("")


def test_ids_come_from_the_seed():
    a, b, c = (LocalMedia(random.Random(seed)).offer() for seed in (5, 5, 6))
    assert a == b and a != c


def test_reoffers_bump_the_version_and_change_direction():
    media = LocalMedia(random.Random(1))
    first = s.parse_sdp(media.offer())
    hold = s.parse_sdp(media.offer("sendonly"))
    assert int(hold.origin.session_version) == int(first.origin.session_version) + 1
    assert s.is_hold(hold) and not s.is_hold(first)
    with pytest.raises(ValueError):
        media.offer("sideways")


def test_audio_only_call_still_receives_video():
    offer = s.parse_sdp(LocalMedia(random.Random(1), send_video=False).offer())
    assert s.sdp_direction(offer, 1) == "recvonly" and not offer.media[1].ssrcs


def test_bandwidth_rewrite_and_the_media_model_reading_it():
    text = rewrite_bandwidth(LocalMedia(random.Random(1)).offer(), 512, 32)
    offer = s.parse_sdp(text)
    assert [m.bandwidths for m in offer.media] == [{"AS": 32}, {"AS": 512}]
    assert text.count("b=AS:") == 2 and rewrite_bandwidth(text, 256, 16).count("b=AS:") == 2
    assert quality_of(offer).video_kbps == 512
    assert rewrite_bandwidth("m=video 9 X 96\nb=AS:9\n", 1, 1) == "m=video 9 X 96\nb=AS:9\n"  # LF only: untouched


def test_device_timing_defaults_and_validation():
    t = DeviceTimings()
    assert (t.gum_first, t.gum_again, t.ice_gathering, t.addstream, t.attach_poll) == (0.09, 0.015, 0.145, 0.015, 0.3)
    with pytest.raises(ValueError, match="gum_first"):
        DeviceTimings(gum_first=-1)
    with pytest.raises(ValueError, match="attach_poll"):
        DeviceTimings(attach_poll=0)
