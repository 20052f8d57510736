"""The mod_conference model: profiles, lifecycle, max-members, the API in both reply forms, xml_list,
events, talking and floor, ghosts and the RTP timeout, recording, and an hour-long call under a
MockClock."""

from __future__ import annotations

import itertools
import random
import time
import wave
import xml.etree.ElementTree as ET

import pytest
import trio

from emulator.clock import ManualClock, WallClock
from emulator.cometql.conference import parse_xml_list
from emulator.freeswitch import media
from emulator.freeswitch.conference import (
    MAINT,
    QUIRK_GHOST,
    QUIRK_PLUS,
    Bridge,
    Channel,
    Member,
    Refusal,
    TalkPattern,
    url_encode,
)
from emulator.freeswitch.conference_profiles import (
    ConferenceProfiles,
    builtin_profile,
    load_conference_profiles,
    parse_max_members,
    profile_from_params,
)
from emulator.journal import Journal
from emulator.profiles import QUIRKS, get_profile
from emulator.wire.cnum import c_strtol

ROOM = "15*101-FSdefaultDomain"
FAITHFUL = "cppcomet-4.09"


def make_bridge(tmp_path, *, fidelity=FAITHFUL, talk=False, clock=None, seed=1, profiles=None, **quirks):
    prof = get_profile(fidelity)
    if quirks:
        prof = prof.with_quirks(**quirks)
    bridge = Bridge(profiles, clock=clock or ManualClock(), rng=random.Random(seed), profile=prof,
                    recordings_dir=tmp_path / "rec", talk=TalkPattern() if talk else TalkPattern(enabled=False))
    events = []
    bridge.subscribe(events.append)
    return bridge, events


def chan(user: int, hangups: list | None = None, *, dev: int = 15, **kw) -> Channel:
    cid = f"{dev:06d}{user}"

    def hangup(cause: str) -> None:
        if hangups is not None:
            hangups.append((user, cause))
    return Channel(uuid=f"00000000-0000-4000-8000-{user:012d}", caller_id_name=cid, caller_id_number=cid,
                   hangup=hangup, destination_number=f"{dev}*101*video", **kw)


def actions(events, since: int = 0) -> list[str]:
    return [e.action for e in events[since:]]


# --- profiles ------------------------------------------------------------------------------------


def test_shipped_profiles_and_the_two_member_profile():
    profiles = load_conference_profiles()
    assert set(profiles) == {"default", "video", "audio", "video-2"}
    for name in ("default", "video", "audio", "video-2"):
        p = profiles[name]
        assert (p.rate, p.interval, p.energy_level, p.comfort_noise) == (8000, 20, 100, 1400)
        assert p.domain == "FSdefaultDomain" and p.auto_record is None and p.video_mode == "passthrough"
    assert profiles["default"].sounds["enter-sound"].startswith("tone_stream://")
    assert profiles["default"].sounds["kicked-sound"] == "conference/conf-kicked.wav"
    assert profiles["video"].sounds == {} and profiles["audio"].sounds == {} and profiles["video-2"].sounds == {}
    assert [profiles[n].max_members for n in ("default", "video", "audio", "video-2")] == [0, 0, 0, 2]
    assert profiles["default"].params["moh-sound"] == "local_stream://moh"


def test_unknown_profile_gets_the_builtin_defaults(tmp_path):
    profiles = load_conference_profiles()
    none = profiles.resolve("vidoe")
    assert none == builtin_profile() and none.name == "none" and none.builtin
    assert (none.rate, none.interval, none.energy_level, none.comfort_noise, none.max_members) == (8000, 20, 0, 0, 0)
    assert profiles.resolve(None).name == "default"
    bridge, events = make_bridge(tmp_path)
    bridge.join(ROOM, "vidoe", chan(1, variables={"presence_id": "0000151@FSdefaultDomain"}))
    assert events[0]["Conference-Profile-Name"] == "none" and events[0]["Conference-Domain"] == "FSdefaultDomain"
    bridge.join("15*102-FSdefaultDomain", "vidoe", chan(2))
    assert bridge.conference("15*102-FSdefaultDomain").domain == "cluecon.com"
    assert bridge.member(1).energy_level == 0


@pytest.mark.parametrize("text,expected", [
    ("2", 2), ("1", 0), ("0", 0), ("-3", 0), ("abc", 0), ("0x10", 16), ("010", 8), ("12abc", 12), (None, 0), ("", 0)])
def test_max_members_parsing(text, expected):
    assert parse_max_members(text) == expected


def test_param_validation():
    p = profile_from_params("x", {"rate": "12345", "interval": "25", "comfort_noise": "500",
                                  "min-required-recording-participants": "3", "Video-Mode": "MUX",
                                  "energy_level": "-5", "max_members": "0x3"})
    assert (p.rate, p.interval, p.comfort_noise, p.min_required_recording_participants) == (8000, 20, 500, 1)
    assert p.video_mode == "mux" and p.energy_level == 0 and p.max_members == 3
    assert profile_from_params("y", {"comfort-noise": "false"}).comfort_noise == 0
    two = profile_from_params("y", {"min-required-recording-participants": "2"})
    assert two.min_required_recording_participants == 2
    assert c_strtol("  +7") == 7 and c_strtol("x") is None


# --- lifecycle and events ---------------------------------------------------------------------------


BASE_HEADERS = ["Event-Subclass", "Event-Name", "Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname",
                "FreeSWITCH-IPv4", "FreeSWITCH-IPv6", "Event-Date-Local", "Event-Date-GMT", "Event-Date-Timestamp",
                "Event-Calling-File", "Event-Calling-Function", "Event-Calling-Line-Number", "Event-Sequence"]
CONF_HEADERS = ["Conference-Name", "Conference-Domain", "Conference-Size", "Conference-Ghosts",
                "Conference-Profile-Name", "Conference-Unique-ID"]
