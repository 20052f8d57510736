"""Mute: the peer hears of it over the callPipe only when someone is there; FreeSWITCH never does.

The seed walks through the mute button: ``MuteAudio()`` -> ``cometVideoApi.muteAudio`` disables the
local track through JsSIP and says ``toggleMute {isMute}`` on the callPipe, which the other
members' pages act on -- "(!!! works when there is more than one participant in the conference)".

* Alone in the room, the doctor mutes: the signal goes to the callPipe's other subscribers, and
  there are none.  The patient who arrives later is not told either: nothing replays it (the three
  copies are sent at 0, 1 and 2 s and the patient comes later).
* With two in the room, the patient's mute reaches the doctor's page at once.  The doctor's page
  defines both ``toggleMute`` and ``onToggleMute`` (the real client checks one and calls the
  other; a page defining only ``onToggleMute`` gets a TypeError), so its app callback fires.
* FreeSWITCH never learns of a browser mute (video-call-flow.md 3.2): no ``mute-member`` event, the
  member can still speak; the patient simply stops talking.  An operator's ESL ``conference ...
  mute <id>`` does change the flag (``mute-member``, ``can_speak`` false) -- and no page is told.
"""

from bench.scenario import Scenario

NEEDS = ("freeswitch",)   # it looks inside FreeSWITCH: in-process only
ROOM = "103"
# the doctor's page defines both names, as the page of the real-client captures does
ACTORS = {"doctor": {"callbacks": {"toggle_mute": lambda arg: None, "on_toggle_mute": lambda arg: None}}}


async def story(s: Scenario) -> None:
    doctor, patient = s.doctor, s.patient

    with s.step("the doctor waits alone in room 103 and mutes: nobody hears of it"):
        await s.together(doctor.open_page(), patient.open_page())
        await doctor.join(ROOM)
        await s.wait("doctor.media_self")
        doctor.mute_audio(True)
        await s.sleep(5)            # the three copies (0, 1, 2 s) are gone
        s.check(doctor.video.is_mute() == {"audio": True, "video": False}, "the doctor's audio is muted locally")

    with s.step("the patient joins: the doctor's mute is not replayed"):
        s.after("patient.join", within=5).expect_no("patient.received.toggleMute")
        await patient.join(ROOM)
        await s.wait("patient.first_remote_frame", within=15)
        await s.sleep(5)

    with s.step("the doctor unmutes, the patient mutes: now each reaches the other"):
        s.between("patient.mute_audio", "fault.esl").expect_no("freeswitch.mute-member",
                                                                note="FreeSWITCH never hears of a browser mute")
        s.after("doctor.mute_audio", within=3).expect("patient.received.toggleMute", count=1, isMute=False)
        s.after("patient.mute_audio", within=3).expect("doctor.received.toggleMute", count=1, isMute=True,
                                                       user_id=patient.user_id)
        s.after("patient.mute_audio", within=3).expect("doctor.toggleMute", count=1, isMute=True,
                                                       note="the callback the real client calls")
        s.after("patient.mute_audio", within=3).expect_no("doctor.onToggleMute",
                                                          note="checked, never called (the naming bug)")
        doctor.mute_audio(False)
        patient.mute_audio(True)
        await s.sleep(3)

    with s.step("FreeSWITCH never learned of the browser mute"):
        member = patient.member()
        s.check(member.can_speak, "the patient's member can still speak in the conference")
        patient.mute_audio(False)
        await s.sleep(3)

    with s.step("an operator mutes the patient over ESL: the flag changes, no page is told"):
        quiet = s.after("fault.esl", within=5)
        quiet.expect("freeswitch.mute-member", actor="patient")
        quiet.expect_no("doctor.received.toggleMute")
        quiet.expect_no("patient.received.toggleMute")
        reply = await s.faults.esl_mute(patient)
        s.check(reply.strip().endswith(f"mute {member.id}"), f"ESL answered: {reply.strip()!r}")
        s.check(not member.can_speak, "the member's can_speak flag is off")
        s.check(patient.video.is_mute() == {"audio": False, "video": False}, "the patient's page thinks it is unmuted")
        await s.faults.esl_mute(patient, mute=False)
        s.check(member.can_speak, "unmuted over ESL")
