"""Split-and-merge of HdrHistogram logs is exact (the issue's check, through cometbench's own log)."""

from __future__ import annotations

import random

from bench.metrics import PERCENTILES, Metrics, percentile_values


def test_four_logs_add_up_to_the_single_histogram(tmp_path):
    rng = random.Random(15)
    whole = Metrics()
    parts = [Metrics() for _ in range(4)]
    for n in range(200_000):
        # a long-tailed latency in ms, 0.001 ms .. minutes, and two scenarios
        ms = rng.lognormvariate(5.5, 1.4) if n % 97 else rng.uniform(0.001, 120_000.0)
        scenario = "a" if n % 3 else "b"
        whole.add("join_total", ms, scenario=scenario, network="loopback")
        parts[rng.randrange(4)].add("join_total", ms, scenario=scenario, network="loopback")
    paths = []
    for i, part in enumerate(parts):
        path = tmp_path / f"shard-{i}.hlog"
        part.write_log(path, start=1_800_000_000.0 + i * 0.0004, end=1_800_000_100.0)
        paths.append(path)
    merged = Metrics.read_log(paths)
    assert set(merged.histograms) == set(whole.histograms)
    for key, expected in whole.histograms.items():
        got = merged.histograms[key]
        assert got.get_total_count() == expected.get_total_count()
        assert got.get_min_value() == expected.get_min_value()
        assert got.get_max_value() == expected.get_max_value()
        assert percentile_values(got, (*PERCENTILES, 99.9, 99.99)) == \
            percentile_values(expected, (*PERCENTILES, 99.9, 99.99))
        assert got.get_mean_value() == expected.get_mean_value()
    assert merged.summary() == whole.summary()
    assert sum(p.merged().get_total_count() for p in parts) == 200_000
