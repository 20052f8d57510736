"""Equal seeds, equal runs: ``cometbench run`` in virtual time is a function of its seed.

Two runs of the default pack with one seed give the same journal -- every entry, byte for byte, the
bench's own records included (every mark, step and callback with its virtual time), nothing masked --
and so the same ``journal_sha256`` in report.json; another seed gives another journal and another
digest.  In both fidelity profiles.  Each run is its own process, as a user runs it, and the two
equal-seed runs get different ``PYTHONHASHSEED`` values, so nothing may depend on set or dict order
of strings either.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report.digest import journal_sha256
from bench.scenario.loader import default_pack

ROOT = Path(__file__).resolve().parents[2]


def start(out: Path, seed: int, profile: str, hash_seed: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.Popen([sys.executable, "-m", "bench.cli", "run", "--seed", str(seed), "--profile", profile,
                             "--report-dir", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)


def entries(out: Path) -> list[tuple]:
    conn = sqlite3.connect(out / "journal.sqlite")
    rows = list(conn.execute("SELECT seq, run_id, t, service, kind, direction, dev_id, user_id, conn_id, data "
                             "FROM entries ORDER BY seq"))
    conn.close()
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["cppcomet-4.09", "lenient"])
def test_the_default_pack_gives_one_journal_per_seed(tmp_path, profile):
    runs = {"a": (3, "1"), "b": (3, "2"), "c": (4, "1")}
    procs = {name: start(tmp_path / name, seed, profile, hash_seed) for name, (seed, hash_seed) in runs.items()}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"run {name}: {stdout}{stderr}"
    reports = {name: json.loads((tmp_path / name / "report.json").read_text()) for name in runs}
    journals = {name: entries(tmp_path / name) for name in runs}
    names = {spec.name for spec in default_pack()}
    assert {s["name"] for s in reports["a"]["scenarios"]} == names and "dropped_network" in names
    a, b, c = journals["a"], journals["b"], journals["c"]
    assert len(a) > 10_000 and sum(1 for row in a if row[3] == "bench") > 1000
    first_difference = next(((x, y) for x, y in zip(a, b) if x != y), None)
    assert first_difference is None and len(a) == len(b), f"equal seeds, different journals: {first_difference}"
    digest = journal_sha256(tmp_path / "a" / "journal.sqlite")
    assert reports["a"]["journal_sha256"] == reports["b"]["journal_sha256"] == digest
    assert a != c
    assert reports["c"]["journal_sha256"] != reports["a"]["journal_sha256"]
    assert all(report["profiles"] == [profile] for report in reports.values())