MEMBER_TAIL = ["Video", "Hear", "See", "Speak", "Talking", "Mute-Detect", "Member-ID", "Member-Type",
               "Energy-Level", "Current-Energy", "Action"]


def test_lifecycle_events_in_order_with_headers(tmp_path):
    bridge, events = make_bridge(tmp_path)
    m1 = bridge.join(ROOM, "video", chan(123))
    bridge.clock.advance(2)
    m2 = bridge.join(ROOM, "video", chan(456))
    assert actions(events) == ["conference-create", "add-member", "floor-change", "video-floor-change", "add-member"]
    create, add1, floor, vfloor, add2 = events
    for e in events:
        assert e.name == "CUSTOM" and e.subclass == MAINT
        assert e.names()[:14] == BASE_HEADERS and e.names()[14:20] == CONF_HEADERS
        assert e["Event-Subclass"] == MAINT and e["Event-Name"] == "CUSTOM" and e["Core-UUID"] == bridge.core_uuid
    assert create.names()[20:] == ["Action"] and create["Conference-Size"] == "0"
    assert create["Conference-Name"] == ROOM and create["Conference-Profile-Name"] == "video"
    names = add1.names()
    assert names[20] == "Floor" and names[21] == "Channel-State" and names[-len(MEMBER_TAIL):] == MEMBER_TAIL
    assert "Member-Ghost" not in names and "Hold" not in names
    assert add1["Conference-Size"] == "1" and add1["Member-ID"] == "1" and add1["Member-Type"] == "member"
    assert add1["Caller-Caller-ID-Name"] == "000015123" and add1["Unique-ID"] == m1.uuid
    assert add1["Video"] == "true" and add1["Speak"] == "true" and add1["Floor"] == "false"
    assert add1["Energy-Level"] == "100" and add1["Channel-State"] == "CS_EXECUTE"
    assert (floor["Old-ID"], floor["New-ID"], vfloor["Old-ID"], vfloor["New-ID"]) == ("none", "1", "none", "1")
    assert add2["Conference-Size"] == "2" and add2["Member-ID"] == "2" and add2["Floor"] == "false"
    assert int(add2["Event-Date-Timestamp"]) - int(add1["Event-Date-Timestamp"]) == 2_000_000
    assert [int(e["Event-Sequence"]) for e in events] == [1, 2, 3, 4, 5]
    uid = create["Conference-Unique-ID"]

    n = len(events)
    assert bridge.leave(m1.id, "NORMAL_CLEARING") and not bridge.leave(m1.id)
    assert actions(events, n) == ["floor-change", "video-floor-change", "del-member", "floor-change",
                                  "video-floor-change"]
    dele = events[n + 2]
    assert dele["Conference-Size"] == "1" and dele["Member-ID"] == "1" and dele["Hangup-Cause"] == "NORMAL_CLEARING"
    assert dele["Channel-Call-State"] == "HANGUP" and events[n + 3]["New-ID"] == "2"
    n = len(events)
    bridge.leave(m2.id)
    assert actions(events, n) == ["floor-change", "video-floor-change", "del-member", "conference-destroy"]
    assert events[-1]["Conference-Size"] == "0" and events[-1]["Conference-Unique-ID"] == uid
    assert bridge.conferences == {}
    bridge.join(ROOM, "video", chan(789))
    assert events[-4].action == "conference-create" and events[-4]["Conference-Unique-ID"] != uid


def test_member_ids_are_global_to_the_node(tmp_path):
    bridge, _ = make_bridge(tmp_path)
    ids = [bridge.join(f"15*{room}-FSdefaultDomain", "video", chan(room)).id for room in (101, 102, 101, 103)]
    assert ids == [1, 2, 3, 4]
    bridge.leave(1)
    assert bridge.join("15*101-FSdefaultDomain", "video", chan(9)).id == 5   # never reused
    other, _ = make_bridge(tmp_path)
    assert other.join(ROOM, "video", chan(1)).id == 1                        # another node, another pool
    shared = itertools.count(100)
    a = Bridge(clock=ManualClock(), member_ids=shared, talk=TalkPattern(enabled=False))
    b = Bridge(clock=ManualClock(), member_ids=shared, talk=TalkPattern(enabled=False))
    assert [a.join(ROOM, "video", chan(1)).id, b.join(ROOM, "video", chan(2)).id] == [100, 101]


# --- max-members ---------------------------------------------------------------------------------------


def test_two_member_limit_refuses_the_third_joiner(tmp_path):
    bridge, events = make_bridge(tmp_path)
    hangups = []
    a = bridge.join(ROOM, "video-2", chan(1, hangups))
    b = bridge.join(ROOM, "video-2", chan(2, hangups))
    n = len(events)
    third = bridge.join(ROOM, "video-2", chan(3, hangups))
    assert isinstance(third, Refusal)
    assert (third.reason, third.conference, third.max_members, third.cause) == ("full", ROOM, 2, "NORMAL_CLEARING")
    assert events[n:] == [] and hangups == []          # no add-member; the SIP layer sends the BYE
    assert bridge.conference(ROOM).count == 2 and isinstance(a, Member) and isinstance(b, Member)
    assert ' max_members="2"' in bridge.api("conference xml_list")
    bridge.leave(a.id)
    assert isinstance(bridge.join(ROOM, "video-2", chan(4)), Member)
    assert isinstance(bridge.join(ROOM, "video-2", chan(5)), Refusal)


