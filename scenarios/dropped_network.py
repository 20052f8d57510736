"""A side loses the network for 10 s, then the other for 60 s: what the comet client, JsSIP and the room do.

The seed: "if one of them refreshes the page or loses the internet, restoring the call has to be done
at the application level".  Losing the network is not a reload: the page stays, and every part of it
tries to come back on its own (video-call-flow.md 6.1, comet-ws-protocol.md 7.2):

* **the comet client** (CometServerApi.js) sees its WebSocket fail at once (``onclose``, 1006, not
  clean) and, while ``navigator.onLine`` is false, postpones its reconnect in 300 ms steps; back
  online it reconnects within its back-off, sends its whole subscription list again and gets
  ``serverInfo``.  The callPipe messages sent to it meanwhile are **lost** (the comet server still
  believed in the old connection); the pings the page queued while offline go out **late**, in a
  burst;
* **JsSIP** sees its transport close, tries again with its back-off (1..2^n s, unclamped in
  cometVideoApi) -- every try fails while offline -- and once connected it **registers again**, which
  makes cometVideoApi dial again (client quirk ``rejoin_on_reregister``): the **duplicate join**, a
  second member in the room;
* **the media** stops: FreeSWITCH gets no RTP and the peer's video freezes.  Under 30 s ICE holds out
  and the media comes back with the network; at 30 s ICE fails and JsSIP ends the session (cause RTP
  Timeout; no BYE can leave) -- ``onCallEnd {terminated}``, no ``out``, and the page keeps a stale
  call (spec 6.4).  The member whose media died stays a **ghost** until FreeSWITCH's RTP timeout
  (300 s; the lenient profile drops it when the dead connection is noticed);
* **the peer's page** is told nothing at all, ever.

What the network drop means here (``s.link(actor).lose_network(seconds)``): the device's own network
goes -- the browser goes offline, its open connections fail on its side, new ones fail until it is
back -- while the servers hear nothing (their ends hang until the device is back and answers their
next segment with a reset).  ``s.link(actor).partition(seconds)`` is the other kind: a silent
blackhole upstream that nobody notices.
"""

from bench.scenario import Actor, Scenario

PROFILES = ("cppcomet-4.09", "lenient")   # the dead member stays a ghost (faithful) or goes (lenient)
NEEDS = ("links", "freeswitch")
ROOM = "104"
SHORT, LONG = 10, 60
NOT_TOLD = ("onOut", "onCallEnd", "onCall", "onCallStart", "onCallAccept")
#: how long JsSIP may take to register again once the network is back: cometVideoApi leaves its
#: back-off unclamped, 1..2^n s for the n-th try in a row, so after a minute offline the next try can
#: be minutes away (over 200,000 seeds: p50 26 s, p99 193 s, p99.9 249 s after a 60 s drop)
SIP_BACK = 300


async def back_online(s: Scenario, actor: Actor) -> None:
    """The network is back: the comet client reconnects at once, JsSIP registers after its back-off
    and cometVideoApi dials again (measured: comet_back, sip_back)."""
    await s.wait(f"{actor.name}.comet_open", within=1)
    s.measure("comet_back", "link.online", f"{actor.name}.comet_open")
    await s.wait(f"{actor.name}.registered", within=SIP_BACK)
    await s.wait("freeswitch.add-member", actor=actor.name, within=1)
    s.measure("sip_back", "link.online", f"{actor.name}.registered")


