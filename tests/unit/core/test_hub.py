"""The comet hub without any I/O: auth, commands, presence, queues, history, tenancy, quirks."""

from __future__ import annotations

import json

import jwt
import pytest

from emulator.wire import comet as w
from tests.conftest import FakeConn, make_hub, url


def token(user_id, exp=9_983_311_200, secret="CometQLPassword1", **extra):
    return jwt.encode({"user_id": user_id, "exp": exp, **extra}, secret, algorithm="HS256")


# --- auth ------------------------------------------------------------------------------------------


def test_hash_auth_and_server_info_first():
    hub = make_hub()
    hub.set_hash(1, 501, "validkey501")
    c = FakeConn(hub, url("validkey501", 501))
    first = c.json()[0]
    assert first == {"authorized": True, "data": "validkey501", "event": "serverInfo",
                     "message_send_time": 1_700_000_000, "pipe": "sys", "server": w.SERVER_NAME}
    # exact text: sorted keys, no spaces (reference-observations 4)
    assert c.frames[0].startswith('{"authorized":true,"data":"validkey501","event":"serverInfo"')


@pytest.mark.parametrize("key,user", [("wrongkey", 502), ("", 0), ("undefined", "undefined")])
def test_failed_and_anonymous_auth_keep_the_connection(key, user):
    hub = make_hub()
    hub.set_hash(1, 502, "rightkey")
    c = FakeConn(hub, url(key, user))
    assert c.json()[0]["authorized"] is False and c.json()[0]["data"] == ""
    assert not c.dropped and c.conn.user_id == 0
    c.send("subscription\nweb_test")
    assert hub.pipe_users(1, "web_test") == 1


def test_jwt_auth_mints_a_hash_and_stores_it():
    hub = make_hub()
    c = FakeConn(hub, url(token(777), 777))
    info = c.json()[0]
    assert info["authorized"] is True
    assert len(info["data"]) == 32 and "-" not in info["data"]
    assert hub.get_hash(1, 777) == info["data"]


@pytest.mark.parametrize("tok,user", [
    (token(777, secret="wrong"), 777),              # bad signature
    (token(777, exp=1_600_000_000), 777),           # expired against the emulator clock
    (token("777"), 777),                            # user_id must be a JSON number
    (token(778), 777),                              # user_id must match myid
    (jwt.encode({"user_id": 777}, "CometQLPassword1", algorithm="HS256"), 777),  # exp required
    (jwt.encode({"user_id": 777, "exp": 9_983_311_200}, "CometQLPassword1", algorithm="HS384"), 777),
])
def test_jwt_rejections(tok, user):
    hub = make_hub()
    c = FakeConn(hub, url(tok, user))
    assert c.json()[0]["authorized"] is False


def test_jwt_secret_is_password_plus_dev_id():
    hub = make_hub()
    c = FakeConn(hub, url(token(5, secret="CometQLPassword7"), 5, dev_id=7))
    assert c.json()[0]["authorized"] is True
    c2 = FakeConn(hub, url(token(5, secret="CometQLPassword7"), 5, dev_id=1))
    assert c2.json()[0]["authorized"] is False


def test_revoked_jwt_closes_and_refuses():
    hub = make_hub()
    tok = token(9)
    c = FakeConn(hub, url(tok, 9))
    assert c.json()[0]["authorized"] is True
    assert hub.revoke_token(1, tok) == 9
    assert c.dropped and hub.get_hash(1, 9) is None
    again = FakeConn(hub, url(tok, 9))
    assert again.json()[0]["authorized"] is False


def test_revoking_garbage_is_stored_but_closes_nobody():
    hub = make_hub()
    hub.set_hash(1, 3, "k")
    c = FakeConn(hub, url("k", 3))
    assert hub.revoke_token(1, "not.a.jwt") is None
    assert not c.dropped and hub.store.is_revoked(1, "not.a.jwt")


def test_delete_hash_closes_all_connections_of_that_user_only():
    hub = make_hub()
    hub.set_hash(1, 1, "a")
    hub.set_hash(1, 2, "b")
    tabs = [FakeConn(hub, url("a", 1)) for _ in range(3)]
    other = FakeConn(hub, url("b", 2))
    assert hub.delete_hash(1, 1) == 3
    assert all(t.dropped for t in tabs) and not other.dropped
    assert hub.user_connections(1, 1) == []


