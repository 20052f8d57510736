"""deploy/k8s: the Indexed Job of shards and its merge step say what cometbench accepts.

No cluster here: the manifests are filled as the README says (envsubst-style ``${...}``), read as
YAML, checked for the settings a sharded run depends on (indexed, every shard at once, no retries,
the shared volume), and their command lines are parsed by cometbench's own parser -- a pod's
``--shard SHARD_INDEX/N`` read from its environment gives the partition."""

from __future__ import annotations

import calendar
import re
from pathlib import Path

import pytest
import yaml

from bench.cli import UsageError, build_parser
from bench.distributed.cli import shard_context
from bench.distributed.partition import call_range

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
VALUES = {"RUN_ID": "run42", "SHARDS": "10", "SEED": "7", "REPEAT": "1000", "IMAGE": "registry.example/cometbench:1",
          "START_AT": "2026-12-06T10:00:00Z",
          "TARGET": "ws=comet.staging.example:8087,cometql=comet.staging.example:3307,password=secret,insecure"}


def filled(name: str) -> list[dict]:
    text = (K8S / name).read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    placeholders = set(re.findall(r"\$\{(\w+)\}", body))
    assert placeholders <= set(VALUES), placeholders - set(VALUES)
    # what envsubst does to ${VAR}; Kubernetes' own $(VAR) is left for the kubelet
    text = re.sub(r"\$\{(\w+)\}", lambda m: VALUES[m.group(1)], text)
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"\$(\w|\{)", body)          # no other $VAR that envsubst would blank
    return [doc for doc in yaml.safe_load_all(text) if doc]


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of container args."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def test_the_shards_job_is_indexed_parallel_and_never_retried():
    (job,) = filled("shards-job.yaml")
    spec = job["spec"]
    assert job["kind"] == "Job" and spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 10
    assert spec["backoffLimitPerIndex"] == 0 and "backoffLimit" not in spec
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "cometbench-results"
    assert mounts["results"] == "/results"


@pytest.mark.parametrize("index", [0, 3, 9])
def test_each_pod_runs_its_shard_at_the_fixed_instant(index):
    (job,) = filled("shards-job.yaml")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["cometbench"]
    argv = [expand(str(a), {"SHARD_INDEX": str(index)}) for a in container["args"]]
    args = build_parser().parse_args(argv)
    assert args.report_dir == f"/results/run42/shard-{index}"
    assert args.repeat == 1000 and args.seed == 7 and args.shards is None
    # every pod drives the one shared deployment (the target's spec as `run --target` parses it)
    from bench.options import parse_target

    target = parse_target(args.target)
    assert (target.ws_host, target.ws_port, target.cometql_port, target.password, target.insecure) == \
        ("comet.staging.example", 8087, 3307, "secret", True)
    import os

    saved = os.environ.get("SHARD_INDEX")
    os.environ["SHARD_INDEX"] = str(index)
    try:
        context = shard_context(args, UsageError)
    finally:
        if saved is None:
            del os.environ["SHARD_INDEX"]
        else:
            os.environ["SHARD_INDEX"] = saved
    assert (context.shard.index, context.shard.count) == (index, 10)
    assert context.start.description == "fixed"
    assert context.start.start_at == calendar.timegm((2026, 12, 6, 10, 0, 0, 0, 0, 0))
    assert context.tolerance == 0.5
    assert context.shard.calls(1000) == call_range(index, 10, 1000)


def test_the_merge_job_merges_the_shards_of_the_run():
    (job,) = filled("merge-job.yaml")
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["template"]["spec"]["restartPolicy"] == "Never"
    container = spec["template"]["spec"]["containers"][0]
    script = container["args"][0]
    assert container["command"] == ["sh", "-c"]
    words = script.split()
    assert words[:3] == ["exec", "cometbench", "merge"]
    args = build_parser().parse_args(words[2:])
    assert args.command == "merge" and args.run_dirs == ["/results/run42/shard-*"]
    assert args.report_dir == "/results/run42/merged"
    (pvc,) = filled("results-pvc.yaml")
    assert pvc["kind"] == "PersistentVolumeClaim" and pvc["metadata"]["name"] == "cometbench-results"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