def test_unlimited_when_absent_or_one_and_the_channel_variable(tmp_path):
    profiles = load_conference_profiles().with_profile(profile_from_params("one", {"max-members": "1"}))
    bridge, _ = make_bridge(tmp_path, profiles=profiles)
    for user in range(6):
        assert isinstance(bridge.join(ROOM, "video", chan(user)), Member)
        assert isinstance(bridge.join("15*102-FSdefaultDomain", "one", chan(100 + user)), Member)
    # conference_max_members is read when the conference is created: "1" is invalid (ignored)
    bridge.join("15*200-FSdefaultDomain", "video-2", chan(1, variables={"conference_max_members": "1"}))
    assert bridge.conference("15*200-FSdefaultDomain").max_members == 2
    bridge.join("15*201-FSdefaultDomain", "video-2", chan(1, variables={"conference_max_members": "0"}))
    assert bridge.conference("15*201-FSdefaultDomain").max_members == 0
    room = "15*202-FSdefaultDomain"
    bridge.join(room, "video", chan(1, variables={"conference_max_members": "3"}))
    bridge.join(room, "video", chan(2, variables={"conference_max_members": "9"}))   # too late: ignored
    bridge.join(room, "video", chan(3))
    assert isinstance(bridge.join(room, "video", chan(4)), Refusal)


def test_set_max_members_at_runtime(tmp_path):
    bridge, _ = make_bridge(tmp_path)
    bridge.join(ROOM, "video", chan(1))
    assert bridge.api(f"conference {ROOM} set max_members 1") == "0"
    assert isinstance(bridge.join(ROOM, "video", chan(2)), Refusal)   # set accepts 1, unlike the profile
    assert bridge.api(f"conference {ROOM} set max_members 0") == "1"
    assert isinstance(bridge.join(ROOM, "video", chan(3)), Member)
    syntax = "set <max_members|sound_prefix|caller_id_name|caller_id_number|endconference_grace_time> <value>"
    assert bridge.api(f"conference {ROOM} set max_members -1") == syntax
    assert bridge.api(f"conference {ROOM} set max_members") == syntax
    assert bridge.api(f"conference {ROOM} get max_members") == "0"


# --- the API -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("plus", [False, True], ids=["fs1.6", "fs1.8+"])
def test_member_commands_in_both_reply_forms(tmp_path, plus):
    bridge, events = make_bridge(tmp_path, **{QUIRK_PLUS: not plus})
    hangups = []
    for user in (1, 2, 3):
        bridge.join(ROOM, "video", chan(user, hangups))
    ok = "+OK" if plus else "OK"
    cases = [
        ("mute 1", f"{ok} mute 1\n", "mute-member"), ("unmute 1", f"{ok} unmute 1\n", "unmute-member"),
        ("deaf 2", f"{ok} deaf 2\n", "deaf-member"), ("undeaf 2", f"{ok} undeaf 2\n", "undeaf-member"),
        ("vmute 3", f"{ok} vmute 3\n", "vmute-member"), ("unvmute 3", f"{ok} unvmute 3\n", "unvmute-member"),
        ("tmute 2", f"{ok} mute 2\n", "mute-member"), ("tmute 2", f"{ok} unmute 2\n", "unmute-member"),
    ]
    for command, reply, action in cases:
        n = len(events)
        assert bridge.api(f"conference {ROOM} {command}") == reply
        assert actions(events, n) == [action]
        assert events[n]["Member-ID"] == command.split()[1]
    assert bridge.member(1).can_speak and bridge.member(2).can_hear and bridge.member(3).can_be_seen
    bridge.api(f"conference {ROOM} mute 1")
    assert events[-1]["Speak"] == "false" and not bridge.member(1).can_speak
    bridge.api(f"conference {ROOM} deaf 1")
    assert events[-1]["Hear"] == "false"
    bridge.api(f"conference {ROOM} vmute 1")
    assert events[-1]["See"] == "false"

    missing = "-ERR Member: 9 not found.\n" if plus else "Non-Existant ID 9\n"
    assert bridge.api(f"conference {ROOM} mute 9") == missing
    assert bridge.api("conference 15*999-FSdefaultDomain mute 1") == (
        ("-ERR " if plus else "") + "Conference 15*999-FSdefaultDomain not found\n")
    assert bridge.api(f"conference {ROOM} floor 2") == f"{'-ERR' if plus else 'ERR'} floor is held by 1\n"

    n = len(events)
    assert bridge.api(f"conference {ROOM} kick 2") == f"{ok} kicked 2\n"
    assert actions(events, n) == ["kick-member", "del-member"] and hangups == [(2, "NORMAL_CLEARING")]
    n = len(events)
    assert bridge.api(f"conference {ROOM} hup 3") == ("+OK hup 3\n" if plus else "")   # 1.6 prints nothing
    assert actions(events, n) == ["hup-member", "del-member"] and hangups[-1] == (3, "NORMAL_CLEARING")
    assert bridge.api(f"conference {ROOM} kick 3") == missing.replace("9", "3")
    bridge.leave(1)
    assert bridge.api("conference list") == ("+OK No active conferences.\n" if plus else "No active conferences.\n")
    assert bridge.api("list") == bridge.api("conference list")


def test_floor_command(tmp_path):
    bridge, events = make_bridge(tmp_path)
    bridge.join(ROOM, "video", chan(1))
    bridge.join(ROOM, "video", chan(2))
    assert bridge.member(1).has_floor
    n = len(events)
    # releasing the floor: the frame loop gives a free floor to the first (newest) member at once
    assert bridge.api(f"conference {ROOM} floor 1") == "OK floor none\n"
    assert [(e.action, e["Old-ID"], e["New-ID"]) for e in events[n:]] == [
        ("floor-change", "1", "none"), ("floor-change", "none", "2"), ("video-floor-change", "1", "2")]
    assert bridge.api(f"conference {ROOM} floor 1") == "ERR floor is held by 2\n"
    assert bridge.api(f"conference {ROOM} floor") == "floor <member_id|last>"


