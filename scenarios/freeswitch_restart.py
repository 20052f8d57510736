"""FreeSWITCH restarts mid-call: every member gone without a BYE, the stale call, and an empty conference_members.

video-call-flow.md 6.5: "FS restarts: every member's BYE is lost or never sent; ICE fails, then
ended -> the stale trap (6.4).  Also the comet ESL link is never re-established, so
conference_members stays empty."  What each side sees:

* **FreeSWITCH**: every SIP connection, registration, channel and member is gone at once; nothing
  is sent (no BYE, no del-member: the process died).  It comes back empty a few seconds later;
* **JsSIP** in each page sees its transport close, reconnects with its back-off and registers again
  -- and cometVideoApi dials the room again (client quirk ``rejoin_on_reregister``): a new conference
  with both of them in it, while the pages know nothing of it;
* **the pages**: the old sessions' media endpoints are gone, so ICE fails 30 s after the restart and
  JsSIP ends them (cause RTP Timeout): ``onCallEnd {terminated}``, no ``out``, and the page keeps its
  active call -- the stale activeCallEvent trap (6.4): clicking Join rings nothing;
* **the app** reads ``conference_members`` over CometQL: empty, although FreeSWITCH holds two members,
  because the comet server's ESL link died with FreeSWITCH and is never made again (quirk
  ``comet_esl_link_not_restored``) -- until the comet server itself restarts.  The lenient profile
  makes the link again at once.
* **with the app-level restore** of spec 6.4 (``s.app.restore``: ``hangup()`` in onCallEnd, re-INSERT,
  accept at once), the ICE failure brings both back into a fresh call by themselves: each hangs up
  (sending the ``out`` the bare page never sent; both ICE failures come at the same moment, so neither
  page is still listening for the other's) and gets onCallStart again.
"""

from bench.scenario import Scenario

PROFILES = ("cppcomet-4.09", "lenient")   # the comet server's ESL link stays dead (faithful) or comes back
NEEDS = ("faults", "freeswitch")
ROOM = "112"
DOWN = 5.0
ICE = 30.0            # seconds without media until Chrome's ICE gives up (bench/clients/sip_ua.py)


async def story(s: Scenario) -> None:
    doctor, patient = s.doctor, s.patient
    both = (doctor, patient)

    with s.step("the doctor and the patient are in a call in room 112"):
        await s.meet(ROOM, doctor, patient)
        await s.sleep(5)

    with s.step(f"FreeSWITCH restarts ({DOWN:g} s down): every member gone, no BYE"):
        s.this_step().expect_no("freeswitch.del-member", note="the process died: no events, no BYEs")
        for actor in both:
            s.after("fault.restart_freeswitch", within=1).expect(f"{actor.name}.sip_disconnected", at_least=1,
                                                                 note="JsSIP's transport closes")
            s.this_step().expect(f"{actor.name}.registered", count=1,
                                 note="it reconnects with its back-off once FreeSWITCH is back, registers again")
            s.after(f"{actor.name}.registered", within=1).expect(
                "freeswitch.add-member", count=1, actor=actor.name,
                note="and cometVideoApi dials the room again (rejoin_on_reregister)")
            s.after("fault.restart_freeswitch", within=ICE + 1).expect(
                f"{actor.name}.onCallEnd", count=1, status="terminated",
                note="the old session's ICE fails: JsSIP ends it, onCallEnd")
            s.this_step().expect_no(f"{actor.name}.out_sent", note="the page never hangs up: no out")
            s.this_step().expect_no(f"{actor.name}.onOut")
        await s.faults.restart_freeswitch(downtime=DOWN)
        s.check(s.fs_members(ROOM) == [], "FreeSWITCH came back empty")
        for actor in both:
            await s.wait(f"{actor.name}.registered", after="fault.freeswitch_up", within=120)
            await s.wait(f"{actor.name}.onCallEnd", within=ICE + 1)
        s.measure("ice_failed", "fault.restart_freeswitch", "patient.onCallEnd")
        await s.sleep(2)
        s.check(doctor.in_call and patient.in_call,
                "both pages keep a stale active call (the ended handler never hangs up)")
        s.check(all(a.member() is not None and a.member().media == "flowing" for a in both),
                "yet both are back in FreeSWITCH's room, by the duplicate join")

    with s.step("the app reads conference_members"):
        members = sorted(await s.conference_members(ROOM))
        if s.faithful:
            s.check(members == [], f"empty: the comet server's ESL link is dead ({members})")
        else:
            s.check(members == ["doctor", "patient"], f"lenient: the link came back ({members})")

    with s.step("the patient clicks Join again: the stale call swallows it"):
        s.this_step().expect("patient.rejoin_ignored", count=1, note="'already in this conference': no onCall")
        s.this_step().expect_no("patient.onCall")
        await patient.join(ROOM)
        await s.sleep(5)

    with s.step("an operator restarts the comet server: conference_members works again"):
        await s.faults.restart_comet()
        await s.wait("patient.comet_open", within=5)
        members = sorted(await s.conference_members(ROOM))
        s.check(members == ["doctor", "patient"], f"the room as FreeSWITCH has it: {members}")

    with s.step("the app learns to restore calls; both reload their pages and are back in a clean call"):
        s.app.restore = True
        await s.together(doctor.refresh(), patient.refresh())
        for actor in both:
            await s.wait(f"{actor.name}.first_remote_frame", within=30)

    with s.step("FreeSWITCH restarts again: the restore brings both back"):
        for actor in both:
            s.after("fault.restart_freeswitch", within=ICE + 1).expect(
                f"{actor.name}.onCallEnd", count=1, status="terminated")
            s.after(f"{actor.name}.onCallEnd", within=1).expect(
                f"{actor.name}.out_sent", count=1, note="the restore's hangup() sends the out the bare page never sent")
            s.after(f"{actor.name}.onCallEnd", within=15).expect(
                f"{actor.name}.onCallStart", count=1, note="re-INSERT, accept at once, back in the call")
            s.this_step().expect_no(f"{actor.name}.join", note="without a click")
        await s.faults.restart_freeswitch(downtime=DOWN)
        for actor in both:
            await s.wait(f"{actor.name}.onCallEnd", within=ICE + 1)
            await s.wait(f"{actor.name}.first_remote_frame", after=f"{actor.name}.onCallEnd", within=15)
        s.measure("restored", "fault.restart_freeswitch", "patient.first_remote_frame")
        await s.sleep(2)
        s.check(doctor.in_call and patient.in_call, "both pages in the call again")
        members = sorted(await s.conference_members(ROOM))
        if s.faithful:
            s.check(members == [], f"... and conference_members is empty again until the comet server restarts "
                                   f"({members})")
