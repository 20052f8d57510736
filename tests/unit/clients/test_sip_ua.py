"""Unit tests of the sans-IO JsSIP-like user agent (bench/clients/sip.py): no trio, no sockets.

Responses are built by hand the way the captures of real-video-client.md 4.2 show a server
answering, and one test runs the UA against the emulator's own SIP core (also I/O-free) with a
manual clock.
"""

from __future__ import annotations

import random
import re

import pytest

from bench.clients.sip import TIMER_B, TIMER_F, Event, InvalidStateError, UAConfig, UserAgent, cause_for_status
from bench.clients.webrtc import LocalMedia
from emulator.clock import ManualClock
from emulator.freeswitch.conference import Bridge
from emulator.freeswitch.flow import Flow
from emulator.freeswitch.sip_core import SipCore
from emulator.net.network import Endpoint
from emulator.wire import sip

USER = "000015503"
PASSWORD = "PassForUser503"
TARGET = "sip:15*101*video@127.0.0.1"


def make_ua(seed: int = 1, **config) -> UserAgent:
    config.setdefault("uri", f"sip:{USER}@127.0.0.1")
    config.setdefault("password", PASSWORD)
    return UserAgent(UAConfig(**config), random.Random(seed))


def sent(ua: UserAgent) -> list[sip.SipMessage]:
    return [sip.parse_message(data) for data in ua.data_to_send()]


def names(ua: UserAgent) -> list[str]:
    return [e.name for e in ua.events()]


def connected(ua: UserAgent, now: float = 0.0) -> UserAgent:
    ua.start(now)
    assert ua.transport_requests() == ["connect"]
    ua.transport_connected(now)
    return ua


def challenge(request: sip.SipRequest, status: int = 401, *, nonce: str = "n0nce", stale: bool = False,
              realm: str = "127.0.0.1") -> bytes:
    header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    return sip.make_response(request, status, to_tag="fs1", headers=[
        (header, sip.make_digest_challenge(realm, nonce, stale=stale))]).encode()


def ok_register(request: sip.SipRequest, expires: int | None = 600, contact: bool = True) -> bytes:
    headers = []
    if contact:
        value = request.headers["Contact"]
        value = re.sub(r";expires=\d+", "", value) + (f";expires={expires}" if expires is not None else "")
        headers.append(("Contact", value))
    headers.append(("Expires", "600"))
    return sip.make_response(request, 200, to_tag="fs2", headers=headers).encode()


def registered_ua(seed: int = 1, now: float = 0.0, expires: int = 600, **config) -> UserAgent:
    ua = connected(make_ua(seed, **config), now)
    (first,) = sent(ua)
    assert isinstance(first, sip.SipRequest)
    ua.receive(challenge(first), now)
    (second,) = sent(ua)
    assert isinstance(second, sip.SipRequest)
    ua.receive(ok_register(second, expires), now)
    assert "registered" in names(ua)
    return ua


def answer_sdp() -> str:
    return ("v=0\r\no=FreeSWITCH 1 2 IN IP4 127.0.0.1\r\ns=FreeSWITCH\r\nt=0 0\r\n"
            "m=audio 16384 UDP/TLS/RTP/SAVPF 111\r\nb=AS:64\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:111 opus/48000/2\r\n"
            "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 "
            + ":".join(["00"] * 32) + "\r\na=setup:active\r\n")


def invite_answered(ua: UserAgent, now: float = 0.0):
    """call -> INVITE -> 100 -> 200 -> (SRD) -> ACK; returns (session, invite, ok)."""
    session = ua.call(TARGET, now, offer=LocalMedia(random.Random(5)).offer())
    (invite,) = sent(ua)
    assert isinstance(invite, sip.SipRequest)
    ua.receive(sip.make_response(invite, 100).encode(), now)
    ok = sip.make_response(invite, 200, to_tag="fstag", headers=[
        ("Contact", "<sip:mod_sofia@127.0.0.1:7443;transport=wss>"), ("Content-Type", "application/sdp")],
        body=answer_sdp().encode())
    ua.receive(ok.encode(), now)
    assert [e.name for e in ua.events()][-1] == "answer"
    ua.remote_description_applied(session, now)
    (ack,) = sent(ua)
    assert isinstance(ack, sip.SipRequest) and ack.method == "ACK"
    return session, invite, ok


