"""A doctor and a patient meet in room 101, talk a while, and hang up: the call as the seed tells it.

The seed's walk-through, step by step: the page authorises the user (auth.php writes users_auth over
CometQL, cometApi.start logs in, cometVideoApi.start waits for calls); Join runs call.php's
``INSERT INTO conference``; the comet server pushes ``msg.sys_sipCall`` and the page rings
(onCall); the page accepts, opens the camera, registers with FreeSWITCH and dials the room; the
``mediaStart`` exchange on the callPipe gives onCallStart; Hangup sends ``out`` on the callPipe
and a SIP BYE.

What each side sees: the first to arrive waits alone (no onCallStart) until the second's media
starts; each sees the other's accept as its own caller (onCallAccept, once); the one who stays
gets onOut when the other hangs up and keeps its call; FreeSWITCH's room empties with the last BYE,
but the invitations stay in the ``conference`` table until the app deletes them.

This is the scenario to copy: it is the plainest story, and ``cometbench run --repeat N
two_party_call`` is the join-latency benchmark.  It needs nothing of the in-process stack
(``NEEDS = ()``), so it also runs against a real deployment (``--target``); what only the in-process
FreeSWITCH can show (its conference events) is checked when the run can look inside it.
"""

from bench.scenario import Scenario

NEEDS = ()            # runs against any deployment; FreeSWITCH's own events only when s.can("freeswitch")
ROOM = "101"


async def story(s: Scenario) -> None:
    doctor, patient = s.doctor, s.patient

    with s.step("the doctor and the patient open the video-chat page"):
        await s.together(doctor.open_page(), patient.open_page())

    with s.step("the doctor joins room 101 and waits alone"):
        await doctor.join(ROOM)
        await s.wait("doctor.media_self")
        s.check(not doctor.marks.get("call_start"), "no onCallStart for the doctor while alone in the room")

    with s.step("the patient joins: both see each other"):
        s.after("patient.join", within=5).expect("doctor.onCallStart", count=1,
                                                 note="the doctor's call starts with the patient's media")
        s.after("patient.join", within=5).expect("doctor.onCallAccept", count=1,
                                                 note="the patient's accept, seen by its own caller")
        await patient.join(ROOM)
        await s.wait("patient.onCallStart", within=15)
        await s.wait("patient.first_remote_frame", within=15)
        await s.wait("doctor.first_remote_frame", within=15)
        s.check(sorted(await s.conference_members(ROOM)) == ["doctor", "patient"],
                "conference_members lists the doctor and the patient")

    with s.step("they talk (the heartbeat pings and pongs over the callPipe about once a second)"):
        await s.sleep(20)
        s.check(doctor.in_call and patient.in_call, "both pages still in the call")

    with s.step("the patient hangs up; the doctor stays"):
        s.after("patient.hangup", within=5).expect("doctor.onOut", count=1, status="hangup",
                                                   user_id=patient.user_id)
        if s.can("freeswitch"):
            s.after("patient.hangup", within=5).expect("freeswitch.del-member", actor="patient")
        patient.hangup()
        await s.wait("patient.onCallEnd", status="hangup")
        await s.wait("doctor.onOut")
        s.check(doctor.in_call, "the doctor's page keeps its call after onOut")

    with s.step("the doctor hangs up: the room is gone, the invitations are not"):
        doctor.hangup()
        if s.can("freeswitch"):
            await s.wait("freeswitch.conference-destroy", within=5)
        else:
            await s.sleep(2)
        s.check(await s.conference_members(ROOM) == [], "conference_members is empty")
        rows = (await s.app.backend.invitations(ROOM)).rows
        s.check(sorted(int(row[1] or 0) for row in rows) == sorted([doctor.user_id, patient.user_id]),
                "both invitations are still in the conference table")

    s.expect("doctor.onCallStart", count=1)
    s.expect("patient.onCallStart", count=1)
    s.expect_no("doctor.onCallEnd", status="terminated")
    s.measure("meeting", "patient.join", "doctor.first_remote_frame")
