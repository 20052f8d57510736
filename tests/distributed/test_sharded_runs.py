"""Sharded runs end to end with the local executor (subprocesses): the partition and the merge are
exact, the shared start holds, and every bad input is named and fails without a merged report.

Each shard runs on its own in-process emulator, so these tests check the partition, the barrier and
the merge -- not load (a shared ``cometbench serve`` target is what makes shards measure load)."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import jsonschema
import pytest

from bench.metrics import Metrics, percentile_values
from bench.report import schema
from tests.distributed.conftest import cli, crash_hook

PLAN = ["two_party_call", "hold_resume", "--repeat", "2", "--seed", "15"]     # 4 calls over two scenarios


def report(path: Path) -> dict:
    return json.loads((Path(path) / "report.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One unsharded run and the same run as 3 local shards, in virtual time."""
    base = tmp_path_factory.mktemp("sharded")
    single, sharded = base / "single", base / "sharded"
    status, out, err = cli("run", *PLAN, "--report-dir", str(single))
    assert status == 0, err
    status, out, err = cli("run", *PLAN, "--shards", "3", "--executor", "local", "--report-dir", str(sharded))
    assert status == 0, err
    return single, sharded, err


def test_three_shards_merge_into_the_single_run_bit_for_bit(runs):
    single, sharded, err = runs
    one, merged = report(single), report(sharded)
    jsonschema.validate(merged, schema())
    assert "merging" in err
    # the partition of 4 calls in 3: [0], [1], [2, 3] -- across the two scenarios
    parts = merged["shards"]["parts"]
    assert [(p["calls"]["first"], p["calls"]["end"]) for p in parts] == [(0, 1), (1, 2), (2, 4)]
    assert [report(p["path"])["shard"]["index"] for p in parts] == [0, 1, 2]
    assert all(p["cpu_ms"] > 0 and p["cpu_ms"] == report(p["path"])["shard"]["cpu_ms"] for p in parts)
    # the same calls, seeds and outcomes, in call order
    fields = ("name", "seed", "repetition", "status", "passed", "journal_run")
    assert [tuple(e[f] for f in fields) for e in merged["scenarios"]] == \
        [tuple(e[f] for f in fields) for e in one["scenarios"]]
    # the histograms: equal count, min, max and percentiles for every stage, scenario and network
    a, b = Metrics.read_log(single / "histograms.hlog"), Metrics.read_log(sharded / "histograms.hlog")
    assert set(a.histograms) == set(b.histograms) and a.histograms
    for key, h in a.histograms.items():
        g = b.histograms[key]
        assert (g.get_total_count(), g.get_min_value(), g.get_max_value()) == \
            (h.get_total_count(), h.get_min_value(), h.get_max_value())
        assert percentile_values(g, (50, 90, 95, 99, 99.9)) == percentile_values(h, (50, 90, 95, 99, 99.9))
    assert merged["stages"] == one["stages"]
    # the journals concatenated with a shard column give the unsharded run's digest
    assert merged["journal_sha256"] == one["journal_sha256"]
    # cometbench journal reads the merged journal as a single run's: every run of every shard
    status, out, _ = cli("journal", str(sharded / "journal.sqlite"), "--run", "all", "--kind", "scenario")
    assert status == 0
    assert out.count('"event":"start"') == 4
    import sqlite3

    conn = sqlite3.connect(sharded / "journal.sqlite")
    try:
        shards = [row[0] for row in conn.execute("SELECT DISTINCT shard FROM runs ORDER BY rowid")]
        entries = conn.execute("SELECT count(*), count(DISTINCT shard) FROM entries").fetchone()
    finally:
        conn.close()
    assert shards == [0, 1, 2] and entries[0] > 0 and entries[1] == 3
    assert "merged from 3 shards of 4 calls" in (sharded / "report.html").read_text(encoding="utf-8")
    assert (sharded / "junit.xml").is_file()


def test_merge_command_again_gives_the_same_figures(runs, tmp_path):
    single, sharded, _ = runs
    shard_dirs = sorted(str(p) for p in (sharded / "shards").glob("shard-*") if p.is_dir())
    status, out, err = cli("merge", *shard_dirs, "--report-dir", str(tmp_path / "again"))
    assert status == 0, err
    assert "merged 3 shards of 4 calls" in out
    again = report(tmp_path / "again")
    assert again["stages"] == report(single)["stages"]
    assert again["journal_sha256"] == report(single)["journal_sha256"]