# --- REGISTER -------------------------------------------------------------------------------------


def test_first_register_has_jssip_shape():
    ua = connected(make_ua())
    (reg,) = sent(ua)
    assert reg.start_line == "REGISTER sip:127.0.0.1 SIP/2.0"
    assert reg.headers.names() == ["Via", "Max-Forwards", "To", "From", "Call-ID", "CSeq", "Contact",
                                                    "Expires", "Allow", "Supported", "User-Agent", "Content-Length"]
    assert re.fullmatch(r"SIP/2\.0/WSS [0-9a-v]{12}\.invalid;branch=z9hG4bK\d{1,7}", reg.headers["Via"])
    assert reg.headers["Max-Forwards"] == "69"
    assert reg.headers["To"] == f"<sip:{USER}@127.0.0.1>"
    assert re.fullmatch(rf'"{USER}" <sip:{USER}@127.0.0.1>;tag=[0-9a-v]{{10}}', reg.headers["From"])
    assert re.fullmatch(r"[0-9a-v]{22}", reg.call_id)
    assert reg.headers["CSeq"] == "1 REGISTER"
    assert re.fullmatch(r'<sip:[0-9a-v]{8}@[0-9a-v]{12}\.invalid;transport=ws>;\+sip\.ice;reg-id=1;'
                        r'\+sip\.instance="<urn:uuid:[0-9a-f-]{36}>";expires=600', reg.headers["Contact"])
    assert reg.headers["Expires"] == "600"
    assert b"\r\nAllow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO\r\n" in reg.encode()
    assert b"\r\nSupported: path,gruu,outbound\r\n" in reg.encode()
    assert reg.headers["User-Agent"] == "JsSIP 2.0.6"


def test_401_is_answered_once_with_a_digest_on_the_same_call_id_and_tag():
    ua = connected(make_ua())
    (first,) = sent(ua)
    ua.receive(challenge(first), 0.0)
    (second,) = sent(ua)
    assert second.call_id == first.call_id and second.from_tag == first.from_tag
    assert second.headers["CSeq"] == "2 REGISTER" and second.branch != first.branch
    assert second.headers["Contact"] == first.headers["Contact"]
    params = sip.parse_digest_params(second.headers["Authorization"])
    assert params["username"] == USER and params["uri"] == "sip:127.0.0.1" and params["nc"] == "00000001"
    assert sip.verify_digest(params, "REGISTER", PASSWORD)
    assert not sip.verify_digest(params, "REGISTER", "wrong")
    # the credentials sit right after CSeq, as JsSIP writes them
    order = [n for n, _ in second.headers.items()]
    assert order.index("Authorization") == order.index("CSeq") + 1


def test_a_second_challenge_fails_the_registration_unless_stale():
    ua = connected(make_ua())
    (first,) = sent(ua)
    ua.receive(challenge(first), 0.0)
    (second,) = sent(ua)
    ua.receive(challenge(second, stale=True, nonce="fresh"), 0.0)
    (third,) = sent(ua)   # stale=true: one more try with the new nonce
    assert sip.parse_digest_params(third.headers["Authorization"])["nonce"] == "fresh"
    ua.events()
    ua.receive(challenge(third, nonce="again"), 0.0)
    assert sent(ua) == []
    failed = [e for e in ua.events() if e.name == "registrationFailed"]
    assert [e.cause for e in failed] == ["Authentication Error"]
    assert not ua.registered


def test_200_registers_once_and_refreshes_expires_minus_3_without_credentials_and_with_a_new_tag():
    ua = registered_ua(expires=10)
    assert ua.registered and ua.next_deadline() == pytest.approx(7.0)
    ua.handle_timers(6.9)
    assert sent(ua) == []
    ua.handle_timers(7.0)
    (refresh,) = sent(ua)
    assert "Authorization" not in refresh.headers
    assert refresh.headers["Expires"] == "600" and refresh.headers["CSeq"] == "3 REGISTER"
    assert refresh.from_tag and refresh.call_id
    ua.receive(challenge(refresh), 7.0)
    (authed,) = sent(ua)
    assert "Authorization" in authed.headers and authed.from_tag == refresh.from_tag
    ua.receive(ok_register(authed, 10), 7.0)
    assert "registered" not in names(ua)   # only the unregistered -> registered transition emits it
    assert ua.next_deadline() == pytest.approx(14.0)


