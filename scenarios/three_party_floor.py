"""Three in a room: the active speaker holds the floor, and in passthrough video everyone sees only them.

The demo page says it: with more than two people you see only the one who speaks.  The shipped
``video`` conference profile sets no ``video-mode``, so mod_conference runs **passthrough** video
(video-call-flow.md 1.2, 5.7): each member receives the video of the floor holder, and the floor
goes to the active speaker.

* A specialist joins the doctor and the patient: their media starts, the specialist gets
  onCallStart from the others' ``mediaStart answer``; the two already there get no callback.
* FreeSWITCH gives the floor to the first member; afterwards it moves only when the holder is
  silent and someone else talks (the loudest talker wins): ``floor-change`` and, since passthrough
  video follows the audio floor, ``video-floor-change``, both with the old and new member.
* A holder who stops talking keeps the floor (everyone keeps seeing them) until another speaks.
* No page is told who holds the floor: these are FreeSWITCH events, and the comet server relays
  none of them (video-call-flow.md 0, fact 2).
"""

from bench.scenario import Scenario

NEEDS = ("freeswitch",)   # it looks inside FreeSWITCH: in-process only
ROOM = "110"


async def story(s: Scenario) -> None:
    doctor, patient = s.doctor, s.patient
    specialist = s.actor("specialist", role="doctor")

    with s.step("the doctor and the patient are in room 110; a specialist joins"):
        await s.meet(ROOM, doctor, patient)
        s.this_step().expect("specialist.onCallStart", count=1)
        s.this_step().expect("freeswitch.add-member", actor="specialist")
        await specialist.open_page()
        await specialist.join(ROOM)
        await s.wait("specialist.first_remote_frame", within=15)
        s.check(sorted(await s.conference_members(ROOM)) == ["doctor", "patient", "specialist"], "three members")
        conference = s.fs_members(ROOM)[0].conference
        s.check(conference.video_mode == "passthrough", f"video mode {conference.video_mode}")
        s.check(s.who(conference.floor_holder) == "doctor", "the first member holds the floor")

    with s.step("everyone is silent; then the patient speaks and takes the floor"):
        for actor in (doctor, patient, specialist):
            actor.talk(False)
        await s.sleep(1)
        s.after("patient.talk", within=1).expect("freeswitch.floor-change", count=1, new="patient")
        s.after("patient.talk", within=1).expect("freeswitch.video-floor-change", count=1, new="patient",
                                                 note="passthrough: everyone now receives the patient's video")
        patient.talk(True, energy=900)
        await s.sleep(3)
        s.check(s.who(conference.video_floor_holder) == "patient", "the patient holds the video floor")

    with s.step("the patient falls silent: the floor stays until someone else talks"):
        s.this_step().expect_no("freeswitch.floor-change")
        patient.talk(False)
        await s.sleep(5)
        s.check(s.who(conference.floor_holder) == "patient", "the silent patient keeps the floor")

    with s.step("the patient speaks again; the doctor and the specialist join in; the louder takes over"):
        s.this_step().expect("freeswitch.floor-change", count=1, old="patient", new="specialist",
                             note="when the holder falls silent, the loudest talker gets the floor")
        patient.talk(True, energy=900)
        doctor.talk(True, energy=400)
        specialist.talk(True, energy=1400)
        await s.sleep(2)
        s.check(s.who(conference.floor_holder) == "patient", "a talking holder keeps the floor")
        patient.talk(False)
        await s.sleep(2)
        s.check(s.who(conference.floor_holder) == "specialist", "the louder speaker holds the floor")
        s.check(s.who(conference.video_floor_holder) == "specialist", "... and everyone sees the specialist")
        doctor.talk(False)
        specialist.talk(False)

    with s.step("no page is told any of this"):
        for name in ("doctor", "patient", "specialist"):
            for callback in ("onOut", "onCallEnd", "onIn"):
                s.expect_no(f"{name}.{callback}")
        s.expect("doctor.onCallStart", count=1)
        s.expect("patient.onCallStart", count=1)