def test_targets_all_last_non_moderator_and_bad_targets(tmp_path):
    bridge, events = make_bridge(tmp_path)
    bridge.join(ROOM, "video", chan(1, variables={"conference_member_flags": "moderator"}))
    bridge.join(ROOM, "video", chan(2))
    bridge.join(ROOM, "video", chan(3))
    assert bridge.api(f"conference {ROOM} mute non_moderator") == "OK mute 3\nOK mute 2\n"
    assert bridge.member(1).can_speak
    assert bridge.api(f"conference {ROOM} unmute all") == "OK unmute 3\nOK unmute 2\nOK unmute 1\n"
    assert bridge.api(f"conference {ROOM} deaf last") == "OK deaf 3\n"
    assert bridge.api(f"conference {ROOM} mute bogus") == "mute <[member_id|all]|last|non_moderator> [<quiet>]"
    assert bridge.api(f"conference {ROOM} mute") == "mute <[member_id|all]|last|non_moderator> [<quiet>]"
    assert bridge.api(f"conference {ROOM} mute 2x") == "OK mute 2\n"        # atoi
    assert [e["Member-Type"] for e in events if e.action == "add-member"] == ["moderator", "member", "member"]
    hangups = []
    for m in bridge.members(ROOM):
        m.channel.hangup = lambda cause, m=m: hangups.append(m.id)
    n = len(events)
    assert bridge.api(f"conference {ROOM} kick all") == "OK kicked 3\nOK kicked 2\nOK kicked 1\n"
    assert actions(events, n)[:3] == ["kick-member"] * 3 and actions(events, n)[-1] == "conference-destroy"
    assert hangups == [3, 2, 1]


def test_other_commands_and_errors(tmp_path):
    bridge, _ = make_bridge(tmp_path)
    bridge.join(ROOM, "video", chan(1))
    assert bridge.api(f"conference {ROOM}") == "Conference command, not specified.\nTry 'help'\n"
    assert bridge.api(f"conference {ROOM} frobnicate 1") == "Conference command 'frobnicate' not found.\n"
    # FreeSWITCH has no "count" sub-command; "list count" and "get count" are the real ones
    assert bridge.api(f"conference {ROOM} count") == "Conference command 'count' not found.\n"
    assert bridge.api(f"conference {ROOM} list count") == "1"
    assert bridge.api(f"conference {ROOM} get count") == "1"
    assert bridge.api(f"conference {ROOM} get profile_name") == "video"
    assert bridge.api(f"conference {ROOM} energy 1 300") == "Energy 1 = 300\n"
    assert bridge.api(f"conference {ROOM} volume_in 1 up") == "Volume IN 1 = 1\n"
    assert bridge.api(f"conference {ROOM} volume_out 1 -9") == "Volume OUT 1 = -4\n"
    assert "<conf name> list [delim <string>]|[count]" in bridge.api("conference")
    assert bridge.api("conference nosuch") == "Conference nosuch not found\n"


def test_list_formats(tmp_path):
    bridge, _ = make_bridge(tmp_path)
    bridge.join(ROOM, "video", chan(1))
    bridge.join(ROOM, "video", chan(2, has_video=False))
    line2 = ("2;sofia/internal/0000152@127.0.0.1;00000000-0000-4000-8000-000000000002;0000152;0000152;"
             "hear|speak;0;0;0;100\n")
    line1 = ("1;sofia/internal/0000151@127.0.0.1;00000000-0000-4000-8000-000000000001;0000151;0000151;"
             "hear|speak|video|floor|vid-floor;0;0;0;100\n")
    assert bridge.api(f"conference {ROOM} list") == line2 + line1
    header = (f"Conference {ROOM} (2 members rate: 8000 "
              "flags: running|answered|dynamic|exit_sound|enter_sound|json_status)\n")
    assert bridge.api("conference list") == header + line2 + line1
    assert bridge.api("conference list summary") == header
    assert bridge.api(f"conference {ROOM} list delim ,") == (line2 + line1).replace(";", ",")


# --- xml_list ----------------------------------------------------------------------------------------


def test_xml_list_empty():
    bridge = Bridge(clock=ManualClock(), talk=TalkPattern(enabled=False))
    assert bridge.api("conference xml_list") == '<?xml version="1.0"?>\n<conferences></conferences>\n'


