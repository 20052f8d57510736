"""Run comparisons (bench/report/diff.py) on synthetic runs whose answer is known, and the
confidence intervals they rest on (bench/report/stats.py)."""

from __future__ import annotations

import random

import pytest

from bench.metrics import Metrics
from bench.report import stats
from bench.report.diff import DiffSettings, compare, diff_lines


def run(seed: int, n: int, mean: float, sd: float, stage: str = "join_total") -> Metrics:
    rng = random.Random(seed)
    metrics = Metrics()
    for _ in range(n):
        metrics.add(stage, max(0.0, rng.gauss(mean, sd)), scenario="s", network="loopback")
    return metrics


def verdicts(a: Metrics, b: Metrics, **settings) -> dict[str, str]:
    return {d.label: d.verdict for d in compare(a, b, DiffSettings(**settings)) if d.stage == "join_total"}


def test_two_samples_of_one_distribution_are_the_same_or_noise():
    # same distribution, different seeds: never a regression nor an improvement, at any tolerance
    for seed in range(5):
        got = verdicts(run(seed, 2000, 650, 40), run(100 + seed, 2000, 650, 40), tolerance=0.0, min_delta_ms=0.0)
        assert set(got.values()) <= {"same", "noise"}, got


def test_a_clear_slowdown_is_a_regression_and_a_speedup_an_improvement():
    base = run(1, 2000, 650, 40)
    assert verdicts(base, run(2, 2000, 800, 40)) == {"p50": "regression", "p90": "regression", "p99": "regression"}
    assert verdicts(base, run(3, 2000, 500, 40)) == {"p50": "improvement", "p90": "improvement",
                                                     "p99": "improvement"}


def test_a_small_shift_within_the_tolerance_is_the_same():
    assert set(verdicts(run(1, 2000, 650, 40), run(2, 2000, 670, 40)).values()) == {"same"}  # ~3 % < 10 %


def test_a_big_difference_on_too_few_values_is_noise():
    # 5 joins each: p99 has no confidence interval at all, p50 a wide one
    got = verdicts(run(1, 5, 650, 200), run(2, 5, 900, 200), tolerance=5.0)
    assert got["p99"] == "noise" and got["p50"] in ("noise", "regression")
    d = [x for x in compare(run(1, 5, 650, 200), run(2, 5, 900, 200)) if x.label == "p99"][0]
    assert "too few values" in d.why


def test_min_delta_keeps_tiny_stages_quiet():
    a, b = run(1, 2000, 0.3, 0.01, "push"), run(2, 2000, 0.6, 0.01, "push")   # +100 %, but 0.3 ms
    got = {d.label: d.verdict for d in compare(a, b, DiffSettings(min_delta_ms=1.0))}
    assert set(got.values()) == {"same"}
    got = {d.label: d.verdict for d in compare(a, b, DiffSettings(min_delta_ms=0.0))}
    assert set(got.values()) == {"regression"}


def test_a_stage_only_one_run_has_is_insufficient():
    a = run(1, 100, 650, 40)
    b = run(2, 100, 650, 40)
    b.add("restore", 10.0, scenario="s", network="loopback")
    got = {(d.stage, d.label): d.verdict for d in compare(a, b)}
    assert got[("restore", "p50")] == "insufficient"


def test_diff_lines_name_the_regressions():
    lines = diff_lines(compare(run(1, 2000, 650, 40), run(2, 2000, 800, 40)), DiffSettings(), "A", "B")
    assert lines[-1] == "3 regressions: p50(join_total), p90(join_total), p99(join_total)"
    lines = diff_lines(compare(run(1, 2000, 650, 40), run(2, 2000, 655, 40)), DiffSettings(), "A", "B")
    assert lines[-1] == "no regression"


def test_the_percentile_interval_covers_the_true_quantile_about_95_percent_of_the_time():
    # uniform 0..1000 ms: the true p90 is 900 ms; 200 samples of 400 values each
    covered = 0
    for seed in range(200):
        rng = random.Random(seed)
        m = Metrics()
        for _ in range(400):
            m.add("x", rng.uniform(0, 1000), scenario="s", network="n")
        ci = stats.percentile_ci(stats.bins(m.merged(stage="x")), 90)
        assert ci is not None and ci.low is not None and ci.high is not None and ci.low <= ci.point <= ci.high
        covered += ci.low <= 900 <= ci.high
    assert 180 <= covered <= 200   # 95 % nominal (the order-statistic interval is slightly conservative)


def test_value_at_rank_and_bins():
    m = Metrics()
    for v in (1.0, 2.0, 2.0, 3.0):
        m.add("x", v, scenario="s", network="n")
    b = stats.bins(m.merged(stage="x"))
    assert [c for _, c in b] == [1, 2, 1]
    assert [stats.value_at_rank(b, r) // 1000 for r in (1, 2, 3, 4)] == [1, 2, 2, 3]
    with pytest.raises(IndexError):
        stats.value_at_rank(b, 5)
    assert stats.percentile_ms(b, 50) == pytest.approx(2.0, rel=1e-3)