def test_each_refresh_uses_a_new_from_tag():
    ua = registered_ua(expires=10)
    tags = []
    for k in range(1, 4):
        ua.handle_timers(7.0 * k)
        (refresh,) = sent(ua)
        tags.append(refresh.from_tag)
        ua.receive(challenge(refresh), 7.0 * k)
        (authed,) = sent(ua)
        ua.receive(ok_register(authed, 10), 7.0 * k)
    assert len(set(tags)) == 3


def test_200_without_our_contact_is_ignored():
    ua = connected(make_ua())
    (first,) = sent(ua)
    ua.receive(ok_register(first, contact=False), 0.0)
    assert "registered" not in names(ua) and not ua.registered
    assert any("no Contact header" in text for _, text in ua.log)
    ua2 = connected(make_ua(seed=2))
    (first,) = sent(ua2)
    other = sip.make_response(first, 200, to_tag="x", headers=[("Contact", "<sip:someoneelse@h.invalid>;expires=60")])
    ua2.receive(other.encode(), 0.0)
    assert not ua2.registered and any("pointing to us" in text for _, text in ua2.log)


def test_expiry_from_the_expires_header_when_the_contact_has_none():
    ua = connected(make_ua())
    (first,) = sent(ua)
    contact = re.sub(r";expires=\d+", "", first.headers["Contact"])
    ua.receive(sip.make_response(first, 200, to_tag="t", headers=[("Contact", contact), ("Expires", "30")]).encode(), 0)
    assert ua.registered and ua.next_deadline() == pytest.approx(27.0)


def test_timer_f_fails_an_unanswered_register_after_32_seconds():
    ua = connected(make_ua())
    sent(ua)
    ua.events()
    ua.handle_timers(TIMER_F - 0.1)
    assert ua.events() == []
    ua.handle_timers(TIMER_F)
    events = ua.events()
    assert [(e.name, e.cause) for e in events] == [("registrationFailed", "Request Timeout")]


def test_403_fails_the_registration_rejected():
    ua = connected(make_ua())
    (first,) = sent(ua)
    ua.receive(sip.make_response(first, 403, to_tag="x").encode(), 0.0)
    assert [(e.name, e.cause) for e in ua.events() if e.name == "registrationFailed"] == [
        ("registrationFailed", "Rejected")]


# --- INVITE ---------------------------------------------------------------------------------------


def test_invite_shape_407_ack_on_the_same_branch_and_authenticated_invite():
    ua = registered_ua()
    session = ua.call(TARGET, 1.0)
    assert sent(ua) == []   # nothing before the offer (non-trickle: after ICE gathering)
    ua.send_offer(session, LocalMedia(random.Random(5)).offer(), 1.2)
    (invite,) = sent(ua)
    assert invite.start_line == f"INVITE {TARGET} SIP/2.0"
    assert invite.headers.names() == ["Via", "Max-Forwards", "To", "From", "Call-ID", "CSeq", "Contact",
                                                       "Content-Type", "Allow", "Supported", "User-Agent",
                                                       "Content-Length"]
    assert invite.headers["To"] == f"<{TARGET}>"
    assert b"\r\nSupported: ice,replaces,outbound\r\n" in invite.encode()
    assert invite.headers["Contact"].endswith(";transport=ws;ob>")
    assert 0 <= invite.cseq.number < 10000
    ua.receive(challenge(invite, 407), 1.3)
    ack, again = sent(ua)
    assert ack.start_line == f"ACK {TARGET} SIP/2.0" and ack.branch == invite.branch
    assert ack.to_tag == "fs1" and ack.headers["CSeq"] == f"{invite.cseq.number} ACK"
    assert again.method == "INVITE" and again.cseq.number == invite.cseq.number + 1
    assert again.branch != invite.branch and again.call_id == invite.call_id and again.from_tag == invite.from_tag
    params = sip.parse_digest_params(again.headers["Proxy-Authorization"])
    assert params["uri"] == TARGET and sip.verify_digest(params, "INVITE", PASSWORD)


