"""Thresholds files (bench/report/thresholds.py): the syntax, the errors, the verdicts."""

from __future__ import annotations

import pytest

from bench.metrics import Metrics
from bench.report.thresholds import ThresholdError, evaluate, load_thresholds, parse_limit


def write(tmp_path, text: str):
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, statistic, stage, op, value", [
    ("p99(join_total) < 8 s", "p99", "join_total", "<", 8000.0),
    ("p50( call_setup )<=300ms", "p50", "call_setup", "<=", 300.0),
    ("p99.9(join_total) < 1.5 min", "p99.9", "join_total", "<", 90_000.0),
    ("max(push) > 250 us", "max", "push", ">", 0.25),
    ("mean(system) >= 1 s", "mean", "system", ">=", 1000.0),
    ("count(join_total) >= 100", "count", "join_total", ">=", 100.0),
    ("failure_rate < 1 %", "failure_rate", None, "<", 1.0),
    ("failures <= 0", "failures", None, "<=", 0.0),
])
def test_limits_parse(text, statistic, stage, op, value):
    limit = parse_limit(text)
    assert (limit.statistic, limit.stage, limit.op, limit.value) == (statistic, stage, op, value)


@pytest.mark.parametrize("text, words", [
    ("p99(join_totl) < 8 s", "unknown stage 'join_totl'; did you mean 'join_total'?"),
    ("p99(join_total) < 8", "a latency needs a unit"),
    ("p99(join_total) < 8 hours", "a latency needs a unit"),
    ("p99(join_total) = 8 s", "cannot read the limit"),
    ("median(join_total) < 8 s", "the statistic must be min, max, mean, count or a percentile"),
    ("p101(join_total) < 8 s", "between p0 and p100"),
    ("failure_rate < 1", "failure_rate is in percent"),
    ("failures < 1 %", "failures is a count"),
    ("count(join_total) > 5 s", "without a unit"),
])
def test_bad_limits_say_what_is_wrong(text, words):
    with pytest.raises(ThresholdError) as info:
        parse_limit(text)
    assert words in str(info.value)


def test_a_file_with_scenario_limits_and_measures(tmp_path):
    path = write(tmp_path, 'limits = ["p99(join_total) < 8 s", "failure_rate < 1 %"]\nmeasures = ["restore"]\n'
                           '[scenario.refresh_mid_call]\nlimits = ["p50(restore) < 20 s"]\n')
    thresholds = load_thresholds(path)
    assert [(l.scenario, l.text) for l in thresholds.limits] == [
        (None, "p99(join_total) < 8 s"), (None, "failure_rate < 1 %"), ("refresh_mid_call", "p50(restore) < 20 s")]


@pytest.mark.parametrize("text, words", [
    ('limits = ["p99(join_total) < 8 s"\n', "is not valid TOML"),
    ('limits = "p99(join_total) < 8 s"\n', "limits must be a list of strings"),
    ('limits = [8]\n', "a limit must be a string"),
    ('limit = ["p99(join_total) < 8 s"]\n', "unknown key 'limit'"),
    ('limits = []\n', "has no limits"),
    ('limits = ["p50(restore) < 1 s"]\n', "unknown stage 'restore'"),
    ('limits = ["p50(x) < 1 s"]\nmeasures = "x"\n', "measures must be a list"),
    ('[scenario.a]\nlimits = ["p50(join_total) < 1 s"]\nother = 1\n', "holds only `limits"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(ThresholdError) as info:
        load_thresholds(path)
    assert words in str(info.value) and str(path) in str(info.value)


def test_a_missing_file(tmp_path):
    with pytest.raises(ThresholdError, match="thresholds file not found"):
        load_thresholds(tmp_path / "nope.toml")


def report(statuses):
    return {"scenarios": [{"name": "a" if i % 2 else "b", "status": s} for i, s in enumerate(statuses)]}


def test_verdicts_against_known_values(tmp_path):
    metrics = Metrics()
    for ms in range(1, 101):                      # 1..100 ms: p50 = 50, p99 = 99, max = 100
        metrics.add("join_total", float(ms), scenario="a", network="loopback")
    metrics.add("push", 5.0, scenario="b", network="loopback")
    path = write(tmp_path, 'limits = ["p50(join_total) < 51 ms", "p99(join_total) < 99 ms",'
                           ' "max(join_total) <= 100.1 ms", "count(join_total) >= 100", "failure_rate < 10 %",'
                           ' "failures <= 0", "p50(call_setup) < 1 s"]\n'
                           '[scenario.b]\nlimits = ["max(push) < 5 ms", "failure_rate <= 0 %"]\n')
    verdicts = evaluate(load_thresholds(path), report(["passed"] * 9 + ["failed"]), metrics)
    # values are those of the histograms: 3 significant digits (50 ms is reported as 50.015 ms)
    got = [(v.limit.name, v.passed, None if v.actual is None else pytest.approx(v.actual, rel=1e-3))
           for v in verdicts]
    assert got == [
        ("p50(join_total) < 51 ms", True, 50.0),
        ("p99(join_total) < 99 ms", False, 99.0),
        ("max(join_total) <= 100.1 ms", True, 100.0),
        ("count(join_total) >= 100", True, 100.0),
        ("failure_rate < 10 %", False, 10.0),
        ("failures <= 0", False, 1.0),
        ("p50(call_setup) < 1 s", False, None),       # no values: a breach, never a silent pass
        ("b: max(push) < 5 ms", False, 5.0),
        ("b: failure_rate <= 0 %", True, 0.0),        # the failed run (index 9) is scenario "a"
    ]
    assert "no values of call_setup" in verdicts[6].message
    assert "1 of 10 scenario runs failed" in verdicts[4].message
