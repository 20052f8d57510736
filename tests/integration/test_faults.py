"""Server faults (emulator/faults.py, ``stack.faults``): what each side sees when the comet server or
FreeSWITCH restarts, when CometQL is slow, when a member is kicked -- and that restarts leave no task
behind and bind the same ports."""

from __future__ import annotations

import pytest
import trio

from bench.clients.cometql import CometQLClient, CometQLConnectionError
from bench.clients.sip_ua import ICE_FAILED_AFTER
from emulator.faults import FaultError
from emulator.freeswitch.esl_client import EslClient, EslConnectionError
from emulator.net.network import VirtualNetwork
from tests.actorkit import (
    CONF,
    DEV,
    DOCTOR,
    PATIENT,
    ROOM,
    callbacks,
    doctor_and_patient,
    in_call,
    members_of,
    stack_and_target,
    until,
)


def task_count() -> int:
    def count(task) -> int:
        return 1 + sum(count(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

    return count(trio.lowlevel.current_root_task())


async def test_comet_restart_drops_every_connection_and_keeps_the_state(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            ports = dict(stack.ports)
            stack.hub.set_pipe_log_length(DEV, "web_history", 5)
            stack.hub.publish(DEV, "web_history", "said", "kept")
            kept = await CometQLClient.connect(net, "127.0.0.1", ports["cometql"], user=str(DEV),
                                               password="CometQLPassword", client="backend")
            comet = patient.comet
            opens = len(comet.opens)
            await stack.faults.restart_comet(downtime=2.0)
            assert stack.ports == ports and stack.services["ws"].running
            # the browser saw its socket close without a Close frame and reconnected with its back-off
            await comet.wait_for(lambda: len(comet.opens) > opens, timeout=30)
            close = comet.closes[-1]
            assert close.was_clean is False and close.code == 1006
            assert comet.server_infos[-1][1] is True         # users_auth survived: the same key logs in
            # the backend's open CometQL connection was dropped; a new one works
            with pytest.raises(CometQLConnectionError):
                await kept.query("SELECT * FROM users_auth WHERE id = 501")
            rows = await doctor.app.backend.invitations(ROOM)
            assert sorted(r[1] for r in rows.rows) == [str(DOCTOR), str(PATIENT)]   # conference rows kept
            assert [h["message"] for h in stack.store.history(DEV, "web_history")] == ["kept"]
            # the media never went through the comet server: the call goes on
            assert all(m.media == "flowing" for m in members_of(stack))
            assert doctor.video.is_in_call() and patient.video.is_in_call()
            journal = [e["data"] for e in stack.journal.entries(service="stack", kind="fault")]
            assert journal[0].startswith("restart_comet") and journal[1].startswith("comet_up")


async def test_freeswitch_restart_loses_everything_without_a_bye(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            await patient.wait_mark("first_remote_frame")
            esl = await EslClient.connect(net, "127.0.0.1", stack.ports["esl"], "ClueCon", client="ops")
            core_uuid = stack.bridge.core_uuid
            before = len(await doctor.app.backend.members(ROOM))
            assert before == 2
            phone = patient.video.phone
            connections = len(phone.connections)
            await stack.faults.restart_freeswitch()
            # the node forgot everything at once: no conference, no registration, a new Core-UUID
            assert stack.bridge.conferences == {} and stack.sip.registrations() == []
            assert stack.bridge.core_uuid != core_uuid
            # the browsers got no BYE: their sessions did not end by signalling
            assert not [e for _, e in phone.events_log if e.name == "ended"]
            # the ESL connection dropped
            with pytest.raises(EslConnectionError):
                await esl.api("status")
            # JsSIP's transport closed; it reconnects, registers again and (rejoin_on_reregister) dials again
            await phone.wait_for(lambda: len(phone.connections) > connections and phone.is_registered, timeout=60)
            await until(lambda: len(stack.bridge.members(CONF)) >= 1, timeout=60)
            assert min(m.id for m in stack.bridge.members(CONF)) == 1          # member ids start again at 1
            # the comet server's ESL link died with the old FreeSWITCH: conference_members stays empty
            assert (await doctor.app.backend.members(ROOM)).rows == []
            assert stack.journal.entries(service="conference", kind="xml_list_failed")
            # ICE of the old sessions fails: JsSIP ends them, onCallEnd(terminated), the stale call stays
            await patient.video.wait_callback("on_call_end", timeout=ICE_FAILED_AFTER + 5)
            assert callbacks(patient, "on_call_end")[-1]["status"] == "terminated"
            # until the comet server restarts and makes its link again
            await stack.faults.restart_comet()
            assert len((await doctor.app.backend.members(ROOM)).rows) >= 1


async def test_lenient_comet_makes_its_esl_link_again(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net, quirks={"comet_esl_link_not_restored": False}) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            await stack.faults.restart_freeswitch()
            await until(lambda: len(stack.bridge.members(CONF)) >= 1, timeout=60)
            assert len((await doctor.app.backend.members(ROOM)).rows) >= 1
            assert not stack.journal.entries(service="conference", kind="xml_list_failed")


async def test_slow_cometql_delays_every_query_until_cleared(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with await CometQLClient.connect(net, "127.0.0.1", stack.ports["cometql"], user=str(DEV),
                                               password="CometQLPassword") as client:
            start = trio.current_time()
            await client.query("SELECT * FROM users_auth WHERE id = 1")
            assert trio.current_time() == start
            stack.faults.slow_cometql(1.5)
            for _ in range(3):
                start = trio.current_time()
                await client.query("SELECT * FROM users_auth WHERE id = 1")
                assert trio.current_time() - start == pytest.approx(1.5)
            stack.faults.clear_slow_cometql()
            start = trio.current_time()
            await client.query("SELECT * FROM users_auth WHERE id = 1")
            assert trio.current_time() == start
        with pytest.raises(FaultError, match="delay must be"):
            stack.faults.slow_cometql(-1)


async def test_slow_cometql_shows_in_the_backend_invite_stage(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        stack.faults.slow_cometql(0.5)
        async with doctor_and_patient(target, net) as (doctor, patient):
            await doctor.open_page()
            await doctor.join(ROOM)
            # a fresh connection per request: the login needs no query, the INSERT waits once
            assert doctor.stages()["backend_invite"] == pytest.approx(500.0)


@pytest.mark.parametrize("via", ["esl", "api"])
async def test_kick_a_member(autojump_clock, via):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            victim = members_of(stack, PATIENT)[0]
            reply = await stack.faults.kick(ROOM, victim.id, dev_id=DEV, via=via)
            assert reply == f"OK kicked {victim.id}"
            assert [m.channel.caller_id_name for m in members_of(stack)] == [f"{DEV:06d}{DOCTOR}"]
            # the browser got FreeSWITCH's BYE: JsSIP ended the session, onCallEnd(terminated)
            await patient.video.wait_callback("on_call_end", timeout=10)
            ended = [e for _, e in patient.video.phone.events_log if e.name == "ended"]
            assert ended[-1].originator == "remote"
            assert callbacks(patient, "on_call_end")[-1]["status"] == "terminated"
            if via == "esl":
                commands = [e["data"] for e in stack.journal.entries(service="esl", kind="command")]
                assert any(f"kick {victim.id}" in c for c in commands)
        with pytest.raises(FaultError, match="via must be"):
            await stack.faults.kick(CONF, 1, via="carrier pigeon")


async def test_restarts_leave_no_task_behind_and_bind_the_same_ports(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        ports = dict(stack.ports)
        await trio.testing.wait_all_tasks_blocked()
        before = task_count()
        for _ in range(3):
            await stack.faults.restart_comet(downtime=1)
            await stack.faults.restart_freeswitch(downtime=1)
        await trio.testing.wait_all_tasks_blocked()
        assert task_count() == before
        assert stack.ports == ports
        assert {name: s.port for name, s in stack.services.items() if name in ports} == {
            name: port for name, port in ports.items() if name in stack.services}
        # the restarted services serve
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
