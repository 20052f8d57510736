"""The comet side of video calls without I/O: INSERT/SELECT/DELETE conference, conference_members.

Spec: video-call-flow.md 2.2, 2.3, 4.1, 4.2; cometql.md 9.10, 9.11; reference-observations.md 3b.
"""

from __future__ import annotations

import json
import uuid

import pytest

from emulator.cometql.conference import (
    ConferenceService,
    FreeswitchNode,
    call_pipe,
    node_index,
    parse_xml_list,
    scan_caller_id,
)
from emulator.cometql.tables import Executor, Session
from emulator.config import Config
from tests.conftest import FakeConn, make_hub, url

# reference-observations.md 3b: config B (one node 127.0.0.1, WSport default 7443), dev 1, user 1 key "abc"
REF_3B_CALL_KEY = "7727aaec-e9d8-11f1-b805-02fc00000001"
REF_3B_FRAME = ('{"data":{"message":"{}","sys":{"callKey":"7727aaec-e9d8-11f1-b805-02fc00000001",'
                '"callPipe":"web_syscall_vA_STRAEKjAGcfSeGBwAACetRJrCUUA","caller_id":1,"conference":"true",'
                '"conference_name":"101","mode":"video","serverName":"127.0.0.1","serverPort":7443,'
                '"sipNumber":"1*101*video","stream":0}},"event":"sys_sipCall","pipe":"msg"}')
REF_3B_INSERT = "INSERT INTO conference (name, user_id, caller_id, message, profile) VALUES ('101', 1, 1, '{}', 'video');"

LOCAL = {"server": "127.0.0.1"}


def setup(nodes=(LOCAL,), dev=15, profile="cppcomet-4.09", **kw):
    hub = make_hub(profile)
    service = ConferenceService(hub, list(nodes), **kw)
    executor = Executor(hub, hub.profile, conference=service)
    return hub, service, executor, Session(dev_id=dev, database="CometQL_v1")


def sql(executor, session, text):
    result = executor.execute(session, text)
    if result.kind == "err":
        return ("err", result.code, result.message)
    if result.kind == "rows":
        return result.rows
    return ("ok", result.affected, result.insert_id)


def invite(room="101", user=1, caller=1, message="{}", profile="video", extra=""):
    return (f"INSERT INTO conference (name, user_id, caller_id, message, profile{extra and ', stream'}) "
            f"VALUES ('{room}', '{user}', '{caller}', '{message}', '{profile}'{extra and ', ' + repr(extra)})")


# --- callPipe and node choice (2.3.2, 2.3.4) -------------------------------------------------------------


def test_call_pipe_matches_the_spec_example():
    assert call_pipe("15*101*video", "fs.example.com", 7443, 15, "0000000") == \
        "web_syscall_vA_dwZNAAmfYohAXAvApiAYsAzyYjQA"


def test_call_pipe_matches_the_reference_run():
    # the real server's push in 3b, with the shipped pipesalt
    assert call_pipe("1*101*video", "127.0.0.1", 7443, 1, "0000000") == "web_syscall_vA_STRAEKjAGcfSeGBwAACetRJrCUUA"


def test_call_pipe_shape_and_salt():
    a = call_pipe("15*101*video", "fs.example.com", 7443, 15, "0000000")
    b = call_pipe("15*101*video", "fs.example.com", 7443, 15, "pipesalt")
    assert a != b and len(a) == len(b) == 43 and a.startswith("web_syscall_vA_")
    assert all("A" <= c <= "z" for c in a[len("web_syscall_vA_"):])


def test_node_index_formula():
    # n = dev*1000000 + sum(ascii(name[i])*10*i, i >= 1): '101' -> 48*10*1 + 49*10*2 = 1460
    n = 15 * 1000000 + 1460
    for count in (1, 2, 3, 5, 7):
        assert node_index(15, "101", count) == n % count
    # the first character adds nothing: every room differing only there lands on the same node
    assert len({node_index(15, first + "01", 7) for first in "0123456789abc"}) == 1
    # a UTF-8 byte counts as a (negative) C char, and n % count is taken on n as unsigned 64 bits
    n = 0 * 1000000 + (0xD0 - 256) * 10 * 1 + (0xB9 - 256) * 10 * 2  # "aй": 61 d0 b9 -> n = -1900
    assert n < 0 and node_index(0, "aй", 3) == (n + 2**64) % 3 != n % 3


