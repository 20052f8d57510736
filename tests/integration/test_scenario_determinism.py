"""Equal seeds, equal runs: ``cometbench run`` adds no randomness of its own in virtual time.

Two runs of the same command with one seed give the same journal, entry for entry (the bench's own
records included: every mark, step and callback with its virtual time) -- except for values the
emulator does not seed yet: the callKey of the sys_sipCall push is a version-1 UUID of the real
clock (``uuid.uuid1()``, as libuuid's ``uuid_generate_time``).  The test masks exactly those and
nothing else; once the emulator's ids are seeded the journals are identical and so are the digests
in the reports (the last assertion holds both before and after).  Another seed gives another run.
Each run is its own process, as a user runs it.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UUID1 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-1[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def run(tmp_path: Path, name: str, seed: int) -> tuple[list, str]:
    out = tmp_path / name
    done = subprocess.run([sys.executable, "-m", "bench.cli", "run", "two_party_call", "hangup_rejoin", "--seed",
                           str(seed), "--report-dir", str(out)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    conn = sqlite3.connect(out / "journal.sqlite")
    entries = list(conn.execute("SELECT t, service, kind, direction, dev_id, user_id, conn_id, data FROM entries "
                                "ORDER BY seq"))
    conn.close()
    return entries, json.loads((out / "report.json").read_text())["journal_sha256"]


def masked(rows: list) -> list:
    return [tuple(UUID1.sub("<uuid1>", v) if isinstance(v, str) else v for v in row) for row in rows]


def test_equal_seeds_give_equal_journals(tmp_path):
    journal_a, digest_a = run(tmp_path, "a", 3)
    journal_b, digest_b = run(tmp_path, "b", 3)
    journal_c, digest_c = run(tmp_path, "c", 4)
    assert len(journal_a) == len(journal_b) > 1000
    assert sum(1 for row in journal_a if row[1] == "bench") > 100
    assert masked(journal_a) == masked(journal_b)
    assert masked(journal_a) != masked(journal_c)
    differing = [(x, y) for x, y in zip(journal_a, journal_b) if x != y]
    assert all(UUID1.search(x[7]) for x, _ in differing)
    assert (digest_a == digest_b) == (journal_a == journal_b)
    assert digest_a != digest_c
