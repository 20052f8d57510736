"""The patient has the consultation open on a phone and on a laptop: both ring, one answers.

One user, two pages (video-call-flow.md 6.3): the same user id and hash, two comet connections --
tabs behave the same, since every tab opens its own WebSocket.  ``INSERT INTO conference`` pushes
``msg.sys_sipCall`` to every connection of the user, so both pages ring (onCall on both).

* The phone answers (it accepts at once); the laptop rings on, waiting for a decision.  The
  phone's ``accept`` reaches the laptop from **its own user id**: the laptop ends its call silently --
  ``onCallEnd {status: start_accept}``, no ``out``, so the doctor hears nothing of it.
* The doctor sees one patient: one accept, one member in FreeSWITCH.
* Later the patient moves to the laptop: hangs up on the phone (the doctor gets onOut) and joins
  from the laptop -- both pages ring again (the phone too, though it just hung up), and this time
  the laptop answers.
"""

from bench.scenario import Scenario

NEEDS = ("freeswitch",)   # it looks inside FreeSWITCH: in-process only
ROOM = "109"
ACTORS = {"patient": {"accept": "manual"}}       # each device answers when the story says


async def story(s: Scenario) -> None:
    doctor, phone = s.doctor, s.patient
    laptop = s.actor("laptop", same_user_as=phone, accept="manual")

    with s.step("the doctor waits in room 109; the patient has the page open on a phone and a laptop"):
        await s.together(doctor.open_page(), phone.open_page(), laptop.open_page())
        await doctor.join(ROOM)
        await s.wait("doctor.media_self")

    with s.step("the app invites the patient: both devices ring, the phone answers"):
        s.this_step().expect("laptop.onCallEnd", count=1, status="start_accept",
                             note="the laptop ends itself when the patient's own accept arrives")
        s.this_step().expect_no("laptop.out_sent", note="silently: no out")
        s.this_step().expect_no("doctor.onOut")
        s.this_step().expect("doctor.onCallStart", count=1)
        await phone.join(ROOM)
        await s.wait("patient.onCall")
        await s.wait("laptop.onCall")
        phone.accept()
        await s.wait("patient.first_remote_frame", within=15)
        await s.sleep(3)
        s.check(phone.in_call and not laptop.in_call, "the phone is in the call, the laptop is not")
        s.check(sorted(await s.conference_members(ROOM)) == ["doctor", "patient|laptop"],
                "conference_members: one row for the patient's user (it cannot tell devices apart)")
        s.check([s.who(m) for m in s.fs_members(ROOM)].count("patient") == 1, "FreeSWITCH has the phone's member")

    with s.step("the patient moves to the laptop: hang up on the phone, join from the laptop"):
        s.this_step().expect("doctor.onOut", count=1, status="hangup")
        s.this_step().expect("patient.onCallEnd", status="start_accept",
                             note="the phone rang again and ended itself when the laptop answered")
        phone.hangup()
        await s.wait("doctor.onOut")
        await laptop.join(ROOM)
        await s.wait("laptop.onCall")
        await s.wait("patient.onCall")
        laptop.accept()
        await s.wait("laptop.first_remote_frame", within=15)
        await s.sleep(3)
        s.check(laptop.in_call and not phone.in_call, "now the laptop is in the call")
        s.check([s.who(m) for m in s.fs_members(ROOM)].count("laptop") == 1, "FreeSWITCH has the laptop's member")