# --- subscription and track events -------------------------------------------------------------


def test_track_events_go_to_others_only():
    hub = make_hub()
    hub.set_hash(1, 501, "validkey501")
    a = FakeConn(hub, url("validkey501", 501, uuid="uuidA000000000000000000000000501"))
    b = FakeConn(hub, url("wrongkey", 502, uuid="uuidB000000000000000000000000502"))
    a.take(), b.take()
    a.send("subscription\nweb_test\ntrack_ref5\nref_pipe")
    b.send("subscription\nweb_test\ntrack_ref5")
    assert b.take() == []
    assert a.frames == ['{"data":{"user_id":0,"uuid":"uuidB000000000000000000000000502"},"event":"subscription",'
                        '"message_send_time":1700000000,"pipe":"track_ref5"}']
    a.frames.clear()
    hub.disconnect(b.conn)
    assert a.json() == [{"data": {"user_id": 0, "uuid": "uuidB000000000000000000000000502"},
                         "event": "unsubscription", "message_send_time": 1_700_000_000, "pipe": "track_ref5"}]


def test_resubscription_replaces_the_set_and_reannounces_on_track_pipes():
    hub = make_hub()
    a, b = FakeConn(hub, url()), FakeConn(hub, url())
    a.send("subscription\ntrack_x")
    b.send("subscription\ntrack_x")
    a.take()
    b.send("subscription\ntrack_x\nweb_other")
    assert [f["event"] for f in a.take()] == ["unsubscription", "subscription"]
    b.send("subscription\nweb_other")
    assert [f["event"] for f in a.take()] == ["unsubscription"]
    assert hub.pipe_users(1, "track_x") == 1 and hub.pipe_users(1, "web_other") == 1


def test_subscription_limits():
    hub = make_hub()
    c = FakeConn(hub, url())
    c.take()
    c.send("subscription\n" + "\n".join(f"web_p{i}" for i in range(40)))
    assert c.take() == [{"data": {"code": "403", "error": "Too many letters"}, "event": "error",
                         "message_send_time": 1_700_000_000, "pipe": "sys"}]
    assert len(c.conn.pipes) == 32 and not c.dropped
    c.send("subscription\nweb_ok\n" + "x" * 65)
    assert c.take()[0]["data"] == {"code": "403", "error": "Channel name is too long"}
    assert c.dropped
    d = FakeConn(hub, url())
    d.send("subscription\n" + "\n".join(["web_" + "y" * 60] * 40))
    assert d.json()[-1]["data"]["error"] == "Too many letters" and d.dropped


def test_subscription_separators_and_short_names():
    assert w.parse_subscription("web_a\nweb.bb cc\nx\nweb_never").names == ["web_a", "web", "bb", "cc"]


@pytest.mark.parametrize("bug,expected", [(True, ["web_a"]), (False, ["web_a", "web_b"])])
def test_private_subscription_quirk(bug, expected):
    hub = make_hub(private_subscription_bug=bug)
    c = FakeConn(hub, url())
    c.send("subscription\nweb_a\nprivate_x\nweb_b")
    assert c.conn.pipes == expected


def test_authorised_may_subscribe_private():
    hub = make_hub()
    hub.set_hash(1, 4, "k")
    c = FakeConn(hub, url("k", 4))
    c.send("subscription\nprivate_x\nweb_b")
    assert c.conn.pipes == ["private_x", "web_b"]


# --- web_pipe2 ---------------------------------------------------------------------------------


def test_web_pipe2_faithful_escapes_and_answers_sender():
    hub = make_hub()
    a, b = FakeConn(hub, url()), FakeConn(hub, url())
    a.send("subscription\nweb_test")
    b.send("subscription\nweb_test")
    a.take(), b.take()
    b.send('web_pipe2\nweb_test\nwev\n*\n"hi from B"')
    # reference-observations.md section 4, byte for byte (time differs)
    assert a.frames == ['{"data":"\\\\\\"hi from B\\\\\\"","event":"wev","message_send_time":1700000000,'
                        '"pipe":"web_test","user_id":0}']
    assert b.frames == ['{"data":{"message":"\\\\\\"hi from B\\\\\\"","number_messages":0},"event":"answer",'
                        '"message_send_time":1700000000,"pipe":"_answer_to_web_test"}']