def test_200_is_applied_then_acked_to_its_contact_with_a_new_branch():
    ua = registered_ua()
    seen = []
    ua.config.sdp_filter = lambda origin, kind, text: seen.append((origin, kind)) or text.replace("b=AS:64", "b=AS:7")
    session = ua.call(TARGET, 0.0, offer=LocalMedia(random.Random(5)).offer())
    (invite,) = sent(ua)
    ok = sip.make_response(invite, 200, to_tag="fstag", headers=[
        ("Contact", "<sip:mod_sofia@127.0.0.1:7443;transport=wss>"), ("Record-Route", "<sip:p1;lr>"),
        ("Record-Route", "<sip:p2;lr>"), ("Content-Type", "application/sdp")], body=answer_sdp().encode())
    ua.receive(ok.encode(), 0.5)
    events = ua.events()
    answer = next(e for e in events if e.name == "answer")
    assert "b=AS:7" in (answer.sdp or "") and seen == [("local", "offer"), ("remote", "answer")]
    assert sent(ua) == []   # no ACK before setRemoteDescription succeeded
    ua.remote_description_applied(session, 0.54)
    (ack,) = sent(ua)
    assert ack.start_line == "ACK sip:mod_sofia@127.0.0.1:7443;transport=wss SIP/2.0"
    assert ack.branch != invite.branch and ack.to_tag == "fstag" and ack.headers["CSeq"] == f"{invite.cseq.number} ACK"
    assert ack.headers.get_all("Route") == ["<sip:p2;lr>", "<sip:p1;lr>"]
    assert ack.headers["Supported"] == "outbound"
    assert [e.name for e in ua.events()] == ["accepted", "confirmed"]
    assert session.established


def test_an_unusable_answer_is_acked_and_byed():
    ua = registered_ua()
    session = ua.call(TARGET, 0.0, offer="v=0\r\n")
    (invite,) = sent(ua)
    ok = sip.make_response(invite, 200, to_tag="t", headers=[("Contact", "<sip:fs@h>")], body=b"junk")
    ua.receive(ok.encode(), 0.0)
    ua.remote_description_applied(session, 0.0, ok=False)
    ack, bye = sent(ua)
    assert (ack.method, bye.method) == ("ACK", "BYE")
    assert [(e.name, e.cause) for e in ua.events() if e.name == "failed"] == [("failed", "Bad Media Description")]


def test_timer_b_fails_an_unanswered_invite_with_cause_canceled_and_no_cancel():
    ua = registered_ua()
    ua.call(TARGET, 10.0, offer="v=0\r\n")
    sent(ua)
    ua.events()
    ua.handle_timers(10.0 + TIMER_B - 0.01)
    assert ua.events() == []
    ua.handle_timers(10.0 + TIMER_B)
    assert [(e.name, e.originator, e.cause) for e in ua.events()] == [("failed", "system", "Canceled")]
    assert [m.method for m in sent(ua) if isinstance(m, sip.SipRequest)] == []


def test_after_a_1xx_the_invite_waits_without_limit():
    ua = registered_ua()
    ua.call(TARGET, 0.0, offer="v=0\r\n")
    (invite,) = sent(ua)
    ua.receive(sip.make_response(invite, 100).encode(), 0.1)
    ua.events()
    ua.handle_timers(3600.0)
    assert [e.name for e in ua.events()] == []