def test_insert_goes_to_the_hashed_node():
    nodes = [{"server": f"fs{i}.local", "ws_port": 7443 + i} for i in range(3)]
    hub, service, executor, session = setup(nodes)
    for room in ("101", "102", "room-7", "x"):
        assert sql(executor, session, invite(room)) == ("ok", 1, 0)
        node = nodes[node_index(15, room, 3)]
        (row,) = sql(executor, session, f"SELECT node FROM conference WHERE name = '{room}'")
        assert row == [f"{node['server']}:{node['ws_port']}"]


# --- the push (2.3.6, reference 3b) -----------------------------------------------------------------------


def test_push_frame_bytes_match_reference_3b():
    hub, service, executor, _ = setup([{"server": "127.0.0.1"}], new_call_key=lambda: REF_3B_CALL_KEY)
    hub.set_hash(1, 1, "abc")
    browser = FakeConn(hub, url("abc", 1, dev_id=1))
    browser.frames.clear()
    assert sql(executor, Session(dev_id=1, database="CometQL_v1"), REF_3B_INSERT) == ("ok", 1, 0)
    assert browser.frames == [REF_3B_FRAME]


def test_push_reaches_every_tab_of_the_user_only_and_call_keys_are_fresh_uuid1():
    hub, service, executor, session = setup(pipesalt="0000000")
    hub.set_hash(15, 7, "k7")
    hub.set_hash(15, 8, "k8")
    tabs = [FakeConn(hub, url("k7", 7, dev_id=15, uuid=c * 32)) for c in "ab"]
    other = FakeConn(hub, url("k8", 8, dev_id=15))
    for c in (*tabs, other):
        c.frames.clear()
    sql(executor, session, invite(user=7, caller=8))
    sql(executor, session, invite(user=7, caller=8))
    assert other.frames == []
    keys = []
    for tab in tabs:
        frames = tab.json()
        assert len(frames) == 2 and tab.frames[0].startswith('{"data":{"message":"{}","sys":{"callKey":"')
        sys = frames[0]["data"]["sys"]
        assert sys["callPipe"] == call_pipe("15*101*video", "127.0.0.1", 7443, 15, "0000000")
        assert (sys["caller_id"], sys["serverPort"], sys["stream"], sys["conference"]) == (8, 7443, 0, "true")
        assert "type" not in sys
        keys += [f["data"]["sys"]["callKey"] for f in frames]
    assert keys[0] == keys[2] and keys[1] == keys[3] and keys[0] != keys[1]  # one key per INSERT
    for key in keys:
        assert len(key) == 36 and key == key.lower() and uuid.UUID(key).version == 1


def test_offline_user_gets_the_invite_from_the_queue():
    hub, service, executor, session = setup(new_call_key=lambda: REF_3B_CALL_KEY)
    assert sql(executor, session, invite(user=5, caller=6, message='{"room":"101"}')) == ("ok", 1, 0)
    (queued,) = hub.store.queued_messages(15, 5)
    assert queued["event"] == "sys_sipCall"
    data = json.loads(queued["message"])
    assert data == {"message": '{"room":"101"}', "sys": {
        "callKey": REF_3B_CALL_KEY, "callPipe": call_pipe("15*101*video", "127.0.0.1", 7443, 15, "0000000"),
        "caller_id": 6, "conference": "true", "conference_name": "101", "mode": "video",
        "serverName": "127.0.0.1", "serverPort": 7443, "sipNumber": "15*101*video", "stream": 0}}
    assert queued["message"].startswith('{"message":"{\\"room\\":\\"101\\"}","sys":{"callKey":')  # sorted, compact
    queued_at = hub.now()
    hub.clock.advance(1)
    hub.set_hash(15, 5, "k5")
    browser = FakeConn(hub, url("k5", 5, dev_id=15))
    frames = browser.json()
    assert frames[1] == {"data": queued["message"], "event": "sys_sipCall", "fromQueue": True,
                         "message_send_time": queued_at, "pipe": "msg"}
    assert hub.store.queued_messages(15, 5) == []


