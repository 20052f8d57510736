"""The fake FreeSWITCH's SIP core with JsSIP's message sequence (real-video-client.md 4.2), no sockets."""

from __future__ import annotations

import random

import pytest
import trio

from emulator.clock import WallClock
from emulator.freeswitch.conference import Bridge
from emulator.freeswitch.flow import Flow
from emulator.freeswitch.sip_core import SipCore, route
from emulator.net.network import Endpoint
from emulator.profiles import get_profile
from emulator.wire import sdp as s
from emulator.wire import sip
from tests.unit.wire.test_sdp import CHROME_OFFER

USER, HASH = "000015503", "PassForUser503"


class Phone:
    """A JsSIP-like UA speaking through a fake flow."""

    count = 0

    def __init__(self, core: SipCore, transport="WSS", user=USER, password=HASH):
        self.core, self.user, self.password = core, user, password
        self.inbox: list[sip.SipMessage] = []
        self.flow = Flow(transport, Endpoint("10.0.0.7", 50000), Endpoint("127.0.0.1", 7443),
                         send_bytes=lambda data: self.inbox.append(sip.parse_message(data)))
        Phone.count += 1
        self.rng = random.Random(Phone.count)
        self.cseq = 1
        self.call_id = sip.generate_call_id(self.rng)
        self.tag = sip.generate_tag(self.rng)
        self.contact = f"<sip:v3vuq5sa@iusnucoqmctu.invalid;transport=ws>"

    def take(self):
        out, self.inbox = self.inbox, []
        return out

    def request(self, method, uri, *, to_tag=None, body=b"", auth=None, branch=None, cseq=None,
                call_id=None, content_type=None):
        headers = [("Allow", "INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO"),
                   ("User-Agent", "JsSIP 2.0.6")]
        if method == "REGISTER":
            headers.append(("Expires", "600"))
        if auth:
            headers.append(auth)
        to = f"<sip:{uri.split(':', 1)[1].split('@')[0]}@127.0.0.1>" if method != "REGISTER" else \
            f"<sip:{self.user}@127.0.0.1>"
        if to_tag:
            to += f";tag={to_tag}"
        req = sip.make_request(method, uri, via=f"SIP/2.0/WSS iusnucoqmctu.invalid;branch="
                               f"{branch or sip.generate_branch(self.rng)}",
                               from_=f'"{self.user}" <sip:{self.user}@127.0.0.1>;tag={self.tag}', to=to,
                               call_id=call_id or self.call_id, cseq=cseq or self.cseq, contact=self.contact,
                               headers=headers, body=body, content_type=content_type)
        self.core.receive(self.flow, req.encode())
        return req

    def register(self):
        self.request("REGISTER", "sip:127.0.0.1")
        (challenge,) = self.take()
        assert challenge.status == 401
        params = sip.parse_digest_params(challenge.headers["WWW-Authenticate"])
        assert params["realm"] == "127.0.0.1"
        self.cseq += 1
        auth = sip.make_digest_authorization(params, username=self.user, password=self.password,
                                             method="REGISTER", uri="sip:127.0.0.1", cnonce="fgh7s6kl5nb3")
        self.request("REGISTER", "sip:127.0.0.1", auth=("Authorization", auth))
        return self.take()

    def invite(self, number="15*101*video", body=CHROME_OFFER.encode()):
        uri = f"sip:{number}@127.0.0.1"
        self.call_id = sip.generate_call_id(self.rng)
        self.cseq = 9543
        first = self.request("INVITE", uri, body=body, content_type="application/sdp")
        (challenge,) = self.take()
        assert challenge.status == 407
        self.request("ACK", uri, to_tag=challenge.to_tag, branch=first.branch)
        assert self.take() == []
        params = sip.parse_digest_params(challenge.headers["Proxy-Authenticate"])
        self.cseq += 1
        auth = sip.make_digest_authorization(params, username=self.user, password=self.password,
                                             method="INVITE", uri=uri, cnonce="c2")
        self.invite_req = self.request("INVITE", uri, body=body, content_type="application/sdp",
                                       auth=("Proxy-Authorization", auth))
        return self.take()

    def ack(self, ok):
        self.request("ACK", str(ok.contacts[0].uri), to_tag=ok.to_tag)

    def bye(self, ok):
        self.cseq += 1
        self.request("BYE", str(ok.contacts[0].uri), to_tag=ok.to_tag)
        return self.take()