def test_web_pipe2_lenient_delivers_the_object_intact():
    hub = make_hub("lenient")
    a, b = FakeConn(hub, url()), FakeConn(hub, url())
    a.send("subscription\nweb_chat")
    a.take(), b.take()
    b.send('web_pipe2\nweb_chat\nsaid\n*\n{"text":"hi from user 1"}')
    got = a.json()[0]
    assert json.loads(got["data"]) == {"text": "hi from user 1"}
    assert b.json()[0]["data"]["number_messages"] == 1


def test_short_frame_truncation_quirk_reproduces_s18():
    """S18: a 124-byte subscriber frame arrives cut after '"user_id":' with two NULs."""
    hub = make_hub()
    hub.set_hash(1, 1, "k")
    a, b = FakeConn(hub, url()), FakeConn(hub, url("k", 1))
    a.send("subscription\nweb_chat")
    a.take(), b.take()
    b.send('web_pipe2\nweb_chat\nsaid\n*\n{"text":"hi from user 1"}')
    raw = a.frames[0].encode()
    assert len(raw) == 124 and raw.endswith(b'"user_id":\x00\x00')
    with pytest.raises(json.JSONDecodeError):
        json.loads(a.frames[0])
    assert b.json()[0]["data"]["number_messages"] == 0  # short deliveries are not counted (S11)


def test_short_frame_truncation_off_sends_whole_frames():
    hub = make_hub(short_frame_truncation=False)
    hub.set_hash(1, 1, "k")
    a, b = FakeConn(hub, url()), FakeConn(hub, url("k", 1))
    a.send("subscription\nweb_chat")
    a.take(), b.take()
    b.send('web_pipe2\nweb_chat\nsaid\n*\n{"text":"hi from user 1"}')
    assert a.json()[0]["user_id"] == 1


@pytest.mark.parametrize("counts_long_only,expected", [(True, 0), (False, 1)])
def test_web_answer_count_quirk(counts_long_only, expected):
    hub = make_hub(web_answer_counts_long_frames=counts_long_only)
    a, b = FakeConn(hub, url()), FakeConn(hub, url())
    a.send("subscription\nweb_test")
    b.send('web_pipe2\nweb_test\nwev\n*\n"hi"')
    assert b.json()[-1]["data"]["number_messages"] == expected


@pytest.mark.parametrize("body,error", [
    ("chat\nev\n*\nx", "[pipe_msg2] Invalid channel name. The channel should begin with web_"),
    ("web_a b\nev\n*\nx", "The channel name can only contain characters A-Za-z0-9_-"),
    ("web_" + "a" * 70 + "\nev\n*\nx", "Invalid pipe name length"),
    ("web_a\ne v\n*\nx", "The event name can only contain characters A-Za-z0-9_-"),
    ("web_a\nev\n*x", "Invalid value auth_type"),
    ("webauth_a\nev\n*\nx", "[webauth_pipe_msg2] Invalid user auth. In to channel with name like webauth_* "
                           "can not send messages anonim users"),
])
def test_web_pipe2_errors(body, error):
    hub = make_hub(short_frame_truncation=False)  # texts, not framing
    a, b = FakeConn(hub, url()), FakeConn(hub, url())
    a.send("subscription\nweb_a\nwebauth_a\nchat")
    a.take(), b.take()
    b.send("web_pipe2\n" + body)
    assert b.json()[0]["data"]["error"] == error and a.frames == [] and not b.dropped


def test_web_pipe2_anonymous_form_and_webauth():
    hub = make_hub("lenient")
    hub.set_hash(1, 8, "k")
    a, b = FakeConn(hub, url()), FakeConn(hub, url("k", 8))
    a.send("subscription\nweb_a\nwebauth_a")
    a.take()
    b.send('web_pipe2\n@web_a\nev\n*\n"x"')
    b.send('web_pipe2\nwebauth_a\nev\n*\n"y"')
    assert [(f["pipe"], f["user_id"]) for f in a.json()] == [("web_a", 0), ("webauth_a", 8)]


def test_sender_is_excluded_but_its_other_tabs_receive():
    hub = make_hub("lenient")
    hub.set_hash(1, 8, "k")
    tab1, tab2 = FakeConn(hub, url("k", 8)), FakeConn(hub, url("k", 8))
    tab1.send("subscription\nweb_a")
    tab2.send("subscription\nweb_a")
    tab1.take(), tab2.take()
    tab1.send('web_pipe2\nweb_a\nev\n*\n"x"')
    assert [f["pipe"] for f in tab1.json()] == ["_answer_to_web_a"]
    assert [f["pipe"] for f in tab2.json()] == ["web_a"]


