"""Real media (media = "real"): the bridge answers WebRTC offers with the media worker's endpoint.

The browsers here are aiortc peers (tests/media/aiopeer.py) talking SIP through the project's
JsSIP-like UA wired straight into the SIP core; tests/browser/test_real_media_browsers.py does
the same with two real Chromium pages.  Real time, real UDP on 127.0.0.1.
"""

from __future__ import annotations

import random

import pytest
import trio

pytest.importorskip("aiortc")

from emulator.clock import WallClock
from emulator.freeswitch.conference import Bridge
from emulator.freeswitch.real_media import RealMedia
from emulator.freeswitch.sip_core import SipCore
from emulator.journal import Journal
from emulator.profiles import get_profile
from emulator.wire import sdp as s
from emulator.wire import sip
from tests.media.aiopeer import AioPeer
from tests.sipkit import CorePhone

USERS = {"000015503": "PassForUser503", "000015504": "PassForUser504", "000015505": "PassForUser505"}


async def wait_for(predicate, timeout=15.0, what="condition"):
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


class Node:
    def __init__(self, nursery, rtp_timeout=300.0):
        self.journal = Journal(":memory:")
        wall = WallClock()
        self.bridge = Bridge(clock=wall, rng=random.Random(1), profile=get_profile("cppcomet-4.09"),
                             rtp_timeout=rtp_timeout, journal=self.journal)
        self.core = SipCore(self.bridge, USERS.get, rng=random.Random(2), journal=self.journal)
        self.real = RealMedia(self.bridge, self.journal)
        self.core.real_media = self.real
        self.nursery = nursery

    async def start(self):
        await self.nursery.start(self.core.run)
        await self.nursery.start(self.real.run)

    def kinds(self):
        return [e["kind"] for e in self.journal.entries(service="media")]


async def call(node, user, peer, number="15*101*video", **offer_kw):
    phone = CorePhone(node.core, user=user, password=USERS[user])
    phone.register()
    offer = await peer.offer(**offer_kw)
    early = phone.invite(number, offer)
    assert [m.status for m in early if isinstance(m, sip.SipResponse)] == [100]
    got = []
    await wait_for(lambda: got.extend(phone.take()) or any(m.status >= 200 for m in got
                                                              if isinstance(m, sip.SipResponse)))
    final = [m for m in got if isinstance(m, sip.SipResponse) and m.status >= 200][-1]
    phone.read_arrived()
    phone.take()
    return phone, final


@pytest.fixture
async def node(nursery):
    n = Node(nursery)
    await n.start()
    return n


async def test_answer_is_freeswitch_shaped_with_the_endpoints_transport_and_media_flows(node):
    peer = AioPeer()
    try:
        phone, ok = await call(node, "000015503", peer)
        assert ok.status == 200
        answer = s.parse_sdp(ok.body)
        assert answer.origin.username == "FreeSWITCH" and answer.session_name == "FreeSWITCH"
        for media in answer.media:
            assert [f for f, _ in media.fingerprints] == ["sha-256"]
            assert len(media.formats) == 1 and media.extmaps == []
            assert media.candidates and media.candidates[0].address == "127.0.0.1"
        assert [c.name for m in answer.media for c in m.codecs] == ["opus", "VP8"]
        await peer.answer(ok.body.decode())
        phone.ack()
        await wait_for(lambda: peer.frames["video"] > 15 and peer.frames["audio"] > 20)
        member = node.bridge.members("15*101-FSdefaultDomain")[0]
        await wait_for(lambda: member.media == "flowing")
        kinds = node.kinds()
        for kind in ("worker_started", "ice_connected", "dtls_connected", "first_rtp_in", "first_rtp_out"):
            assert kind in kinds
        key = next(iter(node.real.calls))
        timings = node.real.timings(key)
        assert 0 <= timings["ice_connected"] <= timings["dtls_connected"] < 5
        phone.bye()
        await wait_for(lambda: not node.real.calls)
    finally:
        await peer.close()


async def test_two_members_see_and_hear_each_other_and_mute_silences(node):
    a, b = AioPeer(), AioPeer()
    try:
        pa, oka = await call(node, "000015503", a)
        await a.answer(oka.body.decode())
        pa.ack()
        pb, okb = await call(node, "000015504", b)
        await b.answer(okb.body.decode())
        pb.ack()
        await wait_for(lambda: a.frames["video"] > 30 and b.frames["video"] > 30)
        await wait_for(lambda: a.recent_level() > -40 and b.recent_level() > -40, what="the peer's tone")
        routes = node.real._routes
        keys = {c.member_id: c.key for c in node.real.calls.values()}
        ka, kb = keys[1], keys[2]
        assert routes[ka] == (kb, kb) and routes[kb] == (ka, ka)
        # talking from the real audio level: both members talk
        await wait_for(lambda: all(m.talking for m in node.bridge.members("15*101-FSdefaultDomain")))
        # conference mute of member 1: b stops hearing a's tone (a still hears b)
        node.bridge.api("conference 15*101-FSdefaultDomain mute 1")
        await wait_for(lambda: b.recent_level() < -90, what="silence after mute")
        assert a.recent_level() > -40
        pa.bye()
        pb.bye()
    finally:
        await a.close()
        await b.close()