def _refused(args, out_dir: Path, *expected: str):
    status, out, err = cli("merge", *map(str, args), "--report-dir", str(out_dir))
    assert status == 1, (out, err)
    for text in expected:
        assert text in err, err
    assert "no merged report was written" in err
    assert not (out_dir / "report.json").exists()
    return err


def test_merge_refuses_missing_duplicated_and_foreign_shards(runs, tmp_path):
    single, sharded, _ = runs
    s = [sharded / "shards" / f"shard-{i}" for i in range(3)]
    _refused([s[0], s[2]], tmp_path / "m1", "shard 1/3 is missing", "calls 1..1")
    _refused([s[0], s[1], s[2], s[1]], tmp_path / "m2", "shard 1/3 is given twice")
    _refused([s[0], s[1], single], tmp_path / "m3", f"{single} is not a shard")
    _refused([s[0], tmp_path / "nowhere", s[2]], tmp_path / "m4", str(tmp_path / "nowhere"))
    # a shard of another run: another seed
    other = tmp_path / "other-seed"
    status, _, err = cli("run", *PLAN[:-1], "16", "--shard", "1/3", "--report-dir", str(other))
    assert status == 0, err
    _refused([s[0], other, s[2]], tmp_path / "m5", "differs from", "in seed: 16 against 15")


def _copy_shards(sharded: Path, into: Path) -> list[Path]:
    """Copies of the sharded run's three shard folders (tests alter them; the fixture is shared)."""
    copies = [into / f"shard-{i}" for i in range(3)]
    for i, copy in enumerate(copies):
        shutil.copytree(sharded / "shards" / f"shard-{i}", copy)
    return copies


def test_merge_refuses_partial_and_crashed_shards(runs, tmp_path):
    _, sharded, _ = runs
    copies = _copy_shards(sharded, tmp_path)
    data = report(copies[2])
    data["status"], data["interruption"] = "running", None            # killed before its final write
    (copies[2] / "report.json").write_text(json.dumps(data), encoding="utf-8")
    _refused(copies, tmp_path / "m1", "shard 2/3", "did not finish (status running")
    data["status"] = "complete"
    data["scenarios"] = data["scenarios"][:1]                           # a call missing
    (copies[2] / "report.json").write_text(json.dumps(data), encoding="utf-8")
    _refused(copies, tmp_path / "m2", "shard 2/3", "is partial")
    shutil.copy(sharded / "shards" / "shard-2" / "report.json", copies[2] / "report.json")
    (copies[1] / "histograms.hlog").unlink()
    _refused(copies, tmp_path / "m3", f"{copies[1]}/histograms.hlog is missing")


def test_a_late_shard_is_merged_and_fails_the_run(runs, tmp_path):
    _, sharded, _ = runs
    copies = _copy_shards(sharded, tmp_path)
    data = report(copies[1])
    data["shard"].update(skew_ms=812.5, skew_ok=False)
    (copies[1] / "report.json").write_text(json.dumps(data), encoding="utf-8")
    status, out, err = cli("merge", *map(str, copies), "--report-dir", str(tmp_path / "merged"))
    assert status == 1
    assert "shard 1/3" in err and "812.5 ms after the shared start" in err
    merged = report(tmp_path / "merged")
    assert merged["shards"]["skew_ok"] is False and merged["shards"]["max_skew_ms"] == 812.5
    html = (tmp_path / "merged" / "report.html").read_text(encoding="utf-8")
    assert "shard 1 started 812.5 ms after the shared start (tolerance 500 ms)" in html


def test_a_shard_that_starts_after_the_tolerance_exits_1(tmp_path):
    late = time.time() - 3.0                       # the shared instant passed 3 s ago
    status, out, err = cli("run", "two_party_call", "--shard", "0/2", "--start-at", f"{late:.3f}",
                           "--report-dir", str(tmp_path / "late"))
    assert status == 1
    assert "shard 0/2 started" in err and "more than the tolerance of 500 ms" in err
    block = report(tmp_path / "late")["shard"]
    assert block["skew_ok"] is False and block["skew_ms"] >= 3000
    assert block["barrier"] == "fixed" and block["calls"] == {"first": 0, "end": 0}


