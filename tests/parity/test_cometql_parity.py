"""Replay the real server's recorded CometQL answers against the faithful profile.

fixtures/parity/cometql-4.09.jsonl holds 119 statements run in order on one connection against
CppComet 4.09 (dev_id 15), configured with one FreeSWITCH node (127.0.0.1, WebSocket port 7443), as
the replay is.  Each answer is compared: result columns and rows, OK counts, error
codes and messages, and the connection-closing cases.  Values that depend on time or counters
(users_time times, SHOW STATUS messages, message UUIDs) are compared by shape only.
"""

from __future__ import annotations

import re

from emulator.clock import ManualClock
from emulator.comet.hub import Hub
from emulator.cometql.conference import ConferenceService
from emulator.cometql.tables import Executor, Session
from emulator.profiles import get_profile
from emulator.state import StateStore
from tests.parity.conftest import (
    CONFERENCE_INSERT,
    CONFERENCE_SELECT,
    RECORDER_FREESWITCH,
    SAME_SECOND_HISTORY,
    load_corpus,
)

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def answer_of(result) -> dict:
    """The executor's result as a step of the fixture's schema (without the statement)."""
    if result.kind == "rows":
        return {"reply": "result_set", "columns": [[c, 253] for c in result.columns], "rows": result.rows}
    if result.kind == "err":
        if result.sequence_id is not None:  # the client library drops the connection
            return {"reply": "connection_lost"}
        return {"reply": "error", "code": result.code, "text": result.message}
    return {"reply": "ok", "affected_rows": result.affected, "insert_id": result.insert_id,
            "server_status": 2 if result.kind == "ok_constant" else 512}


def normalise(sql: str, step: dict) -> dict:
    step = dict(step)
    for key in ("step", "statement", "client_drops_connection"):
        step.pop(key, None)
    if step["reply"] == "connection_lost":
        return {"reply": "connection_lost"}
    if step["reply"] == "result_set" and sql.startswith("SHOW STATUS"):
        step["rows"] = [[k, "<n>" if k == "messages" else v] for k, v in step["rows"]]
    if step["reply"] == "result_set" and "users_messages" in sql:
        step["rows"] = [["<uuid>" if UUID_RE.match(v) else v for v in row] for row in step["rows"]]
    return step


def test_every_recorded_answer_matches():
    hub = Hub(StateStore(), get_profile("cppcomet-4.09"), clock=ManualClock(1_795_725_000))
    executor = Executor(hub, hub.profile, sessions_of=lambda dev: 1,
                        conference=ConferenceService(hub, RECORDER_FREESWITCH))
    session = Session(dev_id=15, database="CometQL_v1")
    mismatches, compared = [], 0
    for record in load_corpus():
        sql = record["statement"]
        got = normalise(sql, answer_of(executor.execute(session, sql)))
        want = normalise(sql, record)
        compared += 1
        if sql == SAME_SECOND_HISTORY and want["rows"] and got["reply"] == "result_set":
            published = ["e1", "e2", "e3", "e4"]
            events = [row[1] for row in got["rows"]]
            if len(events) == len(want["rows"]) and events == sorted(events, key=published.index):
                continue
        if got != want:
            mismatches.append(f"{sql!r}\n   real: {want}\n   ours: {got}")
    assert not mismatches, f"{len(mismatches)} of {compared} differ:\n" + "\n".join(mismatches)
    assert compared == 119


def test_without_a_freeswitch_node_the_conference_insert_is_err_500():
    """Config A of the reference run: no `[sip] freeswitch`, so the INSERT fails and nothing is stored."""
    hub = Hub(StateStore(), get_profile("cppcomet-4.09"), clock=ManualClock(1_795_725_000))
    for conference in (None, ConferenceService(hub, [])):
        executor = Executor(hub, hub.profile, conference=conference)
        session = Session(dev_id=15, database="CometQL_v1")
        (insert,) = [r["statement"] for r in load_corpus() if r["statement"].startswith(CONFERENCE_INSERT)]
        result = executor.execute(session, insert)
        assert (result.kind, result.code, result.message) == (
            "err", 500, "field in ini file not set option `host` in section `sip`")
        select = executor.execute(session, CONFERENCE_SELECT)
        assert select.kind == "rows" and select.rows == []


def test_lenient_profile_fixes_the_harmful_answers():
    hub = Hub(StateStore(), get_profile("lenient"), clock=ManualClock())
    executor = Executor(hub, hub.profile)
    session = Session(dev_id=15, database="CometQL_v1")
    assert executor.execute(session, "SET AUTOCOMMIT = 0").kind == "ok"
    assert executor.execute(session, "COMMIT").kind == "ok"
    assert executor.execute(session, "DESCRIBE pipes").sequence_id is None
    assert executor.execute(session, "SELECT * FROM users_auth WHERE id = 1 -- comment").kind == "rows"