async def story(s: Scenario) -> None:
    doctor, patient = s.doctor, s.patient

    with s.step("the doctor and the patient are in a call in room 104"):
        await s.meet(ROOM, doctor, patient)
        await s.sleep(5)
        first = patient.member()

    with s.step(f"the patient's Wi-Fi drops for {SHORT} s"):
        away = s.between("link.offline", "link.online")
        away.expect("patient.comet_close", count=1, clean=False, code=1006,
                    note="the comet WebSocket fails at once, uncleanly")
        away.expect_no("patient.comet_open", note="no reconnect while navigator.onLine is false")
        away.expect_no("patient.received.ping", note="the callPipe messages sent meanwhile are lost")
        away.expect("patient.sip_disconnected", at_least=2,
                    note="JsSIP's transport closes, and its reconnects fail while offline")
        away.expect_no("patient.registered")
        s.after("link.online", within=1).expect("patient.comet_open", count=1,
                                                note="back online, the comet client reconnects")
        s.after("patient.comet_open", within=1).expect("doctor.received.ping", at_least=5, user_id=patient.user_id,
                                                       note="the pings the page queued offline go out late")
        s.after("link.online", within=SIP_BACK).expect("patient.registered", count=1,
                                                       note="JsSIP registers again after its back-off")
        s.after("patient.registered", within=1).expect("freeswitch.add-member", count=1, actor="patient",
                                                       note="and cometVideoApi dials again: the duplicate join")
        s.this_step().expect_no("patient.onCallEnd", note="ICE held out: the call never ended")
        for callback in NOT_TOLD:
            s.this_step().expect_no(f"doctor.{callback}", note="the doctor is told nothing")

        s.link(patient).lose_network(SHORT)
        await s.sleep(1)
        s.check(first.media == "dead", f"FreeSWITCH gets no media from the patient ({first.media})")
        s.check(doctor.in_call and patient.in_call, "both pages still show the call")
        await s.wait("link.online", within=SHORT + 1)
        s.check(first.media == "flowing", f"the patient's media is back with the network ({first.media})")
        await back_online(s, patient)
        await s.sleep(5)
        members = sorted(await s.conference_members(ROOM))
        s.check(members == ["doctor", "patient", "patient"], f"the room lists the patient twice: {members}")
        s.check(all(m.media == "flowing" for m in patient.members()), "both of the patient's members carry media")
        s.check(doctor.in_call and patient.in_call, "both pages still show the call")

    with s.step(f"the doctor's network drops for {LONG} s"):
        gone = s.between("link.offline", "link.online")
        gone.expect("doctor.comet_close", count=1, clean=False, code=1006)
        gone.expect_no("doctor.comet_open")
        gone.expect("doctor.session_ended", count=1, cause="RTP Timeout",
                    note="ICE fails after 30 s and JsSIP ends the session")
        gone.expect("doctor.onCallEnd", count=1, status="terminated")
        gone.expect_no("doctor.out_sent", note="the page never hangs up: no out, the stale call")
        gone.expect_no("freeswitch.del-member", actor="doctor", note="no BYE could leave: FreeSWITCH keeps the member")
        s.after("link.online", within=1).expect("doctor.comet_open", count=1)
        s.after("doctor.registered", within=1).expect("freeswitch.add-member", count=1, actor="doctor",
                                                      note="registered again, the stale page dials again")
        for callback in NOT_TOLD:
            s.this_step().expect_no(f"patient.{callback}", note="the patient is told nothing")
        if s.faithful:
            s.after("link.offline", within=301).expect(
                "freeswitch.del-member", count=1, actor="doctor",
                note="the ghost goes at FreeSWITCH's RTP timeout, 300 s after its media died")
        else:
            s.after("link.online", within=1).expect("freeswitch.del-member", count=1, actor="doctor",
                                                    note="lenient: the dead member goes when its connection does")

        s.link(doctor).lose_network(LONG)
        await s.wait("doctor.onCallEnd", within=31)
        s.measure("ice_failed", "link.offline", "doctor.onCallEnd")
        s.check(doctor.in_call, "the doctor's page keeps a stale call (activeCallEvent stays set)")
        s.check(patient.in_call, "the patient's page still shows the call")
        await s.wait("link.online", within=LONG)
        await s.sleep(0.5)
        ghosts = [m for m in doctor.members() if m.media == "dead"]
        s.check(len(ghosts) == (1 if s.faithful else 0), f"the doctor's dead members: {len(ghosts)}")
        await back_online(s, doctor)
        await s.sleep(1)
        s.check(doctor.member() is not None and doctor.member().media == "flowing",
                "the doctor is back in the room's media -- by the duplicate join, with its page's call ended")

    if s.faithful:
        with s.step("five minutes after the drop, FreeSWITCH lets the ghost go (RTP timeout)"):
            await s.wait("freeswitch.del-member", after="link.offline", actor="doctor", within=300)
            await s.sleep(1)
            members = sorted(await s.conference_members(ROOM))
            s.check(members == ["doctor", "patient", "patient"], f"the room now: {members}")
