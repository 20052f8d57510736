"""run --shards N --executor ray: shards as plain Ray tasks, the barrier as a named actor.

One local Ray for the module, ``ray.init(num_cpus=2)`` (the machine has 2 cores and is shared), with
the crash hook of conftest.py in its workers' environment (armed per test through its file).  Ray is
in the test extra: locally a missing Ray skips these tests, with ``CI`` set it fails them."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from bench.cli import main
from tests.distributed.conftest import cli, crash_hook, require_ray, served_calls, shared_serve

PLAN = ["two_party_call", "hold_resume", "--repeat", "2", "--seed", "15"]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    ray = require_ray()
    hook = tmp_path_factory.mktemp("ray-hook")
    env = crash_hook(hook)
    assert not ray.is_initialized()
    ray.init(num_cpus=2, namespace="cometbench", log_to_driver=False, include_dashboard=False,
             runtime_env={"env_vars": env})
    try:
        yield ray, Path(env["COMETBENCH_TEST_CRASH"])
    finally:
        ray.shutdown()


def report(path: Path) -> dict:
    return json.loads((Path(path) / "report.json").read_text(encoding="utf-8"))


def test_two_ray_shards_give_the_single_run(ray_cluster, tmp_path, capsys):
    status, _, err = cli("run", *PLAN, "--report-dir", str(tmp_path / "single"))
    assert status == 0, err
    out_dir = tmp_path / "ray"
    assert main(["run", *PLAN, "--shards", "2", "--report-dir", str(out_dir)]) == 0   # ray: the default
    err = capsys.readouterr().err
    assert "2 shards on ray" in err
    single, merged = report(tmp_path / "single"), report(out_dir)
    assert merged["stages"] == single["stages"]
    assert merged["journal_sha256"] == single["journal_sha256"]
    parts = merged["shards"]["parts"]
    assert [(p["calls"]["first"], p["calls"]["end"]) for p in parts] == [(0, 2), (2, 4)]
    for part in parts:
        shard = report(part["path"])["shard"]
        assert shard["barrier"] == "ray" and shard["skew_ok"] and shard["skew_ms"] is not None
        assert (Path(part["path"]) / "journal.sqlite").is_file()
        assert (out_dir / "shards" / f"shard-{part['index']}.log").is_file()
    assert len({report(p["path"])["shard"]["start_at"] for p in parts}) == 1


def test_a_ray_shard_whose_worker_dies_is_named_and_nothing_is_merged(ray_cluster, tmp_path, capsys):
    _, marker = ray_cluster
    marker.write_text("1", encoding="utf-8")
    try:
        status = main(["run", *PLAN, "--shards", "2", "--report-dir", str(tmp_path / "crash"),
                       "--barrier-timeout", "60"])
    finally:
        marker.write_text("", encoding="utf-8")
    err = capsys.readouterr().err
    assert status == 1
    assert "shard 1/2 failed: its Ray task failed (WorkerCrashedError" in err
    assert "no merged report: 1 of 2 shards did not finish" in err
    assert not (tmp_path / "crash" / "report.json").exists()
    # the other shard was released by the call-off, not left waiting at the barrier
    shard0 = tmp_path / "crash" / "shards" / "shard-0.log"
    assert "the start was called off: shard 1 failed before the start (WorkerCrashedError)" in \
        shard0.read_text(encoding="utf-8")


def test_more_shards_than_the_cluster_can_start_at_once(ray_cluster, tmp_path, capsys):
    status = main(["run", *PLAN, "--shards", "3", "--report-dir", str(tmp_path / "big")])
    err = capsys.readouterr().err
    assert status == 1
    assert "the Ray cluster has 2 CPUs, and 3 shards of 1 CPU each must run at once" in err
    assert not (tmp_path / "big" / "report.json").exists()


def test_an_unreachable_cluster_is_named(tmp_path, capsys):
    require_ray()
    with socket.socket() as s:          # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    status = main(["run", *PLAN, "--shards", "2", "--address", f"ray://127.0.0.1:{port}",
                   "--report-dir", str(tmp_path / "far")])
    err = capsys.readouterr().err
    assert status == 1
    assert f"the Ray cluster at ray://127.0.0.1:{port} is not reachable" in err and "no shard was started" in err
    assert not (tmp_path / "far" / "report.json").exists()


def test_without_ray_installed_the_run_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)      # `import ray` raises ImportError
    status = main(["run", *PLAN, "--shards", "2", "--report-dir", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert status == 1
    assert "pip install 'cometbench[ray]'" in err and "--executor local" in err


def test_two_ray_shards_against_one_shared_serve(ray_cluster, shared_call, tmp_path, capsys):
    """``--shards 2 --executor ray --target ...``: each Ray task drives the same ``cometbench serve``,
    every call in a room of its own (bench/scenario/names.py)."""
    from bench.scenario.names import USER_BASE

    out_dir = tmp_path / "ray-shared"
    with shared_serve(tmp_path) as (ready, target, journal):
        status = main(["run", str(shared_call), "--repeat", "2", "--shards", "2", "--target", target,
                       "--report-dir", str(out_dir)])
    err = capsys.readouterr().err
    assert status == 0, err
    merged = report(out_dir)
    assert merged["summary"]["passed"] == 2 and merged["shards"]["count"] == 2
    assert all(report(p["path"])["target"] == merged["target"] for p in merged["shards"]["parts"])
    assert {report(p["path"])["shard"]["barrier"] for p in merged["shards"]["parts"]} == {"ray"}
    logins, inserted = served_calls(journal)
    assert logins == {USER_BASE, USER_BASE + 1, USER_BASE + 100, USER_BASE + 101}
    assert sorted(inserted.values(), key=min) == [{USER_BASE, USER_BASE + 1}, {USER_BASE + 100, USER_BASE + 101}]
