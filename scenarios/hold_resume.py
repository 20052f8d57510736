"""Hold and resume: FreeSWITCH sees a re-INVITE, the other side sees nothing, and the real client cannot resume.

The seed lists ``toggleHold`` among the callPipe signals.  What the client actually does
(video-call-flow.md 3.2, docs/client-quirks.md ``toggle_hold_never_resumes``):

* ``cometVideoApi.toggleHold()`` puts the JsSIP session on hold: a re-INVITE with ``a=sendonly``;
  FreeSWITCH marks the member held, its media stops (no talking, no floor) and the 1800 s
  hold timeout replaces the RTP timeout;
* nothing is ever sent on the callPipe -- no page sends ``toggleHold`` -- so the other side's page is
  not told, in either direction;
* the real toggleHold tests JsSIP's ``isOnHold()``, an object and so always true: every call holds,
  and the patient can never resume.  Hanging up and joining again is the way out.

The doctor's page here ships a fixed toggleHold (the quirk switched off): it holds and resumes,
and FreeSWITCH's member follows; the patient's is the real client.
"""

from bench.clients.quirks import ClientQuirks
from bench.scenario import Scenario

NEEDS = ("freeswitch",)   # it looks inside FreeSWITCH: in-process only
ROOM = "105"
ACTORS = {"doctor": {"quirks": ClientQuirks().with_quirks(toggle_hold_never_resumes=False)}}


async def story(s: Scenario) -> None:
    doctor, patient = s.doctor, s.patient

    with s.step("the doctor and the patient are in a call in room 105"):
        await s.meet(ROOM, doctor, patient)
        await s.sleep(1)             # JsSIP holds only a confirmed session

    with s.step("the doctor (fixed client) holds and resumes: FreeSWITCH follows, the patient is not told"):
        for event in ("toggleHold", "onOut", "onCallEnd", "received.toggleHold"):
            s.this_step().expect_no(f"patient.{event}")
        doctor.hold()
        await s.sleep(2)
        s.check(doctor.on_hold and doctor.member().hold, "the doctor's session and member are held")
        s.check(doctor.member().media == "dead", "a held member sends no media")
        doctor.resume()
        await s.sleep(2)
        s.check(not doctor.on_hold and not doctor.member().hold, "resumed")
        s.check(doctor.member().media == "flowing", "its media flows again")

    with s.step("the patient (the real client) holds, then cannot resume"):
        s.this_step().expect_no("doctor.received.toggleHold")
        s.this_step().expect_no("doctor.onOut")
        patient.hold()
        await s.sleep(2)
        s.check(patient.on_hold and patient.member().hold, "the patient is held")
        patient.resume()
        await s.sleep(2)
        s.check(patient.on_hold and patient.member().hold, "toggleHold held again instead of resuming")
        reinvites = [m for m in patient.video.phone.ua.sent if getattr(m, "method", "") == "INVITE" and m.to_tag]
        s.check(len(reinvites) == 1, f"one re-INVITE (the hold); the 'resume' sent nothing: {len(reinvites)}")

    with s.step("the way out: hang up and join again"):
        patient.hangup()
        await s.wait("patient.onCallEnd", status="hangup")
        await patient.join(ROOM)
        await s.wait("patient.first_remote_frame", within=15)
        s.check(not patient.on_hold and patient.member().media == "flowing", "a new call, not held")
        s.expect("doctor.onOut", count=1, note="the doctor hears of the hangup, not of the hold")
