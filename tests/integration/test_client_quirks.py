"""Every client quirk (bench/clients/quirks.py) in both states, each with an assertion that shows the
difference, against the emulator on the in-memory network under the autojump clock."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest
import trio

from bench.clients.quirks import CLIENT_QUIRKS, ClientQuirks, client_quirks_table
from emulator.net.network import VirtualNetwork
from tests.actorkit import (
    CONF,
    DEV,
    PATIENT,
    ROOM,
    callbacks,
    doctor_and_patient,
    in_call,
    members_of,
    sent_events,
    stack_and_target,
)

STATES = [pytest.param(True, id="on"), pytest.param(False, id="off")]


def quirk(name: str, on: bool) -> dict:
    return {"quirks": ClientQuirks().with_quirks(**{name: on})}


@pytest.mark.parametrize("on", STATES)
async def test_stale_call_after_remote_end(autojump_clock, on):
    """A server kick ends the patient's call; a re-INSERT into the same room does not ring while the
    stale call is there (on), and rings and rejoins when the end also hung up (off)."""
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net, patient=quirk("stale_call_after_remote_end", on)
                                      ) as (doctor, patient):
            await in_call(doctor, patient)
            (member,) = members_of(stack, PATIENT)
            stack.bridge.api(f"conference {CONF} kick {member.id}")
            await patient.video.wait_callback("on_call_end")
            assert callbacks(patient, "on_call_end")[0]["status"] == "terminated"
            await trio.sleep(3)
            assert patient.video.is_in_call() is on
            assert len(callbacks(doctor, "on_out")) == (0 if on else 1)   # out only when it hung up
            await patient.join(ROOM)
            await trio.sleep(5)
            assert len(callbacks(patient, "on_call")) == (1 if on else 2)
            assert len(members_of(stack, PATIENT)) == (0 if on else 1)
            if on:
                assert [s["status"] for s in sent_events(patient, "accept")].count("start_accept") == 2
                assert "rejoin_ignored" in patient.video.calls[patient.video.active.pipe].marks
            else:
                assert len(callbacks(patient, "on_call_start")) == 2


@pytest.mark.parametrize("on", STATES)
async def test_rejoin_on_reregister(autojump_clock, on):
    """The patient's SIP WebSocket breaks mid-call: after the reconnect and the new registration the
    real client dials again (a duplicate member beside the ghost); fixed, it does not."""
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net, patient=quirk("rejoin_on_reregister", on)) as (doctor, patient):
            await in_call(doctor, patient)
            phone = patient.video.phone
            registered_before = [e.name for _, e in phone.events_log].count("registered")
            phone.drop_transport()
            await trio.sleep(40)
            names = [e.name for _, e in phone.events_log]
            assert names.count("registered") == registered_before + 1   # re-registered either way
            assert names.count("sending") == (2 if on else 1)            # INVITEs sent
            assert len(members_of(stack, PATIENT)) == (2 if on else 1)


@pytest.mark.parametrize("on", STATES)
async def test_toggle_mute_wrong_callback(autojump_clock, on):
    net = VirtualNetwork()
    seen: list[dict] = []
    async with stack_and_target(net) as (stack, target):
        doctor_kw = {"callbacks": {"on_toggle_mute": seen.append}, **quirk("toggle_mute_wrong_callback", on)}
        async with doctor_and_patient(target, net, doctor=doctor_kw) as (doctor, patient):
            await in_call(doctor, patient)
            patient.mute_video(True)
            await trio.sleep(3)
            if on:
                assert seen == []
                assert any("toggleMute is not a function" in text for _, _, text in doctor.video.console)
            else:
                assert [(s["isMute"], s["user_id"]) for s in seen] == [(True, PATIENT)]


@pytest.mark.parametrize("on", STATES)
async def test_no_in_event(autojump_clock, on):
    net = VirtualNetwork()
    seen: list[dict] = []
    async with stack_and_target(net) as (stack, target):
        doctor_kw = {"callbacks": {"on_in": seen.append}, **quirk("no_in_event", on)}
        async with doctor_and_patient(target, net, doctor=doctor_kw) as (doctor, patient):
            await in_call(doctor, patient)
            await trio.sleep(3)
            assert [s["user_id"] for s in seen] == ([] if on else [PATIENT])


@pytest.mark.parametrize("on", STATES)
async def test_unclamped_reconnect_backoff(autojump_clock, on):
    """The push names a SIP port where nothing listens: the UA retries with its back-off."""
    net = VirtualNetwork()
    async with stack_and_target(net, sip_public_port=9) as (stack, target):
        async with doctor_and_patient(target, net, patient=quirk("unclamped_reconnect_backoff", on)
                                      ) as (doctor, patient):
            await patient.open_page()
            await patient.join(ROOM)
            await patient.wait_mark("ua_created")
            phone = patient.video.phone
            await phone.wait_for(lambda: len(phone.ua.reconnect_delays) >= 8, timeout=3000)
            delays = phone.ua.reconnect_delays[:8]
            assert all(record.outcome.startswith("refused") for record in phone.connections)
            starts = [record.started for record in phone.connections]
            assert [round(b - a, 6) for a, b in itertools.pairwise(starts)] == delays[:len(starts) - 1]
            if on:
                assert all(1 <= d <= 2 ** n for n, d in enumerate(delays, 1)) and max(delays) > 30
            else:
                assert all(2 <= d <= 30 for d in delays) and max(delays) == 30
            assert callbacks(patient, "on_call_end") == []   # nothing ever tells the page


async def test_the_two_backoffs_draw_the_same_numbers(autojump_clock):
    """With one seed, the fixed client's delays are the real client's clamped to [2, 30]."""
    runs = {}
    for on in (True, False):
        net = VirtualNetwork()
        async with stack_and_target(net, sip_public_port=9) as (stack, target):
            async with doctor_and_patient(target, net, patient=quirk("unclamped_reconnect_backoff", on)
                                          ) as (_, patient):
                await patient.open_page()
                await patient.join(ROOM)
                await patient.wait_mark("ua_created")
                phone = patient.video.phone
                await phone.wait_for(lambda phone=phone: len(phone.ua.reconnect_delays) >= 6, timeout=3000)
                runs[on] = phone.ua.reconnect_delays[:6]
    assert runs[False] == [min(max(d, 2), 30) for d in runs[True]]


@pytest.mark.parametrize("on", STATES)
async def test_old_uas_never_stopped(autojump_clock, on):
    """Hang up, then a second call from the same page: the real client leaves the first UA
    registered (two bindings); fixed, the first one is stopped."""
    net = VirtualNetwork()
    aor = f"{DEV:06d}{PATIENT}@127.0.0.1"
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net, patient=quirk("old_uas_never_stopped", on)) as (doctor, patient):
            await in_call(doctor, patient)
            patient.hangup()
            await trio.sleep(2)
            assert len(stack.sip.registrations(aor)) == (1 if on else 0)
            await patient.join(ROOM)
            await patient.wait_call_start()
            await trio.sleep(1)
            assert len(patient.video.phones) == 2
            assert len(stack.sip.registrations(aor)) == (2 if on else 1)
            await trio.sleep(700)   # refreshes keep both registered
            assert len(stack.sip.registrations(aor)) == (2 if on else 1)


@pytest.mark.parametrize("on", STATES)
async def test_toggle_hold_never_resumes(autojump_clock, on):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net, patient=quirk("toggle_hold_never_resumes", on)) as (doctor, patient):
            await in_call(doctor, patient)
            await trio.sleep(1)   # JsSIP holds only a confirmed session (the ACK follows SRD)
            patient.hold()
            await trio.sleep(1)
            (member,) = members_of(stack, PATIENT)
            assert member.hold and patient.is_on_hold()
            patient.resume()
            await trio.sleep(1)
            assert member.hold is on and patient.is_on_hold() is on
            reinvites = [m for m in patient.video.phone.ua.sent if getattr(m, "method", "") == "INVITE" and m.to_tag]
            assert len(reinvites) == (1 if on else 2)
            assert sent_events(patient, "toggleHold") == []   # never signalled either way


@pytest.mark.parametrize("on", STATES)
async def test_second_out_after_auto_end(autojump_clock, on):
    """A profile the dialplan cannot route: the INVITE gets 404, the call ends itself (out #1);
    the user then clicks Hangup: the real client sends out again."""
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        async with doctor_and_patient(target, net, patient=quirk("second_out_after_auto_end", on)) as (doctor, patient):
            await patient.open_page()
            await patient.join(ROOM, profile="vid.eo")
            await patient.video.wait_callback("on_call_end")
            assert callbacks(patient, "on_call_end")[0]["status"] == "terminated"
            await trio.sleep(3)
            assert len(sent_events(patient, "out")) == 1
            patient.hangup()
            await trio.sleep(3)
            outs = sent_events(patient, "out")
            assert len(outs) == (2 if on else 1)
            assert len({o["callKey"] for o in outs}) == 1
            assert len(callbacks(patient, "on_call_end")) == 1   # never a second onCallEnd


def test_registry_defaults_and_errors():
    quirks = ClientQuirks()
    assert all(quirks.on(name) for name in CLIENT_QUIRKS)
    assert not any(ClientQuirks.fixed().on(name) for name in CLIENT_QUIRKS)
    assert quirks.with_quirks(no_in_event=False).on("no_in_event") is False
    with pytest.raises(KeyError, match="unknown client quirk"):
        quirks.with_quirks(no_such_quirk=True)
    with pytest.raises(KeyError):
        quirks.on("nope")
    table = client_quirks_table()
    for name, q in CLIENT_QUIRKS.items():
        assert name in table and q.spec.startswith("docs/client-quirks.md#")


def test_every_quirk_is_documented_and_tested_here():
    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "client-quirks.md").read_text()
    tree = ast.parse(Path(__file__).read_text())
    tests = {node.name for node in ast.walk(tree) if isinstance(node, ast.AsyncFunctionDef)}
    for name in CLIENT_QUIRKS:
        assert f"## `{name}`" in doc, name
        assert f"test_{name}" in tests, name