def make_core(answer_delay=0.0, profile="cppcomet-4.09", **bridge_kw):
    clock = {"t": 100.0}
    wall = WallClock(1_700_000_000, monotonic=lambda: clock["t"])
    bridge = Bridge(clock=wall, rng=random.Random(1), profile=get_profile(profile), **bridge_kw)
    core = SipCore(bridge, lambda user: HASH if user == USER else ("pw2" if user == "000015504" else None),
                   rng=random.Random(2), answer_delay=answer_delay, clock=lambda: clock["t"])
    return core, bridge, clock


def test_dialplan_routes():
    assert route("15*101*video", "FSdefaultDomain") == ("15*101-FSdefaultDomain", "video", False)
    assert route("15*101*audio", "FSdefaultDomain") == ("15*101-FSdefaultDomain", "audio", True)
    assert route("15*a b*video", "FSdefaultDomain") is None
    assert route("1234567890*1*video", "FSdefaultDomain") is None
    assert route("101", "FSdefaultDomain") is None


def test_register_challenge_then_200_echoes_contact():
    core, bridge, clock = make_core()
    phone = Phone(core)
    (ok,) = phone.register()
    assert ok.status == 200
    assert ok.headers["Contact"].startswith(phone.contact) and ";expires=600" in ok.headers["Contact"]
    assert [b.aor for b in core.registrations()] == [f"{USER}@127.0.0.1"]
    clock["t"] += 601
    core.timers.run_due()   # the registration's expiry timer
    assert core.registrations() == []


def test_register_wrong_password_and_mismatched_user_are_forbidden():
    core, _, _ = make_core()
    phone = Phone(core, password="wrong")
    (resp,) = phone.register()
    assert resp.status == 403
    stranger = Phone(core, user="000015999")
    assert stranger.register()[0].status == 403


def test_invite_answer_join_and_bye():
    core, bridge, _ = make_core()
    phone = Phone(core)
    phone.register()
    trying, ok = phone.invite()
    assert trying.status == 100 and ok.status == 200 and ok.to_tag
    assert ok.headers["Content-Type"] == "application/sdp" and ok.contacts
    answer = s.parse_sdp(ok.body)
    assert [m.kind for m in answer.media] == ["audio", "video"] and answer.media[0].port > 0
    members = bridge.members("15*101-FSdefaultDomain")
    assert [m.channel.caller_id_name for m in members] == [USER]
    phone.ack(ok)
    (bye_ok,) = phone.bye(ok)
    assert bye_ok.status == 200
    assert bridge.conference("15*101-FSdefaultDomain") is None and core.dialogs == {}


def test_kick_sends_bye_to_the_callers_contact():
    core, bridge, _ = make_core()
    phone = Phone(core)
    _, ok = phone.invite()
    phone.ack(ok)
    member = bridge.members("15*101-FSdefaultDomain")[0]
    reply = bridge.api(f"conference 15*101-FSdefaultDomain kick {member.id}")
    assert "kicked" in reply
    (bye,) = phone.take()
    assert bye.method == "BYE" and str(bye.parsed_uri) == "sip:v3vuq5sa@iusnucoqmctu.invalid;transport=ws"
    assert bye.from_tag == ok.to_tag and bye.to_tag == phone.tag
    assert core.dialogs == {}


def test_unroutable_number_gets_404():
    core, _, _ = make_core()
    assert [r.status for r in Phone(core).invite("101")] == [404]


async def test_cancel_before_the_answer(autojump_clock):
    core, bridge, clock = make_core(answer_delay=5.0)
    phone = Phone(core)
    trying, = phone.invite()
    assert trying.status == 100
    phone.request("CANCEL", phone.invite_req.uri, branch=phone.invite_req.branch, cseq=phone.cseq)
    statuses = sorted(r.status for r in phone.take())
    assert statuses == [200, 487]
    assert core.pending == {} and bridge.conferences == {}


def test_full_room_is_answered_then_hung_up():
    core, bridge, _ = make_core()
    first, second, third = Phone(core), Phone(core), Phone(core)
    for p in (first, second):
        _, ok = p.invite("15*101*video-2")
        p.ack(ok)
    _, ok = third.invite("15*101*video-2")
    assert ok.status == 200  # FreeSWITCH answers before the conference app refuses
    third.ack(ok)
    (bye,) = third.take()
    assert bye.method == "BYE"
    assert len(bridge.members("15*101-FSdefaultDomain")) == 2


