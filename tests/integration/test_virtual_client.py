"""The virtual CometServerApi.js 4.08 client (bench/clients/comet.py) against the emulator.

Most tests run over the in-memory network under ``MockClock(autojump_threshold=0)`` (the
``autojump_clock`` fixture), so the client's timers (1200 ms election, 20 ms queue spacing, 50 ms
debounce, 5 s statistics, reconnect back-off) are checked to the millisecond in virtual time.  One
test runs the happy path over real loopback sockets with the real clock.
"""

from __future__ import annotations

import json
import random
import re
import time
from contextlib import asynccontextmanager
from functools import partial

import jwt
import pytest
import trio
from trio_websocket import ConnectionClosed, wrap_server_stream

from bench.clients.comet import (
    UNDEFINED,
    CometClient,
    browser_request_target,
    decode_data,
    js_stringify,
    open_comet_client,
    stripslashes,
    trim_once,
)
from emulator.config import Config
from emulator.net.network import OSNetwork, VirtualNetwork
from emulator.stack import open_stack

DEV = 1
EPOCH = 1_795_725_847.0  # the Unix time of the S18 capture: message_send_time has 10 digits
FAITHFUL, LENIENT = "cppcomet-4.09", "lenient"


def config(profile: str = FAITHFUL, ws_port: int = 0) -> Config:
    cfg = Config(profile=profile)
    cfg.free_ports()
    cfg.ports["ws"] = ws_port
    return cfg


def node(stack) -> str:
    return f"127.0.0.1:{stack.ports['ws']}"


@asynccontextmanager
async def browser(network, target: str, seed: int, **options):
    """A started client; tests that check the 1200 ms election or statistics pass them explicitly."""
    options.setdefault("dev_id", DEV)
    options.setdefault("start_delay", 0)
    options.setdefault("nostat", True)
    async with open_comet_client(network, target, rng=random.Random(seed), name=f"browser{seed}",
                                 **options) as client:
        yield client


