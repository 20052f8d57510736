"""The patient hangs up by mistake and joins again from the same page.

Hangup (the seed's EndCall) sends ``out {status: hangup, callKey}`` on the callPipe three times and a
SIP BYE; the app's invitation row stays.  Joining again from the same page is a new
``INSERT INTO conference``: a new callKey, the same callPipe (it depends only on the room), a new
call in the page (onCall, a new JsSIP UA -- the old one is never stopped and stays registered),
and a new FreeSWITCH member.

What each side sees: the doctor gets onOut at the hangup and keeps the call; when the patient is
back, the doctor's page gets **no callback** (its onCallStart and onCallAccept fire once per call),
so an app that shows "the patient left" must notice the return itself (spec 6.2).  The patient gets
onCallStart again from the doctor's ``mediaStart answer``.
"""

from bench.scenario import Scenario

NEEDS = ("freeswitch",)   # it looks inside FreeSWITCH: in-process only
ROOM = "106"


async def story(s: Scenario) -> None:
    doctor, patient = s.doctor, s.patient

    with s.step("the doctor and the patient are in a call in room 106"):
        await s.meet(ROOM, doctor, patient)
        first_key = patient.current.call_key

    with s.step("the patient hangs up"):
        s.this_step().expect("doctor.onOut", count=1, status="hangup", user_id=patient.user_id)
        s.this_step().expect("freeswitch.del-member", actor="patient")
        s.this_step().expect("patient.onCallEnd", count=1, status="hangup")
        patient.hangup()
        await s.sleep(5)
        s.check(doctor.in_call and not patient.in_call, "the doctor stays in the call; the patient's page has none")
        rows = (await s.app.backend.invitations(ROOM)).rows
        s.check(any(int(row[1] or 0) == patient.user_id for row in rows), "the patient's invitation row stays")

    with s.step("the patient clicks Join again in the same page"):
        s.this_step().expect("patient.onCall", count=1)
        s.this_step().expect("patient.onCallStart", count=1)
        for callback in ("onCallStart", "onCallAccept", "onIn", "onCall"):
            s.this_step().expect_no(f"doctor.{callback}", note="the doctor is not told the patient is back")
        await patient.join(ROOM)
        await s.wait("patient.first_remote_frame", within=15)
        await s.sleep(2)
        s.check(patient.current.call_key != first_key, "a new callKey")
        s.check(patient.video.active.pipe == doctor.video.active.pipe, "the same callPipe")
        s.check(len(patient.video.phones) == 2, "a second JsSIP UA; the first was never stopped")
        registrations = s.stack.sip.registrations(f"{patient.participant.sip_user}@{s.stack.config.host}")
        s.check(len(registrations) == 2, f"both UAs registered: {len(registrations)}")
        s.check(sorted(await s.conference_members(ROOM)) == ["doctor", "patient"], "two members again")