def test_cancel_after_100_goes_at_once_and_the_487_is_acked():
    ua = registered_ua()
    session = ua.call(TARGET, 0.0, offer="v=0\r\n")
    (invite,) = sent(ua)
    ua.receive(sip.make_response(invite, 100).encode(), 0.1)
    ua.events()
    ua.terminate(session, 0.2)
    (cancel,) = sent(ua)
    assert cancel.start_line == f"CANCEL {TARGET} SIP/2.0" and cancel.branch == invite.branch
    assert cancel.headers["CSeq"] == f"{invite.cseq.number} CANCEL" and cancel.to_tag is None
    assert [(e.name, e.originator, e.cause) for e in ua.events()] == [("failed", "local", "Canceled")]
    ua.receive(sip.make_response(cancel, 200, to_tag="t").encode(), 0.3)
    ua.receive(sip.make_response(invite, 487, to_tag="t").encode(), 0.3)
    (ack,) = sent(ua)
    assert ack.method == "ACK" and ack.branch == invite.branch
    assert ua.events() == []   # no second failure
    with pytest.raises(InvalidStateError):
        ua.terminate(session, 0.4)


def test_cancel_before_any_1xx_waits_for_one():
    ua = registered_ua()
    session = ua.call(TARGET, 0.0, offer="v=0\r\n")
    (invite,) = sent(ua)
    ua.terminate(session, 0.1)
    assert sent(ua) == []
    ua.receive(sip.make_response(invite, 100).encode(), 0.2)
    (cancel,) = sent(ua)
    assert cancel.method == "CANCEL" and cancel.branch == invite.branch


def test_a_2xx_crossing_the_cancel_is_acked_and_byed():
    ua = registered_ua()
    session = ua.call(TARGET, 0.0, offer="v=0\r\n")
    (invite,) = sent(ua)
    ua.terminate(session, 0.1)
    ok = sip.make_response(invite, 200, to_tag="t", headers=[("Contact", "<sip:fs@h>")], body=answer_sdp().encode())
    ua.receive(ok.encode(), 0.2)
    assert [m.method for m in sent(ua)] == ["ACK", "BYE"]


@pytest.mark.parametrize("status, cause", [(486, "Busy"), (404, "Not Found"), (488, "Incompatible SDP"),
                                           (500, "SIP Failure Code")])
def test_final_errors_are_acked_and_fail_with_jssip_causes(status, cause):
    ua = registered_ua()
    ua.call(TARGET, 0.0, offer="v=0\r\n")
    (invite,) = sent(ua)
    ua.receive(sip.make_response(invite, status, to_tag="t").encode(), 0.1)
    (ack,) = sent(ua)
    assert ack.method == "ACK" and ack.branch == invite.branch
    assert [(e.name, e.originator, e.cause) for e in ua.events() if e.name == "failed"] == [("failed", "remote", cause)]
    assert cause_for_status(status) == cause


def test_our_bye_and_their_bye():
    ua = registered_ua()
    session, invite, ok = invite_answered(ua)
    ua.events()
    ua.terminate(session, 5.0)
    (bye,) = sent(ua)
    assert bye.start_line == "BYE sip:mod_sofia@127.0.0.1:7443;transport=wss SIP/2.0"
    assert bye.cseq.number == invite.cseq.number + 1 and bye.to_tag == "fstag"
    assert [(e.name, e.originator, e.cause) for e in ua.events()] == [("ended", "local", "Terminated")]

    session2, invite2, ok2 = invite_answered(ua, 6.0)
    ua.events()
    server_bye = sip.make_in_dialog_request(invite2, "BYE", local_tag="fstag", cseq=1,
                                            via="SIP/2.0/WSS 127.0.0.1:7443;branch=z9hG4bKsrv1")
    ua.receive(server_bye.encode(), 7.0)
    (reply,) = sent(ua)
    assert reply.status == 200 and reply.headers["Supported"] == "outbound"
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        assert reply.headers[name] == server_bye.headers[name]
    assert [(e.name, e.originator, e.cause) for e in ua.events()] == [("ended", "remote", "Terminated")]


def test_a_bye_for_an_unknown_dialog_gets_481():
    ua = registered_ua()
    _, invite, _ = invite_answered(ua)
    stray = sip.make_in_dialog_request(invite, "BYE", local_tag="other", cseq=1, via="SIP/2.0/WSS h;branch=z9hG4bKx")
    ua.receive(stray.encode(), 1.0)
    (reply,) = sent(ua)
    assert reply.status == 481


