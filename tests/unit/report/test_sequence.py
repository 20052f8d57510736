"""Sequence diagrams from journal rows (bench/report/sequence.py): lanes, arrows, notes, limits."""

from __future__ import annotations

import json

from bench.report.sequence import BACKEND, COMET, FREESWITCH, build_diagram


def row(t, service, kind, direction="", dev=15, user=None, conn=None, data=""):
    return (1_700_000_000.0 + t, service, kind, direction, dev, user, conn, data)


def mark(t, actor, user, name):
    return row(t, "bench", "mark", user=user, data=json.dumps({"actor": actor, "mark": name, "room": "101"}))


ROWS = [
    row(0.0, "bench", "step", data=json.dumps({"step": "the doctor joins"})),
    mark(0.0, "doctor", 501, "backend_invite_start"),
    row(0.0, "cometql", "query", "in", conn=1, data="INSERT INTO conference (name, user_id) VALUES ('101', 501)"),
    row(0.0, "comet", "frame", "out", user=501, conn=7,
        data=json.dumps({"event": "serverInfo", "pipe": "sys", "data": {"sys": {"conference_name": "101"}}})),
    row(0.0, "cometql", "answer", "out", conn=1, data="ok 1 0"),
    row(0.1, "comet", "frame", "in", user=501, conn=7, data="web_pipe2\nweb_syscall_x\nping\n*\n{}"),   # left out
    row(0.1, "comet", "frame", "out", user=501, conn=7, data=json.dumps({"event": "answer"})),         # left out
    row(0.2, "sip", "ws_open", conn=3, data="WSS doctor:40005 path=/ subprotocol=sip"),
    row(0.2, "sip", "message", "in", conn=3, data="INVITE sip:15*101*video@127.0.0.1 SIP/2.0 | abc"),
    row(0.2, "sip", "message", "out", conn=3, data="SIP/2.0 200 OK | abc"),
    row(0.3, "freeswitch", "media", user=501, data="flowing member=1 after 0.4s"),
    row(0.4, "browser", "mark", user=501, data=json.dumps({"actor": "doctor", "mark": "first_frame_painted"})),
    row(0.5, "esl", "command", "in", data="api conference 15*101-FSdefaultDomain kick 1"),
]


def test_lanes_arrows_and_notes():
    d = build_diagram("run1", ROWS)
    assert d.lanes == [BACKEND, COMET, "doctor (browser)", FREESWITCH]
    kinds = [(r.kind, r.src, r.dst, r.label) for r in d.rows]
    assert kinds[0][0] == "step" and kinds[0][3] == "the doctor joins"
    assert ("note", "doctor (browser)", "", "backend_invite_start") in kinds
    assert ("arrow", BACKEND, COMET, "INSERT INTO conference (name, user_id) VALUES ('101', 501)") in kinds
    assert ("arrow", COMET, "doctor (browser)", "push sys_sipCall (101)") in kinds
    assert ("arrow", "doctor (browser)", FREESWITCH, "INVITE sip:15*101*video") in kinds
    assert ("arrow", FREESWITCH, "doctor (browser)", "SIP/2.0 200 OK") in kinds
    assert any(k[0] == "arrow" and k[1] == FREESWITCH and k[3].startswith("media flowing") for k in kinds)
    # a page-side record of a real browser is a note on that browser's lane
    assert ("note", "doctor (browser)", "", "first_frame_painted") in kinds
    assert not any("ping" in k[3] or k[3] == "answer" for k in kinds)
    assert [round(r.t, 3) for r in d.rows] == sorted(round(r.t, 3) for r in d.rows)


def test_a_long_call_is_cut_with_a_count():
    rows = [row(i * 0.01, "cometql", "query", "in", conn=1, data=f"SELECT {i}") for i in range(500)]
    d = build_diagram("run2", rows, max_rows=90)
    assert len(d.rows) == 90 and d.omitted == 410
