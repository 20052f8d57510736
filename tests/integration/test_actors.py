"""The actors (bench/actors) through whole calls against the emulator: a doctor and a patient in room
101 with the ``video`` profile, on the in-memory network under the autojump clock and on loopback
sockets in real time; marks for every observable stage, in order, in memory and in the journal."""

from __future__ import annotations

import math

import pytest
import trio

from bench.actors.participant import MARKS, STAGES, Target, open_participant, stage_values
from bench.clients.webrtc import DeviceTimings
from emulator.net.network import OSNetwork, VirtualNetwork
from tests.actorkit import (
    DEV,
    DOCTOR,
    PATIENT,
    ROOM,
    callbacks,
    doctor_and_patient,
    in_call,
    journal_marks,
    members_of,
    sent_events,
    stack_and_target,
    until,
)

# the order in which one side's marks must occur (a chain; `subscribed` and the backend's OK are
# checked separately because they race with the accept path)
CHAIN = ["backend_invite_start", "backend_insert_sent", "push_received", "on_call", "accept_call", "gum1",
         "accept_sent", "ua_created", "sip_connected", "registered", "gum2", "sip_invite_sent", "answered",
         "addstream", "media_self", "call_start", "video_attached", "first_remote_frame"]


def assert_chain(marks: dict[str, float]) -> None:
    missing = [m for m in CHAIN + ["subscribed", "backend_invite_ok", "media_flowing"] if m not in marks]
    assert not missing, missing
    times = [marks[m] for m in CHAIN]
    assert times == sorted(times), {m: marks[m] for m in CHAIN}
    assert marks["on_call"] <= marks["subscribed"] <= marks["gum1"]
    assert marks["backend_invite_start"] <= marks["backend_invite_ok"]
    assert marks["answered"] < marks["media_flowing"] <= marks["first_remote_frame"]
    assert marks["first_remote_frame"] == max(marks["video_attached"], marks["media_flowing"])


async def whole_call(network, *, max_join: float | None) -> None:
    """``max_join``: the bound on join_total in virtual time (None in real time: timing targets belong
    in benchmarks, not tests)."""
    async with stack_and_target(network) as (stack, target):
        async with doctor_and_patient(target, network) as (doctor, patient):
            assert doctor.display_name and doctor.display_name != patient.display_name
            await doctor.open_page()
            await patient.open_page()
            async with trio.open_nursery() as nursery:   # both click Join together
                nursery.start_soon(doctor.join, ROOM)
                nursery.start_soon(patient.join, ROOM)
            for side in (doctor, patient):
                await side.wait_mark("first_remote_frame")
                assert_chain(side.marks)
                stages = side.stages()
                assert set(STAGES) <= set(stages)
                assert stages["join_total"] > 0
                if max_join is not None:
                    assert stages["join_total"] < max_join * 1000 and stages["decision"] == 0
                assert stages["gum1"] >= 90 and stages["offer"] >= 145
                assert len(callbacks(side, "on_call_start")) == 1 and len(callbacks(side, "on_call")) == 1
            # each side saw the other's accept as its own caller: onCallAccept once
            assert len(callbacks(doctor, "on_call_accept")) == 1
            assert sorted(m.channel.caller_id_name for m in members_of(stack)) == [
                f"{DEV:06d}{DOCTOR}", f"{DEV:06d}{PATIENT}"]
            rows = await doctor.app.backend.members(ROOM)
            assert sorted(r[1] or "" for r in rows.rows) == [str(DOCTOR), str(PATIENT)]

            # the journal has both sides' marks with the documented fields
            marks = journal_marks(stack)
            for actor, side in (("doctor", doctor), ("patient", patient)):
                mine = [m for m in marks if m["actor"] == actor]
                assert {m["mark"] for m in mine} >= set(CHAIN)
                assert all(m["room"] == ROOM for m in mine if m["mark"] in CHAIN)
                assert side.current is not None
                call_key = side.current.call_key
                assert call_key and all(m["call"] == call_key for m in mine if m["mark"] in CHAIN[2:])
                assert all(set(m) >= {"actor", "room", "call", "mark", "t"} for m in mine)

            # the patient hangs up: the doctor gets onOut and stays; the patient's member leaves
            patient.hangup()
            await doctor.video.wait_callback("on_out", timeout=10)
            assert callbacks(patient, "on_call_end")[-1]["status"] == "hangup"
            await until(lambda: len(members_of(stack)) == 1)
            assert [m.channel.caller_id_name for m in members_of(stack)] == [f"{DEV:06d}{DOCTOR}"]
            assert doctor.video.is_in_call()
            await doctor.leave()
            await until(lambda: stack.bridge.conferences == {})
            assert (await doctor.app.backend.invitations(ROOM)).rows == [
                (ROOM, str(PATIENT), str(PATIENT), "{}", "video", "", f"127.0.0.1:{stack.ports['sip_ws']}")]


