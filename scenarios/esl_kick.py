"""An operator kicks the patient out of the room over ESL: the stale call, and the app-level restore.

``conference <name> kick <id>`` on FreeSWITCH's event socket (port 8021): mod_conference fires
``kick-member`` and ``del-member`` and FreeSWITCH sends the patient a BYE.  The comet server is not
involved and tells nobody (video-call-flow.md 0, 6.4).

* The patient's page: JsSIP ``ended`` -> ``onCallEnd {status: terminated}`` -- and nothing else.
  cometVideoApi's handler never calls hangup(), so the page keeps a stale active call: no ``out``
  is sent, and clicking Join again rings nothing (the "already in this conference" branch).
* The doctor's page: no callback at all (no ``out`` ever comes).
* Only a reload clears the stale call.  With the app-level restore of spec 6.4 (``s.app.restore``:
  hangup() in onCallEnd, then re-INSERT and accept at once) a second kick costs the patient a few
  seconds: the doctor hears onOut from the restore's hangup, and the patient is back.
"""

from bench.scenario import Scenario

NEEDS = ("freeswitch",)   # it looks inside FreeSWITCH: in-process only
ROOM = "107"


async def story(s: Scenario) -> None:
    doctor, patient = s.doctor, s.patient

    with s.step("the doctor and the patient are in a call in room 107 (the demo app)"):
        await s.meet(ROOM, doctor, patient)

    with s.step("an operator kicks the patient over ESL"):
        kicked = s.after("fault.esl_kick", within=5)
        kicked.expect("freeswitch.kick-member", actor="patient")
        kicked.expect("freeswitch.del-member", actor="patient")
        kicked.expect("patient.onCallEnd", count=1, status="terminated")
        kicked.expect_no("patient.out_sent", note="the page never hangs up: no out")
        s.this_step().expect_no("doctor.onOut", note="so the doctor is not told")
        s.this_step().expect_no("doctor.onCallEnd")
        reply = await s.faults.esl_kick(patient)
        s.check("kicked" in reply, f"ESL answered {reply.strip()!r}")
        await s.sleep(5)
        s.check(patient.in_call, "the patient's page keeps a stale active call")
        s.check(patient.member() is None, "the patient is not in the room")

    with s.step("the patient clicks Join again: nothing rings"):
        s.this_step().expect_no("patient.onCall")
        s.this_step().expect("patient.rejoin_ignored")
        await patient.join(ROOM)
        await s.sleep(10)
        s.check(patient.member() is None, "still not in the room")

    with s.step("the app learns to restore calls; the patient reloads and is back"):
        s.app.restore = True
        await patient.refresh()
        await s.wait("patient.first_remote_frame", within=15)
        s.check(patient.member() is not None and patient.member().media == "flowing", "back in the room")

    with s.step("a second kick: the restore brings the patient back by itself"):
        s.this_step().expect("doctor.onOut", count=1, status="hangup",
                             note="the restore's hangup() sends the out the bare page never sent")
        s.this_step().expect("patient.onCallEnd", count=1, status="terminated")
        s.this_step().expect("patient.onCallStart", count=1)
        s.this_step().expect_no("patient.join", note="no click")
        await s.faults.esl_kick(patient)
        await s.wait("patient.first_remote_frame", within=15)
        s.measure("kick_to_back", "fault.esl_kick", "patient.first_remote_frame")
        await s.sleep(2)