# --- history ------------------------------------------------------------------------------------


def test_history_via_settings_and_pipe_log():
    hub = make_hub("lenient")
    hub.set_pipe_log_length(1, "web_h", 3)
    for i in range(5):
        hub.publish(1, "web_h", f"e{i}", f"m{i}")
    c = FakeConn(hub, url())
    c.take()
    c.send("pipe_log\nweb_h\n1234567890\n")
    got = c.json()
    assert [f["event"] for f in got] == ["e2", "e3", "e4"]
    assert got[0] == {"data": "m2", "event": "e2", "fromQueue": True, "message_send_time": 1_700_000_000,
                      "pipe": "web_h", "user_id": 0}


def test_no_history_no_answer_and_trust_pipes_always_logged():
    hub = make_hub()
    hub.publish(1, "web_nolog", "e", "m")
    hub.publish(1, "trust_x", "e", "kept")
    c = FakeConn(hub, url())
    c.take()
    c.send("pipe_log\nweb_nolog\n1234567890\n")
    assert c.take() == []
    c.send("pipe_log\ntrust_x\n1234567890\n")
    assert [f["data"] for f in c.take()] == ["kept"]
    hub.clock.advance(121)
    hub.housekeeping()
    c.send("pipe_log\ntrust_x\n1234567890\n")
    assert c.take() == []


def test_pipe_log_errors():
    hub = make_hub(short_frame_truncation=False)  # texts, not framing
    c = FakeConn(hub, url())
    c.take()
    c.send("pipe_log\nbad pipe\n1234567890\n")
    assert [f["data"]["error"] for f in c.take()] == [
        "The channel name can only contain characters A-Za-z0-9_-", "Invalid channel name."]
    c.send("pipe_log\nweb_ok\nbad marker\n")
    assert c.take()[-1]["data"]["error"] == "Invalid marker value."


# --- pipe_count, track_pipe_users, user_data, user_status ---------------------------------------


@pytest.mark.parametrize("array,expected", [(True, ["user_in_pipe", 2]), (False, {"user_in_pipe": 2})])
def test_pipe_count_shape_quirk(array, expected):
    hub = make_hub(pipe_count_array=array)
    a, b = FakeConn(hub, url()), FakeConn(hub, url())
    a.send("subscription\nweb_test")
    b.send("subscription\nweb_test")
    a.take()
    a.send("pipe_count\nweb_test\n1234567890\n")
    assert a.json()[0]["data"] == expected and a.json()[0]["marker"] == "1234567890"


def test_pipe_count_s10_nul_byte_with_a_two_char_marker():
    hub = make_hub()
    a, b = FakeConn(hub, url()), FakeConn(hub, url())
    a.send("subscription\nweb_test")
    b.send("subscription\nweb_test")
    a.take()
    a.send("pipe_count\nweb_test\nM2\n")
    assert a.frames[0] == ('{"data":["user_in_pipe",2],"event":"user_in_pipe","marker":"M2",'
                           '"message_send_time":1700000000,"pipe":"_answer_pipe_count"\x00')


def test_pipe_count_refuses_other_pipes():
    hub = make_hub()
    c = FakeConn(hub, url())
    c.take()
    c.send("pipe_count\nchat\n1234567890\n")
    assert c.json()[0]["data"]["error"] == "[pipe_count] Invalid channel name. The channel should start with web_"


def test_track_pipe_users_lists_connections():
    hub = make_hub()
    hub.set_hash(1, 501, "validkey501")
    a = FakeConn(hub, url("validkey501", 501, uuid="uuidA000000000000000000000000501"))
    b = FakeConn(hub, url("x", 502, uuid="uuidB000000000000000000000000502"))
    a.send("subscription\ntrack_ref5")
    b.send("subscription\ntrack_ref5")
    a.take()
    a.send("track_pipe_users\ntrack_ref5\nM1")
    # reference-observations.md section 4: newest subscriber first
    assert a.frames == ['{"_info":"answer for track_pipe_users","data":[{"user_id":0,"uuid":'
                        '"uuidB000000000000000000000000502"},{"user_id":501,"uuid":"uuidA000000000000000000000000501"}],'
                        '"event":"answer","marker":"M1","message_send_time":1700000000,"pipe":"_answer"}']
    a.frames.clear()
    a.send("track_pipe_users\nweb_x\nM1")
    assert a.json()[0]["data"]["user_id"] == -1


