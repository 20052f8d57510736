"""The reports of a run as a user meets them: report.html, junit.xml and report.json written by
``cometbench run`` and again by ``cometbench report``, thresholds with their exit status,
``cometbench diff`` on runs whose answer is known, and every kind of bad input answered with one
``cometbench:`` line and exit status 2."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from bench.metrics import Metrics
from bench.report import schema
from tests.integration.test_cli_run import CLI, FAILING, ROOT, run_on_a_terminal, write

QUICK_STORY = '''
"""Two people meet in room 101 and hang up."""

async def story(s):
    with s.step("meet"):
        await s.meet("101")
    with s.step("the patient hangs up"):
        s.patient.hangup()
        await s.wait("doctor.onOut")
'''


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def a_run(tmp_path_factory) -> Path:
    """A run of a passing story (twice) and a failing one, written once for the module."""
    tmp = tmp_path_factory.mktemp("run")
    quick, failing = write(tmp, "quick", QUICK_STORY), write(tmp, "failing", FAILING)
    out = tmp / "run"
    done = cli("run", str(quick), str(failing), "--repeat", "2", "--seed", "5", "--report-dir", str(out))
    assert done.returncode == 1, done.stdout + done.stderr
    return out


def copy_run(a_run: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(a_run, target)
    return target


def test_a_run_writes_three_reports_and_a_summary_table(a_run):
    import jsonschema

    report = json.loads((a_run / "report.json").read_text())
    jsonschema.validate(report, schema())
    assert report["reports"] == {"html": "report.html", "junit": "junit.xml"}
    assert report["thresholds"] is None and report["baseline"] is None
    slowest = [s["join_total_ms"] for s in report["scenarios"] if s["name"] == "quick"]
    assert all(600 < ms < 800 for ms in slowest)
    html = (a_run / "report.html").read_text()
    # self-contained: no URL to load anything from, no script
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", html) and "<script" not in html
    assert "@import" not in html and not re.search(r"url\((?!#)", html)     # only url(#marker) references
    assert 'data-stage="join_total"' in html and 'id="cdf-join-total"' in html
    assert html.count('class="sequence"') == 4          # every call of a 4-call run
    # failures grouped: one cause, two runs, with the step and the expectation
    group = re.search(r'<tr class="failure-group"><td class="num">(\d+)</td><td>failing</td><td>([^<]*)</td>'
                      r'<td>([^<]*)</td>', html)
    assert group and group.group(1) == "2" and group.group(2) == "the patient reloads"
    assert "doctor.onOut" in group.group(3)
    junit = ET.parse(a_run / "junit.xml").getroot()
    cases = junit.findall("./testsuite[@name='cometbench']/testcase")
    assert [c.get("name") for c in cases] == ["quick", "quick #2", "failing", "failing #2"]
    failures = [c.find("failure") for c in cases]
    assert failures[0] is None and failures[1] is None
    assert failures[2] is not None and failures[2].get("message").startswith(
        "failing: expectation declared in step 'the patient reloads': doctor.onOut")
    assert junit.find("./testsuite").get("failures") == "2"


def test_the_summary_has_the_stage_table_and_keeps_its_lines(tmp_path):
    quick = write(tmp_path, "quick", QUICK_STORY)
    done = cli("run", str(quick), "--report-dir", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("1 scenario run: 1 passed (")
    header = lines[2].split()
    assert header == ["stage", "(ms)", "count", "min", "p50", "p90", "p95", "p99", "max"]
    row = next(line.split() for line in lines if line.startswith("join_total "))
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert row[1] == str(report["stages"]["join_total"]["count"])
    assert float(row[3]) == pytest.approx(report["stages"]["join_total"]["p50"], abs=0.06)
    assert any(line.startswith("join_total: p50 ") for line in lines)
    assert lines[-2] == f"html: {tmp_path / 'r' / 'report.html'}  junit: {tmp_path / 'r' / 'junit.xml'}"
    assert lines[-1] == f"report: {tmp_path / 'r' / 'report.json'}"


def test_report_regenerates_the_same_figures(a_run, tmp_path):
    run = copy_run(a_run, tmp_path)
    before = json.loads((run / "report.json").read_text())
    for name in ("report.html", "junit.xml"):
        (run / name).unlink()
    done = cli("report", str(run))
    assert done.returncode == 1, done.stderr      # the run had failures
    after = json.loads((run / "report.json").read_text())
    assert after["stages"] == before["stages"] and after["scenarios"] == before["scenarios"]
    assert (run / "report.html").is_file() and (run / "junit.xml").is_file()
    assert done.stdout.splitlines()[-1] == f"report: {run / 'report.json'}"


def test_thresholds_breach_exits_3_and_shows_everywhere(tmp_path):
    quick = write(tmp_path, "quick", QUICK_STORY)
    limits = tmp_path / "limits.toml"
    limits.write_text('limits = ["p99(join_total) < 8 s", "p50(join_total) < 100 ms", "failure_rate < 1 %"]\n')
    out = tmp_path / "r"
    done = cli("run", str(quick), "--thresholds", str(limits), "--report-dir", str(out))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "thresholds (" in done.stdout and "p50(join_total) < 100 ms: BREACHED, measured" in done.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["thresholds"]["passed"] is False and report["thresholds"]["breached"] == 1
    assert [v["passed"] for v in report["thresholds"]["limits"]] == [True, False, True]
    html = (out / "report.html").read_text()
    assert 'id="banner-breach"' in html and "1 threshold breached" in html
    suite = ET.parse(out / "junit.xml").getroot().find("./testsuite[@name='cometbench.thresholds']")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["p99(join_total) < 8 s", "p50(join_total) < 100 ms",
                                              "failure_rate < 1 %"]
    assert [c.find("failure") is not None for c in cases] == [False, True, False]
    # the same run judged again with looser limits passes: exit 0
    limits.write_text('limits = ["p50(join_total) < 2 s"]\n')
    done = cli("report", str(out), "--thresholds", str(limits))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((out / "report.json").read_text())["thresholds"]["passed"] is True


def synthetic_run(path: Path, values: list[float], *, failed: int = 0) -> Path:
    """A run directory with the given join_total values (ms), written the way the runner writes it."""
    path.mkdir(parents=True)
    metrics = Metrics()
    for v in values:
        metrics.add("join_total", v, scenario="two_party_call", network="loopback")
    metrics.write_log(path / "histograms.hlog", start=1_700_000_000.0, end=1_700_000_100.0)
    scenarios: list[dict[str, Any]] = [
                 {"name": "two_party_call", "passed": i >= failed, "status": "passed" if i >= failed else "failed",
                  "duration_ms": 1.0, "simulated_ms": 1.0, "failure": None if i >= failed else "x: failed",
                  "failures": [], "step": None, "seed": i, "profile": "cppcomet-4.09", "network": "loopback",
                  "repetition": i, "journal_run": None, "expectations": 0, "events": 0, "join_total_ms": None}
                 for i in range(10)]
    report = {"schema": "cometbench-report/1", "status": "complete", "interruption": None, "seed": 0,
              "clock": "virtual", "network": "loopback", "profiles": ["cppcomet-4.09"], "target": "in-process",
              "repeat": 10, "started": "2023-11-14T22:13:20.000Z", "finished": "2023-11-14T22:15:00.000Z",
              "wall_ms": 1.0, "journal": "journal.sqlite", "journal_sha256": None, "histograms": "histograms.hlog",
              "histogram_settings": {"unit": "us", "lowest": 1, "highest": 3600000000, "significant_digits": 3},
              "versions": {"python": "3", "cometbench": "0", "trio": "0", "hdrhistogram": "0"},
              "summary": {"scenarios": 10, "passed": 10 - failed, "failed": failed, "interrupted": 0, "not_run": 0,
                          "running": 0},
              "scenarios": scenarios, "by_scenario": {}, "stages": metrics.summary(), "emulator_log": None}
    (path / "report.json").write_text(json.dumps(report))
    return path


def gauss(seed: int, n: int, mean: float, sd: float) -> list[float]:
    rng = random.Random(seed)
    return [max(1.0, rng.gauss(mean, sd)) for _ in range(n)]


def test_diff_flags_a_known_regression_and_not_noise(tmp_path):
    base = synthetic_run(tmp_path / "base", gauss(1, 3000, 650, 30))
    same = synthetic_run(tmp_path / "same", gauss(2, 3000, 650, 30))
    slower = synthetic_run(tmp_path / "slower", gauss(3, 3000, 780, 30))
    done = cli("diff", str(base), str(same))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("no regression")
    done = cli("diff", str(base), str(slower))
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == "3 regressions: p50(join_total), p90(join_total), p99(join_total)"
    done = cli("diff", str(base), str(slower), "--tolerance", "25%")       # +20 % is within 25 %
    assert done.returncode == 0 and "no regression" in done.stdout
    done = cli("diff", str(base), str(slower), "--json", "--percentiles", "50")
    data = json.loads(done.stdout)
    assert data["regressions"] == 1 and data["stages"][0]["verdict"] == "regression"
    assert data["stages"][0]["b"]["low"] > data["stages"][0]["a"]["high"]
    # the comparison inside the HTML report and report.json (--baseline)
    done = cli("report", str(slower), "--baseline", str(base))
    assert done.returncode == 0, done.stderr
    report = json.loads((slower / "report.json").read_text())
    assert report["baseline"]["regressions"] == 3 and report["baseline"]["a"] == str(base)
    html = (slower / "report.html").read_text()
    assert 'id="baseline"' in html and 'data-diff="join_total/p50"' in html
    assert "3 regressions against the baseline" in html


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage, words", [
    (lambda d: (d / "report.json").unlink(), "is not a run directory: it has no report.json"),
    (lambda d: (d / "report.json").write_text((d / "report.json").read_text()[:500]),
     "report.json is not valid JSON (it ends early: written by a run that was killed while writing it?)"),
    (lambda d: (d / "report.json").write_text('{"schema": "other/9"}'), "is not a cometbench run report"),
    (lambda d: (d / "report.json").write_text('{"schema": "cometbench-report/1"}'), "lacks status, seed"),
    (lambda d: (d / "histograms.hlog").write_text("Tag=stage=x;scenario=y;network=z,0.0,1.0,1.0,garbage\n"),
     "histograms.hlog is not a readable HdrHistogram log"),
    (lambda d: (d / "histograms.hlog").unlink(), "histograms.hlog is missing, but report.json has latency figures"),
])
def test_a_damaged_run_directory_is_a_clear_usage_error(a_run, tmp_path, damage, words):
    run = copy_run(a_run, tmp_path)
    damage(run)
    for args in (["report", str(run)], ["diff", str(run), str(a_run)]):
        done = cli(*args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith("cometbench: ") and words in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_a_corrupt_journal_still_gives_the_figures_with_a_warning(a_run, tmp_path):
    run = copy_run(a_run, tmp_path)
    for extra in ("journal.sqlite-wal", "journal.sqlite-shm"):
        (run / extra).unlink(missing_ok=True)
    (run / "journal.sqlite").write_bytes(b"this is not sqlite" * 100)
    done = cli("report", str(run))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("cometbench: warning: ") and "cannot be read as a cometbench journal" in done.stderr
    html = (run / "report.html").read_text()
    assert "No sequence diagrams" in html and 'data-stage="join_total"' in html


def test_a_half_written_run_is_reported_as_unfinished(a_run, tmp_path):
    run = copy_run(a_run, tmp_path)
    report = json.loads((run / "report.json").read_text())
    report["status"], report["finished"] = "running", None
    report["scenarios"][-1]["status"] = "running"
    report["summary"]["running"], report["summary"]["failed"] = 1, report["summary"]["failed"] - 1
    (run / "report.json").write_text(json.dumps(report))
    done = cli("report", str(run))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    html = (run / "report.html").read_text()
    assert 'id="banner-unfinished"' in html and "the run did not finish (status running" in html


@pytest.mark.parametrize("args, words", [
    (["report", "/nonexistent/run"], "no run directory at /nonexistent/run"),
    (["diff", "/nonexistent/a", "/nonexistent/b"], "RUN_A: no run directory at /nonexistent/a"),
    (["report", "{run}", "--thresholds", "/nonexistent.toml"], "thresholds file not found: /nonexistent.toml"),
    (["report", "{run}", "--thresholds", "{bad_stage}"], "unknown stage 'joint_total'; did you mean 'join_total'?"),
    (["report", "{run}", "--thresholds", "{bad_toml}"], "is not valid TOML"),
    (["run", "two_party_call", "--thresholds", "{bad_stage}"], "unknown stage 'joint_total'"),
    (["run", "two_party_call", "--baseline", "/nonexistent/run"], "--baseline: no run directory at /nonexistent/run"),
    (["diff", "{run}", "{run}", "--percentiles", "50,abc"], "--percentiles expects numbers"),
    (["diff", "{run}", "{run}", "--scenario", "nope"], "--scenario 'nope': neither run measured it"),
    (["diff", "{run}", "{run}", "--tolerance", "lots"], "expects a percentage"),
])
def test_usage_errors_of_report_and_diff(a_run, tmp_path, args, words):
    bad_stage = tmp_path / "bad_stage.toml"
    bad_stage.write_text('limits = ["p99(joint_total) < 8 s"]\n')
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text('limits = ["p99(join_total) < 8 s"\n')
    args = [a.format(run=a_run, bad_stage=bad_stage, bad_toml=bad_toml) for a in args]
    done = cli(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("cometbench: ") and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    if args[0] == "run":
        assert done.stdout == ""     # checked before anything ran


def test_on_a_terminal_the_summary_tables_are_drawn_with_rich(tmp_path):
    quick = write(tmp_path, "quick", QUICK_STORY)
    limits = tmp_path / "limits.toml"
    limits.write_text('limits = ["p99(join_total) < 8 s"]\n')
    status, text, stderr = run_on_a_terminal(
        ["run", str(quick), "--thresholds", str(limits), "--report-dir", str(tmp_path / "r")], timeout=120)
    assert status == 0, stderr
    assert "latency per stage (ms)" in text and "thresholds" in text and "p99(join_total) < 8 s" in text
    assert "│" in text or "┃" in text                      # a rich table, not the plain one
    join_row = next(line for line in text.splitlines() if "join_total" in line and "│" in line)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert f"{report['stages']['join_total']['p50']:,.1f}" in join_row
