"""The recorded CometQL answers of the real server, replayed over the wire with the recorder's own client.

tests/parity/test_cometql_parity.py replays fixtures/parity/cometql-4.09.jsonl against the
executor in-process.  This file replays the same 119 statements through a real socket with node
``mysql`` 2.x (``tests/compat/cometql_node_mysql.mjs``), the client that recorded the corpus, against
the faithful profile (``cppcomet-4.09``): one connection, user ``15``, database ``CometQL_v1``, and a
new connection after a fatal or closed answer, exactly as the recorder did.  The node script's
answers are turned into the fixture's steps (``step_from_client``), so what is compared is what the
client library saw: columns with their MySQL type codes, rows, affected rows / insert id / server
status of OK packets, code / text / "drops the connection" of ERR packets, and the lost connection
(``DESCRIBE pipes``: the real server sends sequence id 9, node ``mysql`` gives up with "Packets out
of order. Got: 9 Expected: 1").

The comparison and its skips are those of test_cometql_parity.py: ``normalise`` for time/counter
values, the recorder's FreeSWITCH node (``RECORDER_FREESWITCH``, so the conference INSERT and SELECT
are compared too) and ``SAME_SECOND_HISTORY`` (any 3 of the 4 same-second messages, in publish
order).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import trio

from emulator.config import Config
from emulator.stack import open_stack
from tests.compat.conftest import NODE_MODULES, ROOT, require_tool
from tests.parity.conftest import RECORDER_FREESWITCH, SAME_SECOND_HISTORY, load_corpus, step_from_client
from tests.parity.test_cometql_parity import normalise

pytestmark = pytest.mark.compat

SCRIPT = ROOT / "tests" / "compat" / "cometql_node_mysql.mjs"
REPLAY_TIMEOUT = 90


def node_mysql() -> str:
    require_tool("node + npm package mysql",
                 lambda: shutil.which("node") and (NODE_MODULES / "mysql" / "package.json").is_file(),
                 "run `npm install` at the repository root")
    return shutil.which("node")  # type: ignore[return-value]


def difference(record: dict, answer: dict) -> str | None:
    """None when ``answer`` (node's, as a step) matches ``record`` (the real server's), else a description."""
    sql = record["statement"]
    want, got = normalise(sql, record), normalise(sql, answer)
    if (sql == SAME_SECOND_HISTORY and want["reply"] == "result_set" and want["rows"]
            and got["reply"] == "result_set"):
        published = ["e1", "e2", "e3", "e4"]
        events = [row[1] for row in got["rows"]]
        if (len(events) == len(want["rows"]) and set(events) <= set(published)
                and events == sorted(events, key=published.index) and got["columns"] == want["columns"]):
            return None
    if got != want:
        return f"{sql!r}\n   real: {want}\n   ours: {got}"
    # what normalise leaves out: the client's error text on a lost link and its "drops the connection" flag
    if record["reply"] in ("connection_lost", "error") and (
            answer.get("client_drops_connection"), answer.get("client_error")) != (
            record.get("client_drops_connection"), record.get("client_error")):
        return f"{sql!r}\n   real: {record}\n   ours: {answer}"
    return None


async def replay(node: str, port: int, statements: list[str]) -> list[dict]:
    job = {"port": port, "user": "15", "password": "CometQLPassword", "database": "CometQL_v1",
           "steps": statements}
    with trio.fail_after(REPLAY_TIMEOUT):
        done = await trio.run_process(
            [node, str(SCRIPT)], stdin=json.dumps(job).encode(), capture_stdout=True, capture_stderr=True,
            check=False, env={**os.environ, "COMETQL_CLIENT_DEADLINE_MS": str((REPLAY_TIMEOUT - 10) * 1000)})
    assert done.returncode == 0, (done.returncode, done.stdout.decode()[-2000:], done.stderr.decode()[-2000:])
    return [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]


async def test_node_mysql_replay_matches_every_recorded_answer():
    node = node_mysql()
    corpus = load_corpus()
    cfg = Config(profile="cppcomet-4.09")
    cfg.free_ports()
    cfg.freeswitch = RECORDER_FREESWITCH
    async with open_stack(cfg) as stack:
        lines = await replay(node, stack.ports["cometql"], [r["statement"] for r in corpus])

    events = [line for line in lines if "sql" not in line]
    answers = [line for line in lines if "sql" in line]
    assert events[-1] == {"ev": "done"}, events
    assert [a["sql"] for a in answers] == [r["statement"] for r in corpus]
    # one connection, plus one more after each fatal/closed answer (the recorder's rule)
    fatal = [a["sql"] for a in answers if a.get("fatal")]
    recorded_fatal = [r["statement"] for r in corpus
                      if r["reply"] == "connection_lost" or r.get("client_drops_connection")]
    assert fatal == recorded_fatal == ["DESCRIBE pipes"]
    connected = [e for e in events if e.get("ev") == "connected"]
    assert len(connected) == 1 + len(fatal)
    assert {e["serverVersion"] for e in connected} == {"CppComet community 4.09 (AGPL license)"}

    mismatches, compared = [], 0
    for record, answer in zip(corpus, answers):
        compared += 1
        problem = difference(record, step_from_client(answer))
        if problem:
            mismatches.append(problem)
    assert not mismatches, f"{len(mismatches)} of {compared} differ:\n" + "\n".join(mismatches)
    assert compared == 119


def test_the_closed_case_is_in_the_corpus():
    """Guard: the corpus still has the sequence-id answer this replay depends on."""
    (closed,) = [r for r in load_corpus() if r["reply"] == "connection_lost"]
    assert closed == {"step": 6, "statement": "DESCRIBE pipes", "reply": "connection_lost",
                      "client_error": "Packets out of order. Got: 9 Expected: 1"}
