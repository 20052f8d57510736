"""The fake FreeSWITCH's SIP core with JsSIP's message sequence (real-video-client.md 4.2), no sockets."""

from __future__ import annotations

import random

from emulator.clock import WallClock
from emulator.freeswitch.conference import Bridge
from emulator.freeswitch.sip_core import SipCore, route
from emulator.profiles import get_profile
from emulator.wire import sdp as s
from emulator.wire import sip
from tests.sipkit import CorePhone
from tests.unit.wire.test_sdp import CHROME_OFFER

USER, HASH = "000015503", "PassForUser503"


def Phone(core: SipCore, transport="WSS", user=USER, password=HASH) -> CorePhone:
    """The project's JsSIP-like UA (bench/clients/sip.py) on a flow straight into the core."""
    return CorePhone(core, user=user, password=password, transport=transport)


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
    trying, ok = phone.invite(body=CHROME_OFFER)
    assert trying.status == 100 and ok.status == 200 and ok.to_tag
    assert ok.headers["Content-Type"] == "application/sdp" and ok.contacts
    answer = s.parse_sdp(ok.body)
    assert [m.kind for m in answer.media] == ["audio", "video"] and answer.media[0].port > 0
    members = bridge.members("15*101-FSdefaultDomain")
    assert [m.channel.caller_id_name for m in members] == [USER]
    phone.ack()
    (bye_ok,) = phone.bye()
    assert bye_ok.status == 200
    assert bridge.conference("15*101-FSdefaultDomain") is None and core.dialogs == {}


def test_kick_sends_bye_to_the_callers_contact():
    core, bridge, _ = make_core()
    phone = Phone(core)
    _, ok = phone.invite(body=CHROME_OFFER)
    phone.ack()
    member = bridge.members("15*101-FSdefaultDomain")[0]
    reply = bridge.api(f"conference 15*101-FSdefaultDomain kick {member.id}")
    assert "kicked" in reply
    (bye,) = phone.take()
    assert bye.method == "BYE" and str(bye.parsed_uri) == str(phone.session.invite.contacts[0].uri)  # its Contact
    assert bye.from_tag == ok.to_tag and bye.to_tag == phone.tag
    assert core.dialogs == {}


def test_unroutable_number_gets_404():
    core, _, _ = make_core()
    assert [r.status for r in Phone(core).invite("101", body=CHROME_OFFER)] == [404]


async def test_cancel_before_the_answer(autojump_clock):
    core, bridge, clock = make_core(answer_delay=5.0)
    phone = Phone(core)
    trying, = phone.invite(body=CHROME_OFFER)
    assert trying.status == 100
    statuses = sorted(r.status for r in phone.cancel())
    assert statuses == [200, 487]
    assert core.pending == {} and bridge.conferences == {}


def test_full_room_is_answered_then_hung_up():
    core, bridge, _ = make_core()
    first, second, third = Phone(core), Phone(core), Phone(core)
    for p in (first, second):
        _, ok = p.invite("15*101*video-2", body=CHROME_OFFER)
        p.ack()
    _, ok = third.invite("15*101*video-2", body=CHROME_OFFER)
    assert ok.status == 200  # FreeSWITCH answers before the conference app refuses
    third.ack()
    (bye,) = third.take()
    assert bye.method == "BYE"
    assert len(bridge.members("15*101-FSdefaultDomain")) == 2


async def test_flow_close_leaves_a_ghost_until_the_media_timeout():
    core, bridge, clock = make_core(rtp_timeout=300.0)
    phone = Phone(core)
    phone.register()
    _, ok = phone.invite(body=CHROME_OFFER)
    phone.ack()
    core.flow_closed(phone.flow)
    assert core.registrations() == []
    assert len(bridge.members("15*101-FSdefaultDomain")) == 1  # the ghost stays (faithful)
    clock["t"] += 301
    bridge.process_due()
    assert bridge.conferences == {} and core.dialogs == {}


def test_udp_retransmits_the_200_until_ack():
    core, bridge, clock = make_core()
    phone = Phone(core, transport="UDP")
    _, ok = phone.invite(body=CHROME_OFFER)
    for step in (0.5, 1.0, 2.0):
        _run_due(core, clock, step)
    assert [r.status for r in phone.take()] == [200, 200, 200]
    phone.ack()
    _run_due(core, clock, 10)
    assert all(getattr(r, "status", None) != 200 for r in phone.take())


def test_retransmitted_request_gets_the_same_answer_and_options_works():
    core, _, _ = make_core()
    phone = Phone(core)
    req = phone.raw("OPTIONS", "sip:127.0.0.1")   # JsSIP sends no OPTIONS: built with the codec
    (first,) = phone.take()
    core.receive(phone.flow, req.encode())
    (again,) = phone.take()
    assert first.status == again.status == 200 and first.encode() == again.encode()


def test_garbage_and_unknown_dialogs():
    core, _, _ = make_core()
    phone = Phone(core)
    core.receive(phone.flow, b"\x00\xffnot sip at all\r\n\r\n")
    assert phone.take() == []
    phone.raw("BYE", "sip:x@127.0.0.1", to_tag="nosuch")     # requests a browser never sends
    assert [r.status for r in phone.take()] == [481]
    phone.raw("SUBSCRIBE", "sip:x@127.0.0.1")
    assert [r.status for r in phone.take()] == [405]