def test_xml_list_shape_and_exact_text(tmp_path):
    bridge, _ = make_bridge(tmp_path)
    clock = bridge.clock
    bridge.join(ROOM, "video", chan(123))
    clock.advance(90)
    bridge.join(ROOM, "video", chan(456))
    bridge.set_talking(1, True)
    clock.advance(1)
    bridge.set_talking(1, False)
    clock.advance(4)
    body = bridge.api("conference xml_list")

    root = ET.fromstring(body)
    assert root.tag == "conferences" and len(root) == 1
    conf = root[0]
    assert conf.attrib["name"] == ROOM and conf.attrib["member-count"] == "2" and conf.attrib["run_time"] == "95"
    assert list(conf.attrib) == ["name", "member-count", "ghost-count", "rate", "uuid", "running", "answered",
                                 "dynamic", "exit_sound", "enter_sound", "run_time"]
    members = conf[0]
    assert members.tag == "members" and len(conf) == 1            # FS 1.6: <members> is the first child
    assert [m.get("type") for m in members] == ["caller", "caller"]
    order = ["id", "flags", "uuid", "caller_id_name", "caller_id_number", "join_time", "last_talking", "energy",
             "volume_in", "volume_out"]
    for m in members:
        assert [c.tag for c in m] == order
        assert [c.tag for c in m.find("flags")] == ["can_hear", "can_speak", "mute_detect", "talking", "has_video",
                                                    "video_bridge", "has_floor", "is_moderator", "end_conference",
                                                    "is_ghost"]
    newest, oldest = members
    assert newest.findtext("id") == "2" and newest.findtext("join_time") == "5"
    assert newest.findtext("last_talking") == "N/A" and newest.find("flags").findtext("has_floor") == "false"
    assert oldest.findtext("caller_id_name") == "000015123" and oldest.findtext("join_time") == "95"
    assert oldest.findtext("last_talking") == "4" and oldest.find("flags").findtext("has_floor") == "true"
    # what the comet server reads out of it
    assert parse_xml_list(body, 15) == [["101", "456", "5", "N/A"], ["101", "123", "95", "4"]]

    uid = bridge.conference(ROOM).uuid

    def member_xml(mid, user, join, last, floor):
        flags = "".join(f"          <{k}>{v}</{k}>\n" for k, v in (
            ("can_hear", "true"), ("can_speak", "true"), ("mute_detect", "false"), ("talking", "false"),
            ("has_video", "true"), ("video_bridge", "false"), ("has_floor", floor), ("is_moderator", "false"),
            ("end_conference", "false"), ("is_ghost", "false")))
        return (f'      <member type="caller">\n        <id>{mid}</id>\n        <flags>\n{flags}        </flags>\n'
                f"        <uuid>00000000-0000-4000-8000-{user:012d}</uuid>\n"
                f"        <caller_id_name>000015{user}</caller_id_name>\n"
                f"        <caller_id_number>000015{user}</caller_id_number>\n"
                f"        <join_time>{join}</join_time>\n        <last_talking>{last}</last_talking>\n"
                f"        <energy>100</energy>\n        <volume_in>0</volume_in>\n"
                f"        <volume_out>0</volume_out>\n      </member>\n")
    expected = (
        '<?xml version="1.0"?>\n<conferences>\n'
        f'  <conference name="{ROOM}" member-count="2" ghost-count="0" rate="8000" uuid="{uid}" running="true" '
        'answered="true" dynamic="true" exit_sound="true" enter_sound="true" run_time="95">\n'
        "    <members>\n" + member_xml(2, 456, 5, "N/A", "false") + member_xml(1, 123, 95, 4, "true") +
        "    </members>\n  </conference>\n</conferences>\n")
    assert body == expected
    assert bridge.api(f"conference {ROOM} xml_list") == body


def test_xml_values_are_url_encoded(tmp_path):
    bridge, _ = make_bridge(tmp_path)
    ch = chan(1)
    ch.caller_id_name = 'Dr. Who & <co> "x"'
    bridge.join(ROOM, "video", ch)
    body = bridge.api("conference xml_list")
    assert "<caller_id_name>Dr.%20Who%20%26%20%3Cco%3E%20%22x%22</caller_id_name>" in body
    assert url_encode("a*b/c~") == "a*b/c~" and url_encode("é") == "%C3%A9"


# --- talking and floor --------------------------------------------------------------------------------


def test_talking_moves_the_floor_and_video_floor(tmp_path):
    bridge, events = make_bridge(tmp_path)
    m1 = bridge.join(ROOM, "video", chan(1))
    m2 = bridge.join(ROOM, "video", chan(2))
    m3 = bridge.join(ROOM, "video", chan(3, has_video=False))
    assert m1.has_floor and m1.has_video_floor
    n = len(events)
    assert bridge.set_talking(m2.id, True, energy=700)
    assert [(e.action, e.get("Member-ID") or e["New-ID"]) for e in events[n:]] == [
        ("start-talking", "2"), ("floor-change", "2"), ("video-floor-change", "2")]
    assert events[n]["Talking"] == "true" and events[n]["Current-Energy"] == "700"
    n = len(events)
    bridge.set_talking(m1.id, True, energy=2000)         # the holder is still talking: it keeps the floor
    assert actions(events, n) == ["start-talking"] and m2.has_floor
    bridge.set_talking(m2.id, False)
    assert actions(events, n) == ["start-talking", "stop-talking", "floor-change", "video-floor-change"]
    assert m1.has_floor and m1.has_video_floor and events[n + 1]["Current-Energy"] == "0"
    bridge.set_talking(m1.id, False)
    n = len(events)
    bridge.set_talking(m3.id, True)                      # no video: audio floor only
    assert actions(events, n) == ["start-talking", "floor-change"] and m1.has_video_floor and m3.has_floor
    # the loudest of several talkers takes a free floor
    bridge.set_talking(m1.id, True, energy=300)
    bridge.set_talking(m2.id, True, energy=900)
    bridge.set_talking(m3.id, False)
    assert m2.has_floor
    # muted: cannot talk, and mute silently clears talking
    assert bridge.api(f"conference {ROOM} mute 2") == "OK mute 2\n"
    assert not m2.talking and not bridge.set_talking(m2.id, True)


def test_dead_media_never_talks_but_keeps_a_frozen_floor(tmp_path):
    bridge, events = make_bridge(tmp_path)
    m1 = bridge.join(ROOM, "video", chan(1))
    m2 = bridge.join(ROOM, "video", chan(2))
    bridge.set_talking(m1.id, True)
    assert bridge.media_flowing(m1.id, False)
    assert events[-1].action == "stop-talking" and not m1.talking and m1.has_floor    # frozen last frame
    assert not bridge.set_talking(m1.id, True)
    bridge.set_talking(m2.id, True)
    assert m2.has_floor and m2.has_video_floor
    assert not bridge.media_flowing(99)


def test_media_delay_holds_the_talk_pattern(tmp_path):
    bridge, events = make_bridge(tmp_path, talk=True)
    m = bridge.join(ROOM, "video", chan(1, media_delay=5.0))
    assert m.media == "pending"
    bridge.clock.advance(4.9)
    bridge.tick()
    assert m.media == "pending" and "start-talking" not in actions(events)
    bridge.clock.advance(0.2)
    bridge.tick()
    assert m.media == "flowing" and m.media_since == pytest.approx(bridge.clock.now() - 0.1)
    bridge.clock.advance(60)
    bridge.tick()
    talks = [e for e in events if e.action == "start-talking"]
    assert talks and all(int(e["Event-Date-Timestamp"]) >= (m.joined_at + 5.5) * 1e6 for e in talks)


