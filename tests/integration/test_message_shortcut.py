"""The comet WebSocket's message shortcut on the virtual network (emulator/comet/virtual_ws.py,
``MessageChannel``) carries the same frames as the byte path.

Two virtual browsers of the same user are connected side by side, one over messages and one over
frames on bytes; everything the server sends them (publishes, the quirk-truncated short frames, pipe
messages from each other, the answer frames, a frame too long to send) and everything the journal
records of what they send must be the same, and both must see a server-side close the same way.  A
whole call over each path gives both participants the same callbacks and the same stages."""

from __future__ import annotations

import re

import trio
import trio.testing

from bench.clients.comet import open_comet_client
from emulator.ids import deterministic_scheduling
from emulator.net.network import VirtualNetwork
from tests.actorkit import doctor_and_patient, in_call, stack_and_target

DEV, USER, KEY = 15, 7, "secret-key"


async def test_the_same_frames_arrive_over_messages_and_over_bytes(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        stack.hub.set_hash(DEV, USER, KEY)
        async with open_comet_client(net, target.node, dev_id=DEV, user_id=USER, user_key=KEY, start_delay=0,
                                     nostat=True, start=False, name="messages") as fast, \
                open_comet_client(net, target.node, dev_id=DEV, user_id=USER, user_key=KEY, start_delay=0,
                                  nostat=True, start=False, name="bytes") as slow:
            slow.message_shortcut = False
            for client in (fast, slow):
                client.start()
                assert await client.wait_server_info() is True
            assert fast.transport == "messages"
            assert slow.transport == "frames"         # frames on bytes
            for client, pipe in ((fast, "web_from_bytes"), (slow, "web_from_messages")):
                client.subscription("web_room")
                client.subscription(pipe)
            while len(stack.hub.users_in_pipe(DEV, "web_room")) < 2:
                await trio.sleep(0.01)
            payloads = ['{"text":"hi"}', "plain ünïcödé ✓", "x" * 80, '{"q":"it\'s \\"quoted\\""}', "y" * 20_000]
            for payload in payloads:
                stack.hub.publish(DEV, "web_room", "said", payload)
            stack.hub.publish(DEV, "web_room", "huge", "z" * 70_000)            # over 65535 bytes: not sent
            fast.web_pipe_send("web_from_messages", "note", {"from": "messages", "text": "ü" * 10})
            await trio.sleep(0.5)
            slow.web_pipe_send("web_from_bytes", "note", {"from": "bytes", "text": "ü" * 10})
            await trio.sleep(1)

            def texts(client) -> list[str]:
                return [text for _, text in client.received]

            assert len(texts(fast)) >= len(payloads) + 3

            def neutral(text: str) -> str:   # the two notes differ only in who sent them
                return re.sub(r"bytes|messages", "X", text)

            # what each received: the server info, every publish (quirks included) in the same order, and
            # the other's note and the answer to its own note (their order depends on who sent first)
            assert sorted(neutral(t) for t in texts(fast)) == sorted(neutral(t) for t in texts(slow))
            room = [t for t in texts(fast) if '"pipe":"web_room"' in t]
            assert room == [t for t in texts(slow) if '"pipe":"web_room"' in t] and len(room) == len(payloads)
            assert any("\x00" in t for t in texts(fast)) == any("\x00" in t for t in texts(slow))
            assert all("zzzz" not in t for t in texts(fast) + texts(slow))
            dropped = stack.journal.entries(service="comet", kind="frame_dropped")
            assert len(dropped) == 2
            # the journal's records of each connection: the same frames in and out
            by_conn: dict[int, list[tuple[str, str]]] = {}
            for e in stack.journal.entries(service="comet", kind="frame"):
                by_conn.setdefault(e["conn_id"], []).append((e["direction"], e["data"]))
            conns = sorted(by_conn)
            assert len(conns) == 2

            def normalized(records):
                return [(d, neutral(text)) for d, text in records]

            assert sorted(normalized(by_conn[conns[0]])) == sorted(normalized(by_conn[conns[1]]))
            assert [r for r in normalized(by_conn[conns[0]]) if "web_room" in r[1]] == \
                   [r for r in normalized(by_conn[conns[1]]) if "web_room" in r[1]]
            # a server-side close reaches both the same way: no Close frame, 1006, a reconnect after 1 s
            assert stack.hub.kick_user(DEV, USER, "kicked") == 2
            for client in (fast, slow):
                await client.wait_for(lambda c=client: len(c.closes) >= 1)
            assert [(c.was_clean, c.code, c.reconnect_in_ms) for c in fast.closes] == \
                   [(c.was_clean, c.code, c.reconnect_in_ms) for c in slow.closes] == [(False, 1006, 1000)]


def _whole_call(shortcut: bool, **link: float) -> dict:
    async def call() -> dict:
        net = VirtualNetwork()
        async with stack_and_target(net) as (stack, target):
            stack.links.message_shortcut = shortcut
            stack.links.set("4g", client="patient")
            if link:
                stack.links.update(client="patient", **link)
            async with doctor_and_patient(target, net) as (doctor, patient):
                await in_call(doctor, patient)
                await trio.sleep(30)
                patient.hangup()
                await doctor.video.wait_callback("on_out")
                used = doctor.comet.transport == "messages"
                return {"used": used,
                        "callbacks": {p.actor: [cb for page in p.pages for _, cb, _ in page.video.callbacks]
                                      for p in (doctor, patient)},
                        "stages": {p.actor: p.stages() for p in (doctor, patient)},
                        "sent": {p.actor: [(t, _kind(frame)) for t, frame in p.comet.sent] for p in (doctor, patient)},
                        "rooms": [c for c in stack.bridge.conferences]}

    with deterministic_scheduling(1):
        return trio.run(call, clock=trio.testing.MockClock(autojump_threshold=0))


def _kind(frame: str) -> str:
    """The command of a frame a page sent, with the event for web_pipe2 (ping, pong, mediaStart ...)."""
    lines = frame.split("\n")
    return f"web_pipe2 {lines[2]}" if lines[0] == "web_pipe2" and len(lines) > 2 else lines[0]


def test_a_whole_call_goes_the_same_way_over_both_paths():
    messages, frames = _whole_call(True), _whole_call(False)
    assert messages["used"] is True and frames["used"] is False
    assert messages["callbacks"] == frames["callbacks"]
    assert messages["rooms"] == frames["rooms"]
    for actor in ("doctor", "patient"):
        fast, slow = messages["stages"][actor], frames["stages"][actor]
        assert fast.keys() == slow.keys()
        # each message is timed like its frame: the stages agree to the jitter of the link
        for stage in fast:
            assert abs(fast[stage] - slow[stage]) <= max(100.0, 0.1 * slow[stage]), (actor, stage)
    # The heartbeat's frame count is not compared on this link: its loss is drawn per write, and the
    # two paths write differently (a message per frame; bytes as the WebSocket layers hand them over),
    # so a stall of one retransmission timeout falls on different frames and the 1 s ping rhythm
    # shifts.  Without loss and jitter the two paths must send the same frames at the same moments:


def test_on_a_link_without_loss_or_jitter_both_paths_send_the_same_frames_at_the_same_moments():
    messages, frames = _whole_call(True, loss=0.0, jitter_ms=0.0), _whole_call(False, loss=0.0, jitter_ms=0.0)
    assert messages["callbacks"] == frames["callbacks"]
    for actor in ("doctor", "patient"):
        fast, slow = messages["sent"][actor], frames["sent"][actor]
        assert len(fast) > 100  # the call's heartbeat is in there
        assert [kind for _, kind in fast] == [kind for _, kind in slow], actor
        # a message is timed by the length of the frame it stands for: the same to a millisecond
        assert max(abs(a - b) for (a, _), (b, _) in zip(fast, slow)) < 0.001, actor


async def test_a_client_without_the_shortcut_uses_frames(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        stack.hub.set_hash(DEV, USER, KEY)
        async with open_comet_client(net, target.node, dev_id=DEV, user_id=USER, user_key=KEY, start_delay=0,
                                     nostat=True, start=False) as client:
            client.message_shortcut = False
            client.start()
            assert await client.wait_server_info() is True
            assert client.transport == "frames"
        stack.links.message_shortcut = False     # nor when the network does not offer it
        async with open_comet_client(net, target.node, dev_id=DEV, user_id=USER, user_key=KEY, start_delay=0,
                                     nostat=True) as client:
            assert await client.wait_server_info() is True
            assert client.transport == "frames"