def test_defaults_and_leading_digit_rules():
    hub, service, executor, session = setup(new_call_key=lambda: REF_3B_CALL_KEY)
    sql(executor, session, "INSERT INTO conference (name, user_id, message) VALUES ('r1', 3, 'hi')")
    sql(executor, session, "INSERT INTO conference (name, user_id, caller_id, message, profile, stream) "
                           "VALUES ('r2', '4x', '12abc', 'm', 'audio', '9z')")
    first = json.loads(hub.store.queued_messages(15, 3)[0]["message"])["sys"]
    assert (first["sipNumber"], first["mode"], first["caller_id"], first["stream"]) == ("15*r1*default", "default", 0, 0)
    second = json.loads(hub.store.queued_messages(15, 4)[0]["message"])["sys"]
    assert (second["sipNumber"], second["caller_id"], second["stream"]) == ("15*r2*audio", 12, 9)
    # the stored stream is the (never set) StreamServer string, not the INSERT's value
    assert sql(executor, session, "SELECT * FROM conference WHERE name = 'r2'") == \
        [["r2", "4", "12", "m", "audio", "", "127.0.0.1:7443"]]


def test_ws_host_is_what_browsers_dial_and_what_the_row_stores():
    hub, service, executor, session = setup([{"server": "10.0.0.5", "esl_port": 8021, "esl_password": "ClueCon",
                                              "ws_port": 443, "ws_host": "fs.example.com"}])
    sql(executor, session, invite())
    sys = json.loads(hub.store.queued_messages(15, 1)[0]["message"])["sys"]
    assert (sys["serverName"], sys["serverPort"]) == ("fs.example.com", 443)
    assert sys["callPipe"] == call_pipe("15*101*video", "fs.example.com", 443, 15, "0000000")
    assert sql(executor, session, "SELECT node FROM conference WHERE name = '101'") == [["fs.example.com:443"]]


def test_insert_errors():
    hub, service, executor, session = setup(nodes=())
    assert sql(executor, session, invite()) == ("err", 500, "field in ini file not set option `host` in section `sip`")
    hub, service, executor, session = setup()
    assert sql(executor, session, "INSERT INTO conference (user_id, message) VALUES (1, 'm')") == \
        ("err", 12, "field `name` is required")
    assert sql(executor, session, "INSERT INTO conference (name, message) VALUES ('r', 'm')") == \
        ("err", 12, "field `user_id` is required")
    assert sql(executor, session, "INSERT INTO conference (name, user_id) VALUES ('r', 1)") == \
        ("err", 12, "field `message` is required")
    # a user id that wraps to a negative C int
    assert sql(executor, session, invite(user=4294967295)) == ("err", 12, "The user_id field must be non-negative")
    assert hub.store.conference_rows(15, "r") == [] and hub.store.conference_rows(15, "101") == []


# --- SELECT / DELETE (4.1) ----------------------------------------------------------------------------------


def test_select_replace_and_delete():
    hub, service, executor, session = setup()
    cols = ["name", "user_id", "caller_id", "message", "profile", "stream", "node"]
    assert executor.execute(session, "SELECT * FROM conference WHERE name = '101'").columns == cols
    sql(executor, session, invite(user=2, caller=1))
    sql(executor, session, invite(user=1, caller=1))
    sql(executor, session, invite(user=2, caller=9, message="again"))  # REPLACE: same (dev, name, user)
    sql(executor, session, invite(room="102", user=3))
    assert sql(executor, session, "SELECT * FROM conference WHERE name = '101'") == [
        ["101", "1", "1", "{}", "video", "", "127.0.0.1:7443"],
        ["101", "2", "9", "again", "video", "", "127.0.0.1:7443"]]
    assert sql(executor, session, "SELECT user_id FROM conference WHERE name IN ('102', '101', 'bad name!')") == \
        [["3"], ["1"], ["2"]]
    assert sql(executor, session, "SELECT * FROM conference") == \
        ("err", 13, "Selection without transferring the requested values of the primary key is not supported")
    # tenancy: another dev_id sees nothing
    assert sql(executor, Session(dev_id=16, database="CometQL_v1"), "SELECT * FROM conference WHERE name = '101'") == []

    before = len(hub.store.queued_messages(15, 2))
    assert sql(executor, session, "DELETE FROM conference WHERE name = '101' AND user_id = 2") == ("ok", 0, 0)
    assert sql(executor, session, "SELECT user_id FROM conference WHERE name = '101'") == [["1"]]
    assert len(hub.store.queued_messages(15, 2)) == before  # no notification of any kind
    # without a user_id condition ([REC], undefined in the original): the whole room
    sql(executor, session, invite(user=4))
    assert sql(executor, session, "DELETE FROM conference WHERE name = '101'") == ("ok", 0, 0)
    assert sql(executor, session, "SELECT * FROM conference WHERE name = '101'") == []
    assert sql(executor, session, "SELECT user_id FROM conference WHERE name = '102'") == [["3"]]