async def test_offer_without_usable_candidate_answers_then_times_out_and_others_carry_on(nursery):
    node = Node(nursery, rtp_timeout=4.0)
    await node.start()
    good, bad = AioPeer(), AioPeer()
    try:
        pg, okg = await call(node, "000015503", good)
        await good.answer(okg.body.decode())
        pg.ack()
        await wait_for(lambda: node.bridge.members("15*101-FSdefaultDomain")[0].media == "flowing")
        offer = await bad.offer()
        # no usable candidate: the only one points at a port nobody listens on, on a TEST-NET address
        lines = [ln for ln in offer.splitlines() if not ln.startswith("a=candidate")]
        lines = [ln.replace("a=end-of-candidates", "a=candidate:1 1 udp 2130706431 192.0.2.1 9 typ host\r\n"
                            "a=end-of-candidates") for ln in lines]
        phone = CorePhone(node.core, user="000015504", password=USERS["000015504"])
        phone.register()
        phone.invite("15*101*video", "\r\n".join(lines) + "\r\n")
        got = []
        await wait_for(lambda: got.extend(phone.take()) or any(getattr(m, "status", 0) >= 200 for m in got))
        ok = [m for m in got if isinstance(m, sip.SipResponse) and m.status >= 200][-1]
        assert ok.status == 200          # FreeSWITCH answers; the media never comes
        phone.read_arrived()
        phone.ack()
        # its RTP timeout ends it with a BYE (MEDIA_TIMEOUT); the good call keeps its media
        await wait_for(lambda: any(isinstance(m, sip.SipRequest) and m.method == "BYE" for m in phone.take()),
                       timeout=10)
        assert len(node.bridge.members("15*101-FSdefaultDomain")) == 1
        before = good.frames["video"]
        await trio.sleep(0.5)
        assert good.frames["video"] > before
    finally:
        await good.close()
        await bad.close()


async def test_unsupported_codec_rejects_the_stream_or_the_call(node):
    peer = AioPeer()
    try:
        offer = await peer.offer()
        # video offered with H264 only: the video m-line is rejected (port 0), audio still answered
        h264 = offer.replace("VP8/90000", "H264/90000")
        phone = CorePhone(node.core, user="000015503", password=USERS["000015503"])
        phone.register()
        phone.invite("15*101*video", h264)
        got = []
        await wait_for(lambda: got.extend(phone.take()) or any(getattr(m, "status", 0) >= 200 for m in got))
        ok = [m for m in got if isinstance(m, sip.SipResponse) and m.status >= 200][-1]
        assert ok.status == 200
        video = s.parse_sdp(ok.body).media[1]
        assert video.kind == "video" and video.port == 0
        # nothing usable at all: 488, and no call in the worker
        phone2 = CorePhone(node.core, user="000015504", password=USERS["000015504"])
        phone2.register()
        bad = h264.replace("opus/48000/2", "speex/48000").replace(" 0 8", "").replace("PCMU", "XU").replace(
            "PCMA", "XA").replace("G722", "XG")
        replies = phone2.invite("15*102*video", bad)
        assert [m.status for m in replies if isinstance(m, sip.SipResponse)][-1] == 488
    finally:
        await peer.close()


async def test_worker_crash_fails_its_calls_and_a_new_worker_serves_new_calls(node):
    peer = AioPeer()
    try:
        phone, ok = await call(node, "000015503", peer)
        await peer.answer(ok.body.decode())
        phone.ack()
        await wait_for(lambda: peer.frames["video"] > 5)
        old_pid = node.real.worker.pid
        node.real.worker.process.kill()
        await wait_for(lambda: any(isinstance(m, sip.SipRequest) and m.method == "BYE" for m in phone.take()))
        assert "worker_crashed" in node.kinds() and "call_failed" in node.kinds()
        assert node.bridge.members("15*101-FSdefaultDomain") == []
        await wait_for(lambda: node.real.worker.ready.is_set() and node.real.worker.pid != old_pid)
        other = AioPeer()
        try:
            phone2, ok2 = await call(node, "000015504", other)
            assert ok2.status == 200
            await other.answer(ok2.body.decode())
            phone2.ack()
            await wait_for(lambda: other.frames["video"] > 5)
        finally:
            await other.close()
    finally:
        await peer.close()