def test_a_shard_that_crashes_mid_run_fails_the_run_without_a_merged_report(tmp_path):
    env = crash_hook(tmp_path / "hook", "2 mid")     # shard 2 (calls 2, 3) dies after call 2
    out_dir = tmp_path / "run"
    status, out, err = cli("run", *PLAN, "--shards", "3", "--executor", "local", "--report-dir", str(out_dir),
                           env=env)
    assert status == 1
    assert "shard 2/3 failed: exited with status 9" in err
    assert "no merged report: 1 of 3 shards did not finish" in err
    assert not (out_dir / "report.json").exists() and not (out_dir / "histograms.hlog").exists()
    shards = out_dir / "shards"
    assert report(shards / "shard-2")["status"] == "running"        # it died in the middle
    assert report(shards / "shard-0")["status"] == "complete"       # the others ran to their end
    # merging what is there by hand is refused too, naming the dead shard
    _refused([shards / f"shard-{i}" for i in range(3)], tmp_path / "m", "shard 2/3", "did not finish (status running")


def test_a_shard_that_dies_before_the_start_calls_it_off_for_the_others(tmp_path):
    env = crash_hook(tmp_path / "hook", "0")
    out_dir = tmp_path / "run"
    status, out, err = cli("run", *PLAN, "--shards", "3", "--executor", "local", "--report-dir", str(out_dir),
                           "--barrier-timeout", "120", env=env)
    assert status == 1
    assert "shard 0/3 failed: exited with status 9" in err
    for i in (1, 2):
        log = (out_dir / "shards" / f"shard-{i}.log").read_text(encoding="utf-8")
        assert "the start was called off: shard 0 ended before the start (status 9)" in log
        assert report(out_dir / "shards" / f"shard-{i}")["summary"]["not_run"] > 0
    assert not (out_dir / "report.json").exists()


def test_three_shards_in_real_time_start_together(quick_call, tmp_path):
    out_dir = tmp_path / "rt"
    status, out, err = cli("run", str(quick_call), "--real-time", "--repeat", "3", "--shards", "3",
                           "--executor", "local", "--start-lead", "1", "--report-dir", str(out_dir))
    assert status == 0, err
    merged = report(out_dir)
    block = merged["shards"]
    assert block["count"] == 3 and block["skew_ok"] is True
    assert 0 <= block["max_skew_ms"] <= block["tolerance_ms"]
    starts = set()
    for part in block["parts"]:
        shard = report(part["path"])["shard"]
        starts.add(shard["start_at"])
        assert shard["barrier"] == "tcp" and shard["skew_ms"] is not None and shard["skew_ok"]
        assert abs(shard["clock_offset_ms"]) < 50          # one machine: the barrier's clock is ours
        assert shard["started_at"] >= shard["start_at"]   # nobody began before the instant
        # the shard's histogram log counts from the shared start (so the logs line up), not its launch
        hlog = (Path(part["path"]) / "histograms.hlog").read_text(encoding="utf-8")
        start_time = float(re.search(r"\[StartTime: ([0-9.]+)", hlog).group(1))
        assert abs(start_time - shard["start_at"]) < 0.05
    assert len(starts) == 1
    assert merged["summary"]["passed"] == 3


@pytest.mark.parametrize("args, why", [
    (["--shard", "0/2", "--shards", "2"], "not both"),
    (["--start-at", "+1"], "--start-at applies to a shard"),
    (["--shard", "3/2"], "not in 0..1"),
    (["--shard", "0/2", "--start-at", "noon"], "--start-at expects"),
    (["--shards", "2", "--executor", "local", "--address", "127.0.0.1:1"], "apply to --executor ray"),
    (["--shards", "0"], "number of shards >= 1"),
])
def test_usage_errors(args, why, tmp_path):
    status, out, err = cli("run", "two_party_call", *args, "--report-dir", str(tmp_path / "x"))
    assert status == 2
    assert why in err
    assert not (tmp_path / "x" / "report.json").exists()