# --- conference_members: the xml_list parser (4.2) -----------------------------------------------------------

FS16 = """<?xml version="1.0"?>
<conferences>
  <conference name="15*101-FSdefaultDomain" member-count="3" ghost-count="0" rate="8000" uuid="u" running="true" answered="true" dynamic="true" run_time="95">
    <members>
      <member type="recording_node"><record_path>/tmp/rec.wav</record_path><join_time type="UNIX-epoch">1513829830</join_time></member>
      <member type="caller"><id>7</id><flags><can_hear>true</can_hear><has_floor>true</has_floor></flags>
        <uuid>a</uuid><caller_id_name>000015123</caller_id_name><caller_id_number>000015123</caller_id_number>
        <join_time>95</join_time><last_talking>4</last_talking><energy>100</energy></member>
      <member type="caller"><id>8</id><flags/><uuid>b</uuid><caller_id_name>000015456</caller_id_name>
        <caller_id_number>000015456</caller_id_number><join_time>30</join_time><last_talking>N/A</last_talking></member>
      <member type="caller"><id>9</id><uuid>c</uuid><caller_id_name>000016777</caller_id_name>
        <join_time>5</join_time><last_talking>N/A</last_talking></member>
    </members>
  </conference>
  <conference name="16*101-FSdefaultDomain" member-count="1" run_time="9">
    <members><member type="caller"><id>1</id><caller_id_name>000016001</caller_id_name><join_time>9</join_time><last_talking>N/A</last_talking></member></members>
  </conference>
  <conference name="15*202*video-FSdefaultDomain" member-count="1" run_time="2">
    <members><member type="caller"><id>2</id><caller_id_name>0000151</caller_id_name><join_time>2</join_time><last_talking>1</last_talking></member></members>
  </conference>
</conferences>
"""

FS110 = """<?xml version="1.0"?>
<conferences>
  <conference name="15*101-FSdefaultDomain" member-count="1" ghost-count="0" rate="8000" run_time="95">
    <variables><variable name="conference_name">15*101-FSdefaultDomain</variable></variables>
    <members>
      <member type="caller"><id>7</id><caller_id_name>000015123</caller_id_name><join_time>95</join_time><last_talking>4</last_talking></member>
    </members>
  </conference>
</conferences>
"""


def test_parse_fs16_xml_list():
    assert parse_xml_list(FS16, 15) == [["101", "123", "95", "4"], ["101", "456", "30", "N/A"], ["202", "1", "2", "1"]]
    assert parse_xml_list(FS16, 15, "202") == [["202", "1", "2", "1"]]
    assert parse_xml_list(FS16, 16) == [["101", "1", "9", "N/A"]]
    assert parse_xml_list(FS16, 17) == []


def test_parse_fs110_variables_first_child_gives_nothing():
    assert parse_xml_list(FS110, 15) == []
    assert parse_xml_list(FS110.replace("<variables>", "<!-- c --><members-first/><variables>"), 15) == []
    assert parse_xml_list(FS110.replace("\n    <variables>", "<members/>\n    <variables>"), 15) == []