def test_user_data():
    hub = make_hub(short_frame_truncation=False)  # texts, not framing
    hub.set_user_data(1, 9997, '{"rand":"7"}')
    c = FakeConn(hub, url())
    c.take()
    c.send("user_data\n1234567890\n9997")
    c.send("user_data\n1234567890\n99998")
    assert [f["data"] for f in c.take()] == [{"user_data": '{"rand":"7"}', "user_id": 9997},
                                             {"user_data": "", "user_id": 99998}]
    c.send("user_data\nbad marker\n1")
    c.send("user_data\n1234567890\nxyz")
    assert [f["data"]["error"] for f in c.take()] == [
        "The channel name can only contain characters A-Za-z0-9_-", "Invalid marker name.", "Invalid user id"]


@pytest.mark.parametrize("epoch_quirk", [True, False])
def test_user_status(epoch_quirk):
    hub = make_hub(user_status_online_epoch=epoch_quirk, short_frame_truncation=False)
    hub.set_hash(1, 5, "k")
    FakeConn(hub, url("k", 5))
    c = FakeConn(hub, url())
    c.take()
    c.send("user_status\n5")
    data = c.json()[0]["data"]
    assert data == {"data": 1_700_000_000 if epoch_quirk else 0, "last_online_time": 0}
    c.take()
    c.send("user_status\n6")
    assert c.json()[0]["data"] == {"data": 1_700_000_001, "last_online_time": -1}


def test_ignored_and_unknown_commands():
    hub = make_hub()
    c = FakeConn(hub, url())
    c.take()
    for text in ('statistics\n{"url":"x"}', "cgi_call\nx", "CometQL_call\n1\nt"):
        c.send(text)
    assert c.frames == [] and not c.dropped
    c.send("bogus\nx")
    assert c.dropped and c.conn.id not in hub.connections


# --- personal messages and presence --------------------------------------------------------------


def test_personal_message_live_has_no_time_field():
    hub = make_hub()
    hub.set_hash(1, 501, "k")
    c = FakeConn(hub, url("k", 501))
    c.take()
    assert hub.send_to_user(1, 501, "uev", "user message text") is True
    assert c.frames == ['{"data":"user message text","event":"uev","pipe":"msg"}']


@pytest.mark.parametrize("ten,expected", [(True, 10), (False, 60)])
def test_queue_quirk_ten_per_login(ten, expected):
    hub = make_hub(queue_ten_per_login=ten)
    hub.set_hash(1, 7, "k")
    for i in range(60):
        assert hub.send_to_user(1, 7, "e", f"m{i}") is False
    hub.clock.advance(1)
    c = FakeConn(hub, url("k", 7))
    queued = [f for f in c.json() if f["pipe"] == "msg"]
    assert len(queued) == expected
    assert [f["data"] for f in queued] == [f"m{i}" for i in range(expected)]
    assert all(f["fromQueue"] is True for f in queued)
    assert hub.store.queued_messages(1, 7) == []  # faithful: the rest is lost; lenient: all delivered


def test_queue_messages_expire_after_120_seconds():
    hub = make_hub()
    hub.set_hash(1, 7, "k")
    hub.send_to_user(1, 7, "e", "old")
    hub.clock.advance(121)
    hub.housekeeping()
    c = FakeConn(hub, url("k", 7))
    assert [f["pipe"] for f in c.json()] == ["sys"]


def test_anonymous_never_gets_personal_messages():
    hub = make_hub()
    c = FakeConn(hub, url("x", 7))
    hub.send_to_user(1, 7, "e", "m")
    assert [f["pipe"] for f in c.json()] == ["sys"]


def test_online_offline_and_users_time():
    hub = make_hub()
    hub.set_hash(1, 5, "k")
    watcher = FakeConn(hub, url())
    watcher.send("subscription\nuser_status_5")
    watcher.take()
    t1, t2 = FakeConn(hub, url("k", 5)), FakeConn(hub, url("k", 5))
    assert watcher.frames == ['{"data":"online","event":"online","pipe":"user_status_5"}']
    assert hub.users_time(1, [5, 6]) == [(5, 0), (6, -1)]
    watcher.frames.clear()
    hub.disconnect(t1.conn)
    assert watcher.frames == []
    hub.clock.advance(5)
    hub.disconnect(t2.conn)
    assert watcher.json() == [{"data": "offline", "event": "offline", "pipe": "user_status_5"}]
    assert hub.users_time(1, [5]) == [(5, 1_700_000_005)]


