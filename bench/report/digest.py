"""The journal's fingerprint: one SHA-256 over its entries, so two runs can be compared at a glance.

Equal seeds in virtual time are meant to give equal journals, byte for byte.  The digest is taken
over a canonical serialisation that leaves out what is only bookkeeping:

* entries in ``seq`` order, each as the compact JSON array
  ``[run, t, service, kind, direction, dev_id, user_id, conn_id, data]`` followed by ``\\n``
  (UTF-8, ``ensure_ascii=False``; floats as Python's shortest round-trip repr);
* ``run`` is the position of the entry's run in the ``runs`` table (0, 1, ...), not its random
  run id, and ``seq`` itself is not hashed (only its order counts).

This is the one function that says what "the same journal" means; refine it here (and only here)
if more of the emulator's state becomes seeded or some field proves to be noise.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

__all__ = ["journal_sha256", "CANONICAL_FIELDS"]

CANONICAL_FIELDS = ("run", "t", "service", "kind", "direction", "dev_id", "user_id", "conn_id", "data")


def journal_sha256(path: str | Path) -> str:
    """Hex SHA-256 of the journal file's entries (see the module docstring); of nothing for a file
    without a journal."""
    digest = hashlib.sha256()
    conn = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        try:
            runs = [row[0] for row in conn.execute("SELECT run_id FROM runs ORDER BY rowid")]
        except sqlite3.OperationalError:
            return digest.hexdigest()
        index = {run: i for i, run in enumerate(runs)}
        rows = conn.execute("SELECT run_id, t, service, kind, direction, dev_id, user_id, conn_id, data "
                            "FROM entries ORDER BY seq")
        for run_id, *rest in rows:
            line = json.dumps([index.get(run_id, -1), *rest], ensure_ascii=False, separators=(",", ":"))
            digest.update(line.encode("utf-8", "surrogatepass"))
            digest.update(b"\n")
    finally:
        conn.close()
    return digest.hexdigest()