def test_parse_room_names_with_dash_and_odd_names():
    doc = """<conferences>
      <conference name="15*a-b-FSdefaultDomain"><members><member type="caller"><caller_id_name>000015001</caller_id_name><join_time>1</join_time><last_talking>N/A</last_talking></member></members></conference>
      <conference name="15*plain"><members><member type="caller"><caller_id_name>000015002</caller_id_name><join_time>2</join_time><last_talking>N/A</last_talking></member></members></conference>
      <conference name="nostar-FSdefaultDomain"><members><member type="caller"><caller_id_name>000015003</caller_id_name><join_time>3</join_time><last_talking>N/A</last_talking></member></members></conference>
      <conference name=" 015*z-x"><members><member type="caller"><caller_id_name>000015004</caller_id_name><join_time>4</join_time><last_talking>N/A</last_talking></member></members></conference>
      <conference><members/></conference>
      <conference name="15*empty-x"/>
    </conferences>"""
    # 'a-b' is cut at '-'; a name with no '*'/'-' after the room gives an empty room; no '*': skipped
    assert parse_xml_list(doc, 15) == [["a", "1", "1", "N/A"], ["", "2", "2", "N/A"], ["z", "4", "4", "N/A"]]
    assert parse_xml_list(doc, 15, "a-b") == []
    assert parse_xml_list(doc, 15, "a") == [["a", "1", "1", "N/A"]]


def test_parse_members_edge_cases():
    doc = """<conferences><conference name="15*r-D"><members>
      <member><caller_id_name>000015001</caller_id_name><join_time>1</join_time></member>
      <member type="caller"><join_time>2</join_time><last_talking>N/A</last_talking></member>
      <member type="caller"><caller_id_name></caller_id_name><join_time>3</join_time></member>
      <member type="caller"><caller_id_name>x</caller_id_name><join_time>4</join_time></member>
      <member type="caller"><caller_id_name>000015</caller_id_name><join_time>5</join_time><last_talking>N/A</last_talking></member>
      <member type="caller"><caller_id_name>15</caller_id_name><join_time>6</join_time><last_talking>N/A</last_talking></member>
      <member type="caller"><caller_id_name>000015042</caller_id_name></member>
    </members></conference></conferences>"""
    # no type / no caller_id_name / empty one: skipped; "x" scans as dev 0 (!= 15); "000015" is user 0;
    # "15" is dev 15 user 0; missing join_time/last_talking (the original crashes): empty
    assert parse_xml_list(doc, 15) == [["r", "0", "5", "N/A"], ["r", "0", "6", "N/A"], ["r", "42", "", ""]]
    assert parse_xml_list(doc, 0) == []  # "x" scans as dev 0, but the conference name says dev 15


def test_parse_unreachable_or_not_xml():
    assert parse_xml_list(None, 15) == []
    assert parse_xml_list("", 15) == []
    assert parse_xml_list("-ERR no conferences\n", 15) == []
    assert parse_xml_list('<?xml version="1.0"?>\n<conferences></conferences>\n', 15) == []
    assert parse_xml_list("\n  " + FS16, 15)[0] == ["101", "123", "95", "4"]


def test_scan_caller_id():
    assert scan_caller_id("000015123") == (15, 123)
    assert scan_caller_id("0000151") == (15, 1)
    assert scan_caller_id("000015") == (15, 0)
    assert scan_caller_id("Extension 1") == (0, 0)
    assert scan_caller_id("1234567") == (123456, 7)


# --- conference_members through the executor ----------------------------------------------------------------


class FakeBridges:
    def __init__(self, bodies):
        self.bodies = bodies
        self.calls: list[str] = []

    def __call__(self, node: FreeswitchNode):
        self.calls.append(node.esl_id)
        body = self.bodies.get(node.esl_id)
        if isinstance(body, Exception):
            raise body
        return body


def test_members_without_where_asks_the_first_node_only():
    nodes = [{"server": "a", "ws_port": 7443}, {"server": "b", "ws_port": 7443}]
    hub, service, executor, session = setup(nodes)
    bridges = FakeBridges({"a:7443": FS16, "b:7443": FS16})
    service.xml_list = bridges
    result = executor.execute(session, "SELECT * FROM conference_members")
    assert result.columns == ["name", "user_id", "join_time", "last_talking"]
    assert result.rows == [["101", "123", "95", "4"], ["101", "456", "30", "N/A"], ["202", "1", "2", "1"]]
    assert bridges.calls == ["a:7443"]