# --- tenancy ------------------------------------------------------------------------------------


def test_tenants_never_see_each_other():
    hub = make_hub("lenient")
    hub.set_hash(1, 5, "k1")
    hub.set_hash(2, 5, "k2")
    one = FakeConn(hub, url("k1", 5, dev_id=1))
    two = FakeConn(hub, url("k2", 5, dev_id=2))
    wrong = FakeConn(hub, url("k1", 5, dev_id=2))  # a dev 1 hash does not open dev 2
    assert wrong.json()[0]["authorized"] is False
    for c in (one, two):
        c.send("subscription\nweb_shared\ntrack_shared\nuser_status_5")
        c.take()
    one.send('web_pipe2\nweb_shared\nev\n*\n"from one"')
    hub.publish(1, "web_shared", "ev", "backend one")
    hub.send_to_user(1, 5, "ev", "personal one")
    hub.set_user_data(1, 5, "secret one")
    assert two.frames == []
    two.send("user_data\n1234567890\n5")
    assert two.json()[0]["data"]["user_data"] == ""
    assert hub.pipe_users(1, "web_shared") == 1 and hub.pipe_users(2, "web_shared") == 1
    hub.delete_hash(1, 5)
    assert one.dropped and not two.dropped


# --- v<4 clients ---------------------------------------------------------------------------------


def test_old_clients_get_the_compat_shape():
    hub = make_hub()
    hub.set_hash(1, 1, "k")
    c = FakeConn(hub, url("k", 1, v="3.25"))
    assert c.frames[0] == ('{"api_data":"for major_version < 4","authorized":true,"data":"k","event":"serverInfo",'
                           '"event_name":"serverInfo","message_send_time":1700000000,"pipe":"sys",'
                           '"server":"CppComet community 4.09 (AGPL license)"}')


# --- delivery: one encoding per publish ----------------------------------------------------------


def test_a_fan_out_hands_every_subscriber_the_same_frame_bytes():
    """The frame is serialised and encoded once per client major version and the bytes object is
    shared: the transport writes it as it is (server frames are unmasked)."""
    hub = make_hub(short_frame_truncation=False)
    new = [FakeConn(hub, url()) for _ in range(3)]
    old = [FakeConn(hub, url(v="3.25")) for _ in range(2)]
    for c in new + old:
        c.send("subscription\nweb_room")
        c.take()
    assert hub.publish(1, "web_room", "ev", "hello") == 5
    assert all(len(c.wire) == 1 for c in new + old)
    assert new[0].wire[0] is new[1].wire[0] is new[2].wire[0]
    assert old[0].wire[0] is old[1].wire[0] and old[0].wire[0] != new[0].wire[0]
    for c in new + old:
        assert c.wire[0] == w.encode_server_frame(c.frames[0])
    assert json.loads(new[0].frames[0])["data"] == "hello" and json.loads(old[0].frames[0])["api_data"]


def test_single_frames_carry_their_bytes_and_oversize_frames_none():
    hub = make_hub()
    c = FakeConn(hub, url())
    assert c.wire == [w.encode_server_frame(c.frames[0])]  # serverInfo
    c.send("subscription\nweb_big")
    c.take()
    hub.publish(1, "web_big", "ev", "z" * 70_000)
    assert len(c.frames) == 1 and c.wire == [None]  # too long to send (1.3): the transport drops it


def test_the_journal_records_every_frame_of_a_fan_out():
    from emulator.journal import Journal

    hub = make_hub()
    hub.journal = Journal(enabled=True)
    subs = [FakeConn(hub, url()) for _ in range(4)]
    for c in subs:
        c.send("subscription\nweb_j")
    hub.publish(1, "web_j", "ev", "to all")
    out = [e for e in hub.journal.entries(kind="frame", direction="out") if '"to all"' in e["data"]]
    assert sorted(e["conn_id"] for e in out) == sorted(c.conn.id for c in subs)
    assert {e["data"] for e in out} == {subs[0].frames[-1]}