def test_reinvite_for_hold_and_back():
    core, bridge, _ = make_core()
    phone = Phone(core)
    _, ok = phone.invite(body=CHROME_OFFER)
    phone.ack()
    member = bridge.members("15*101-FSdefaultDomain")[0]
    held = CHROME_OFFER.replace("a=sendrecv", "a=sendonly")
    (reply,) = phone.reinvite(held, hold=True)
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/sdp"
    assert member.hold is True
    assert phone.reinvite(CHROME_OFFER, hold=False)[0].status == 200 and member.hold is False


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
    # an INVITE whose 407 is not ACKed at once (JsSIP ACKs at once; a UDP client may lose the 407)
    first = sip.make_request("INVITE", "sip:15*101*video@127.0.0.1",
                             via=f"SIP/2.0/UDP {phone.ua.via_host};branch={sip.generate_branch(phone.rng)}",
                             from_=f'"{USER}" <sip:{USER}@127.0.0.1>;tag=lost407', to="<sip:15*101*video@127.0.0.1>",
                             call_id="lost-407", cseq=1, contact=phone.contact, body=CHROME_OFFER.encode(),
                             content_type="application/sdp")
    core.receive(phone.flow, first.encode())
    (challenge,) = phone.take()
    _run_due(core, clock, 0.5)
    _run_due(core, clock, 1.0)
    assert [r.status for r in phone.take()] == [407, 407]  # Timer G
    ack = sip.make_request("ACK", "sip:15*101*video@127.0.0.1", via=first.headers["Via"],
                           from_=first.headers["From"], to=f"{first.headers['To']};tag={challenge.to_tag}",
                           call_id="lost-407", cseq=1)
    core.receive(phone.flow, ack.encode())
    _run_due(core, clock, 2.0)
    assert phone.take() == []
    # our BYE (a kick) is repeated until the client answers it
    _, ok = phone.invite(body=CHROME_OFFER)
    phone.ack()
    phone.take()
    member = bridge.members("15*101-FSdefaultDomain")[0]
    bridge.api(f"conference 15*101-FSdefaultDomain kick {member.id}")
    (bye,) = phone.take()
    _run_due(core, clock, 0.5)
    assert [m.method for m in phone.take()] == ["BYE"]  # Timer E
    core.receive(phone.flow, sip.make_response(bye, 200).encode())
    _run_due(core, clock, 4.0)
    assert phone.take() == []


def test_two_clients_that_pick_the_same_branch_are_two_transactions():
    """JsSIP's branch is ``z9hG4bK`` and 7 random digits: among many browsers a repeat is likely.
    A transaction is its branch and its Via's sent-by (RFC 3261 17.2.3), so a second client's INVITE
    with a branch another client used is answered for itself, not with the other's cached answer
    (found by the SDP fuzzer once its INVITEs came from the JsSIP-like UA)."""
    core, _, _ = make_core()
    a, b = Phone(core), Phone(core)
    uri = "sip:15*101*video@127.0.0.1"

    def invite(phone: CorePhone, host: str) -> sip.SipMessage:
        request = sip.make_request("INVITE", uri, via=f"SIP/2.0/WSS {host}.invalid;branch=z9hG4bK1234567",
                                   from_=f"<sip:{USER}@127.0.0.1>;tag=t{host}", to=f"<{uri}>",
                                   call_id=f"call-{host}", cseq=1, contact=f"<sip:{host}@{host}.invalid;transport=ws>",
                                   body=CHROME_OFFER.encode(), content_type="application/sdp")
        core.receive(phone.flow, request.encode())
        (answer,) = phone.take()
        return answer

    first, second = invite(a, "a"), invite(b, "b")
    assert isinstance(first, sip.SipResponse) and isinstance(second, sip.SipResponse)
    assert first.status == second.status == 407
    assert (first.call_id, second.call_id) == ("call-a", "call-b")
    assert second.top_via.host == "b.invalid"
    assert invite(a, "a").encode() == first.encode()   # a's retransmission: a's answer again


def test_a_registration_that_goes_early_leaves_no_expiry_timer_behind():
    """A binding replaced by a refresh or gone with its connection cancels its expiry timer: no
    timer of the core outlives what it was for (after a drop storm, a thousand of them waited out
    the 600 s of their registrations, each holding its strings)."""
    core, _, clock = make_core()
    phone = Phone(core)
    assert phone.register()[0].status == 200
    assert phone.register()[0].status == 200   # a refresh replaces the binding and its timer
    clock["t"] += 40                        # the cached answers are forgotten (32 s)
    core.timers.run_due()
    assert core.timers.pending() == 1       # the expiry of the one binding
    core.flow_closed(phone.flow)
    assert core.registrations() == [] and core.timers.pending() == 0


def test_a_closed_connection_takes_its_own_registrations_only():
    """Each connection knows the AORs it registered: a close visits those (a storm of closes was
    quadratic), other connections keep theirs, and nothing of a gone binding stays indexed."""
    core, _, clock = make_core()
    first, second = Phone(core), Phone(core, user="000015504", password="pw2")
    udp = Phone(core, transport="UDP")
    for phone in (first, second, udp):
        assert phone.register()[0].status == 200
    assert len(core.registrations()) == 3
    core.flow_closed(first.flow)
    assert sorted(b.flow.transport for b in core.registrations()) == ["UDP", "WSS"]
    assert first.flow not in core._flow_aors and second.flow in core._flow_aors
    clock["t"] += 601            # the UDP binding (its flow never closes) and the other expire
    core.timers.run_due()
    assert core.registrations() == [] and core._flow_aors == {}
    core.flow_closed(second.flow)   # a close after its binding expired: nothing to do, no error
    assert core.registrations() == []
