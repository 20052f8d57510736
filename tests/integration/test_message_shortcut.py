"""The comet WebSocket's message shortcut on the virtual network (emulator/comet/virtual_ws.py,
``MessageChannel``) carries the same frames as the byte path: a whole call with the shortcut on and
off gives every page the same frames at the same (virtual) times and the journal the same frame
records; it is used only where both ends are virtual browsers and the server."""

from __future__ import annotations

import trio

from bench.clients.comet import open_comet_client
from emulator.net.links import Link
from emulator.net.network import VirtualNetwork
from tests.actorkit import ROOM, doctor_and_patient, in_call, stack_and_target


async def one_call(shortcut: bool, link: Link | None) -> dict:
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        stack.links.message_shortcut = shortcut
        if link is not None:
            stack.links.set(link, client="patient")
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            await trio.sleep(20)                 # the heartbeat runs
            patient.hangup()
            await doctor.video.wait_callback("on_out")
            await trio.sleep(3)
            used = {side.actor: side.comet._channel is not None for side in (doctor, patient)}
            frames = {side.actor: [(round(t, 6), f) for t, f in side.comet.received] for side in (doctor, patient)}
            sent = {side.actor: [(round(t, 6), f) for t, f in side.comet.sent] for side in (doctor, patient)}
        records = [(e["direction"], e["user_id"], e["data"]) for e in stack.journal.entries(service="comet", kind="frame")]
        per_user = {}
        for direction, user, data in records:
            per_user.setdefault((direction, user), []).append(data)
        return {"used": used, "frames": frames, "sent": sent, "journal": per_user}


async def test_the_same_frames_arrive_over_messages_and_over_bytes(autojump_clock):
    messages = await one_call(True, None)
    frames = await one_call(False, None)
    assert messages["used"] == {"doctor": True, "patient": True}
    assert frames["used"] == {"doctor": False, "patient": False}
    assert len(messages["frames"]["patient"]) > 40
    assert messages["frames"] == frames["frames"]          # same texts, same virtual times, same order
    assert messages["sent"] == frames["sent"]
    assert messages["journal"] == frames["journal"]


async def test_the_same_frames_arrive_at_the_same_times_over_a_slow_link(autojump_clock):
    link = Link(rtt_ms=200)
    messages = await one_call(True, link)
    frames = await one_call(False, link)
    assert messages["frames"] == frames["frames"]
    assert messages["journal"] == frames["journal"]
    # the link's delay is there on both paths: the patient's frames are not instant
    first_sent = messages["sent"]["patient"][0][0]
    assert all(t >= first_sent for t, _ in messages["frames"]["patient"][1:])


async def test_a_client_without_the_shortcut_and_the_server_use_frames(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        stack.hub.set_hash(15, 7, "key")
        async with open_comet_client(net, target.node, dev_id=15, user_id=7, user_key="key", start_delay=0,
                                     nostat=True, start=False) as client:
            client.message_shortcut = False
            client.start()
            assert await client.wait_server_info() is True
            assert client._channel is None and client._ws is not None
