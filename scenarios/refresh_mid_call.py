"""The patient reloads the page in the middle of a consultation: the ghost member and the stuck call.

The seed: "if one of them refreshes the page or loses the internet, restoring the call has to be
done at the application level; the video API does not do it."

A reload closes the page's WebSockets -- the comet connection and the SIP one -- without a goodbye:
no ``out`` on the callPipe, no SIP BYE (video-call-flow.md 6.1).  So:

* the doctor's page hears nothing at all: no onOut, no callback; its heartbeat pings go unanswered
  and its loneliness timer does nothing.  The doctor sits in a call with nobody;
* FreeSWITCH keeps the patient's member as a **ghost** until the RTP timeout (300 s), and
  ``conference_members`` -- what the app reads -- still lists the patient (the lenient profile
  drops the ghost at once);
* the new page has no call: with the demo app, nobody invites it again, so the patient is out of
  the call until they click Join again (new callKey, same callPipe; the doctor still gets no
  callback, and the room now holds the patient twice: the ghost and the new member);
* with the app-level restore of spec 6.2 (``s.app.restore``: re-INSERT on page load, accept at
  once) the reloaded page is back in the call by itself, and ``restore`` times how long it took.
"""

from bench.scenario import Scenario

PROFILES = ("cppcomet-4.09", "lenient")   # the ghost stays (faithful) or leaves at once (lenient)
NEEDS = ("freeswitch",)   # it looks inside FreeSWITCH: in-process only
ROOM = "101"


async def story(s: Scenario) -> None:
    doctor, patient = s.doctor, s.patient

    with s.step("the doctor and the patient are in a call in room 101 (the demo app: no restore)"):
        await s.meet(ROOM, doctor, patient)

    with s.step("the patient reloads the page"):
        away = s.after("patient.refresh", within=20)
        for callback in ("onOut", "onCallEnd", "onCall", "onCallStart", "onCallAccept"):
            away.expect_no(f"doctor.{callback}", note="the doctor is not told anything")
        away.expect_no("doctor.received.out", note="a reload sends no out on the callPipe")
        away.expect_no("patient.onCall", note="nobody invites the new page: the patient is out of the call")
        if s.faithful:
            away.expect_no("freeswitch.del-member", note="no BYE: the member stays as a ghost")
        else:
            s.after("patient.refresh", within=1).expect("freeswitch.del-member", actor="patient",
                                                        note="lenient: the ghost leaves at once")
        await patient.refresh()
        await s.sleep(20)
        s.check(doctor.in_call, "the doctor's page still shows the call")
        s.check(not patient.in_call, "the new page has no call")
        members = await s.conference_members(ROOM)
        if s.faithful:
            s.check(sorted(members) == ["doctor", "patient"],
                    f"conference_members still lists the patient (the ghost): {members}")
            s.check(patient.member().media == "dead", "the ghost's media is dead")
        else:
            s.check(members == ["doctor"], f"conference_members lists the doctor alone: {members}")

    with s.step("the patient clicks Join again: back in, and the room counts the patient twice"):
        back = s.between("patient.join", "patient.first_remote_frame", within=10)
        back.expect("patient.onCallStart", count=1)
        back.expect_no("doctor.onCallStart", note="onCallStart fired once for the doctor's call")
        first_key = patient.joins[0].call_key
        await patient.join(ROOM)
        await s.wait("patient.first_remote_frame", within=15)
        s.check(patient.current.call_key != first_key, "the re-join got a new callKey")
        s.check(patient.video.active.pipe == doctor.video.active.pipe, "... and the same callPipe")
        ghosts = 1 if s.faithful else 0
        s.check(len(patient.members()) == 1 + ghosts, f"the patient's members: {len(patient.members())}")

    with s.step("the app learns to restore calls; the patient reloads again"):
        s.app.restore = True
        s.after("patient.refresh", within=15).expect("patient.onCallStart", count=1,
                                                     note="the restore puts the new page back in the call")
        s.after("patient.refresh", within=15).expect_no("patient.join", note="without a click")
        s.after("patient.refresh", within=15).expect_no("doctor.onOut")
        await patient.refresh()
        await s.wait("patient.first_remote_frame", within=15)
        s.measure("restore", "patient.refresh", "patient.first_remote_frame")
        s.check(patient.in_call and doctor.in_call, "both pages in the call again")

    if s.faithful:
        with s.step("five minutes on, FreeSWITCH drops the ghosts (RTP timeout, MEDIA_TIMEOUT)"):
            await s.wait("freeswitch.del-member", actor="patient", within=300)
            await s.sleep(30)
            s.check(len(patient.members()) == 1, f"one member left for the patient: {len(patient.members())}")
            s.check(doctor.in_call and patient.in_call, "the live call goes on")
            s.expect_no("doctor.onOut", note="the doctor never heard of any of it")
