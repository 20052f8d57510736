"""Where the recorded answers of the real server live (../shared/parity)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.paths import SHARED  # noqa: E402
CORPUS = SHARED / "parity" / "cometql-4.09.jsonl"

# The recorder's server had one FreeSWITCH node, 127.0.0.1 with WebSocket port 7443 (nothing listened
# there; parity/README.md).  Configured the same way, the emulator answers the conference INSERT with
# OK(1, 0) and the SELECT with the row whose node is "127.0.0.1:7443".  Without a node the INSERT is
# ERR 500 (reference-observations.md section 2, config A).
RECORDER_FREESWITCH = [{"server": "127.0.0.1", "ws_port": 7443}]
CONFERENCE_INSERT = "INSERT INTO conference (name, user_id, caller_id, message, profile)VALUES('101'"
CONFERENCE_SELECT = "SELECT * FROM conference WHERE name = '101'"


def needs_freeswitch(record: dict) -> bool:
    """The conference INSERT and the SELECT reading its row back: the two answers that need
    RECORDER_FREESWITCH configured (for a replay that does not configure it)."""
    return record["sql"].startswith((CONFERENCE_INSERT, CONFERENCE_SELECT)) and (
        record["kind"] != "rows" or bool(record["rows"]))


# Four messages were published to a pipe with history length 3 within one second; which three the
# real server kept is unspecified (parity/README.md).  Compared as "3 of the 4, in publish order".
SAME_SECOND_HISTORY = "SELECT name, event, message FROM pipes_messages WHERE name = 'web_hist'"


def load_corpus() -> list[dict]:
    if not CORPUS.exists():
        pytest.fail(f"parity corpus missing: {CORPUS}")
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