def test_talk_pattern_is_seeded(tmp_path):
    def run(seed):
        bridge, events = make_bridge(tmp_path, talk=True, seed=seed)
        bridge.join(ROOM, "video", chan(1))
        bridge.join(ROOM, "video", chan(2))
        for _ in range(120):
            bridge.clock.advance(1)
            bridge.tick()
        return [(e.action, e.get("Member-ID"), e["Event-Date-Timestamp"]) for e in events]
    first = run(7)
    assert first == run(7) and first != run(8)
    assert sum(1 for a, _, _ in first if a == "start-talking") >= 10
    assert any(a == "floor-change" for a, _, _ in first[6:])


# --- ghosts and the RTP timeout ----------------------------------------------------------------------------


async def test_ghost_member_leaves_after_rtp_timeout(tmp_path, autojump_clock):
    bridge, events = make_bridge(tmp_path, clock=WallClock(epoch=1_700_000_000))
    hangups = []
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        m1 = bridge.join(ROOM, "video", chan(1, hangups))
        bridge.join(ROOM, "video", chan(2, hangups))
        await trio.sleep(10)
        start = trio.current_time()
        assert bridge.signalling_lost(m1.id)
        await trio.sleep(299)
        assert len(bridge.members(ROOM)) == 2 and hangups == []
        assert len(parse_xml_list(bridge.api("conference xml_list"), 15)) == 2    # the ghost is still listed
        await trio.sleep(2)
        assert [m.id for m in bridge.members(ROOM)] == [2] and hangups == [(1, "MEDIA_TIMEOUT")]
        gone = [e for e in events if e.action == "del-member"][0]
        assert gone["Hangup-Cause"] == "MEDIA_TIMEOUT"
        assert int(gone["Event-Date-Timestamp"]) / 1e6 == pytest.approx(bridge.clock.now() - 1, abs=0.01)
        assert trio.current_time() - start == pytest.approx(301)
        nursery.cancel_scope.cancel()


def test_ghost_leaves_at_once_when_lenient(tmp_path):
    bridge, events = make_bridge(tmp_path, **{QUIRK_GHOST: False})
    hangups = []
    m1 = bridge.join(ROOM, "video", chan(1, hangups))
    bridge.join(ROOM, "video", chan(2, hangups))
    bridge.signalling_lost(m1.id)
    assert hangups == [(1, "NORMAL_CLEARING")] and [m.id for m in bridge.members(ROOM)] == [2]
    assert get_profile("lenient").on(QUIRK_GHOST) is False


def test_media_that_never_starts_times_out_and_resumed_media_cancels(tmp_path):
    bridge, _ = make_bridge(tmp_path)
    hangups = []
    bridge.join(ROOM, "video", chan(1, hangups, media_delay=None))
    m2 = bridge.join(ROOM, "video", chan(2, hangups))
    bridge.clock.advance(200)
    bridge.media_flowing(m2.id, False)
    bridge.clock.advance(100)
    bridge.tick()
    assert hangups == [(1, "MEDIA_TIMEOUT")]
    bridge.clock.advance(150)
    bridge.media_flowing(m2.id, True)          # back before the timeout: stays
    bridge.clock.advance(400)
    bridge.tick()
    assert hangups == [(1, "MEDIA_TIMEOUT")] and bridge.member(m2.id) is m2


# --- recording -----------------------------------------------------------------------------------------------


def _recording_profiles(auto_record: str, minimum: str = "2") -> ConferenceProfiles:
    return load_conference_profiles().with_profile(profile_from_params("rec", {
        "rate": "8000", "energy-level": "100", "domain": "FSdefaultDomain", "auto-record": auto_record,
        "min-required-recording-participants": minimum}))