async def test_whole_call_virtual_network(autojump_clock):
    await whole_call(VirtualNetwork(), max_join=1.0)


@pytest.mark.slow
async def test_whole_call_loopback_real_time():
    await whole_call(OSNetwork(), max_join=None)


async def test_first_joiner_waits_for_the_second_and_existing_members_get_no_callback(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            # the doctor's onCallStart came with the patient's mediaStart self: after it
            assert doctor.marks["call_start"] >= patient.marks["media_self"]
            # the patient's came with the doctor's mediaStart answer
            answers = sent_events(doctor, "mediaStart")
            assert [a["status"] for a in answers] == ["self", "answer"]
            await patient.wait_mark("first_remote_frame")
            assert stage_values(patient.marks)["join_total"] < 1000


async def test_three_copies_of_every_callpipe_event_and_one_handled(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            await trio.sleep(3)
            frames = [t for t in patient.comet.sent_frames("web_pipe2") if "\naccept\n" in t]
            assert len(frames) == 3 and len(set(frames)) == 1
            # the doctor handled one accept (one onCallAccept) though three copies arrived
            assert len(callbacks(doctor, "on_call_accept")) == 1
            assert doctor.comet.duplicates >= 2


async def test_heartbeat_pings_after_a_second_of_silence_and_accepted_members_pong(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            await trio.sleep(5)
            before = (len(sent_events(doctor, "ping")), len(sent_events(patient, "pong")))
            await trio.sleep(10)
            pings = len(sent_events(doctor, "ping")) + len(sent_events(patient, "ping")) - before[0]
            pongs = len(sent_events(patient, "pong")) - before[1]
            assert 5 <= pings <= 25 and pongs >= 3


async def test_manual_accept_and_decision_delay(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net, doctor={"accept": "manual"},
                                      patient={"decision_delay": 4.0}) as (doctor, patient):
            await doctor.open_page()
            await patient.open_page()
            await doctor.join(ROOM)
            await doctor.wait_mark("on_call")
            await trio.sleep(10)
            assert "accept_call" not in doctor.marks and members_of(stack) == []
            assert doctor.accept() is True
            await patient.join(ROOM)
            await patient.wait_mark("first_remote_frame")
            assert patient.stages()["decision"] == pytest.approx(4000, abs=1)
            assert patient.stages()["system"] == pytest.approx(patient.stages()["join_total"] - 4000, abs=1)


async def test_refresh_drops_every_connection_and_the_new_page_waits_for_the_tab_election(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            old = patient.page
            t0 = trio.current_time()
            await patient.refresh()
            assert old is not patient.page and patient.page.number == 2
            assert patient.page.comet.attempts[0].time - t0 == pytest.approx(1.2)
            assert not patient.video.calls and patient.video.active is None
            await trio.sleep(1)
            # no BYE: the patient's member is a ghost (faithful profile); the doctor got no callback
            assert len(members_of(stack, PATIENT)) == 1 and members_of(stack, PATIENT)[0].media == "dead"
            assert callbacks(doctor, "on_out") == []
            # a re-join: new callKey, same callPipe, a second member while the ghost lasts
            first_key = patient.joins[0].call_key
            await patient.join(ROOM)
            await patient.wait_call_start()
            assert patient.current.call_key != first_key
            assert len(members_of(stack, PATIENT)) == 2
            assert len(callbacks(doctor, "on_call_start")) == 1   # existing members: no callback


async def test_close_tab_and_offline_hooks(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            patient.go_offline()
            assert patient.comet.online is False
            patient.go_online()
            patient.close_tab()
            assert patient.page is None
            await trio.sleep(1)
            assert stack.sip.registrations(f"{DEV:06d}{PATIENT}@127.0.0.1") == []
            assert {m["mark"] for m in journal_marks(stack, "patient")} >= {"offline", "online", "tab_closed"}


async def test_same_user_other_device_accepts_and_this_one_ends_silently(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with open_participant(target, net, user_id=PATIENT, actor="phone", seed=1) as phone, \
                open_participant(target, net, user_id=PATIENT, actor="laptop", seed=2, accept="manual") as laptop:
            await phone.open_page()
            await laptop.open_page()
            await laptop.app.authorize(PATIENT)   # same hash as the phone's
            await phone.join(ROOM)
            await phone.wait_mark("accept_sent")
            await laptop.video.wait_callback("on_call_end")
            (end,) = callbacks(laptop, "on_call_end")
            assert end["status"] == "start_accept" and math.isnan(end["fullTime"])
            assert sent_events(laptop, "out") == []     # silent: no out
            await phone.wait_mark("media_self")


async def test_busy_sends_out_busy_and_stops_the_heartbeat(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net, patient={"accept": "manual"}) as (doctor, patient):
            await doctor.open_page()
            await patient.open_page()
            await patient.join(ROOM)
            await patient.wait_mark("on_call")
            assert patient.video.busy() is True
            await trio.sleep(3)
            (out,) = sent_events(patient, "out")
            assert out["status"] == "busy" and out["callKey"] == patient.current.call_key
            pings = len(sent_events(patient, "ping"))
            await trio.sleep(10)
            assert len(sent_events(patient, "ping")) == pings


async def test_mute_sends_toggle_mute_and_stays_local_for_freeswitch(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        # like the page of real-video-client.md 3.2: both names defined, the real client calls toggleMute
        both = {"toggle_mute": lambda a: None, "on_toggle_mute": lambda a: None}
        async with doctor_and_patient(target, net, doctor={"callbacks": both}) as (doctor, patient):
            await in_call(doctor, patient)
            assert patient.mute_audio(True) is True
            assert patient.video.is_mute() == {"audio": True, "video": False}
            await trio.sleep(0.5)
            (arg,) = callbacks(doctor, "toggle_mute")
            assert arg["isMute"] is True and arg["user_id"] == PATIENT
            assert callbacks(doctor, "on_toggle_mute") == []
            assert all(m.can_speak for m in members_of(stack))   # FreeSWITCH never learns of it


async def test_no_media_stream_and_audio_calls(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net, doctor={"timings": DeviceTimings(deny_media=True)},
                                      patient={"call_type": "audio"}) as (doctor, patient):
            await doctor.open_page()
            await patient.open_page()
            await doctor.join(ROOM)
            await doctor.video.wait_callback("on_call_end")
            assert callbacks(doctor, "on_call_end")[0]["status"] == "no-media-stream"
            assert [o["status"] for o in sent_events(doctor, "out")] == ["hangup"]
            await patient.join(ROOM, profile="audio")
            await patient.wait_mark("answered")
            await trio.sleep(1)
            (member,) = members_of(stack)
            assert member.conference.name == f"{DEV}*{ROOM}-FSdefaultDomain" and member.channel.has_video is False


async def test_marks_vocabulary_is_documented():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "stages.md").read_text()
    for mark in MARKS:
        assert f"`{mark}`" in doc, mark
    for stage in STAGES:
        assert f"`{stage}`" in doc, stage


def test_target_needs_no_stack():
    target = Target("comet.example", 8087, "comet.example", 3307, 15)
    assert target.node == "comet.example:8087" and target.bridge is None


async def test_same_seed_same_actor_timeline(autojump_clock):
    """Two runs with one seed under the MockClock: the same marks at the same (relative) virtual
    times, the same display names, the same first SIP messages."""

    async def run(seed: int) -> tuple:
        net = VirtualNetwork()
        async with stack_and_target(net, seed=3) as (stack, target):
            async with doctor_and_patient(target, net, seed=seed) as (doctor, patient):
                t0 = trio.current_time()
                await in_call(doctor, patient)
                await patient.wait_mark("first_remote_frame")
                await doctor.wait_mark("first_remote_frame")
                phones = [p.video.phone for p in (doctor, patient)]
                assert all(phone is not None for phone in phones)
                return tuple((p.display_name, {k: round(v - t0, 9) for k, v in p.marks.items()},
                              phone.ua.sent[0].encode(), phone.ua.sent[2].body)
                             for p, phone in zip((doctor, patient), phones) if phone is not None)

    first, second, other = await run(11), await run(11), await run(12)
    assert first == second
    assert other[0][0] != first[0][0] and other[0][2] != first[0][2]


async def test_registration_failure_ends_the_call_with_out(autojump_clock):
    """The app re-authorised the user with another hash after the page loaded: the page's SIP password
    (the serverInfo key) is stale, FreeSWITCH answers 403, the call ends as registration-failure."""
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await doctor.open_page()
            await patient.open_page()
            await doctor.join(ROOM)
            await doctor.wait_mark("media_self")
            await patient.app.authorize(PATIENT, "AnotherHash")
            await patient.join(ROOM)
            end = await patient.video.wait_callback("on_call_end")
            assert end["status"] == "registration-failure" and math.isnan(end["time"]) and end["fullTime"] > 0
            await doctor.video.wait_callback("on_out")
            assert [o["status"] for o in sent_events(patient, "out")] == ["hangup"]
            assert members_of(stack, PATIENT) == [] and "registered" not in patient.marks


async def test_hangup_before_the_answer_sends_cancel(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net, sip_answer_delay=5.0) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await patient.open_page()
            await patient.join(ROOM)
            t_accept = await patient.wait_mark("accept_call")
            await patient.wait_mark("sip_invite_sent")
            await trio.sleep(1)
            patient.hangup()
            end = await patient.video.wait_callback("on_call_end")
            assert end["status"] == "hangup" and math.isnan(end["time"])
            assert end["fullTime"] == pytest.approx((trio.current_time() - t_accept) * 1000, abs=1)
            await trio.sleep(6)
            ua = patient.video.phone.ua
            assert [m.method for m in ua.sent if hasattr(m, "method")][-2:] == ["CANCEL", "ACK"]
            assert [m.status for m in ua.received if getattr(m, "status", 0) >= 200][-2:] == [200, 487]
            assert members_of(stack) == [] and stack.sip.snapshot()["dialogs"] == 0


async def test_call_end_time_counts_from_call_start(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            await trio.sleep(42)
            patient.hangup()
            end = await patient.video.wait_callback("on_call_end")
            start = patient.marks["call_start"]
            assert end["time"] == pytest.approx((trio.current_time() - start) * 1000, abs=1)
            assert end["fullTime"] > end["time"]


async def test_a_reinsert_during_the_call_takes_the_already_in_this_conference_branch(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            await patient.join(ROOM)
            await trio.sleep(3)
            assert len(callbacks(patient, "on_call")) == 1
            accepts = sent_events(patient, "accept")
            assert [("type" in a, a["status"]) for a in accepts] == [(True, "start_accept"), (False, "start_accept")]
            assert len(members_of(stack, PATIENT)) == 1 and patient.video.is_in_call()
            # the doctor sees a second accept from the patient but onCallAccept fires once per call
            assert len(callbacks(doctor, "on_call_accept")) == 1


async def test_app_request_rtt_is_part_of_the_backend_invite(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net, patient={"app_request_rtt": 0.2}) as (doctor, patient):
            await patient.open_page()
            await patient.join(ROOM)
            marks = patient.marks
            assert marks["backend_insert_sent"] - marks["backend_invite_start"] == pytest.approx(0.1)
            assert patient.stages()["backend_invite"] == pytest.approx(200, abs=1)
            assert any(e["conn_id"] is not None for e in stack.journal.entries(service="cometql", kind="connect"))
    with pytest.raises(ValueError, match="app_request_rtt"):
        async with open_participant(target, net, user_id=1, app_request_rtt=-1):
            pass


async def test_without_a_bridge_the_first_frame_falls_back_to_the_attach(autojump_clock):
    """An external target: media cannot be observed, so first_remote_frame = video_attached and the
    mark says so."""
    import dataclasses

    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        external = dataclasses.replace(target, bridge=None)
        async with doctor_and_patient(external, net) as (doctor, patient):
            await in_call(doctor, patient)
            await patient.wait_mark("first_remote_frame")
            assert "media_flowing" not in patient.marks
            assert patient.marks["first_remote_frame"] == patient.marks["video_attached"]
            (frame,) = [m for m in journal_marks(stack, "patient") if m["mark"] == "first_remote_frame"]
            assert frame["media"] == "unobserved"
            assert "media" not in patient.stages() and "join_total" in patient.stages()


async def test_media_reported_before_the_page_has_the_answer_is_marked_with_the_answer(autojump_clock):
    """On a busy machine the media model (which counts from FreeSWITCH's answer) may report a member's
    media before the page has handled the 200 OK; it is kept and marked when the answer arrives."""
    from types import SimpleNamespace

    net = VirtualNetwork()
    async with stack_and_target(net, sip_answer_delay=1.0) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await doctor.open_page()
            await doctor.join(ROOM)
            await doctor.wait_mark("sip_invite_sent")
            number = str(doctor.video.active.sys.get("sipNumber"))
            early = SimpleNamespace(id=99, channel=SimpleNamespace(caller_id_name=doctor.sip_user,
                                                                   destination_number=number))
            doctor.on_media(early, True)
            assert "media_flowing" not in doctor.marks
            answered = await doctor.wait_mark("answered")
            assert doctor.marks["media_flowing"] == answered
            (mark,) = [m for m in journal_marks(stack, "doctor") if m["mark"] == "media_flowing"]
            assert mark["member"] == 99 and mark["early"] is True