async def until(predicate, timeout: float = 5.0) -> None:
    """Wait for server-side state (the hub is synchronous; poll it)."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.001)


async def subscribed(stack, client: CometClient, pipe: str) -> None:
    """The client's subscription list has reached the hub (publishing earlier would race, as it does
    for a browser)."""
    await until(lambda: any(c.uuid == client.uuid for c in stack.hub.users_in_pipe(DEV, pipe)))


def token(user_id, *, exp=EPOCH + 3600, secret=f"CometQLPassword{DEV}", **claims) -> str:
    payload = {"user_id": user_id, **claims}
    if exp is not None:
        payload["exp"] = int(exp)
    return jwt.encode(payload, secret, algorithm="HS256")


# --- URL, options, timers ---------------------------------------------------------------------------------


async def test_url_is_raw_uuid_is_seeded_and_node_prefix_is_kept(autojump_clock):
    network = VirtualNetwork()
    async with open_stack(config(), network=network, epoch=EPOCH) as stack:
        stack.hub.set_hash(DEV, 5, "hash5")
        async with open_comet_client(network, "127.0.0.1:8087", start=False, rng=random.Random(3)) as anon, \
                open_comet_client(network, "127.0.0.1:8087", start=False, rng=random.Random(3)) as twin, \
                open_comet_client(network, "127.0.0.1:8087", start=False, rng=random.Random(4)) as other:
            assert re.fullmatch(r"[A-Za-z0-9_-]{32}", anon.uuid)
            assert anon.url == (f"ws://127.0.0.1:8087/ws/sesion=undefined&myid=undefined&devid=0&v=4.08"
                                f"&uuid={anon.uuid}&api=js")
            assert twin.uuid == anon.uuid and other.uuid != anon.uuid   # one seed, one timeline
            assert len(anon.custom_id) == 10

        prefixed = f"127.0.0.1:{stack.ports['ws']}/comet-server"
        async with browser(network, prefixed, 5, user_id=5, user_key="hash5", uuid="U" * 32) as client:
            assert await client.wait_server_info() is True
            assert client.attempts[0].url == (f"ws://{prefixed}/ws/sesion=hash5&myid=5&devid=1&v=4.08"
                                              f"&uuid={'U' * 32}&api=js")
            (conn,) = stack.hub.user_connections(DEV, 5)
            assert conn.uuid == "U" * 32 and conn.key == "hash5" and conn.major == 4
            assert conn.origin == "http://localhost" and "Mozilla/5.0" in conn.user_agent
            assert conn.language == "en-US,en;q=0.9"


def test_browser_request_target_keeps_usual_keys_raw():
    path = "/ws/sesion=eyJ.a-b_c.d+e/f=&myid=5&devid=1&v=4.08&uuid=abc&api=js"
    assert browser_request_target(path) == path
    assert browser_request_target("/ws/sesion=a b\\c&x=é") == "/ws/sesion=a%20b/c&x=%C3%A9"
    with pytest.raises(ValueError):
        browser_request_target("/ws/sesion=a#b")


async def test_election_delay_queue_spacing_debounce_and_statistics(autojump_clock):
    network = VirtualNetwork()
    async with open_stack(config(), network=network, epoch=EPOCH) as stack:
        async with browser(network, node(stack), 1, start_delay=1.2, nostat=False,
                           page_url="http://app.example/call") as c:
            t0 = trio.current_time()
            c.subscription("web_a")
            c.subscription("web_b")
            assert c.web_pipe_send("web_a", "e1", "one") is False   # queued: not master yet
            c.web_pipe_send("web_a", "e2", "two")
            await c.wait_connected()
            opened = c.opens[0]
            assert c.attempts[0].time - t0 == pytest.approx(1.2)
            await trio.sleep(0.1)
            frames = [(round((t - opened) * 1000), text) for t, text in c.sent]
            assert frames == [(0, "subscription\nweb_a\nweb_b"),
                              (30, 'web_pipe2\nweb_a\ne1\n*\n"one"'),
                              (50, 'web_pipe2\nweb_a\ne2\n*\n"two"')]

            # while connected: one full list, 50 ms after the last call
            c.subscription("web_c")
            await trio.sleep(0.02)
            last_call = trio.current_time()
            c.subscription("web_d")
            await trio.sleep(0.1)
            subs = [(t, text) for t, text in c.sent if text.startswith("subscription")]
            assert subs[-1] == (pytest.approx(last_call + 0.05), "subscription\nweb_a\nweb_b\nweb_c\nweb_d")
            assert len(subs) == 2

            # client-side rules (spec 3.1): local-only names, pipe.event, short names, duplicates
            assert c.subscription("msg") is not None and c.subscription("msg.call") is not None
            assert c.subscription("#web_a").signal == "_answer_to_web_a"
            assert c.subscription("answer_to_web_a") is not None
            assert c.subscription("x") is None
            assert c.subscription("web_e.said").signal == "web_e.said"
            c.subscription("web_a")
            await trio.sleep(0.1)
            assert c.subscription_array == ["web_a", "web_b", "web_c", "web_d", "web_e"]
            assert c.sent_frames("subscription")[-1] == "subscription\nweb_a\nweb_b\nweb_c\nweb_d\nweb_e"
            await trio.sleep(0.1)
            assert len(c.sent_frames("subscription")) == 3

            await until(lambda: c.sent_frames("statistics"))
            ((t_stat, stat),) = [(t, x) for t, x in c.sent if x.startswith("statistics")]
            assert t_stat - opened == pytest.approx(5.0)
            assert stat == 'statistics\n{"url":"http://app.example/call","dev_id":1,"version":"4.08"}'
            await trio.sleep(30)
            assert len(c.sent_frames("statistics")) == 1   # once per page lifetime
            assert sorted(stack.hub.pipe_names(DEV)) == ["web_a", "web_b", "web_c", "web_d", "web_e"]


# --- authentication ------------------------------------------------------------------------------------


async def test_auth_by_hash_anonymous_and_wrong_key(autojump_clock):
    network = VirtualNetwork()
    async with open_stack(config(), network=network, epoch=EPOCH) as stack:
        stack.hub.set_hash(DEV, 5, "valid00000userHash")
        fired: list[str] = []
        async with browser(network, node(stack), 1, user_id=5, user_key="valid00000userHash",
                           on_auth_success=lambda: fired.append("ok"),
                           on_auth_failure=lambda: fired.append("fail")) as good, \
                browser(network, node(stack), 2) as anon, \
                browser(network, node(stack), 3, user_id=6, user_key="wrong") as wrong:
            assert await good.wait_server_info() is True
            assert good.authorized is True and good.real_user_key == "valid00000userHash"
            assert await anon.wait_server_info() is False
            assert "sesion=undefined&myid=undefined&devid=1" in anon.attempts[0].url
            assert anon.real_user_key == "" and anon.authorized is False
            assert await wrong.wait_server_info() is False
            assert fired == ["ok"] and [s for _, s in good.auth_changes] == [True]
            assert [s for _, s in anon.auth_changes] == [False]
            # the first frame of every connection is serverInfo, exactly as the server wrote it
            first = json.loads(good.received[0][1])
            assert first["pipe"] == "sys" and first["event"] == "serverInfo" and first["authorized"] is True


async def test_jwt_login_and_revocation(autojump_clock):
    network = VirtualNetwork()
    async with open_stack(config(), network=network, epoch=EPOCH) as stack:
        good = token(7)
        async with browser(network, node(stack), 1, user_id=7, user_key=good) as a, \
                browser(network, node(stack), 2, user_id=8, user_key=token(8, secret="CometQLPassword2")) as b, \
                browser(network, node(stack), 3, user_id=9, user_key=token(9, exp=EPOCH - 1)) as c, \
                browser(network, node(stack), 4, user_id=10, user_key=token(10, exp=None)) as d, \
                browser(network, node(stack), 5, user_id=11, user_key=token("11")) as e:
            assert await a.wait_server_info() is True
            assert f"sesion={good}&myid=7&" in a.attempts[0].url
            assert len(a.real_user_key) == 32 and a.real_user_key == stack.hub.get_hash(DEV, 7)[:32]
            for other in (b, c, d, e):  # wrong secret, expired, no exp, user_id as a string
                assert await other.wait_server_info() is False

            a.subscription("web_room")
            await subscribed(stack, a, "web_room")
            assert stack.hub.revoke_token(DEV, good) == 7
            await a.wait_server_info(2)
            assert a.authorized is False and [s for _, s in a.auth_changes] == [True, False]
            assert a.closes[0].was_clean is False and a.closes[0].reconnect_in_ms == 1000
            assert a.attempts[1].time - a.closes[0].time == pytest.approx(1.0)
            assert a.attempts[1].url == a.attempts[0].url   # same (now revoked) token
            await subscribed(stack, a, "web_room")          # the list is sent again on reconnect


# --- messages --------------------------------------------------------------------------------------------


async def test_backend_publish_and_the_data_decoding_cascade(autojump_clock):
    network = VirtualNetwork()
    async with open_stack(config(), network=network, epoch=EPOCH) as stack:
        async with browser(network, node(stack), 1) as c:
            pipe = c.subscription("chat_room")
            special = c.subscription("chat_room.special")
            everything = c.subscription(lambda m: None)
            await subscribed(stack, c, "chat_room")
            assert c.sent_frames("subscription") == ["subscription\nchat_room"]
            cases = [('{"k":"v","n":1}', {"k": "v", "n": 1}), ("plain text", "plain text"), ("123", 123),
                     ("012", "012"), ('{\\"a\\":1}', {"a": 1}), ("[1,2]", [1, 2])]
            for text, _ in cases:
                assert stack.hub.publish(DEV, "chat_room", "ev", text) == 1
            stack.hub.publish(DEV, "chat_room", "special", "x")
            got = [await pipe.receive(timeout=1) for _ in range(len(cases) + 1)]
            assert [m.data for m in got[:-1]] == [want for _, want in cases]
            assert got[0].server_info == {"user_id": 0, "pipe": "chat_room", "event": "ev", "history": False,
                                          "marker": UNDEFINED, "uuid": UNDEFINED}
            assert [m.event for m in special.messages] == ["special"]
            assert len(everything.messages) == len(cases) + 1   # serverInfo is handled, not dispatched
            raw_times = [t for t, _ in c.received]
            assert raw_times == sorted(raw_times) and len(c.received) == len(cases) + 2  # + serverInfo


async def test_receive_path_quirks_fed_directly(autojump_clock):
    async with open_comet_client(VirtualNetwork(), "127.0.0.1:1", start=False, rng=random.Random(1)) as c:
        every = c.subscription(lambda m: None)
        marked = c.subscription("web_x")
        c.on_frame('  {"pipe":"web_x","event":"a","data":"1"}\n{"pipe":"web_x","event":"b","data":"2"}')
        c.on_frame("not json\n{\"pipe\":\"web_x\",\"event\":\"c\"}")                   # bad line, no data
        c.on_frame('{"pipe":"web_x","event":"d","data":"it\\\\\'s"}')                # \\' -> \' : invalid
        c.on_frame('{"pipe":"web_x","event":"e","data":"x","uuid":"u1"}')
        c.on_frame('{"pipe":"web_x","event":"e","data":"x","uuid":"u1"}')            # duplicate uuid
        c.on_frame('{"pipe":"web_x","event":"f","data":{"v":1,"_cometApi_uuid":"jsapiA"}}')
        c.on_frame('{"pipe":"web_x","event":"f","data":{"v":1,"_cometApi_uuid":"jsapiA"}}')
        c.on_frame('{"pipe":"web_x","event":"g","data":"A::42;hello"}')               # legacy sender prefix
        c.on_frame('{"pipe":"web_x","event":"h","data":"z","marker":"someone-else"}')
        c.on_frame('{"data":"q","event":"noPipe"}')
        assert [m.event for m in marked.messages] == ["a", "b", "e", "f", "g"]
        assert [m.event for m in every.messages] == ["a", "b", "e", "f", "g", "h", "noPipe"]
        assert marked.messages[3].data == {"v": 1} and c.duplicates == 2
        assert marked.messages[4].data == "hello" and marked.messages[4].user_id == 42
        assert c.unparseable == 2 and c.unparseable_lines[0] == "not json"
        assert c.error_count == 0 and c.reconnect_ms == 1000 and c.ever_received

        c.on_frame('{"authorized":"true","data":"key with space","event":"serverInfo","pipe":"sys"}')
        assert c.authorized is True and c.real_user_key == "key_with space"
        c.on_frame('{"error":401,"data":""}')
        assert c.fatal and c.on_close(False, 1006, True).reconnect_in_ms is None   # fatal: no reconnect


def test_sans_io_helpers_match_javascript():
    assert decode_data('{\\"a\\":\\"it\\\'s\\"}') == {"a": "it's"}
    assert decode_data("\\\\\\\"x\\\\\\\"") == "x"          # escaped twice: two rounds of stripslashes
    assert decode_data("C:\\\\dir") == "C:dir"                     # plain text loses its backslashes
    assert decode_data('"hi"') == "hi" and decode_data("true") is True and decode_data(" 5 ") == 5
    assert stripslashes("a\\\\b\\0c\\") == "a\\b\x00c"
    assert trim_once("  x  ") == "x  " and trim_once("x \n") == "x"
    assert js_stringify({"b": 1, "2": [1.0, 1e21, 1e-7, 0.5], "1": "é\u2028", "a": None}) == \
        '{"1":"é\u2028","2":[1,1e+21,1e-7,0.5],"b":1,"a":null}'


# --- web_pipe2 between browsers -----------------------------------------------------------------------


async def test_web_pipe_send_lenient_delivers_objects_and_dedups_repeats(autojump_clock):
    network = VirtualNetwork()
    async with open_stack(config(LENIENT), network=network, epoch=EPOCH) as stack:
        stack.hub.set_hash(DEV, 1, "h1")
        async with browser(network, node(stack), 1, user_id=1, user_key="h1") as a, \
                browser(network, node(stack), 2) as b:
            a.subscription("web_chat")
            reports = a.subscription("#web_chat")
            inbox = b.subscription("web_chat")
            await subscribed(stack, a, "web_chat")
            await subscribed(stack, b, "web_chat")

            assert a.web_pipe_send("web_chat", "said", {"text": "hi from user 1"}) is True
            assert a.sent_frames("web_pipe2")[-1] == 'web_pipe2\nweb_chat\nsaid\n*\n{"text":"hi from user 1"}'
            m = await inbox.receive(timeout=1)
            assert (m.data, m.user_id, m.event) == ({"text": "hi from user 1"}, 1, "said")
            report = await reports.receive(timeout=1)
            assert report.data == {"message": '{"text":"hi from user 1"}', "number_messages": 1}

            a.web_pipe_send("web_chat.quote", {"text": "it's"})            # the pipe.event form
            assert (await inbox.receive(timeout=1)).data == {"text": "it's"}
            assert a.web_pipe_send("chat", "said", 1) is None               # refused client-side
            assert not any("\nchat\n" in f for f in a.sent_frames("web_pipe2"))

            payload = {"status": "ping"}
            a.multi_web_pipe_send("web_chat", "ping", payload, count=3, interval=1.0)
            first = await inbox.receive(timeout=1)
            assert first.data == {"status": "ping"} and "_cometApi_uuid" not in first.data
            await trio.sleep(3)
            pings = [t for t, f in a.sent if "\nping\n" in f]
            assert [round(t - pings[0], 3) for t in pings] == [0, 1, 2]
            assert re.fullmatch(r"jsapi[A-Za-z0-9]{11}", payload["_cometApi_uuid"])
            assert b.duplicates == 2 and len([x for x in inbox.messages if x.event == "ping"]) == 1
            assert not [x for x in a.messages if x.pipe == "web_chat"]      # never echoed to the sender


async def test_web_pipe_send_faithful_reproduces_s11_and_s18(autojump_clock):
    network = VirtualNetwork()
    async with open_stack(config(FAITHFUL), network=network, epoch=EPOCH) as stack:
        stack.hub.set_hash(DEV, 1, "h1")
        async with browser(network, node(stack), 1, user_id=1, user_key="h1") as a, \
                browser(network, node(stack), 2) as b:
            reports = a.subscription("#web_chat")
            inbox = b.subscription("web_chat")
            await subscribed(stack, b, "web_chat")

            # S18: the object payload's frame is 124 bytes, cut at 122 and NUL-padded: b drops it
            a.web_pipe_send("web_chat", "said", {"text": "hi from user 1"})
            report = await reports.receive(timeout=1)
            assert report.data == {"message": '{\\"text\\":\\"hi from user 1\\"}', "number_messages": 0}
            await until(lambda: b.unparseable == 1)
            cut = b.received[-1][1]
            assert cut.endswith('"user_id":\x00\x00') and len(cut.encode()) == 124
            with pytest.raises(trio.TooSlowError):
                await inbox.receive(timeout=2)

            # S11: a string payload arrives backslash-escaped; the client's stripslashes recovers it
            a.web_pipe_send("web_chat", "said", "hi from user 1")
            m = await inbox.receive(timeout=1)
            assert m.data == "hi from user 1" and m.raw["data"] == '\\"hi from user 1\\"' and m.user_id == 1

            # a longer object payload takes the long-frame path and is recovered as an object
            a.web_pipe_send("web_chat", "said", {"text": "hello from user one, a little longer"})
            assert (await inbox.receive(timeout=1)).data == {"text": "hello from user one, a little longer"}

            # an apostrophe: \\' in the frame becomes \' after the client's replace -> JSON.parse fails
            a.web_pipe_send("web_chat", "said", {"text": "it's a message long enough for the long path"})
            await until(lambda: b.unparseable == 2)
            with pytest.raises(trio.TooSlowError):
                await inbox.receive(timeout=2)


# --- personal messages, presence, requests with a marker -----------------------------------------------


@pytest.mark.parametrize("profile,delivered", [(FAITHFUL, 10), (LENIENT, 12)])
async def test_personal_messages_queued_then_live(profile, delivered, autojump_clock):
    network = VirtualNetwork()
    async with open_stack(config(profile), network=network, epoch=EPOCH) as stack:
        stack.hub.set_hash(DEV, 3, "h3")
        for i in range(12):
            assert stack.hub.send_to_user(DEV, 3, "note", json.dumps({"i": i})) is False  # queued
        async with browser(network, node(stack), 3, user_id=3, user_key="h3", start_delay=1.2) as c:
            notes = c.subscription("msg.note")
            every_personal = c.subscription("msg")
            await c.wait_server_info()
            await trio.sleep(0.1)
            assert [m.data for m in notes.messages] == [{"i": i} for i in range(delivered)]
            assert all(m.raw["fromQueue"] is True and m.pipe == "msg" for m in notes.messages)
            assert c.sent_frames("subscription") == []   # msg.* is never sent to the server

            assert stack.hub.send_to_user(DEV, 3, "note", "live one") is True
            live = await notes.receive(timeout=1)
            while live.data != "live one":
                live = await notes.receive(timeout=1)
            assert "fromQueue" not in live.raw and "message_send_time" not in live.raw
            assert len(every_personal.messages) == delivered + 1


async def test_track_events_and_track_pipe_users(autojump_clock):
    network = VirtualNetwork()
    async with open_stack(config(), network=network, epoch=EPOCH) as stack:
        for uid in (1, 2):
            stack.hub.set_hash(DEV, uid, f"h{uid}")
        async with browser(network, node(stack), 1, user_id=1, user_key="h1") as a, \
                browser(network, node(stack), 2, user_id=2, user_key="h2", start=False) as b:
            track = a.subscription("track_room")
            await subscribed(stack, a, "track_room")
            b.subscription("track_room")
            b.start()
            joined = await track.receive(timeout=2)
            assert (joined.event, joined.data) == ("subscription", {"user_id": 2, "uuid": b.uuid})

            answer = await a.get_track_pipe_users("track_room")
            assert a.sent_frames("track_pipe_users")[-1] == f"track_pipe_users\ntrack_room\n{answer.marker}"
            assert re.fullmatch(r"\d{10}", answer.marker) and answer.pipe == "_answer"
            assert answer.data == [{"user_id": 2, "uuid": b.uuid}, {"user_id": 1, "uuid": a.uuid}]  # newest first
            assert answer not in track.messages                # marker answers skip pipe subscriptions
            assert await a.get_track_pipe_users("web_room") is None   # refused client-side

            b.stop()
            left = await track.receive(timeout=2)
            assert (left.event, left.data) == ("unsubscription", {"user_id": 2, "uuid": b.uuid})
            await trio.sleep(60)
            assert len(b.attempts) == 1 and b.closes[0].reconnect_in_ms is None   # stopped for good
            assert not stack.hub.user_connections(DEV, 2)
            b.start()                                      # ... until start(): at once, list re-sent
            rejoined = await track.receive(timeout=2)
            assert rejoined.event == "subscription" and len(b.attempts) == 2


@pytest.mark.parametrize("profile", [FAITHFUL, LENIENT])
async def test_count_users_in_pipe_user_data_and_history(profile, autojump_clock):
    network = VirtualNetwork()
    async with open_stack(config(profile), network=network, epoch=EPOCH) as stack:
        stack.hub.set_user_data(DEV, 9997, '{"rand":"7"}')
        stack.hub.set_pipe_log_length(DEV, "web_hist", 10)
        for i in range(3):
            stack.hub.publish(DEV, "web_hist", "e", f"old {i}")
        async with browser(network, node(stack), 1) as a, browser(network, node(stack), 2) as b:
            answers_slot = a.subscription("_answer_pipe_count")
            a.subscription("web_room")
            b.subscription("web_room")
            await subscribed(stack, a, "web_room")
            await subscribed(stack, b, "web_room")
            count = await a.count_users_in_pipe("web_room")
            assert count.data == ["user_in_pipe", 2] and count.event == "user_in_pipe"
            assert a.sent_frames("pipe_count")[-1] == f"pipe_count\nweb_room\n{count.marker}\n"
            assert answers_slot.messages == []             # the marker rule: one-shot callback only
            with pytest.raises(trio.TooSlowError):         # non-web_ pipe: a sys error, no answer
                await a.count_users_in_pipe("room", timeout=1)
            assert (await a.next_message("sys", "error")).data["error"].startswith("[pipe_count]")

            data = await a.get_user_data(9997)
            assert data.data == {"user_data": '{"rand":"7"}', "user_id": 9997}
            assert a.sent_frames("user_data")[-1] == f"user_data\n{data.marker}\n9997"
            assert (await a.get_user_data(99998)).data == {"user_data": "", "user_id": 99998}

            history = a.get_pipe_log("web_hist", subscribe=True)
            for i in range(3):
                m = await history.receive(timeout=1)
                assert m.data == f"old {i}" and m.raw["fromQueue"] is True
            assert re.fullmatch(r"pipe_log\nweb_hist\n\d{10}\n", a.sent_frames("pipe_log")[-1])


# --- reconnects ----------------------------------------------------------------------------------------


async def test_reconnect_backoff_while_the_server_is_down(autojump_clock):
    """After a session: 1000, 1000, 1000, 3000, 5000, 15000, 45000 ms; a reconnect that gets
    serverInfo resets it all, and the URL and the full subscription list are sent again."""
    network = VirtualNetwork()
    async with trio.open_nursery() as outer:
        async with open_stack(config(), network=network, epoch=EPOCH) as stack:
            port = stack.ports["ws"]
            stack.hub.set_hash(DEV, 5, "h5")
            client = CometClient(network, node(stack), nursery=outer, user_id=5, user_key="h5", dev_id=DEV,
                                 rng=random.Random(5), start_delay=0, nostat=True)
            client.subscription("web_a")
            client.subscription("track_b")
            client.start()
            assert await client.wait_server_info() is True
            await subscribed(stack, client, "track_b")
        # the stack is gone: its connections were closed (TCP) and nothing listens on the port
        await client.wait_for(lambda: len(client.closes) >= 8, timeout=200)
        drop = client.closes[0]
        assert drop.opened and not drop.was_clean and drop.code == 1006
        assert client.attempt_intervals_ms(since=drop.time) == [1000, 1000, 1000, 3000, 5000, 15000, 45000]
        assert all(a.outcome.startswith("refused") for a in client.attempts[1:])
        assert all(a.scheme == "ws" for a in client.attempts)       # it had worked once: no wss switch

        async with open_stack(config(ws_port=port), network=network, epoch=EPOCH + 70) as stack:
            stack.hub.set_hash(DEV, 5, "h5")
            await client.wait_for(lambda: len(client.server_infos) == 2, timeout=200)
            assert client.attempts[-1].url == client.attempts[0].url
            assert client.error_count == 0 and client.reconnect_ms == 1000
            await subscribed(stack, client, "track_b")
            reopened = client.opens[-1]
            assert [x for t, x in client.sent if t >= reopened] == ["subscription\nweb_a\ntrack_b"]
            stack.hub.kick_user(DEV, 5, "test")
            await client.wait_for(lambda: len(client.server_infos) == 3)
            assert client.attempts[-1].time - client.closes[-1].time == pytest.approx(1.0)
        client.shutdown()


async def test_first_connects_failing_switch_to_wss(autojump_clock):
    """Never reached: 300, 300, then wss for good (300), 2300, 4300, 12900 ms (spec 7.2)."""
    network = VirtualNetwork()
    async with browser(network, "127.0.0.1:9", 1, start_delay=1.2) as c:
        t0 = trio.current_time()
        await c.wait_for(lambda: len(c.attempts) >= 7, timeout=100)
        assert c.attempts[0].time - t0 == pytest.approx(1.2)
        assert c.attempt_intervals_ms() == [300, 300, 300, 2300, 4300, 12900]
        assert [a.scheme for a in c.attempts] == ["ws"] * 3 + ["wss"] * 4
        assert c.attempts[3].url.startswith("wss://127.0.0.1:9/ws/sesion=undefined")

        # navigator.onLine === false postpones the next attempt in 300 ms steps
        c.go_offline()
        await trio.sleep(200)                      # the 38.7 s delay passed long ago
        assert len(c.attempts) == 7
        back = trio.current_time()
        c.go_online()
        await c.wait_for(lambda: len(c.attempts) == 8)
        assert 0 < c.attempts[-1].time - back <= 0.3


async def test_restart_with_a_new_key_reconnects_authorised(autojump_clock):
    network = VirtualNetwork()
    async with open_stack(config(), network=network, epoch=EPOCH) as stack:
        stack.hub.set_hash(DEV, 4, "right")
        async with browser(network, node(stack), 4, user_id=4, user_key="wrong") as c:
            c.subscription("web_lobby")
            assert await c.wait_server_info() is False
            await subscribed(stack, c, "web_lobby")
            c.restart(user_key="right")
            assert await c.wait_server_info(2) is True
            close = c.closes[0]
            assert close.opened and not close.was_clean and close.reconnect_in_ms == 1000  # server dropped TCP
            assert c.attempts[1].time - close.time == pytest.approx(1.0)
            assert "sesion=right&myid=4&" in c.attempts[1].url and c.attempts[1].url.split("uuid=")[1] == \
                c.attempts[0].url.split("uuid=")[1]
            assert [s for _, s in c.auth_changes] == [False, True]
            await subscribed(stack, c, "web_lobby")
            assert stack.hub.user_connections(DEV, 4)[0].pipes == ["web_lobby"]


async def test_delete_hash_kicks_and_the_client_comes_back_unauthorised(autojump_clock):
    network = VirtualNetwork()
    async with open_stack(config(), network=network, epoch=EPOCH) as stack:
        stack.hub.set_hash(DEV, 6, "h6")
        async with browser(network, node(stack), 6, user_id=6, user_key="h6") as c:
            c.subscription("web_lobby")
            assert await c.wait_server_info() is True
            await subscribed(stack, c, "web_lobby")
            assert stack.hub.delete_hash(DEV, 6) == 1
            assert await c.wait_server_info(2) is False
            assert c.closes[0].was_clean is False
            assert c.attempts[1].time - c.closes[0].time == pytest.approx(1.0)
            assert [s for _, s in c.auth_changes] == [True, False]
            await subscribed(stack, c, "web_lobby")
            (conn,) = stack.hub.users_in_pipe(DEV, "web_lobby")
            assert conn.user_id == 0 and not conn.authorized


@pytest.mark.parametrize("server_closes", [True, False])
async def test_a_close_frame_from_the_server_means_no_reconnect(server_closes, autojump_clock):
    """Not the real server (it never sends Close): an RFC server built from trio-websocket.  Either
    it closes the connection itself, or it answers the client's Close frame from ``restart()``;
    both are clean closes, after which client 4.08 never reconnects (spec 7.3 items 1 and 2)."""
    network = VirtualNetwork()
    listener = await network.listen("fake", "127.0.0.1", 0)
    accepted, server_saw = [], []

    async def handle(stream):
        async with trio.open_nursery() as n:
            request = await wrap_server_stream(n, stream)
            accepted.append(request.path)
            ws = await request.accept()
            await ws.send_message('{"authorized":false,"data":"","event":"serverInfo","pipe":"sys"}')
            if server_closes:
                await ws.aclose()
            else:
                try:
                    while True:
                        await ws.get_message()
                except ConnectionClosed as exc:
                    server_saw.append(exc.reason.code)   # the client's Close frame, answered by the library

    async with trio.open_nursery() as n:
        n.start_soon(partial(network.serve, listener, handle, service="fake"))
        async with browser(network, f"127.0.0.1:{listener.endpoint.port}", 1) as c:
            await c.wait_server_info()
            if not server_closes:
                c.restart(user_key="new")
            await c.wait_for(lambda: c.closes)
            await trio.sleep(120)
            assert c.closes[0].was_clean is True and c.closes[0].reconnect_in_ms is None
            assert len(c.attempts) == 1 and len(accepted) == 1
            assert accepted[0].startswith("/ws/sesion=undefined&myid=undefined&devid=1&v=4.08&uuid=")
            assert server_saw == ([] if server_closes else [1000])
        n.cancel_scope.cancel()


# --- real sockets, real clock ---------------------------------------------------------------------------


async def test_happy_path_over_os_sockets():
    network = OSNetwork()
    started = time.monotonic()
    async with open_stack(config(LENIENT), network=network) as stack:
        stack.hub.set_hash(DEV, 1, "h1")
        async with browser(network, node(stack), 1, user_id=1, user_key="h1") as a, \
                browser(network, node(stack), 2) as b:
            assert await a.wait_server_info() is True and await b.wait_server_info() is False
            a_chat = a.subscription("web_chat")
            b_chat = b.subscription("web_chat")
            a_personal = a.subscription("msg.hello")
            await subscribed(stack, a, "web_chat")
            await subscribed(stack, b, "web_chat")
            stack.hub.publish(DEV, "web_chat", "news", '{"n":1}')
            assert (await a_chat.receive(timeout=2)).data == {"n": 1}
            assert (await b_chat.receive(timeout=2)).data == {"n": 1}
            a.web_pipe_send("web_chat", "said", {"text": "over TCP"})
            m = await b_chat.receive(timeout=2)
            assert (m.data, m.user_id) == ({"text": "over TCP"}, 1)
            stack.hub.send_to_user(DEV, 1, "hello", "world")
            assert (await a_personal.receive(timeout=2)).data == "world"
            assert (await b.count_users_in_pipe("web_chat", timeout=2)).data == ["user_in_pipe", 2]
    assert time.monotonic() - started < 5
