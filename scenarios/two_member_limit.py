"""A room for two: a third person is answered, then hung up on, and their page is left stuck.

The seed: "max-members will limit the number of participants: you have 2, and then there will be
no more listeners."  The conference profile ``video-2`` (fixtures/conference.conf.xml) sets
``max-members`` 2, and the app puts the consultation in that profile (``sipNumber 15*102*video-2``).

What FreeSWITCH does with a third caller (video-call-flow.md 5.3): the dialplan answers every call
before the conference application runs, so the third page gets **200 OK**, then mod_conference
finds the room full ("Conference ... is full"), refuses the member, and FreeSWITCH sends **BYE**.
What each side sees:

* the third page (a nurse who opens the consultation link): onCall, its media starts and it sends
  ``mediaStart self``, so the doctor's page answers and the nurse even gets **onCallStart**; and
  the BYE: ``onCallEnd {status: terminated}``.  Which of the two comes first is a race (spec 5.3:
  the joiner "may" get onCallStart first): the answer travels over the comet server while the BYE
  follows the ACK at once; the stale call keeps the page listening, so a late answer still fires
  onCallStart after onCallEnd.  The story accepts either order.  There is no "room full" status.  The page keeps a
  stale active call (the client never hangs up after a remote end), so clicking Join again rings
  nothing: the "already in this conference" branch answers accept/pong and onCall never comes;
* the doctor and the patient: no callback at all (their onCallStart fired once already), and the
  room still holds the two of them;
* once the patient leaves, there is room -- but only a reload gets the nurse's page out of its
  stale call and in.
"""

from bench.scenario import Scenario

NEEDS = ("freeswitch",)   # it looks inside FreeSWITCH: in-process only
ROOM = "102"
PROFILE = "video-2"      # max-members 2


async def story(s: Scenario) -> None:
    doctor, patient = s.doctor, s.patient
    nurse = s.actor("nurse")

    with s.step("the doctor and the patient meet in room 102 (profile video-2: at most two members)"):
        await s.meet(ROOM, doctor, patient, profile=PROFILE)
        await nurse.open_page()

    with s.step("the nurse joins as the third: answered, then BYE"):
        refused = s.between("nurse.join", "nurse.onCallEnd", within=10)
        refused.expect("nurse.answered", note="FreeSWITCH answers before the conference refuses")
        # spec 5.3: the third joiner "may" get onCallStart first -- the doctor's answer to its
        # mediaStart races FreeSWITCH's BYE (a real Chromium ACKs sooner than the virtual client and
        # loses about one time in four).  The page keeps its stale call after the BYE, so a late answer
        # still fires onCallStart: once, before or after onCallEnd.
        s.after("nurse.join", within=10).expect("nurse.onCallStart", count=1,
                                                note="the doctor's page answers the nurse's mediaStart "
                                                     "(before or after the BYE)")
        refused.expect_no("freeswitch.add-member", actor="nurse")
        for who in ("doctor", "patient"):
            refused.expect_no(f"{who}.onCallStart")
            refused.expect_no(f"{who}.onOut")
            refused.expect_no(f"{who}.onCallEnd")
        await nurse.join(ROOM, profile=PROFILE)
        end = await s.wait("nurse.onCallEnd", within=10)
        s.check(end.data["status"] == "terminated", f"onCallEnd status terminated, got {end.data['status']}")
        ended = await s.wait("nurse.session_ended")
        s.check(ended.data.get("originator") == "remote", "FreeSWITCH ended the session (BYE)")
        refusals = s.stack.journal.entries(service="freeswitch", kind="refused")
        s.check(len(refusals) == 1 and "is full" in refusals[0]["data"], "FreeSWITCH logged the room full")
        s.check(sorted(await s.conference_members(ROOM)) == ["doctor", "patient"], "the room holds the two")

    with s.step("the nurse's page is stuck: Join again rings nothing"):
        s.check(nurse.in_call, "the page still has its (stale) active call")
        s.after("nurse.join", within=10).expect_no("nurse.onCall", note="the re-invite is swallowed")
        s.after("nurse.join", within=10).expect("nurse.rejoin_ignored")
        await nurse.join(ROOM, profile=PROFILE)
        await s.sleep(10)
        s.check(nurse.member() is None, "the nurse is not in the room")

    with s.step("the patient leaves; only a reload gets the nurse in"):
        await patient.leave()
        await s.wait("freeswitch.del-member", actor="patient")
        await nurse.refresh()
        await nurse.join(ROOM, profile=PROFILE)
        await s.wait("nurse.first_remote_frame", within=15)
        s.check(sorted(await s.conference_members(ROOM)) == ["doctor", "nurse"], "the doctor and the nurse")
        s.expect("doctor.onOut", count=1, note="the patient's leave is the one thing the doctor hears")
