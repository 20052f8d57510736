"""The app-level call restore of spec 6.2 and 6.4 (bench.actors.backend.App(restore=True)), with and
without: after a server kick, after a page refresh, and not after the user's own hangup."""

from __future__ import annotations

import pytest
import trio

from bench.actors.backend import App, Backend
from emulator.net.network import VirtualNetwork
from tests.actorkit import (
    CONF,
    PATIENT,
    ROOM,
    callbacks,
    doctor_and_patient,
    in_call,
    journal_marks,
    members_of,
    stack_and_target,
)

STATES = [pytest.param(True, id="restore"), pytest.param(False, id="bare")]


def app_for(target, net, restore: bool) -> App:
    return App(Backend(net, target.cometql_host, target.cometql_port, dev_id=target.dev_id, name="app"),
               restore=restore)


@pytest.mark.parametrize("restore", STATES)
async def test_restore_after_a_kick(autojump_clock, restore):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        app = app_for(target, net, restore)
        async with doctor_and_patient(target, net, app=app) as (doctor, patient):
            await in_call(doctor, patient)
            (member,) = members_of(stack, PATIENT)
            stack.bridge.api(f"conference {CONF} kick {member.id}")
            await trio.sleep(10)
            assert callbacks(patient, "on_call_end")[0]["status"] == "terminated"
            if restore:
                # hangup() cleared the stale call (the doctor hears out), the re-INSERT rang, it was accepted
                assert len(callbacks(doctor, "on_out")) == 1
                assert len(callbacks(patient, "on_call")) == 2 and len(callbacks(patient, "on_call_start")) == 2
                (again,) = members_of(stack, PATIENT)
                assert again.id != member.id and again.media == "flowing"
                assert [r[3] for r in app.restores] == ["call end: terminated"]
                assert len(patient.joins) == 2 and patient.joins[1].restoring
                assert patient.stages()["join_total"] > 0
                assert [m["mark"] for m in journal_marks(stack, "patient")].count("call_start") == 2
            else:
                assert members_of(stack, PATIENT) == [] and patient.video.is_in_call()   # stuck
                assert callbacks(doctor, "on_out") == [] and app.restores == []


@pytest.mark.parametrize("restore", STATES)
async def test_restore_on_page_load(autojump_clock, restore):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        app = app_for(target, net, restore)
        async with doctor_and_patient(target, net, app=app) as (doctor, patient):
            await in_call(doctor, patient)
            await patient.refresh()
            await trio.sleep(10)
            patient_members = members_of(stack, PATIENT)
            if restore:
                assert [r[3] for r in app.restores] == ["page load"]
                assert len(patient_members) == 2   # the ghost of the old page and the new member
                assert sorted(m.media for m in patient_members) == ["dead", "flowing"]
                assert len(callbacks(patient, "on_call_start")) == 2   # one per page
            else:
                assert len(patient_members) == 1 and patient_members[0].media == "dead"
                assert patient.video.calls == {}


async def test_no_restore_after_the_users_own_hangup_or_another_device(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        app = app_for(target, net, True)
        async with doctor_and_patient(target, net, app=app) as (doctor, patient):
            await in_call(doctor, patient)
            patient.hangup()
            await trio.sleep(10)
            assert callbacks(patient, "on_call_end")[0]["status"] == "hangup"
            assert app.restores == [] and members_of(stack, PATIENT) == []
            assert not app.wants_restore_after("start_accept") and app.wants_restore_after("terminated")
            assert not App(app.backend).wants_restore_after("terminated")


async def test_leave_deletes_the_invitation_so_a_reload_does_not_rejoin(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        app = app_for(target, net, True)
        async with doctor_and_patient(target, net, app=app) as (doctor, patient):
            await in_call(doctor, patient)
            await patient.leave()
            assert app.rooms_of(PATIENT) == {}
            assert [r[1] for r in (await app.backend.invitations(ROOM)).rows] == [str(doctor.user_id)]
            await patient.refresh()
            await trio.sleep(10)
            assert app.restores == [] and members_of(stack, PATIENT) == []
