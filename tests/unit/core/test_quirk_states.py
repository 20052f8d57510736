"""Quirks whose both states are not already covered next to their feature: each in both states.

(The rest are tested beside their features: tests/unit/core/test_hub.py for the comet protocol,
tests/integration/test_cometql_server.py and tests/compat for CometQL's handshake quirks,
tests/unit/wire/test_cometql_parser.py for the sql_* parser quirks, tests/unit/core/test_conference.py
for fs_*.)  A meta-test below makes sure every registered quirk is named in some test.
"""

from __future__ import annotations

import pathlib

import pytest

from emulator.clock import ManualClock
from emulator.comet.hub import Hub
from emulator.cometql.server import CometQLServer
from emulator.cometql.tables import Executor, Session
from emulator.journal import Journal
from emulator.profiles import QUIRKS, get_profile
from emulator.state import StateStore
from emulator.wire import comet as w


def profile_with(**states):
    return get_profile("cppcomet-4.09").with_quirks(**states)


@pytest.mark.parametrize("on", [True, False])
def test_url_errors_v3_shape(on):
    frame = w.url_error_frame(401, w.URL_ERRORS["no_session"][1], 1, old_shape=on)
    assert isinstance(frame["data"], str) is on and ("event_name" in frame) is on


@pytest.mark.parametrize("on,encoded", [(True, "fd" "a0860100"), (False, "fd" "a08601")])
def test_cometql_lenenc_fd_bug(on, encoded):
    server = CometQLServer(Executor(Hub(StateStore(), get_profile("cppcomet-4.09")), get_profile("cppcomet-4.09")),
                           None, profile_with(cometql_lenenc_fd_bug=on), Journal(enabled=False), password="x")
    ok = server.ok_packet(0, 100_000)  # insert id 100000 = 0x0186a0
    assert ok.hex().startswith("00" "00" + encoded)


@pytest.mark.parametrize("on,status,info", [(True, "0002", b"\x00"), (False, "0200", b"")])
def test_cometql_ok_status_no_backslash_escapes(on, status, info):
    server = CometQLServer(Executor(Hub(StateStore(), get_profile("lenient")), get_profile("lenient")),
                           None, profile_with(cometql_ok_status_no_backslash_escapes=on), Journal(enabled=False),
                           password="x")
    ok = server.ok_packet(1, 1)
    assert ok[3:5].hex() == status and ok[7:] == info  # status bytes 00 02 = 0x0200 NO_BACKSLASH_ESCAPES


@pytest.mark.parametrize("on,left", [(True, ["same second"]), (False, [])])
def test_cometql_users_messages_delete_same_second(on, left):
    profile = profile_with(cometql_users_messages_delete_same_second=on)
    clock = ManualClock()
    hub = Hub(StateStore(), profile, clock=clock)
    ex = Executor(hub, profile)
    session = Session(dev_id=1)
    ex.execute(session, "INSERT INTO users_messages (id, event, message) VALUES (2, 'e', 'old')")
    clock.advance(1)
    ex.execute(session, "INSERT INTO users_messages (id, event, message) VALUES (2, 'e', 'same second')")
    assert ex.execute(session, "DELETE FROM users_messages WHERE id = 2").kind == "ok"
    assert [row[3] for row in ex.execute(session, "SELECT * FROM users_messages WHERE id = 2").rows] == left


def test_every_quirk_is_named_in_a_test():
    tests = pathlib.Path(__file__).resolve().parents[1]
    text = "\n".join(p.read_text() for p in tests.rglob("test_*.py"))
    from emulator.profiles import SQL_QUIRK_SWITCHES

    missing = [name for name in QUIRKS
               if name not in text and SQL_QUIRK_SWITCHES.get(name, "\0") not in text]
    assert missing == []


# --- the quirks otherwise tested through whole profiles, here one switch at a time --------------


@pytest.mark.parametrize("on", [True, False])
def test_web_pipe2_mysql_escape(on):
    from tests.conftest import FakeConn, make_hub, url
    hub = make_hub(web_pipe2_mysql_escape=on, short_frame_truncation=False)
    a, b = FakeConn(hub, url()), FakeConn(hub, url())
    a.send("subscription\nweb_q")
    a.take()
    b.send('web_pipe2\nweb_q\nev\n*\n{"a":"it\'s"}')
    assert a.json()[0]["data"] == ('{\\"a\\":\\"it\\\'s\\"}' if on else '{"a":"it\'s"}')


def _stack_config(**quirks):
    from emulator.config import Config
    cfg = Config(quirks=quirks, freeswitch_emulated=False, journal=False)
    cfg.free_ports()
    return cfg


