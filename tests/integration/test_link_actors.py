"""Link conditions under whole calls (virtual actors on the in-process stack, virtual time): a reset is
seen the way the real client sees it, media follows the participant's link and not the SIP socket
(docs/decisions.md, "Media follows the link"), and one profile moves every stage of a join."""

from __future__ import annotations

import pytest
import trio

from bench.clients.sip_ua import ICE_FAILED_AFTER
from emulator.net.network import VirtualNetwork
from tests.actorkit import ROOM, callbacks, doctor_and_patient, in_call, members_of, stack_and_target, until


async def test_a_reset_is_seen_as_the_real_client_sees_it(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            await trio.sleep(5)
            comet, phone = patient.comet, patient.video.phone
            opens, connections = len(comet.opens), len(phone.connections)
            member = members_of(stack, 502)[0]
            hit = stack.links.reset(client="patient")
            assert hit == 2                                   # the comet WebSocket and the SIP WebSocket
            # comet: onclose with wasClean false, code 1006, then a reconnect after T = 1 s
            await comet.wait_for(lambda: len(comet.opens) == opens + 1, timeout=10)
            close = comet.closes[-1]
            assert (close.was_clean, close.code, close.opened, close.reconnect_in_ms) == (False, 1006, True, 1000)
            assert comet.opens[-1] - close.time == pytest.approx(1.0, abs=0.01)
            assert comet.server_infos[-1][1] is True          # logged in again
            # JsSIP: the transport closed, it reconnects with its back-off and registers again
            await phone.wait_for(lambda: len(phone.connections) > connections and phone.is_registered, timeout=60)
            assert phone.connections[connections - 1].closed is not None
            # the media did not depend on the SIP socket: the old member still flows, and the re-REGISTER
            # dialled again (quirk rejoin_on_reregister): a second member beside it
            await until(lambda: len(members_of(stack, 502)) == 2, timeout=30)
            assert member.media == "flowing" and not member.signalling_lost
            assert doctor.video.is_in_call() and len(callbacks(doctor, "on_call_end")) == 0


async def test_a_short_media_partition_heals_and_the_call_goes_on(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            await patient.wait_mark("first_remote_frame")
            member = members_of(stack, 502)[0]
            assert member.media == "flowing"
            stack.links.partition(client="patient", protocol="media", duration=10)
            assert member.media == "dead"                      # no RTP reaches FreeSWITCH
            await trio.sleep(10.5)
            assert member.media == "flowing"                   # back before ICE gave up
            await trio.sleep(60)
            assert patient.video.is_in_call() and not callbacks(patient, "on_call_end")
            assert patient.video.phone.ice_failures == []
            assert members_of(stack, 502) == [member]


async def test_a_long_media_partition_fails_ice_and_jssip_ends_the_call(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            await patient.wait_mark("first_remote_frame")
            member = members_of(stack, 502)[0]
            start = trio.current_time()
            stack.links.partition(client="patient", protocol="media")
            await patient.video.wait_callback("on_call_end", timeout=ICE_FAILED_AFTER + 5)
            assert trio.current_time() - start == pytest.approx(ICE_FAILED_AFTER, abs=0.01)
            end = callbacks(patient, "on_call_end")[-1]
            assert end["status"] == "terminated"
            ended = [e for _, e in patient.video.phone.events_log if e.name == "ended"]
            assert ended[-1].cause == "RTP Timeout" and ended[-1].originator == "local"
            # the stale call of the real client (quirk stale_call_after_remote_end): still "in call"
            assert patient.video.is_in_call()
            # SIP still works, so the BYE reached FreeSWITCH: the member left
            await until(lambda: member.left, timeout=5)
            assert member.left_cause == "NORMAL_CLEARING"


async def test_sip_socket_reset_alone_keeps_the_media_page_refresh_stops_it(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net, rtp_timeout=300.0) as (stack, target):
        async with doctor_and_patient(target, net, patient={"quirks": None}) as (doctor, patient):
            await in_call(doctor, patient)
            await patient.wait_mark("first_remote_frame")
            member = members_of(stack, 502)[0]
            assert stack.links.reset(client="patient", protocol="sip") == 1
            await trio.sleep(1)
            assert member.media == "flowing" and not member.signalling_lost
            # a page refresh: every connection and the peer connection go; the member is a ghost
            refreshed = trio.current_time()
            await patient.refresh()
            await trio.sleep(1)
            assert member.media == "dead" and member.signalling_lost and not member.left
            await until(lambda: member.left, timeout=400)
            assert member.left_cause == "MEDIA_TIMEOUT"
            assert trio.current_time() - refreshed == pytest.approx(300.0, abs=2.0)


async def test_one_profile_moves_every_stage_together(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        stack.links.set("3g", client="patient")
        async with doctor_and_patient(target, net) as (doctor, patient):
            await doctor.open_page()
            await patient.open_page()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(doctor.join, ROOM)
                nursery.start_soon(patient.join, ROOM)
            await patient.wait_mark("first_remote_frame", timeout=60)
            await doctor.wait_mark("first_remote_frame", timeout=60)
            slow, fast = patient.stages(), doctor.stages()
            # the signalling stages pay 3g's 250 ms round trips ...
            for stage in ("sip_transport", "register", "call_setup"):
                assert slow[stage] >= 250 and fast[stage] < 5, stage
            # ... and the media model started the patient's member on the same 3g link
            assert slow["media"] > 4000 and fast["media"] < 1000
            assert 3000 <= slow["join_total"] <= 15000
            patient_member = members_of(stack, 502)[0]
            assert patient_member.channel.client == "patient"
