"""The emulator against a third-party WebSocket client: node + the ``ws`` package.

``comet_ws_client.mjs`` sends exactly what CometServerApi.js 4.08 sends (URL form and command
strings of comet-ws-protocol.md 1.1 and 3).  The emulator runs in-process over OS sockets on
127.0.0.1.  Frames are compared with the exact bytes of reference-observations.md section 4
(``message_send_time`` values aside), including the NUL-terminated ``pipe_count`` frame.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path

import jwt
import pytest
import trio

from tests.compat.conftest import JsonLinesProcess

pytestmark = pytest.mark.compat

SCRIPT = Path(__file__).with_name("comet_ws_client.mjs")
DEV = 1
TIMEOUT = 10

UUID_A = "uuidA000000000000000000000000501"
UUID_B = "uuidB000000000000000000000000502"

# reference-observations.md section 4: (frame header length, exact payload).  ``\x00`` is the NUL.
REF = {
    "si_valid": (0x9b, r'{"authorized":true,"data":"validkey501","event":"serverInfo","message_send_time":1795725076,"pipe":"sys","server":"CppComet community 4.09 (AGPL license)"}'),
    "si_invalid": (0x91, r'{"authorized":false,"data":"","event":"serverInfo","message_send_time":1795725078,"pipe":"sys","server":"CppComet community 4.09 (AGPL license)"}'),
    "si_jwt": (0xb0, r'{"authorized":true,"data":"573184740e9d8011f10b516002fc0000","event":"serverInfo","message_send_time":1795725081,"pipe":"sys","server":"CppComet community 4.09 (AGPL license)"}'),
    "track_sub": (0x8a, r'{"data":{"user_id":0,"uuid":"uuidB000000000000000000000000502"},"event":"subscription","message_send_time":1795725085,"pipe":"track_ref5"}'),
    "hello": (0x4e, r'{"data":"hello","event":"ev","message_send_time":1795725087,"pipe":"web_test"}'),
    "ref_pipe": (0x5f, r'{"data":"{\"k\":\"v\",\"n\":1}","event":"ev2","message_send_time":1795725087,"pipe":"ref_pipe"}'),
    "answer_b": (0x89, r'{"data":{"message":"\\\"hi from B\\\"","number_messages":0},"event":"answer","message_send_time":1795725089,"pipe":"_answer_to_web_test"}'),
    "wev": (0x67, r'{"data":"\\\"hi from B\\\"","event":"wev","message_send_time":1795725089,"pipe":"web_test","user_id":0}'),
    "uev": (0x37, r'{"data":"user message text","event":"uev","pipe":"msg"}'),
    "track_users": (0xf1, r'{"_info":"answer for track_pipe_users","data":[{"user_id":0,"uuid":"uuidB000000000000000000000000502"},{"user_id":501,"uuid":"uuidA000000000000000000000000501"}],"event":"answer","marker":"M1","message_send_time":1795725091,"pipe":"_answer"}'),
    "pipe_count": (0x7b, r'{"data":["user_in_pipe",2],"event":"user_in_pipe","marker":"M2","message_send_time":1795725092,"pipe":"_answer_pipe_count"' + "\x00"),
    "user_data": (0x76, r'{"data":{"user_data":"","user_id":501},"event":"answer","marker":"M3","message_send_time":1795725093,"pipe":"_answer"}'),
    "track_unsub": (0x8c, r'{"data":{"user_id":0,"uuid":"uuidB000000000000000000000000502"},"event":"unsubscription","message_send_time":1795725094,"pipe":"track_ref5"}'),
}

TIME_RE = re.compile(r'"message_send_time":\d+')


def untimed(text: str) -> str:
    return TIME_RE.sub('"message_send_time":0', text)


def ref(name: str) -> str:
    return untimed(REF[name][1])


def test_reference_transcription_matches_the_recorded_lengths():
    """Guard for this file: every payload above has the length its recorded frame header states."""
    for name, (length, text) in REF.items():
        assert len(text.encode()) == length, name


# --- a node client --------------------------------------------------------------------------------


class NodeClient(JsonLinesProcess):
    """One ``node comet_ws_client.mjs`` process: JSON commands in, JSON events out."""

    @property
    def messages(self) -> list[dict]:
        return [e for e in self.events if e["ev"] == "message"]

    @property
    def texts(self) -> list[str]:
        return [e["text"] for e in self.messages]

    async def wait_for(self, predicate, what: str, timeout: float = TIMEOUT) -> dict:
        return await super().wait_for(predicate, what, timeout)

    async def wait_messages(self, n: int, timeout: float = TIMEOUT) -> list[str]:
        await self.wait_for(lambda e: len(self.messages) >= n, f"{n} messages", timeout)
        return self.texts

    async def wait_event(self, ev: str, timeout: float = TIMEOUT) -> dict:
        return await self.wait_for(lambda e: e["ev"] == ev, f"event {ev!r}", timeout)

    async def start(self, port: int, *, user_key=None, user_id=None, dev_id=DEV, uuid=None,
                    node: str | None = None) -> dict:
        fields = {"node": node or f"127.0.0.1:{port}", "dev_id": dev_id}
        if user_key is not None:
            fields["user_key"] = user_key
        if user_id is not None:
            fields["user_id"] = user_id
        if uuid is not None:
            fields["uuid"] = uuid
        await self.do("start", **fields)
        await self.wait_event("open")
        await self.wait_messages(1)
        return json.loads(self.texts[0])


@asynccontextmanager
async def node_clients(node: str):
    """Spawn node clients on demand; every process is ended when the block exits."""
    clients: list[NodeClient] = []
    async with trio.open_nursery() as nursery:

        async def spawn(name: str) -> NodeClient:
            process = await trio.lowlevel.open_process(
                [node, str(SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                env={**os.environ, "COMET_CLIENT_DEADLINE_MS": "60000"})
            client = NodeClient(process, name)
            clients.append(client)
            nursery.start_soon(client.read)
            await client.wait_event("ready")
            return client

        try:
            yield spawn
        finally:
            with trio.CancelScope(shield=True):
                for c in clients:
                    try:
                        await c.do("exit")
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                with trio.move_on_after(5):
                    for c in clients:
                        await c.process.wait()
                for c in clients:
                    if c.process.returncode is None:
                        c.process.kill()
                        await c.process.wait()
            nursery.cancel_scope.cancel()




async def until(condition, what: str, timeout: float = TIMEOUT) -> None:
    with trio.move_on_after(timeout):
        while not condition():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out waiting for {what}")


def token(user_id, exp=9_983_311_200, secret="CometQLPassword1") -> str:
    return jwt.encode({"user_id": user_id, "exp": exp}, secret, algorithm="HS256")


# --- tests ----------------------------------------------------------------------------------------


async def test_upgrade_and_server_info_authorized_and_not(stack, node_ws):
    port = stack.ports["ws"]
    stack.hub.set_hash(DEV, 501, "validkey501")
    stack.hub.set_hash(DEV, 502, "rightkey502")
    async with node_clients(node_ws) as spawn:
        valid, wrong, anon, jwt_c, bad_jwt = [await spawn(n) for n in ("valid", "wrong", "anon", "jwt", "bad")]
        await valid.start(port, user_key="validkey501", user_id=501, uuid=UUID_A)
        await wrong.start(port, user_key="wrongkey", user_id=502, uuid=UUID_B)
        await anon.start(port)  # sesion=undefined&myid=undefined&devid=1: the anonymous visitor
        await jwt_c.start(port, user_key=token(777), user_id=777)
        await bad_jwt.start(port, user_key=token(777, secret="nope"), user_id=777)

        # the 101 response: exactly the real server's headers, no extension negotiated
        upgrade = await valid.wait_event("upgrade")
        assert upgrade["status"] == 101
        assert upgrade["headers"][0::2] == ["Upgrade", "Connection", "Sec-WebSocket-Accept",
                                            "Sec-WebSocket-Version"]
        assert upgrade["headers"][1::2][0:2] == ["websocket", "Upgrade"] and upgrade["headers"][7] == "13"
        assert (await valid.wait_event("open"))["extensions"] == ""
        url = (await anon.wait_event("url"))["url"]
        assert re.fullmatch(rf"ws://127\.0\.0\.1:{port}/ws/sesion=undefined&myid=undefined&devid=1&v=4\.08"
                            r"&uuid=[A-Za-z0-9_-]{32}&api=js", url)

        for client, name in ((valid, "si_valid"), (wrong, "si_invalid"), (anon, "si_invalid"),
                             (bad_jwt, "si_invalid")):
            m = client.messages[0]
            assert untimed(m["text"]) == ref(name), client.name
            assert m["len"] == REF[name][0] and m["binary"] is False
        jwt_frame = jwt_c.messages[0]
        minted = json.loads(jwt_frame["text"])["data"]
        assert re.fullmatch(r"[0-9a-f]{32}", minted)
        assert untimed(jwt_frame["text"]) == ref("si_jwt").replace("573184740e9d8011f10b516002fc0000", minted)
        assert jwt_frame["len"] == REF["si_jwt"][0]
        assert stack.hub.get_hash(DEV, 777) == minted
        assert {json.loads(c.texts[0])["authorized"] for c in (valid, jwt_c)} == {True}


async def test_reference_session_exact_frames(stack, node_ws):
    """The section-4 capture replayed with node clients: A (valid 501) and B (wrong key 502)."""
    port = stack.ports["ws"]
    hub = stack.hub
    hub.set_hash(DEV, 501, "validkey501")
    async with node_clients(node_ws) as spawn:
        a, b = await spawn("A"), await spawn("B")
        await a.start(port, user_key="validkey501", user_id=501, uuid=UUID_A)
        await b.start(port, user_key="wrongkey", user_id=502, uuid=UUID_B)

        await a.do("subscription", pipes=["web_test", "track_ref5", "ref_pipe"])
        await until(lambda: hub.pipe_users(DEV, "ref_pipe") == 1, "A subscribed")
        await b.do("subscription", pipes=["web_test", "track_ref5"])
        await a.wait_messages(2)
        await until(lambda: hub.pipe_users(DEV, "track_ref5") == 2, "B subscribed")

        assert hub.publish(DEV, "web_test", "ev", "hello") == 2
        assert hub.publish(DEV, "ref_pipe", "ev2", '{"k":"v","n":1}') == 1
        await a.wait_messages(4)
        await b.wait_messages(2)

        await b.do("web_pipe_send", pipe="web_test", event="wev", msg="hi from B")
        await b.wait_messages(3)
        await a.wait_messages(5)

        assert hub.send_to_user(DEV, 501, "uev", "user message text") is True
        await a.wait_messages(6)

        await a.do("getTrackPipeUsers", pipe="track_ref5", marker="M1")
        await a.wait_messages(7)
        await a.do("count_users_in_pipe", pipe="web_test", marker="M2")
        await a.wait_messages(8)
        await a.do("getUserData", user_id=501, marker="M3")
        await a.wait_messages(9)

        await b.do("close", code=1000)
        closed = await b.wait_event("close")
        await a.wait_messages(10)
        await trio.sleep(0.2)  # nothing else may arrive

        # B's Close frame is answered by a TCP close without a Close frame: ws reports 1006
        assert closed["code"] == 1006 and closed["wasClean"] is False
        await until(lambda: hub.pipe_users(DEV, "track_ref5") == 1, "B gone")

        expected_a = ["si_valid", "track_sub", "hello", "ref_pipe", "wev", "uev", "track_users", "pipe_count",
                      "user_data", "track_unsub"]
        expected_b = ["si_invalid", "hello", "answer_b"]
        assert len(a.messages) == len(expected_a), a.texts
        assert len(b.messages) == len(expected_b), b.texts
        for client, names in ((a, expected_a), (b, expected_b)):
            for msg, name in zip(client.messages, names):
                assert untimed(msg["text"]) == ref(name), (client.name, name)
                assert msg["len"] == REF[name][0], (client.name, name)
                assert msg["binary"] is False
        # the pipe_count frame really ends in a NUL byte (S10)
        assert base64.b64decode(a.messages[7]["b64"])[-1:] == b"\x00"


async def test_track_pipe_users_lists_newest_subscriber_first(stack, node_ws):
    port = stack.ports["ws"]
    stack.hub.set_hash(DEV, 501, "validkey501")
    async with node_clients(node_ws) as spawn:
        a, b = await spawn("A"), await spawn("B")
        await a.start(port, user_key="validkey501", user_id=501, uuid=UUID_A)
        await b.start(port, user_key="wrongkey", user_id=502, uuid=UUID_B)
        await a.do("subscription", pipes=["web_test", "track_ref5", "ref_pipe"])
        await until(lambda: stack.hub.pipe_users(DEV, "track_ref5") == 1, "A subscribed")
        await b.do("subscription", pipes=["web_test", "track_ref5"])
        await a.wait_messages(2)
        await a.do("getTrackPipeUsers", pipe="track_ref5", marker="M1")
        texts = await a.wait_messages(3)
        assert untimed(texts[2]) == ref("track_users")


async def test_track_events_between_two_node_clients(stack, node_ws):
    port = stack.ports["ws"]
    hub = stack.hub
    hub.set_hash(DEV, 7, "key7")
    async with node_clients(node_ws) as spawn:
        c1, c2 = await spawn("c1"), await spawn("c2")
        await c1.start(port, user_key="key7", user_id=7, uuid="1" * 32)
        await c2.start(port, uuid="2" * 32)  # anonymous
        await c1.do("subscription", pipes=["track_room"])
        await until(lambda: hub.pipe_users(DEV, "track_room") == 1, "c1 subscribed")
        await c2.do("subscription", pipes=["track_room"])
        texts = await c1.wait_messages(2)
        assert json.loads(texts[1])["data"] == {"user_id": 0, "uuid": "2" * 32}
        assert json.loads(texts[1])["event"] == "subscription"

        # re-sending the list (what 4.08 does on every subscription() call): unsubscription then subscription
        await c2.do("subscription", pipes=["track_room", "web_other"])
        texts = await c1.wait_messages(4)
        assert [json.loads(t)["event"] for t in texts[2:4]] == ["unsubscription", "subscription"]

        # both see each other in track_pipe_users; counts via pipe_count (lenient shape differs; 4.09 here)
        await c2.do("getTrackPipeUsers", pipe="track_room", marker="1234567890")
        texts2 = await c2.wait_messages(2)
        answer = json.loads(texts2[1])
        assert answer["pipe"] == "_answer" and answer["marker"] == "1234567890"
        assert sorted(answer["data"], key=lambda e: e["uuid"]) == [{"user_id": 7, "uuid": "1" * 32},
                                                                   {"user_id": 0, "uuid": "2" * 32}]
        # c1 never sees its own track events
        assert all(json.loads(t)["data"]["uuid"] == "2" * 32 for t in texts[1:])

        # c2 leaves with a Close frame: TCP closed, no Close frame back, c1 gets the unsubscription
        await c2.do("close", code=1000)
        closed = await c2.wait_event("close")
        assert closed["code"] == 1006 and not closed["wasClean"]
        texts = await c1.wait_messages(5)
        last = json.loads(texts[4])
        assert last["event"] == "unsubscription" and last["data"] == {"user_id": 0, "uuid": "2" * 32}
        await until(lambda: len(hub.connections) == 1, "c2 forgotten")


async def test_comet_server_prefix_url_and_commands(stack, node_ws):
    """A node such as ``host:port/comet-server`` yields ``/comet-server/ws/...`` (1.1, 1.2)."""
    port = stack.ports["ws"]
    hub = stack.hub
    hub.set_hash(DEV, 9, "key9")
    hub.set_user_data(DEV, 9, '{"rand":"7"}')
    hub.set_pipe_log_length(DEV, "web_logged", 10)
    async with node_clients(node_ws) as spawn:
        c, peer = await spawn("prefixed"), await spawn("peer")
        info = await c.start(port, user_key="key9", user_id=9, node=f"127.0.0.1:{port}/comet-server")
        url = (await c.wait_event("url"))["url"]
        assert url.startswith(f"ws://127.0.0.1:{port}/comet-server/ws/sesion=key9&myid=9&devid=1&v=4.08&uuid=")
        assert info["authorized"] is True and info["data"] == "key9"
        await peer.start(port)
        await peer.do("subscription", pipes=["web_logged"])
        await until(lambda: hub.pipe_users(DEV, "web_logged") == 1, "peer subscribed")

        # web_pipe2 with an object payload, then history, count, user data, statistics.  The payload
        # is chosen so that no frame is 123-125 bytes long (those are cut short by the 4.09 writer, S18)
        await c.do("web_pipe_send", pipe="web_logged", event="said", msg={"text": "hi there, world"})
        texts = await c.wait_messages(2)
        answer = json.loads(texts[1])
        assert answer["pipe"] == "_answer_to_web_logged" and answer["event"] == "answer"
        peer_texts = await peer.wait_messages(2)
        delivered = json.loads(peer_texts[1])
        assert delivered["pipe"] == "web_logged" and delivered["user_id"] == 9
        assert delivered["data"] == r'{\"text\":\"hi there, world\"}'  # MySQL-escaped (S11), 4.09 profile

        await c.do("get_pipe_log", pipe="web_logged", marker="5555555555")
        history = json.loads((await c.wait_messages(3))[2])
        assert history["fromQueue"] is True and history["data"] == '{"text":"hi there, world"}' and history["user_id"] == 9
        assert "marker" not in history

        await c.do("count_users_in_pipe", pipe="web_logged", marker="6666666666")
        count = json.loads((await c.wait_messages(4))[3])
        assert count["data"] == ["user_in_pipe", 1] and count["marker"] == "6666666666"

        await c.do("getUserData", user_id=9, marker="7777777777")
        data = json.loads((await c.wait_messages(5))[4])
        assert data["data"] == {"user_data": '{"rand":"7"}', "user_id": 9}

        await c.do("send", text='statistics\n{"url":"http://x/","dev_id":"1","version":"4.08"}')
        # a binary frame carrying a command is a command too (1.3)
        await c.do("send_binary", text="pipe_count\nweb_logged\n8888888888\n")
        count = json.loads((await c.wait_messages(6))[5])
        assert count["marker"] == "8888888888"
        assert not any(e["ev"] == "close" for e in c.events)


async def test_double_slash_and_malformed_url_forms(stack, node_ws):
    port = stack.ports["ws"]
    async with node_clients(node_ws) as spawn:
        ok, bad = await spawn("ok"), await spawn("bad")
        await ok.do("url", url=f"ws://127.0.0.1:{port}//comet-server/ws/sesion=x&myid=0&devid=1&v=4.08"
                                f"&uuid={'z' * 32}&api=js")
        texts = await ok.wait_messages(1)
        assert json.loads(texts[0])["event"] == "serverInfo"

        # a URL without the version: handshake completes, one 418 error frame, then an unclean close
        await bad.do("url", url=f"ws://127.0.0.1:{port}/ws/sesion=x&myid=1&devid=1")
        texts = await bad.wait_messages(1)
        frame = json.loads(texts[0])
        assert frame["pipe"] == "sys" and frame["event"] == "error"
        # sent before a version is known, so in the v<4 shape: data is JSON text (2.2, 4.4)
        data = json.loads(frame["data"]) if isinstance(frame["data"], str) else frame["data"]
        assert data["error_code"] == 418
        closed = await bad.wait_event("close")
        assert closed["code"] == 1006 and not closed["wasClean"]
