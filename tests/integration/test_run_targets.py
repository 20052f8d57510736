"""Scenarios against a deployment instead of the in-process stack (``cometbench run --target``).

The deployment here is the emulator itself, started apart from the story: in the test's own trio run on
loopback sockets (real time), or as a separate ``cometbench serve`` process for the command line.  A
story that needs nothing but the servers runs there; one that declares a power of the in-process stack
(``NEEDS``) is skipped with the reason in the report; one that uses such a power without declaring it
fails with a message naming what it needs; bad target input is a usage error (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bench.options import TargetSpec
from bench.scenario import ScenarioSpec
from bench.scenario.runner import tell
from tests.integration.test_split_modes import ENV, free_port, serve

CLI = [sys.executable, "-m", "bench.cli"]
ROOT = Path(__file__).resolve().parents[2]


def spec_of(story, needs=()) -> ScenarioSpec:
    return ScenarioSpec(story.__name__, Path(__file__), story=story, needs=tuple(needs))


@asynccontextmanager
async def deployment():
    """The emulator on loopback sockets, as a deployment the story does not own."""
    from emulator.config import Config
    from emulator.net.network import OSNetwork
    from emulator.stack import open_stack

    config = Config(seed=3)
    config.free_ports()
    async with open_stack(config, network=OSNetwork()) as stack:
        yield stack, TargetSpec("127.0.0.1", stack.ports["ws"], "127.0.0.1", stack.ports["cometql"], 15,
                                ca_file=str(stack.certificates.ca_cert))


async def test_a_story_that_needs_nothing_but_the_servers_runs_against_a_deployment(tmp_path):
    seen = {}

    async def story(s):
        seen["powers"] = s.powers
        seen["users"] = {s.doctor.user_id, s.patient.user_id}
        with s.step("meet"):
            await s.meet("301")
        with s.step("the patient hangs up"):
            s.this_step().expect("doctor.onOut", count=1, status="hangup")
            s.patient.hangup()
            await s.wait("doctor.onOut", within=10)
        seen["members"] = await s.conference_members("301")
        seen["frame"] = s.timeline.last("patient.first_remote_frame")

    async with deployment() as (stack, target):
        journal = tmp_path / "journal.sqlite"
        result = await tell(spec_of(story), seed=5, target=target, journal_path=str(journal))
        assert result.passed, result.failure
        assert result.target == target.describe() and result.expectations == 1
        # the deployment saw the story: the actors logged in and called over its sockets
        assert {e["user_id"] for e in stack.journal.entries(service="comet", kind="connect")} == seen["users"]
        assert stack.journal.entries(service="cometql", kind="query")
    assert seen["powers"] == frozenset()
    assert seen["members"] == ["doctor"]            # conference_members over CometQL, as the app reads it
    assert seen["frame"].data["media"] == "unobserved"   # media cannot be observed in a deployment
    import sqlite3

    conn = sqlite3.connect(journal)
    kinds = {row[0] for row in conn.execute("SELECT kind FROM entries WHERE service = 'bench'")}
    conn.close()
    assert {"scenario", "step", "mark", "callback", "expectation"} <= kinds


@pytest.mark.parametrize("line, needs", [
    ("await s.faults.restart_comet()", "s.faults.restart_comet() needs server faults"),
    ("s.faults.slow_cometql(1)", "s.faults.slow_cometql() needs server faults"),
    ("s.link(s.patient).lose_network(10)", "link(patient).lose_network needs link conditions"),
    ("s.link(s.patient).profile('3g')", "link(patient).profile('3g') needs link conditions"),
    ("await s.wait('freeswitch.add-member')", "an expectation or wait on freeswitch.add-member needs a look "
                                              "inside FreeSWITCH"),
    ("s.patient.member('301')", "patient.member() needs a look inside FreeSWITCH"),
    ("await s.faults.esl('conference list')", "s.faults.esl('conference list') needs a look inside FreeSWITCH"),
])
async def test_a_power_used_without_declaring_it_fails_the_story_naming_it(tmp_path, line, needs):
    async def story(s):
        with s.step("something only the in-process stack can do"):
            namespace = {"s": s}
            exec(f"async def _f():\n    {line}\n", namespace)
            await namespace["_f"]()

    async with deployment() as (stack, target):
        result = await tell(spec_of(story), target=target, journal_path=str(tmp_path / "j.sqlite"))
    assert result.status == "failed" and result.step == "something only the in-process stack can do"
    assert needs in result.failure, result.failure
    assert f"which only the in-process stack has; the target {target.describe()} is an external deployment" \
        in result.failure


async def test_a_story_that_declares_what_the_target_lacks_is_skipped_before_it_starts(tmp_path):
    async def story(s):
        raise AssertionError("never told")

    async with deployment() as (stack, target):
        result = await tell(spec_of(story, needs=("faults", "links")), target=target,
                            journal_path=str(tmp_path / "j.sqlite"))
        assert not stack.journal.entries(service="cometql", kind="connect")    # nothing touched the deployment
    assert result.status == "skipped" and not result.passed and result.failure is None
    assert result.skipped == ("needs server faults (stack.faults: restarts, a slow CometQL) and link conditions "
                              "(stack.links: profiles, partitions, lost networks) (NEEDS of test_run_targets.py), "
                              "which only the in-process stack has")


async def test_link_conditions_need_both_ends_so_a_target_takes_loopback_only(tmp_path):
    async def story(s):
        raise AssertionError("never told")

    async with deployment() as (stack, target):
        result = await tell(spec_of(story), target=target, network="4g", journal_path=str(tmp_path / "j.sqlite"))
    assert result.status == "failed"
    assert "--network 4g: link conditions need both ends of a connection in this process" in result.failure


QUICK = '''
"""Two people meet and the patient hangs up (nothing but the servers)."""
NEEDS = ()

async def story(s):
    with s.step("meet"):
        await s.meet("302")
    with s.step("the patient hangs up"):
        s.patient.hangup()
        await s.wait("doctor.onOut", within=10)
'''

RESTARTS = '''
"""A story that restarts the comet server."""
NEEDS = ("faults",)

async def story(s):
    await s.faults.restart_comet()
'''

UNDECLARED = '''
"""A story that restarts FreeSWITCH without saying so."""
NEEDS = ()

async def story(s):
    with s.step("restart FreeSWITCH"):
        await s.faults.restart_freeswitch()
'''


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "run", *args], capture_output=True, text=True, timeout=240, cwd=ROOT, env=ENV)


@pytest.mark.slow
def test_cometbench_run_against_a_separate_serve_process(tmp_path):
    import jsonschema

    from bench.report import schema

    files = []
    for name, text in (("quick", QUICK), ("restarts", RESTARTS), ("undeclared", UNDECLARED)):
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(text))
        files.append(str(path))
    with serve("--free-ports", "--no-journal") as ready:
        target = f"ws=127.0.0.1:{ready['ws']},cometql=127.0.0.1:{ready['cometql']}"
        out = tmp_path / "run"
        done = run(*files, "--target", target, "--ca", ready["ca_cert"], "--report-dir", str(out))
        # a usage error for each kind of bad target input, before anything runs
        loaded = run(files[0], "--target", target, "--network", "3g", "--report-dir", str(tmp_path / "x"))
        virtual = run(files[0], "--target", target, "--virtual", "--report-dir", str(tmp_path / "y"))
    assert done.returncode == 1, done.stdout + done.stderr       # the undeclared restart failed
    assert "Traceback" not in done.stderr
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, schema())
    assert report["clock"] == "real" and report["target"] == f"{target},dev_id=15"
    statuses = {s["name"]: s["status"] for s in report["scenarios"]}
    assert statuses == {"quick": "passed", "restarts": "skipped", "undeclared": "failed"}
    assert report["summary"]["skipped"] == 1 and report["summary"]["passed"] == 1
    undeclared = next(s for s in report["scenarios"] if s["name"] == "undeclared")
    assert undeclared["failure"].startswith("undeclared: step 'restart FreeSWITCH': s.faults.restart_freeswitch() "
                                            "needs server faults")
    import xml.etree.ElementTree as ET

    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    skipped = [case for case in suite.iter("testcase") if case.find("skipped") is not None]
    assert [case.get("name") for case in skipped] == ["restarts"]
    assert skipped[0].find("skipped").get("message").startswith("needs server faults")
    lines = done.stdout.splitlines()
    assert any(line.startswith("[2/3] restarts: skipped: needs server faults") for line in lines), done.stdout
    assert any(line.startswith("  skipped restarts: needs server faults") for line in lines), done.stdout
    for bad, message in ((loaded, "--network 3g: link conditions need both ends"),
                         (virtual, "--virtual with --target: a deployment keeps the wall clock")):
        assert bad.returncode == 2 and bad.stderr.startswith(f"cometbench: {message}"), bad.stderr
        assert bad.stdout == ""


@pytest.mark.parametrize("target, message", [
    ("ws=127.0.0.1", "target ws='127.0.0.1': expected HOST:PORT with a port 1-65535"),
    ("cometql=127.0.0.1:3307", "target: ws=HOST:PORT is required"),
    ("ws=a:1,cometql=a:2,colour=red", "target: unknown key 'colour'"),
    ("ws=a:1,cometql=a:2,ca=/no/such/ca.pem", "target ca=/no/such/ca.pem: no such file"),
])
def test_a_malformed_target_is_a_usage_error(target, message):
    done = run("two_party_call", "--target", target)
    assert done.returncode == 2 and done.stderr.startswith(f"cometbench: {message}"), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_a_target_that_does_not_answer_is_a_usage_error(tmp_path):
    port = free_port()
    done = run("two_party_call", "--target", f"ws=127.0.0.1:{port},cometql=127.0.0.1:{port}",
               "--report-dir", str(tmp_path / "r"))
    assert done.returncode == 2, done
    assert done.stderr.startswith(f"cometbench: target ws=127.0.0.1:{port} does not answer"), done.stderr
    assert not (tmp_path / "r").exists()     # nothing ran, no report


def test_tls_flags_need_a_target():
    done = run("two_party_call", "--insecure")
    assert done.returncode == 2
    assert done.stderr.startswith("cometbench: --ca and --insecure only apply to --target")
