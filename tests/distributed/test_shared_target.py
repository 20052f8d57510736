"""Sharded runs against one shared deployment (``run --shards N --target ...``, ``--shard i/N --target``).

Shards on several machines or pods drive one deployment; here a ``cometbench serve`` process started
by the test is that deployment, and the shards are local subprocesses in real time.  What must hold:
every shard gets the target (the shard command lines keep ``--target`` and ``--ca``), the barrier and
the merge work as against in-process stacks, and the calls of different shards never meet on the
server -- each call has its own user ids and rooms, derived from its global call index
(bench/scenario/names.py), which the server's journal and its CometQL tables show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from bench.distributed.executors import shard_argv
from bench.scenario.errors import ScenarioError
from bench.scenario.names import MAX_CALLS, USER_BASE, CallNames, run_tag
from tests.distributed.conftest import cli, served_calls, shared_serve


def report(path: Path) -> dict:
    return json.loads((Path(path) / "report.json").read_text(encoding="utf-8"))


def test_every_shard_command_line_keeps_the_target():
    argv = ["two_party_call", "--repeat", "4", "--target", "ws=10.0.0.5:8087,cometql=10.0.0.5:3307",
            "--ca", "/etc/ca.pem", "--shards", "3", "--executor", "local", "--report-dir", "/r"]
    for i in range(3):
        out = shard_argv(argv, i, 3, Path(f"/r/shards/shard-{i}"), "127.0.0.1:9")
        assert out[out.index("--target") + 1] == "ws=10.0.0.5:8087,cometql=10.0.0.5:3307"
        assert out[out.index("--ca") + 1] == "/etc/ca.pem"
        assert out[out.index("--shard") + 1] == f"{i}/3" and "--shards" not in out and "--executor" not in out


def test_call_names_are_disjoint_between_calls_and_idempotent():
    calls = [CallNames(c, "k3x9a") for c in range(300)]
    ids = [names.user_id(n) for names in calls for n in range(100)]
    assert len(set(ids)) == len(ids) and min(ids) == USER_BASE and max(ids) < 1_000_000_000
    assert calls[7].user_id(1) == USER_BASE + 701
    assert calls[7].room("101") == "101_k3x9a_7" and calls[7].room("101_k3x9a_7") == "101_k3x9a_7"
    assert len({names.room("101") for names in calls}) == 300
    assert CallNames(3).room("101") == "101_3"
    with pytest.raises(ScenarioError, match="at most 100 users"):
        calls[0].user_id(100)
    with pytest.raises(ScenarioError, match="longer than the conference table's 32 characters"):
        calls[0].room("a_room_name_of_twenty_five")
    with pytest.raises(ScenarioError, match=f"at most {MAX_CALLS} calls"):
        CallNames(MAX_CALLS)
    assert CallNames(MAX_CALLS - 1).user_id(99) == 999_999_999
    assert run_tag(1767225600.0) == run_tag(1767225600.04) != run_tag(1767225600.1)
    assert len(run_tag(1767225600.0)) == 5


async def _invitations(ready: dict, rooms: list[str]) -> dict[str, set[int]]:
    """The ``conference`` rows of each room, read over the shared server's CometQL as the app would."""
    from bench.actors.backend import Backend
    from emulator.net.network import OSNetwork

    backend = Backend(OSNetwork(), "127.0.0.1", ready["cometql"], dev_id=15)
    out = {}
    for room in rooms:
        out[room] = {int(row[1] or 0) for row in (await backend.invitations(room)).rows}
    await backend.close()
    return out


@pytest.mark.slow
def test_three_shards_drive_one_shared_serve_without_collisions(tmp_path):
    out_dir = tmp_path / "shared"
    with shared_serve(tmp_path) as (ready, target, journal):
        status, out, err = cli("run", "two_party_call", "--repeat", "4", "--seed", "15", "--shards", "3",
                               "--executor", "local", "--start-lead", "1", "--target", target,
                               "--report-dir", str(out_dir))
        assert status == 0, err + out
        merged = report(out_dir)
        rooms = [f"101_{tag_of(merged)}_{call}" for call in range(4)]
        invited = trio.run(_invitations, ready, rooms)       # the server's own CometQL, while it runs
    assert "Traceback" not in err
    # every call passed, and the merged report counts the calls of all shards
    assert merged["summary"]["passed"] == 4 and merged["summary"]["failed"] == 0
    assert [(s["name"], s["status"]) for s in merged["scenarios"]] == [("two_party_call", "passed")] * 4
    assert merged["stages"]["join_total"]["count"] == 8                 # both joins of every call
    block = merged["shards"]
    assert block["count"] == 3 and block["total_calls"] == 4 and block["skew_ok"] is True
    assert [(p["calls"]["first"], p["calls"]["end"]) for p in block["parts"]] == [(0, 1), (1, 2), (2, 4)]
    assert merged["clock"] == "real" and merged["target"].startswith(f"ws=127.0.0.1:{ready['ws']},")
    for part in block["parts"]:
        shard = report(part["path"])
        assert shard["target"] == merged["target"]                   # every shard drove the shared server
        assert shard["shard"]["barrier"] == "tcp" and shard["shard"]["skew_ok"]
    # each call's room holds exactly that call's two invitations: no call met another's users
    users = {call: {USER_BASE + 100 * call, USER_BASE + 100 * call + 1} for call in range(4)}
    assert invited == {room: users[call] for call, room in enumerate(rooms)}
    # the server's journal: the 8 users of the 4 calls logged in, and every INSERT went to its call's room
    logins, inserted = served_calls(journal)
    assert logins == set().union(*users.values())
    assert inserted == {room: users[call] for call, room in enumerate(rooms)}


def tag_of(merged: dict) -> str:
    """The run's tag in its rooms: from the shards' one shared start (bench/scenario/names.py)."""
    starts = {report(part["path"])["shard"]["start_at"] for part in merged["shards"]["parts"]}
    assert len(starts) == 1, starts
    return run_tag(starts.pop())


@pytest.mark.slow
def test_shards_started_apart_with_start_at_drive_one_serve_and_merge(shared_call, tmp_path):
    """The Kubernetes way: each shard is its own ``run --shard i/N --target ... --start-at T`` (no
    barrier), then ``cometbench merge``."""
    import subprocess
    import sys
    import time

    from tests.distributed.conftest import ROOT

    start = f"{time.time() + 6:.3f}"       # the Job's submit time sets one instant for every pod
    with shared_serve(tmp_path) as (ready, target, journal):
        procs = [subprocess.Popen([sys.executable, "-m", "bench.cli", "run", str(shared_call), "--repeat", "4",
                                   "--shard", f"{i}/2", "--start-at", start, "--target", target,
                                   "--report-dir", str(tmp_path / f"shard-{i}")],
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  stdin=subprocess.DEVNULL)
                 for i in range(2)]
        outputs = [proc.communicate(timeout=180) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err + out
    status, out, err = cli("merge", str(tmp_path / "shard-0"), str(tmp_path / "shard-1"),
                           "--report-dir", str(tmp_path / "merged"))
    assert status == 0, err + out
    merged = report(tmp_path / "merged")
    assert merged["summary"]["passed"] == 4 and merged["shards"]["total_calls"] == 4
    assert merged["stages"]["join_total"]["count"] == 8
    tag = tag_of(merged)
    assert tag == run_tag(float(start))
    logins, inserted = served_calls(journal)
    users = {call: {USER_BASE + 100 * call, USER_BASE + 100 * call + 1} for call in range(4)}
    assert logins == set().union(*users.values())
    assert inserted == {f"7_{tag}_{call}": users[call] for call in range(4)}