def test_hold_and_resume_send_reinvites_with_the_directions():
    ua = registered_ua()
    session, invite, _ = invite_answered(ua)
    media = LocalMedia(random.Random(9))
    media.offer()
    ua.events()
    assert ua.hold(session, media.offer("sendonly"), 2.0)
    (reinvite,) = sent(ua)
    assert reinvite.method == "INVITE" and reinvite.to_tag == "fstag" and reinvite.cseq.number == invite.cseq.number + 1
    assert b"a=sendonly" in reinvite.body and b"a=sendrecv" not in reinvite.body
    assert [e.name for e in ua.events()] == ["hold"] and session.local_hold
    assert not ua.hold(session, media.offer("sendonly"), 2.1)   # already on hold: nothing
    ua.receive(sip.make_response(reinvite, 200, headers=[("Contact", "<sip:fs@h>"),
                                                         ("Content-Type", "application/sdp")],
                                 body=answer_sdp().encode()).encode(), 2.1)
    (ack,) = sent(ua)
    assert ack.method == "ACK" and ack.headers["CSeq"] == f"{reinvite.cseq.number} ACK"
    assert ua.unhold(session, media.offer("sendrecv"), 3.0)
    (resume,) = sent(ua)
    assert b"a=sendrecv" in resume.body and resume.cseq.number == reinvite.cseq.number + 1
    assert [e.name for e in ua.events()] == ["unhold"]


def test_mute_is_local_only():
    ua = registered_ua()
    session, _, _ = invite_answered(ua)
    ua.events()
    ua.mute(session, audio=True)
    assert sent(ua) == [] and session.is_muted() == {"audio": True, "video": False}
    ua.unmute(session, audio=True)
    assert [e.name for e in ua.events()] == ["muted", "unmuted"]


# --- transport recovery ------------------------------------------------------------------------------


def test_transport_close_fails_a_pending_register_and_reconnects_with_the_clamped_backoff():
    ua = connected(make_ua(seed=3))
    sent(ua)
    ua.events()
    ua.transport_closed(1.0)
    assert [(e.name, e.cause) for e in ua.events()] == [("registrationFailed", "Connection Error"),
                                                        ("disconnected", None)]
    delays = []
    now = 1.0
    for _ in range(8):
        deadline = ua.next_deadline()
        delays.append(deadline - now)
        ua.handle_timers(deadline)
        assert ua.transport_requests() == ["connect"]
        now = deadline
        ua.transport_closed(now)   # the attempt fails
    assert delays == ua.reconnect_delays[:8]
    assert all(2 <= d <= 30 for d in delays) and max(delays) == 30


def test_unclamped_backoff_is_a_random_integer_in_1_to_2_power_n():
    clamped = connected(make_ua(seed=3))
    free = connected(make_ua(seed=3, recovery_min_interval=None, recovery_max_interval=None))
    for ua in (clamped, free):
        now = 0.0
        for _ in range(8):
            ua.transport_closed(now)
            now = ua.next_deadline()
            ua.handle_timers(now)
    for n, delay in enumerate(free.reconnect_delays, 1):
        assert 1 <= delay <= 2 ** n and delay == int(delay)
    assert max(free.reconnect_delays) > 30
    # one draw per attempt in both: the clamped sequence is the free one clamped
    assert clamped.reconnect_delays == [min(max(d, 2), 30) for d in free.reconnect_delays]


def test_a_reconnect_registers_again_and_emits_registered_again():
    ua = registered_ua()
    ua.transport_closed(10.0)
    assert [e.name for e in ua.events()] == ["disconnected", "unregistered"]
    ua.handle_timers(ua.next_deadline())
    assert ua.transport_requests() == ["connect"]
    ua.transport_connected(20.0)
    assert ua.recover_attempts == 0
    (reg,) = sent(ua)
    ua.receive(challenge(reg), 20.0)
    (authed,) = sent(ua)
    ua.receive(ok_register(authed), 20.0)
    assert [e.name for e in ua.events()] == ["connecting", "connected", "registered"]


def test_a_confirmed_session_survives_a_transport_close_and_byes_over_the_next_one():
    ua = registered_ua()
    session, invite, _ = invite_answered(ua)
    ua.events()
    ua.transport_closed(5.0)
    assert all(e.name != "ended" for e in ua.events()) and session.established
    ua.handle_timers(ua.next_deadline())
    ua.transport_requests()
    ua.transport_connected(9.0)
    sent(ua)
    ua.terminate(session, 9.5)
    assert [m.method for m in sent(ua)] == ["BYE"]