async def test_flow_close_leaves_a_ghost_until_the_media_timeout():
    core, bridge, clock = make_core(rtp_timeout=300.0)
    phone = Phone(core)
    phone.register()
    _, ok = phone.invite()
    phone.ack(ok)
    core.flow_closed(phone.flow)
    assert core.registrations() == []
    assert len(bridge.members("15*101-FSdefaultDomain")) == 1  # the ghost stays (faithful)
    clock["t"] += 301
    bridge.process_due()
    assert bridge.conferences == {} and core.dialogs == {}


def test_udp_retransmits_the_200_until_ack():
    core, bridge, clock = make_core()
    phone = Phone(core, transport="UDP")
    _, ok = phone.invite()
    for step in (0.5, 1.0, 2.0):
        _run_due(core, clock, step)
    assert [r.status for r in phone.take()] == [200, 200, 200]
    phone.ack(ok)
    _run_due(core, clock, 10)
    assert all(getattr(r, "status", None) != 200 for r in phone.take())


def test_retransmitted_request_gets_the_same_answer_and_options_works():
    core, _, _ = make_core()
    phone = Phone(core)
    req = phone.request("OPTIONS", "sip:127.0.0.1")
    (first,) = phone.take()
    core.receive(phone.flow, req.encode())
    (again,) = phone.take()
    assert first.status == again.status == 200 and first.encode() == again.encode()


def test_garbage_and_unknown_dialogs():
    core, _, _ = make_core()
    phone = Phone(core)
    core.receive(phone.flow, b"\x00\xffnot sip at all\r\n\r\n")
    assert phone.take() == []
    phone.request("BYE", "sip:x@127.0.0.1", to_tag="nosuch")
    assert [r.status for r in phone.take()] == [481]
    phone.request("SUBSCRIBE", "sip:x@127.0.0.1")
    assert [r.status for r in phone.take()] == [405]


def test_reinvite_for_hold_and_back():
    core, bridge, _ = make_core()
    phone = Phone(core)
    _, ok = phone.invite()
    phone.ack(ok)
    member = bridge.members("15*101-FSdefaultDomain")[0]
    held = CHROME_OFFER.replace("a=sendrecv", "a=sendonly").encode()
    phone.cseq += 1
    phone.request("INVITE", str(ok.contacts[0].uri), to_tag=ok.to_tag, body=held, content_type="application/sdp")
    (reply,) = phone.take()
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/sdp"
    assert member.hold is True
    phone.cseq += 1
    phone.request("INVITE", str(ok.contacts[0].uri), to_tag=ok.to_tag, body=CHROME_OFFER.encode(),
                  content_type="application/sdp")
    assert phone.take()[0].status == 200 and member.hold is False


def test_huge_or_broken_sdp_is_refused_without_a_member():
    core, bridge, _ = make_core()
    for body in (b"v=0\r\n" + b"a=x:" + b"y" * 70000 + b"\r\n", b"not an sdp at all"):
        statuses = [r.status for r in Phone(core).invite(body=body)]
        assert statuses[-1] in (400, 413, 488) and 200 not in statuses
    assert bridge.conferences == {} and core.dialogs == {}


def _run_due(core, clock, seconds):
    clock["t"] += seconds
    core.timers.run_due()


def test_udp_error_answers_to_invite_repeat_until_ack_and_server_bye_until_answered():
    core, bridge, clock = make_core()
    phone = Phone(core, transport="UDP")
    first = phone.request("INVITE", "sip:15*101*video@127.0.0.1", body=CHROME_OFFER.encode(),
                          content_type="application/sdp")
    (challenge,) = phone.take()
    _run_due(core, clock, 0.5)
    _run_due(core, clock, 1.0)
    assert [r.status for r in phone.take()] == [407, 407]  # Timer G
    phone.request("ACK", "sip:15*101*video@127.0.0.1", to_tag=challenge.to_tag, branch=first.branch)
    _run_due(core, clock, 2.0)
    assert phone.take() == []
    # our BYE (a kick) is repeated until the client answers it
    _, ok = phone.invite()
    phone.ack(ok)
    phone.take()
    member = bridge.members("15*101-FSdefaultDomain")[0]
    bridge.api(f"conference 15*101-FSdefaultDomain kick {member.id}")
    (bye,) = phone.take()
    _run_due(core, clock, 0.5)
    assert [m.method for m in phone.take()] == ["BYE"]  # Timer E
    core.receive(phone.flow, sip.make_response(bye, 200).encode())
    _run_due(core, clock, 4.0)
    assert phone.take() == []
