"""The journal's fingerprint: one SHA-256 over its entries, so two runs can be compared at a glance.

Equal seeds in virtual time give equal journals, byte for byte: every id the emulator and the bench
draw is seeded (the journal run ids, callKeys, UUIDs, the MySQL scramble, SIP tags; docs/decisions.md,
"Virtual time: the same seed, the same journal"), and trio's scheduling order is seeded too.  So the
digest leaves nothing out -- no masking, no bookkeeping columns skipped:

* every entry of every run in the file, in ``seq`` order, as the compact JSON array
  ``[seq, run_id, t, service, kind, direction, dev_id, user_id, conn_id, data]`` followed by ``\\n``
  (UTF-8, ``ensure_ascii=False``; floats as Python's shortest round-trip repr).

That is :meth:`emulator.journal.Journal.sha256`'s serialisation, taken over the whole file instead
of one run: a file holding one run has the digest that run's journal reports.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

__all__ = ["journal_sha256", "CANONICAL_FIELDS"]

CANONICAL_FIELDS = ("seq", "run_id", "t", "service", "kind", "direction", "dev_id", "user_id", "conn_id", "data")


def journal_sha256(path: str | Path) -> str:
    """Hex SHA-256 of the journal file's entries (see the module docstring); of nothing for a file
    without a journal."""
    digest = hashlib.sha256()
    conn = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        try:
            rows = conn.execute(f"SELECT {', '.join(CANONICAL_FIELDS)} FROM entries ORDER BY seq")
        except sqlite3.OperationalError:
            return digest.hexdigest()
        for row in rows:
            digest.update(json.dumps(list(row), ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
            digest.update(b"\n")
    finally:
        conn.close()
    return digest.hexdigest()