@pytest.mark.parametrize("on", [True, False])
async def test_cometql_version_string_and_ssl_advertised(on, autojump_clock):
    from emulator.net.network import VirtualNetwork
    from emulator.stack import open_stack
    from tests.rawmysql import RawMySQL
    net = VirtualNetwork()
    async with open_stack(_stack_config(cometql_version_string=on, cometql_ssl_advertised=on), network=net) as st:
        g = await (await RawMySQL.open(net, st.ports["cometql"])).greeting()
        assert g["version"][0].isdigit() is (not on)
        assert bool(g["caps"] & 0x800) is on


@pytest.mark.parametrize("on", [True, False])
async def test_cometql_no_auth_switch(on, autojump_clock):
    from emulator.net.network import VirtualNetwork
    from emulator.stack import open_stack
    from tests.rawmysql import RawMySQL
    net = VirtualNetwork()
    async with open_stack(_stack_config(cometql_no_auth_switch=on), network=net) as st:
        c = await RawMySQL.open(net, st.ports["cometql"])
        await c.greeting()
        await c.send(c.response("1", b"\x01" * 32, plugin="caching_sha2_password"), 1)
        _, payload = await c.read_packet()
        assert (payload[0] == 0xFF) is on and (payload[0] == 0xFE) is (not on)


@pytest.mark.parametrize("on", [True, False])
def test_cometql_describe_bad_sequence(on):
    profile = profile_with(cometql_describe_bad_sequence=on)
    result = Executor(Hub(StateStore(), profile, clock=ManualClock()), profile).execute(Session(1), "DESCRIBE pipes")
    assert (result.code, result.message) == (15, "Table doesn't exist")
    assert (result.sequence_id == 9) is on and result.close is on


@pytest.mark.parametrize("on", [True, False])
def test_fs_ghost_until_media_timeout(on):
    import random

    from emulator.freeswitch.conference import Bridge, Channel
    clock = ManualClock()
    bridge = Bridge(clock=clock, rng=random.Random(1), profile=profile_with(fs_ghost_until_media_timeout=on),
                    rtp_timeout=300.0)
    member = bridge.join("1*r-FSdefaultDomain", "video", Channel("u", "000001002", "000001002"))
    bridge.signalling_lost(member.id)
    assert (bridge.member(member.id) is not None) is on
    clock.advance(301)
    bridge.process_due()
    assert bridge.member(member.id) is None


QUERY_ENDING_IN_A_DOUBLED_QUOTE = "SELECT * FROM pipes WHERE name = 'web_a" + "''" + "'"


@pytest.mark.parametrize("on", [True, False])
def test_sql_quote_rewrite_stops_early(on):
    """A doubled quote in the last 3 bytes of the query is not rewritten by the original."""
    profile = profile_with(sql_quote_rewrite_stops_early=on)
    ex = Executor(Hub(StateStore(), profile, clock=ManualClock()), profile)
    result = ex.execute(Session(1), QUERY_ENDING_IN_A_DOUBLED_QUOTE)
    if on:
        assert (result.kind, result.code) == ("err", 3)  # the unrewritten '' is a second string
    else:
        assert result.kind == "rows" and result.rows == []  # one value (not a valid pipe name)


@pytest.mark.parametrize("plus", [True, False])
def test_fs_reply_without_plus(plus):
    import random

    from emulator.freeswitch.conference import Bridge, Channel
    bridge = Bridge(clock=ManualClock(), rng=random.Random(1), profile=profile_with(fs_reply_without_plus=not plus))
    member = bridge.join("1*r-FSdefaultDomain", "video", Channel("u", "000001002", "000001002"))
    reply = bridge.api(f"conference 1*r-FSdefaultDomain mute {member.id}")
    assert reply.startswith("+OK mute") is plus and reply.startswith("OK mute") is (not plus)


@pytest.mark.parametrize("on", [True, False])
def test_comet_esl_link_not_restored(on):
    """After a FreeSWITCH restart the comet server's link to the in-process node is dead (on) until the
    comet server restarts, or made again at once (off).  The ESL-over-network twin is tested in
    tests/integration/test_split_modes.py, the whole story in tests/integration/test_faults.py."""
    from emulator.cometql.conference import FreeswitchNode
    from emulator.freeswitch.conference import Bridge
    from emulator.stack import InProcessEslLink

    node = FreeswitchNode(server="127.0.0.1", esl_port=8021, ws_port=7443)
    link = InProcessEslLink(Bridge(clock=ManualClock()), node, profile_with(comet_esl_link_not_restored=on))
    assert link(node).startswith("<?xml")
    link.freeswitch_restarted()
    if on:
        with pytest.raises(ConnectionError, match="not reconnect"):
            link(node)
        link.comet_restarted()
    assert link(node).startswith("<?xml")