def test_auto_record_writes_a_wav_as_long_as_the_recording(tmp_path):
    profiles = _recording_profiles("$${recordings_dir}/${conference_name}_${strftime(%Y-%m-%d-%H-%M-%S)}.wav")
    bridge, events = make_bridge(tmp_path, profiles=profiles)
    clock = bridge.clock
    m1 = bridge.join(ROOM, "rec", chan(1))
    clock.advance(1.25)
    assert "start-recording" not in actions(events)            # min-required-recording-participants = 2
    m2 = bridge.join(ROOM, "rec", chan(2))
    start = [e for e in events if e.action == "start-recording"][0]
    path = start["Path"]
    assert path == f"{tmp_path / 'rec'}/{ROOM}_2023-11-14-22-13-21.wav"
    assert start.names()[-2:] == ["Action", "Path"] and m1.channel.variables["conference_recording"] == path
    body = bridge.api("conference xml_list")
    rec_node = ET.fromstring(body)[0][0][0]
    assert rec_node.get("type") == "recording_node" and rec_node.findtext("record_path") == path
    assert rec_node.find("join_time").get("type") == "UNIX-epoch" and rec_node.findtext("join_time") == "1700000001"
    assert ' recording="true"' in body and parse_xml_list(body, 15) == [["101", "2", "0", "N/A"],
                                                                        ["101", "1", "1", "N/A"]]
    assert bridge.api(f"conference {ROOM} chkrecord") == f"Record file {path} (Auto)\n"
    clock.advance(2.0)
    bridge.set_talking(m2.id, True)
    clock.advance(1.5)
    bridge.set_talking(m2.id, False)
    for _ in range(4):                                          # periodic flushes while the file grows
        clock.advance(1.0)
        bridge.tick()
    clock.advance(0.0371)
    bridge.leave(m1.id)
    n = len(events)
    bridge.leave(m2.id)
    assert actions(events, n) == ["floor-change", "video-floor-change", "del-member", "stop-recording",
                                  "conference-destroy"]
    stop = events[n + 3]
    recorded = 2.0 + 1.5 + 4.0 + 0.0371
    assert stop["Path"] == path and stop["Other-Recordings"] == "false" and stop["Samplerate"] == "8000"
    assert int(stop["Samples-Out"]) == round(recorded * 8000)
    with wave.open(path, "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        frames = w.getnframes()
        assert abs(frames / 8000 - recorded) <= 1 / 8000
        data = w.readframes(frames)
    samples = memoryview(data).cast("h")
    assert max(samples[: 16000]) == 0                           # silence before anybody talked
    assert max(samples[int(2.2 * 8000): int(3.3 * 8000)]) > 500  # the quiet tone while member 2 talked
    assert max(samples[int(3.6 * 8000):]) == 0


def test_rtmp_auto_record_is_only_noted(tmp_path):
    journal = Journal(":memory:")
    bridge = Bridge(_recording_profiles("rtmp://nginx-rtmp.example/cam1/${conference_name}", "1"),
                    clock=ManualClock(), rng=random.Random(1), profile=get_profile(FAITHFUL),
                    recordings_dir=tmp_path / "rec", journal=journal, talk=TalkPattern(enabled=False))
    events = []
    bridge.subscribe(events.append)
    m = bridge.join(ROOM, "rec", chan(1))
    assert events[-1].action == "start-recording"
    assert events[-1]["Path"] == f"rtmp://nginx-rtmp.example/cam1/{ROOM}"
    assert "<record_path>rtmp://nginx-rtmp.example/cam1/" in bridge.api("conference xml_list")
    bridge.clock.advance(30)
    bridge.leave(m.id)
    stop = [e for e in events if e.action == "stop-recording"][0]
    assert stop["Milliseconds-Elapsed"] == "30000"
    assert not (tmp_path / "rec").exists()
    notes = [e["data"] for e in journal.entries(kind="recording")]
    assert notes[0].startswith(f"start stream rtmp://nginx-rtmp.example/cam1/{ROOM}") and notes[1].startswith("stop")


def test_record_and_norecord_api(tmp_path):
    bridge, events = make_bridge(tmp_path)
    bridge.join(ROOM, "video", chan(1))
    assert bridge.api(f"conference {ROOM} record calls/a.wav") == "Record file calls/a.wav\n"
    assert events[-1].action == "start-recording" and events[-1]["Path"] == "calls/a.wav"
    assert (tmp_path / "rec" / "calls" / "a.wav").exists()
    assert bridge.api(f"conference {ROOM} record /etc/evil.wav") == "Record file /etc/evil.wav\n"
    assert (tmp_path / "rec" / "etc" / "evil.wav").exists()                   # never outside recordings_dir
    assert bridge.resolve_record_path("../../x.wav") == (tmp_path / "rec" / "x.wav").resolve()
    bridge.clock.advance(3)
    # "last" is the node with the highest id: here a recording node, so nothing happens (as in FS)
    assert bridge.api(f"conference {ROOM} mute last") == ""
    assert bridge.api(f"conference {ROOM} norecord nope") == (
        "non-existant recording 'nope'\nStopped recording 0 files\n")
    n = len(events)
    assert bridge.api(f"conference {ROOM} norecord calls/a.wav") == (
        "Stopped recording file calls/a.wav\nStopped recording 1 file\n")
    assert actions(events, n) == ["stop-recording", "stop-recording"]
    assert events[n]["Other-Recordings"] == "true" and "Samples-Out" not in events[n]
    assert events[n + 1]["Samples-Out"] == "24000"
    with wave.open(str(tmp_path / "rec" / "calls" / "a.wav"), "rb") as w:
        assert w.getnframes() == 24000
    assert bridge.api(f"conference {ROOM} recording stop all") == (
        "Stopped recording file /etc/evil.wav\nStopped recording 1 file\n")
    assert bridge.api(f"conference {ROOM} chkrecord") == "Conference is not being recorded.\n"
    assert bridge.api(f"conference {ROOM} record") == "record <filename>"


# --- channel events, journal, quirks ------------------------------------------------------------------------


def test_channel_events_for_the_sip_layer(tmp_path):
    bridge, events = make_bridge(tmp_path)
    ch = chan(1, variables={"sip_from_user": "0000151"})
    bridge.channel_create(ch)
    bridge.clock.advance(1)
    bridge.channel_answer(ch)
    bridge.join(ROOM, "video", ch)
    bridge.clock.advance(2)
    bridge.channel_hangup(ch, "NORMAL_CLEARING")
    bridge.leave(int(ch.variables["conference_member_id"]))
    bridge.channel_destroy(ch)
    chans = [e for e in events if e.name.startswith("CHANNEL_")]
    assert [e.name for e in chans] == ["CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_DESTROY"]
    assert all(e.subclass == "" and e.names()[0] == "Event-Name" and e["Unique-ID"] == ch.uuid for e in chans)
    assert [(e["Channel-State"], e["Channel-Call-State"], e["Answer-State"]) for e in chans] == [
        ("CS_INIT", "DOWN", "ringing"), ("CS_EXECUTE", "ACTIVE", "answered"), ("CS_EXECUTE", "HANGUP", "hangup"),
        ("CS_DESTROY", "HANGUP", "hangup")]
    assert chans[2]["Hangup-Cause"] == "NORMAL_CLEARING" and "Hangup-Cause" not in chans[1]
    assert chans[0]["variable_sip_from_user"] == "0000151"
    assert int(chans[1]["Caller-Channel-Answered-Time"]) - int(chans[0]["Caller-Channel-Created-Time"]) == 1_000_000
    assert bridge.session_count() == 1


def test_conference_paths_leave_the_hangup_stamp_to_the_sip_layer(tmp_path):
    bridge, events = make_bridge(tmp_path)
    seen = []
    ch = chan(1)
    ch.hangup = lambda cause: seen.append((cause, ch.hangup_at, ch.hangup_cause, ch.call_state))
    bridge.join(ROOM, "video", ch)
    bridge.join(ROOM, "video", chan(2))
    bridge.api(f"conference {ROOM} kick 1")
    assert seen == [("NORMAL_CLEARING", None, "NORMAL_CLEARING", "HANGUP")]
    assert events[-3].action == "del-member" and events[-3]["Channel-Call-State"] == "ACTIVE"   # still up
    bridge.clock.advance(1)
    hangup = bridge.channel_hangup(ch, "NORMAL_CLEARING")
    assert ch.hangup_at == bridge.clock.now() and hangup["Hangup-Cause"] == "NORMAL_CLEARING"
    ch2 = bridge.member(2).channel
    bridge.leave(2, "NORMAL_CLEARING")
    assert ch2.hangup_at is None and ch2.hangup_cause == "NORMAL_CLEARING"
    assert bridge.channel_destroy(ch2)["Caller-Channel-Hangup-Time"] != "0"


def test_hold_stops_media_and_uses_the_hold_timeout(tmp_path):
    bridge, events = make_bridge(tmp_path)
    hangups = []
    m1 = bridge.join(ROOM, "video", chan(1, hangups))
    m2 = bridge.join(ROOM, "video", chan(2, hangups))
    bridge.set_talking(m1.id, True)
    assert bridge.set_hold(m1.id, True) and m1.hold and m1.media == "dead" and not m1.talking
    assert events[-1].action == "stop-talking" and not bridge.set_talking(m1.id, True)
    bridge.clock.advance(1000)
    bridge.tick()
    assert hangups == []                                   # 300 s does not apply on hold
    bridge.set_hold(m1.id, False)
    assert m1.media == "flowing" and bridge.set_talking(m1.id, True)
    bridge.set_hold(m2.id, True)
    bridge.clock.advance(1800)
    bridge.tick()
    assert hangups == [(2, "MEDIA_TIMEOUT")] and not bridge.set_hold(99, True)


def test_journal_records_events_api_and_refusals(tmp_path):
    journal = Journal(":memory:")
    bridge = Bridge(clock=ManualClock(), rng=random.Random(1), journal=journal, talk=TalkPattern(enabled=False))
    bridge.join(ROOM, "video-2", chan(1))
    bridge.join(ROOM, "video-2", chan(2))
    bridge.join(ROOM, "video-2", chan(3))
    bridge.api(f"conference {ROOM} mute 1")
    kinds = [e["kind"] for e in journal.entries(service="freeswitch")]
    assert {"event", "refused", "api", "media"} <= set(kinds)
    refused = journal.entries(kind="refused")[0]
    assert refused["dev_id"] == 15 and refused["user_id"] == 3 and "is full" in refused["data"]


def test_quirks_registered():
    assert QUIRKS[QUIRK_PLUS].harmful is False and QUIRKS[QUIRK_GHOST].harmful is True
    assert get_profile("lenient").on(QUIRK_PLUS) and get_profile(FAITHFUL).on(QUIRK_GHOST)


def test_suppress_events(tmp_path):
    profiles = load_conference_profiles().with_profile(profile_from_params("quiet", {
        "suppress-events": "start-talking,stop-talking,floor-change"}))
    bridge, events = make_bridge(tmp_path, profiles=profiles)
    m = bridge.join(ROOM, "quiet", chan(1))
    bridge.set_talking(m.id, True)
    bridge.set_talking(m.id, False)
    assert actions(events) == ["conference-create", "add-member"]


# --- an hour-long call under the MockClock -----------------------------------------------------------------


async def test_sixty_minute_call_runs_fast(tmp_path, autojump_clock):
    bridge, events = make_bridge(tmp_path, talk=True, clock=WallClock(epoch=1_700_000_000), seed=42)
    links = media.link_presets()
    rng = random.Random(5)
    wall = time.perf_counter()
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        for user, link in ((123, "dsl"), (456, "4g")):
            delay = media.media_start_delay(links[link], media.QUALITY_PRESETS["sd"], rng)
            bridge.join(ROOM, "video", chan(user, media_delay=delay))
        await trio.sleep(3600)
        body = bridge.api("conference xml_list")
        nursery.cancel_scope.cancel()
    assert time.perf_counter() - wall < 2.0
    rows = parse_xml_list(body, 15)
    assert [r[1] for r in rows] == ["456", "123"] and rows[1][2] == "3600"
    talks = [e for e in events if e.action == "start-talking"]
    assert len(talks) > 300 and {e["Member-ID"] for e in talks} == {"1", "2"}
    assert sum(1 for e in events if e.action == "floor-change") > 50
    assert int(talks[-1]["Event-Date-Timestamp"]) / 1e6 - 1_700_000_000 > 3500


def test_session_count_counts_each_channel_once_and_keeps_no_uuids(tmp_path):
    # FreeSWITCH's "N session(s) since startup": each channel counts once however many events it
    # fires (create, join, answer), and the count holds no per-call entry after the call is gone
    bridge, _ = make_bridge(tmp_path)
    for user in range(1, 4):
        ch = chan(user)
        bridge.channel_create(ch)
        bridge.channel_answer(ch)
        member = bridge.join("15*101*video", None, ch)
        bridge.leave(member.id)
        bridge.channel_hangup(ch, "NORMAL_CLEARING")
        bridge.channel_destroy(ch)
    assert bridge.session_count() == 3
    assert not any(isinstance(v, (set, dict, list)) and len(v) >= 3 and any(
        isinstance(x, str) and x.startswith("00000000-0000-4000-8000-") for x in v)
        for v in vars(bridge).values())
    bridge.restart()
    assert bridge.session_count() == 0
