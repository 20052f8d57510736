"""The comet server restarts mid-call: every page's connection drops, the call goes on, pipe messages are lost.

A CppComet restart (a deploy, a crash and a supervisor) takes its WebSocket, CometQL and directory
listeners down together.  What it keeps in MySQL stays (users_auth, the ``conference`` rows); what it
keeps in memory goes (connections, subscriptions, presence).  video-call-flow.md 6.5: "The comet
server restarts: the JS reconnects.  The call goes on (media goes straight to FS), but pipe messages
are lost while it is down."

* **the pages' comet clients** see their WebSocket close without a Close frame (1006), try again
  with CometServerApi's back-off (1 s, 1 s, 1 s, then +2 s: 3 s, 5 s ...; every try refused while the
  server is down), and once it is back they log in again and send their whole subscription list:
  the callPipe works again (a mute reaches the peer);
* **the call** does not notice: SIP and media go to FreeSWITCH, not through the comet server, so no
  callback fires, no SIP transport closes and no member leaves;
* **the callPipe** loses what is sent to a page while it is away (the heartbeat pings); what a page
  sends meanwhile waits in its queue and goes out late -- a hang-up's ``out`` reaches the peer only
  when the page is connected again, so the peer's ``onOut`` comes late.
"""

from bench.scenario import Scenario

NEEDS = ("faults", "freeswitch")
ROOM = "111"
DOWN = 5.0


async def story(s: Scenario) -> None:
    doctor, patient = s.doctor, s.patient

    with s.step("the doctor and the patient are in a call in room 111"):
        await s.meet(ROOM, doctor, patient)
        await s.sleep(5)
        members = [doctor.member(), patient.member()]

    with s.step(f"the comet server restarts and stays down {DOWN:g} s"):
        down = s.between("fault.restart_comet", "fault.comet_up")
        for actor in (doctor, patient):
            down.expect(f"{actor.name}.comet_close", count=1, clean=False, code=1006, opened=True,
                        note="the WebSocket drops without a Close frame")
            down.expect(f"{actor.name}.comet_close", at_least=2, opened=False,
                        note="and the reconnects are refused while the server is down")
            down.expect_no(f"{actor.name}.received.ping", note="pipe messages sent meanwhile are lost")
            s.after("fault.comet_up", within=3).expect(f"{actor.name}.comet_open", count=1,
                                                       note="back with CometServerApi's back-off")
            for quiet in ("onCallEnd", "onOut", "onCall", "sip_disconnected"):
                s.this_step().expect_no(f"{actor.name}.{quiet}", note="the call does not notice")
        s.this_step().expect_no("freeswitch.del-member", note="media goes to FreeSWITCH: nobody leaves")
        await s.faults.restart_comet(downtime=DOWN)
        await s.wait("patient.comet_open", within=3)
        await s.wait("doctor.comet_open", within=3)
        s.measure("comet_back", "fault.comet_up", "patient.comet_open")
        s.check(all(m.media == "flowing" and not m.left for m in members), "both members still carry media")
        s.check(doctor.in_call and patient.in_call, "both pages still show the call")
        rows = (await s.app.backend.invitations(ROOM)).rows
        s.check(sorted(int(row[1] or 0) for row in rows) == sorted([doctor.user_id, patient.user_id]),
                "the invitations are kept (MySQL)")

    with s.step("the callPipe works again: the patient mutes, the doctor's page hears of it"):
        s.after("patient.mute_audio", within=3).expect("doctor.received.toggleMute", count=1, isMute=True,
                                                       note="the subscriptions were sent again on reconnect")
        patient.mute_audio(True)
        await s.wait("doctor.received.toggleMute", within=3)
        patient.mute_audio(False)
        await s.sleep(3)

    with s.step("the comet server goes down again, and the patient hangs up while it is down"):
        s.after("patient.hangup", within=1).expect("freeswitch.del-member", count=1, actor="patient",
                                                   note="the BYE goes to FreeSWITCH at once")
        s.between("patient.hangup", "patient.comet_open").expect_no(
            "doctor.onOut", note="the out waits in the patient's queue while the server is down")
        s.after("patient.comet_open", within=3).expect("doctor.onOut", count=1, status="hangup",
                                                       user_id=patient.user_id, note="... and arrives late")

        async def restart() -> None:
            await s.faults.restart_comet(downtime=2 * DOWN)

        async def hang_up() -> None:
            await s.sleep(2)
            patient.hangup()

        await s.together(restart(), hang_up())
        await s.wait("doctor.onOut", within=5)
        s.measure("out_delay", "patient.hangup", "doctor.onOut")
        s.check(doctor.in_call, "the doctor's page keeps its call after onOut")