async def test_dtls_that_fails_stops_the_media_and_the_rtp_timeout_ends_the_call(nursery):
    node = Node(nursery, rtp_timeout=4.0)
    await node.start()
    peer = AioPeer()
    try:
        offer = await peer.offer()
        # a fingerprint that is not the peer's certificate: ICE connects, the DTLS handshake cannot
        wrong = "\r\n".join(ln if not ln.startswith("a=fingerprint:sha-256") else
                            "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) for ln in offer.split("\r\n"))
        phone = CorePhone(node.core, user="000015503", password=USERS["000015503"])
        phone.register()
        phone.invite("15*101*video", wrong)
        got = []
        await wait_for(lambda: got.extend(phone.take()) or any(getattr(m, "status", 0) >= 200 for m in got))
        ok = [m for m in got if isinstance(m, sip.SipResponse) and m.status >= 200][-1]
        assert ok.status == 200
        phone.read_arrived()
        await peer.answer(ok.body.decode())
        phone.ack()
        await wait_for(lambda: any(isinstance(m, sip.SipRequest) and m.method == "BYE" for m in phone.take()),
                       timeout=20)
        kinds = node.kinds()
        assert "dtls_connected" not in kinds and "first_rtp_in" not in kinds
        assert node.bridge.members("15*101-FSdefaultDomain") == []
        hangups = [e["data"] for e in node.journal.entries(service="freeswitch", kind="event")
                   if "CHANNEL_HANGUP" in e["data"]]
        assert hangups
        await wait_for(lambda: not node.real.calls)
    finally:
        await peer.close()


async def test_a_browser_that_vanishes_is_a_ghost_until_its_rtp_timeout_and_the_other_call_goes_on(nursery):
    node = Node(nursery, rtp_timeout=4.0)
    await node.start()
    stays, goes = AioPeer(), AioPeer()
    try:
        ps, oks = await call(node, "000015503", stays)
        await stays.answer(oks.body.decode())
        ps.ack()
        pg, okg = await call(node, "000015504", goes)
        await goes.answer(okg.body.decode())
        pg.ack()
        await wait_for(lambda: stays.frames["video"] > 20 and goes.frames["video"] > 20)
        # the page goes: its peer connection and its SIP connection end without a BYE
        await goes.close()
        node.core.flow_closed(pg.flow)
        members = node.bridge.members("15*101-FSdefaultDomain")
        assert len(members) == 2      # a ghost, as FreeSWITCH keeps it until the RTP timeout
        await wait_for(lambda: len(node.bridge.members("15*101-FSdefaultDomain")) == 1, timeout=20)
        await wait_for(lambda: len(node.real.calls) == 1)
        assert "failed" in node.kinds()   # the worker saw the vanished peer's connection end
        before = stays.frames["video"]
        await trio.sleep(0.5)
        assert stays.frames["video"] > before
        # back to the floor clip: the one left sees the clip (640x480) again
        assert node.real._routes[next(iter(node.real.calls))] == (None, None)
    finally:
        await stays.close()


# --- configuration ----------------------------------------------------------------------------------

def test_media_config_key_and_flags(capsys):
    from bench.cli import main
    from emulator.config import Config, ConfigError

    assert Config().media == "model"                   # the media model stays the default
    assert Config.from_dict({"media": "real"}).media == "real"
    with pytest.raises(ConfigError, match="media must be one of model, real"):
        Config.from_dict({"media": "rtp"})
    # --media real needs the real clock
    assert main(["run", "two_party_call", "--media", "real"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cometbench: ") and "--media real needs --real-time" in err


async def test_real_media_refuses_a_virtual_network():
    from emulator.config import Config
    from emulator.net.network import VirtualNetwork
    from emulator.stack import open_stack

    config = Config.from_dict({"media": "real"})
    config.free_ports()
    with pytest.raises(ValueError, match="needs real time"):
        async with open_stack(config, network=VirtualNetwork()):
            pass


async def test_the_stack_owns_the_worker_and_stops_it():
    from emulator.config import Config
    from emulator.stack import open_stack

    config = Config.from_dict({"media": "real"})
    config.free_ports()
    async with open_stack(config) as stack:
        real = stack.real_media
        assert real is not None and stack.sip is not None and stack.sip.real_media is real
        process = real.worker.process
        assert process is not None and process.returncode is None
        assert real.worker.info["aiortc"] == "1.16.0"
    assert process.returncode is not None            # stopped with the stack


async def test_a_hung_worker_is_killed_its_calls_fail_and_a_new_one_starts(node):
    import os
    import signal

    node.real.worker.health_interval, node.real.worker.ping_timeout = 0.2, 0.5
    peer = AioPeer()
    try:
        phone, ok = await call(node, "000015503", peer)
        await peer.answer(ok.body.decode())
        phone.ack()
        await wait_for(lambda: peer.frames["video"] > 5)
        hung = node.real.worker.pid
        os.kill(hung, signal.SIGSTOP)       # our own child: it stops answering, its process stays
        await wait_for(lambda: "worker_unhealthy" in node.kinds(), timeout=20)
        await wait_for(lambda: any(isinstance(m, sip.SipRequest) and m.method == "BYE" for m in phone.take()))
        await wait_for(lambda: node.real.worker.ready.is_set() and node.real.worker.pid != hung, timeout=30)
        assert "call_failed" in node.kinds()
    finally:
        await peer.close()
