"""``cometbench run`` as a user meets it: usage errors, a run to a report, failures, real time, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.report import schema
from bench.report.digest import journal_sha256

CLI = [sys.executable, "-m", "bench.cli"]
ROOT = Path(__file__).resolve().parents[2]

QUICK = '''
"""Two people meet in room 101 and the patient hangs up."""

async def story(s):
    with s.step("meet"):
        await s.meet("101")
    with s.step("the patient hangs up"):
        s.this_step().expect("doctor.onOut", count=1)
        s.patient.hangup()
        await s.wait("doctor.onOut")
'''

FAILING = '''
"""The doctor expects to be told of a reload."""

async def story(s):
    with s.step("meet"):
        await s.meet("101")
    with s.step("the patient reloads"):
        s.after("patient.refresh", within=5).expect("doctor.onOut")
        await s.patient.refresh()
'''

ENDLESS = '''
"""A call that never ends (virtual time runs on until Ctrl-C)."""
TIMEOUT = 10_000_000

async def story(s):
    with s.step("a very long call"):
        await s.meet("101")
        while True:
            await s.sleep(60)
'''


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    return path


def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "run", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT)


@pytest.mark.parametrize("args, message", [
    (["no_such_story"], "unknown scenario 'no_such_story' (known: comet_restart, dropped_network, esl_kick"),
    (["missing.py"], "unknown scenario 'missing.py' (no file missing.py;"),
    (["--repeat", "0"], "--repeat must be at least 1, got 0"),
    (["--network", "moon"], "--network: unknown network profile 'moon'; known: loopback, lan, dsl, 4g, 3g"),
    (["--network", "patient=5g"], "--network: unknown network profile '5g'"),
    (["--network", "4g,3g"], "--network '4g,3g': two profiles for everyone (4g, 3g)"),
    (["--network", "4g,,patient=3g"], "--network '4g,,patient=3g': an empty entry"),
    (["--network", "patient=3g,patient=4g"], "--network: actor 'patient' is given twice"),
    (["--network", "dr who=3g"], "--network: 'dr who' is not an actor name"),
    (["--target", "ws=10.0.0.1:8087"], "target: cometql=HOST:PORT is required"),
    (["--profile", "strict"], "argument --profile: invalid choice: 'strict'"),
    (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (["two_party_call", "--all"], "name scenarios or use --all, not both"),
])
def test_usage_errors(args, message):
    done = run(*args)
    assert done.returncode == 2, done
    assert done.stderr.startswith(f"cometbench: {message}"), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_a_report_dir_that_holds_a_run_is_refused(tmp_path):
    (tmp_path / "report.json").write_text("{}")
    done = run("two_party_call", "--report-dir", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr == (f"cometbench: {tmp_path} already holds a run (report.json / journal.sqlite); choose another "
                           "--report-dir or remove it\n")


def test_list():
    done = run("--list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 14
    import re

    assert any(re.match(r"refresh_mid_call +The patient reloads the page in the middle", line) for line in lines)
    assert any(line.startswith("join_storm") and line.endswith("(not in the default pack)") for line in lines)
    assert [line.split()[0] for line in lines if line.endswith("(runs against a --target too)")] == ["two_party_call"]


def test_a_run_writes_its_directory_and_a_valid_report(tmp_path):
    import jsonschema

    story = write(tmp_path, "quick", QUICK)
    out = tmp_path / "run"
    done = run(str(story), "--seed", "11", "--repeat", "2", "--report-dir", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].startswith("[1/2] quick: passed in ") and lines[1].startswith("[2/2] quick #2: passed in ")
    assert lines[2].startswith("2 scenario runs: 2 passed (") and "seed 11, virtual time, network loopback" in lines[2]
    assert any(line.startswith("join_total: p50 ") for line in lines)
    assert lines[-1] == f"report: {out / 'report.json'}"
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, schema())
    assert report["status"] == "complete" and report["seed"] == 11 and report["repeat"] == 2
    assert report["journal_sha256"] == journal_sha256(out / "journal.sqlite")
    assert [(s["name"], s["passed"], s["repetition"]) for s in report["scenarios"]] == [("quick", True, 0),
                                                                                        ("quick", True, 1)]
    assert report["scenarios"][0]["seed"] == 11 and report["scenarios"][1]["seed"] != 11
    assert report["stages"]["join_total"]["count"] == 4
    assert set(report["stages"]["join_total"]) == {"count", "min", "p50", "p90", "p95", "p99", "max"}
    assert report["network"] == "loopback" and report["profiles"] == ["cppcomet-4.09"] and report["clock"] == "virtual"
    assert {"python", "cometbench", "trio", "hdrhistogram"} <= set(report["versions"])
    assert (out / "histograms.hlog").read_text().count("Tag=stage=join_total;scenario=quick;network=loopback,") == 1
    # the journal holds both scenario runs, readable with `cometbench journal`
    journal = subprocess.run([*CLI, "journal", str(out / "journal.sqlite"), "--run", "all", "--kind", "scenario"],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert journal.returncode == 0 and journal.stdout.count('"event":"start"') == 2


def test_a_failing_scenario_exits_1_and_names_step_and_cause(tmp_path):
    story = write(tmp_path, "failing", FAILING)
    out = tmp_path / "run"
    done = run(str(story), write(tmp_path, "quick", QUICK).as_posix(), "--report-dir", str(out))
    assert done.returncode == 1
    failure = ("failing: expectation declared in step 'the patient reloads': doctor.onOut within 5 s after "
               "patient.refresh -- seen 0 times")
    assert f"    {failure}" in done.stdout.splitlines()
    assert "2 scenario runs: 1 passed, 1 failed" in done.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["scenarios"][0]["failure"] == failure and report["scenarios"][1]["passed"] is True


def test_the_default_report_dir_is_under_reports(tmp_path):
    story = write(tmp_path, "quick", QUICK)
    done = run(str(story), "--seed", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (folder,) = (tmp_path / "reports").iterdir()
    assert folder.name.endswith("Z-seed3") and (folder / "report.json").is_file()
    assert done.stdout.splitlines()[-1] == f"report: {Path('reports') / folder.name / 'report.json'}"


@pytest.mark.slow
def test_real_time(tmp_path):
    story = write(tmp_path, "quick", QUICK)
    out = tmp_path / "run"
    done = run(str(story), "--real-time", "--report-dir", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["clock"] == "real" and report["scenarios"][0]["passed"]
    scenario = report["scenarios"][0]
    assert scenario["duration_ms"] == pytest.approx(scenario["simulated_ms"], rel=0.2)


def test_ctrl_c_leaves_the_journal_and_a_report_of_what_did_not_finish(tmp_path):
    quick, endless = write(tmp_path, "quick", QUICK), write(tmp_path, "endless", ENDLESS)
    out = tmp_path / "run"
    process = subprocess.Popen([*CLI, "run", str(quick), str(endless), str(quick), "--report-dir", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:   # until the endless scenario has been running a while
            report_file = out / "report.json"
            if report_file.is_file():
                try:
                    report = json.loads(report_file.read_text())
                except json.JSONDecodeError:
                    report = None
                if report and report["scenarios"][0]["status"] == "passed":
                    break
            time.sleep(0.1)
        else:
            pytest.fail("the first scenario never finished")
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stdout + stderr
    assert stderr == "cometbench: interrupted (Ctrl-C); the report says which scenarios did not finish\n"
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "interrupted" and report["interruption"] == "SIGINT (Ctrl-C)"
    assert [s["status"] for s in report["scenarios"]] == ["passed", "interrupted", "not_run"]
    assert report["scenarios"][1]["failure"] == "endless: interrupted by SIGINT (Ctrl-C) before it finished"
    assert report["scenarios"][2]["failure"] == "quick: not run: interrupted by SIGINT (Ctrl-C) before it finished"
    assert report["journal_sha256"] == journal_sha256(out / "journal.sqlite")
    import sqlite3

    conn = sqlite3.connect(out / "journal.sqlite")
    runs = [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY rowid")]
    endless_entries = conn.execute("SELECT COUNT(*) FROM entries WHERE run_id = ?", (runs[1],)).fetchone()[0]
    conn.close()
    assert len(runs) == 2 and endless_entries > 1000      # the interrupted scenario's journal is there
    assert "interrupted: SIGINT (Ctrl-C)" in stdout and "1 passed, 1 interrupted, 1 not run" in stdout


def run_on_a_terminal(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """``cometbench argv`` with its stdout on a pseudo-terminal 160 columns wide: (status, what the
    terminal showed, stderr)."""
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm"}
    process = subprocess.Popen([*CLI, *argv], stdout=slave, stderr=subprocess.PIPE, cwd=ROOT, env=env, text=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:          # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert process.stderr is not None    # stderr=PIPE
    stderr = process.stderr.read()
    return process.wait(timeout=timeout), b"".join(chunks).decode("utf-8", "replace"), stderr


def test_on_a_terminal_the_progress_is_drawn_with_rich(tmp_path):
    story = write(tmp_path, "quick", QUICK)
    out = tmp_path / "run"
    status, text, stderr = run_on_a_terminal(["run", str(story), "--report-dir", str(out)], timeout=60)
    assert status == 0, stderr
    assert "\x1b[" in text                                  # rich drew with escape sequences
    assert "[1/1] quick: passed in" in text and "1 scenario run: 1 passed" in text
    assert f"report: {out / 'report.json'}" in text and stderr == ""


def test_a_network_profile_per_actor_moves_that_actors_stages_and_tags_its_histograms(tmp_path):
    out = tmp_path / "run"
    done = run("two_party_call", "--network", "doctor=lan,patient=3g", "--report-dir", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["network"] == "doctor=lan,patient=3g" and report["scenarios"][0]["network"] == "doctor=lan,patient=3g"
    log = (out / "histograms.hlog").read_text()
    assert "Tag=stage=join_total;scenario=two_party_call;network=3g," in log
    assert "Tag=stage=join_total;scenario=two_party_call;network=lan," in log
    assert "Tag=stage=meeting;scenario=two_party_call;network=doctor:lan+patient:3g," in log
    from bench.metrics import Metrics

    metrics = Metrics.read_log([out / "histograms.hlog"])
    lan, slow = metrics.summary(network="lan"), metrics.summary(network="3g")
    assert lan["join_total"]["count"] == slow["join_total"]["count"] == 1
    assert 3000 <= slow["join_total"]["min"] <= 15000                  # 3g: inside the seed's 3-15 s band
    for stage in ("backend_invite", "sip_transport", "register", "call_setup", "media"):
        assert lan[stage]["max"] * 3 < slow[stage]["min"], stage       # each side's own link in its own stages
