"""Where the recorded answers of the real server live (../shared/parity)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CORPUS = SHARED / "parity" / "cometql-4.09.jsonl"

# Statements whose answer needs a FreeSWITCH node configured (the fake FreeSWITCH issue); they are
# compared once the conference tables have a provider.
NEEDS_FREESWITCH_PREFIXES = (
    "INSERT INTO conference (name, user_id, caller_id, message, profile)VALUES('101'",
    "SELECT * FROM conference WHERE name = '101'",
)


def needs_freeswitch(record: dict) -> bool:
    """The INSERT INTO conference and the SELECT that reads its row back."""
    return record["sql"].startswith(NEEDS_FREESWITCH_PREFIXES) and (
        record["kind"] != "rows" or bool(record["rows"]))


# Four messages were published to a pipe with history length 3 within one second; which three the
# real server kept is unspecified (parity/README.md).  Compared as "3 of the 4, in publish order".
SAME_SECOND_HISTORY = "SELECT name, event, message FROM pipes_messages WHERE name = 'web_hist'"


def load_corpus() -> list[dict]:
    if not CORPUS.exists():
        pytest.fail(f"parity corpus missing: {CORPUS}")
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
