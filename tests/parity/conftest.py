"""The recorded answers of the real server (fixtures/parity/cometql-4.09.jsonl) and how to compare them.

Every answer, recorded or ours, is compared as a *step* in the fixture's schema (see
scripts/parity_fixtures.py): ``reply`` result_set / ok / error / connection_lost with its fields.
"""

from __future__ import annotations

import json

import pytest

from emulator.fixtures import path as fixture_path

CORPUS = fixture_path("parity", "cometql-4.09.jsonl")

# The recorder's server had one FreeSWITCH node, 127.0.0.1 with WebSocket port 7443 (nothing listened
# there; fixtures/parity/README.md).  Configured the same way, the emulator answers the conference
# INSERT with OK(1, 0) and the SELECT with the row whose node is "127.0.0.1:7443".  Without a node the
# INSERT is ERR 500 (fixtures/parity/mariadb-cli-4.09.json).
RECORDER_FREESWITCH = [{"server": "127.0.0.1", "ws_port": 7443}]
CONFERENCE_INSERT = "INSERT INTO conference (name, user_id, caller_id, message, profile)VALUES('101'"
CONFERENCE_SELECT = "SELECT * FROM conference WHERE name = '101'"


def needs_freeswitch(step: dict) -> bool:
    """The conference INSERT and the SELECT reading its row back: the two answers that need
    RECORDER_FREESWITCH configured (for a replay that does not configure it)."""
    return step["statement"].startswith((CONFERENCE_INSERT, CONFERENCE_SELECT)) and (
        step["reply"] != "result_set" or bool(step["rows"]))


# Four messages were published to a pipe with history length 3 within one second; which three the
# real server kept is unspecified (fixtures/parity/README.md).  Compared as "3 of the 4, in publish order".
SAME_SECOND_HISTORY = "SELECT name, event, message FROM pipes_messages WHERE name = 'web_hist'"


def load_corpus() -> list[dict]:
    if not CORPUS.exists():
        pytest.fail(f"parity corpus missing: {CORPUS}")
    steps = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1)), "steps out of order"
    return steps


def step_from_client(answer: dict) -> dict:
    """One answer line of tests/compat/cometql_node_mysql.mjs (node ``mysql``'s own field names) as a step."""
    kind = answer["kind"]
    step: dict = {"statement": answer["sql"]}
    if kind == "rows":
        step.update(reply="result_set", columns=[list(f) for f in answer["fields"]], rows=answer["rows"])
    elif kind == "ok":
        step.update(reply="ok", affected_rows=answer["affectedRows"], insert_id=answer["insertId"],
                    server_status=answer["serverStatus"])
    elif kind == "error":
        step.update(reply="error", code=answer["errno"], text=answer["message"],
                    client_drops_connection=bool(answer.get("fatal")))
    elif kind == "closed":
        step.update(reply="connection_lost", client_error=answer["message"])
    else:
        raise AssertionError(f"unknown answer kind {kind!r}: {answer}")
    return step