def test_members_with_where_asks_the_nodes_recorded_for_the_room():
    nodes = [{"server": "a"}, {"server": "b"}, {"server": "c"}]
    hub, service, executor, session = setup(nodes)
    bridges = FakeBridges({"a:7443": FS16, "b:7443": FS16, "c:7443": FS16})
    service.xml_list = bridges
    assert sql(executor, session, "SELECT * FROM conference_members WHERE name = '101'") == []  # no invitation yet
    assert bridges.calls == []
    sql(executor, session, invite(room="101", user=123))
    node = nodes[node_index(15, "101", 3)]["server"] + ":7443"
    assert sql(executor, session, "SELECT user_id, last_talking FROM conference_members WHERE name = '101'") == \
        [["123", "4"], ["456", "N/A"]]
    assert bridges.calls == [node]
    # a stale row on another node: both nodes are asked (rows of each, in node order)
    other = next(n["server"] + ":7443" for n in nodes if n["server"] + ":7443" != node)
    hub.store.replace_conference(15, "101", 99, 0, "{}", "video", "", other, 0)
    bridges.calls.clear()
    assert len(sql(executor, session, "SELECT * FROM conference_members WHERE name = '101'")) == 4
    assert bridges.calls == sorted([node, other])
    # invalid names are skipped without asking anybody
    bridges.calls.clear()
    assert sql(executor, session, "SELECT * FROM conference_members WHERE name = 'a b'") == []
    assert bridges.calls == []


def test_members_node_id_mismatch_when_ws_host_differs_from_server():
    hub, service, executor, session = setup([{"server": "10.0.0.5", "ws_host": "fs.example.com"}])
    bridges = FakeBridges({"10.0.0.5:7443": FS16})
    service.xml_list = bridges
    sql(executor, session, invite())
    assert sql(executor, session, "SELECT * FROM conference_members WHERE name = '101'") == []
    assert bridges.calls == []  # stored "fs.example.com:7443" never equals the link id "10.0.0.5:7443"
    assert len(sql(executor, session, "SELECT * FROM conference_members")) == 3  # no WHERE: first node


def test_members_unreachable_bridge_is_empty():
    hub, service, executor, session = setup()
    assert sql(executor, session, "SELECT * FROM conference_members") == []  # no xml_list provider yet
    service.xml_list = FakeBridges({"127.0.0.1:7443": ConnectionRefusedError("nothing listens")})
    assert sql(executor, session, "SELECT * FROM conference_members") == []
    service.xml_list = FakeBridges({})  # None: no reply body
    assert sql(executor, session, "SELECT * FROM conference_members") == []
    hub, service, executor, session = setup(nodes=())
    assert sql(executor, session, "SELECT * FROM conference_members") == []
    assert sql(executor, session, "INSERT INTO conference_members (name, user_id) VALUES ('1', 1)") == \
        ("err", 10, "insert into `conference_members` is not ready yet")


# --- configuration ------------------------------------------------------------------------------------------


def test_node_config_defaults_and_validation():
    node = FreeswitchNode.from_config({})
    assert (node.server, node.esl_port, node.esl_password, node.ws_port, node.ws_host) == \
        ("localhost", 0, "CueCon", 7443, "localhost")
    node = FreeswitchNode.from_config({"server": "10.1.1.1", "esl_port": "8021", "ws_host": "pub.example"})
    assert (node.esl_port, node.esl_id, node.db_node) == (8021, "10.1.1.1:7443", "pub.example:7443")
    with pytest.raises(ValueError, match="wsport"):
        FreeswitchNode.from_config({"wsport": 1})


def test_config_toml_carries_the_sip_section(tmp_path):
    path = tmp_path / "cometbench.toml"
    path.write_text('pipesalt = "s3cret"\n[[freeswitch]]\nserver = "127.0.0.1"\nws_port = 7443\n'
                    '[[freeswitch]]\nserver = "127.0.0.2"\n')
    cfg = Config.from_toml(path)
    assert cfg.pipesalt == "s3cret" and [n["server"] for n in cfg.freeswitch] == ["127.0.0.1", "127.0.0.2"]
    assert Config().freeswitch == [] and Config().pipesalt == "0000000"