def test_an_invite_in_flight_fails_on_a_transport_close():
    ua = registered_ua()
    ua.call(TARGET, 0.0, offer="v=0\r\n")
    sent(ua)
    ua.events()
    ua.transport_closed(0.5)
    assert ("failed", "Connection Error") in [(e.name, e.cause) for e in ua.events()]


def test_stop_unregisters_ends_sessions_and_never_reconnects():
    ua = registered_ua()
    session, _, _ = invite_answered(ua)
    ua.events()
    ua.stop(3.0)
    messages = sent(ua)
    assert [m.method for m in messages] == ["BYE", "REGISTER"]
    assert messages[1].headers["Expires"] == "0"
    assert ua.transport_requests() == ["disconnect"]
    ua.transport_closed(3.1)
    assert ua.next_deadline() is None


# --- robustness and determinism ----------------------------------------------------------------------


@pytest.mark.parametrize("junk", [b"", b"\r\n\r\n", b"garbage", b"SIP/2.0 200 OK\r\n\r\n", b"\xff\xfe" * 50,
                                  b"INVITE sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n"])
def test_bad_input_is_dropped(junk):
    ua = registered_ua()
    ua.events()
    ua.receive(junk, 1.0)
    assert ua.events() == [] and sent(ua) == []


def test_an_incoming_call_rings_then_times_out():
    ua = registered_ua()
    request = sip.make_request("INVITE", ua.contact_uri, via="SIP/2.0/WSS fs;branch=z9hG4bKin",
                               from_="<sip:fs@h>;tag=a", to=f"<sip:{USER}@127.0.0.1>", call_id="in1", cseq=1,
                               contact="<sip:fs@h>")
    ua.receive(request.encode(), 0.0)
    (ringing,) = sent(ua)
    assert ringing.status == 180
    ua.handle_timers(120.0)
    (timeout,) = sent(ua)
    assert timeout.status == 408


def test_same_seed_same_bytes():
    def run(seed: int) -> list[bytes]:
        ua = registered_ua(seed=seed)
        ua.call(TARGET, 1.0, offer=LocalMedia(random.Random(seed)).offer())
        return [m.encode() for m in ua.sent]

    assert run(7) == run(7) and run(7) != run(8)


def test_against_the_emulators_sip_core():
    """The UA and the fake FreeSWITCH's SIP core, both I/O-free, wired back to back."""
    clock = ManualClock()
    bridge = Bridge(clock=clock, rng=random.Random(1))
    core = SipCore(bridge, lambda user: PASSWORD if user == USER else None, rng=random.Random(2),
                   clock=lambda: clock.t, answer_delay=0.0)
    ua = make_ua(seed=4)
    to_ua: list[bytes] = []
    flow = Flow("WSS", Endpoint("browser", 40000), Endpoint("127.0.0.1", 7443), to_ua.append)

    def pump() -> list[Event]:
        events = []
        while True:
            out = ua.data_to_send()
            for data in out:
                core.receive(flow, data)
            incoming, to_ua[:] = list(to_ua), []
            for data in incoming:
                ua.receive(data, clock.t)
            events += ua.events()
            if not out and not incoming:
                return events

    connected(ua)
    assert "registered" in [e.name for e in pump()]
    assert [b.aor for b in core.registrations()] == [f"{USER}@127.0.0.1"]
    session = ua.call(TARGET, 0.0, offer=LocalMedia(random.Random(5)).offer())
    events = pump()
    answer = next(e for e in events if e.name == "answer")
    ua.remote_description_applied(session, 0.0, ok=True)
    assert [e.name for e in pump()] == ["accepted", "confirmed"]
    assert answer.sdp and "a=fingerprint:sha-256" in answer.sdp
    (member,) = bridge.members("15*101-FSdefaultDomain")
    assert member.channel.caller_id_name == USER
    ua.terminate(session, 1.0)
    pump()
    assert bridge.conferences == {} and core.snapshot()["dialogs"] == 0
