"""bench/metrics.py (HdrHistogram per stage/scenario/network, the log format) and the journal digest."""

from __future__ import annotations

import json
import sqlite3

import pytest
from hdrh.histogram import HdrHistogram

from bench.metrics import HIGHEST_US, LOWEST_US, SIGNIFICANT_DIGITS, Key, Metrics, new_histogram, summarize
from bench.report import schema
from bench.report.digest import journal_sha256


def test_one_fixed_histogram_setting():
    h = new_histogram()
    assert (h.lowest_trackable_value, h.highest_trackable_value, h.significant_figures) == (
        LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS) == (1, 3_600_000_000, 3)


def test_percentiles_in_milliseconds_within_the_precision():
    m = Metrics()
    for ms in range(1, 1001):                                   # 1 .. 1000 ms
        m.add("join_total", ms, scenario="a", network="loopback")
    s = m.summary()["join_total"]
    assert s["count"] == 1000
    for key, exact in (("min", 1), ("p50", 500), ("p90", 900), ("p95", 950), ("p99", 990), ("max", 1000)):
        assert s[key] == pytest.approx(exact, rel=1e-3), key      # 3 significant digits


def test_keys_keep_stage_scenario_and_network_apart_and_merge_by_filter():
    m = Metrics()
    m.add("join_total", 600, scenario="a", network="loopback")
    m.add("join_total", 700, scenario="b", network="loopback")
    m.add("push", 2, scenario="a", network="loopback")
    assert set(m.histograms) == {Key("join_total", "a", "loopback"), Key("join_total", "b", "loopback"),
                                 Key("push", "a", "loopback")}
    assert m.summary()["join_total"]["count"] == 2
    assert m.summary(scenario="a") == {"join_total": summarize(m.histograms[Key("join_total", "a", "loopback")]),
                                       "push": summarize(m.histograms[Key("push", "a", "loopback")])}
    assert m.stages() == ["join_total", "push"]


def test_zero_and_over_an_hour():
    m = Metrics()
    m.add("decision", 0.0, scenario="a", network="loopback")
    m.add("decision", -0.0004, scenario="a", network="loopback")
    m.add("stuck", 5 * 3600 * 1000, scenario="a", network="loopback")
    assert m.summary()["decision"] == {"count": 2, "min": 0.0, "p50": 0.0, "p90": 0.0, "p95": 0.0, "p99": 0.0,
                                       "max": 0.0}
    assert m.clamped == 1 and m.summary()["stuck"]["max"] == pytest.approx(3600 * 1000, rel=1e-3)
    assert summarize(new_histogram()) == {"count": 0}


def test_bad_names_cannot_become_tags():
    with pytest.raises(ValueError, match="cannot be empty"):
        Key("join total", "a", "loopback")
    with pytest.raises(ValueError):
        Key("join_total", "a,b", "loopback")
    with pytest.raises(ValueError, match="not a cometbench histogram tag"):
        Key.from_tag("A")


def test_the_log_is_hdrhistogram_s_format_and_logs_merge_exactly(tmp_path):
    first, second = Metrics(), Metrics()
    for ms in (600.5, 650.25, 700.125):
        first.add("join_total", ms, scenario="refresh_mid_call", network="loopback")
    for ms in (800, 900):
        second.add("join_total", ms, scenario="refresh_mid_call", network="loopback")
    second.add("push", 1.5, scenario="two_party_call", network="loopback")
    first.write_log(tmp_path / "a.hlog", start=1_700_000_000.0, end=1_700_000_060.0)
    second.write_log(tmp_path / "b.hlog", start=1_700_000_000.0, end=1_700_000_060.0)
    text = (tmp_path / "a.hlog").read_text()
    assert text.startswith("#[Histogram log format version 1.3]\n#[StartTime: 1700000000.000")
    (line,) = [x for x in text.splitlines() if x.startswith("Tag=")]
    tag, start, length, interval_max, payload = line.split(",")
    assert tag == "Tag=stage=join_total;scenario=refresh_mid_call;network=loopback"
    assert (float(start), float(length), float(interval_max)) == (1_700_000_000.0, 60.0, 700.0)
    decoded = HdrHistogram.decode(payload)
    assert decoded.get_total_count() == 3
    merged = Metrics.read_log([tmp_path / "a.hlog", tmp_path / "b.hlog"])
    expected = Metrics()
    expected.merge(first)
    expected.merge(second)
    assert merged.summary() == expected.summary()
    assert merged.summary()["join_total"]["count"] == 5


def test_a_log_without_tags_is_refused(tmp_path):
    from hdrh.log import HistogramLogWriter

    h = new_histogram()
    h.record_value(5)
    with open(tmp_path / "x.hlog", "w") as out:
        HistogramLogWriter(out).output_interval_histogram(h, 1.0, 2.0)
    with pytest.raises(ValueError, match="without a Tag"):
        Metrics.read_log(tmp_path / "x.hlog")


# --- the journal digest ------------------------------------------------------------------------------


def journal(path, runs: list[tuple[str, list[tuple]]]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, seed INT, profile TEXT, started REAL, clock TEXT)")
    conn.execute("CREATE TABLE entries (seq INTEGER PRIMARY KEY, run_id TEXT, t REAL, service TEXT, kind TEXT, "
                 "direction TEXT, dev_id INT, user_id INT, conn_id INT, data TEXT)")
    for run_id, entries in runs:
        conn.execute("INSERT INTO runs VALUES (?, 0, 'p', 0, 'virtual')", (run_id,))
        for entry in entries:
            conn.execute("INSERT INTO entries (run_id, t, service, kind, direction, dev_id, user_id, conn_id, data) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (run_id, *entry))
    conn.commit()
    conn.close()


E1 = (1700000000.5, "comet", "connect", "", 15, 5, 1, "auth=hash authorized=True")
E2 = (1700000001.25, "bench", "mark", "", 15, 5, None, '{"mark":"on_call","t":1.25}')


def test_digest_covers_everything_run_ids_seq_values_order_and_content(tmp_path):
    """Ids are seeded, so nothing is masked: another run id, another order or another byte of content
    each give another digest; equal files give equal digests."""
    journal(tmp_path / "a.sqlite", [("aaaa", [E1, E2]), ("bbbb", [E1])])
    journal(tmp_path / "a2.sqlite", [("aaaa", [E1, E2]), ("bbbb", [E1])])
    assert journal_sha256(tmp_path / "a.sqlite") == journal_sha256(tmp_path / "a2.sqlite")
    journal(tmp_path / "b.sqlite", [("zzzz", [E1, E2]), ("yyyy", [E1])])        # other run ids
    journal(tmp_path / "c.sqlite", [("aaaa", [E2, E1]), ("bbbb", [E1])])        # other order
    journal(tmp_path / "d.sqlite", [("aaaa", [E1, E2[:-1] + ('{"mark":"on_call","t":1.26}',)]), ("bbbb", [E1])])
    journal(tmp_path / "e.sqlite", [("aaaa", [E1]), ("bbbb", [E2, E1])])        # same rows, other runs
    digests = {journal_sha256(tmp_path / f"{n}.sqlite") for n in "abcde"}
    assert len(digests) == 5
    import hashlib

    line = json.dumps([1, "x", *E1], separators=(",", ":"), ensure_ascii=False) + "\n"
    journal(tmp_path / "f.sqlite", [("x", [E1])])
    assert journal_sha256(tmp_path / "f.sqlite") == hashlib.sha256(line.encode()).hexdigest()


def test_a_file_with_one_run_has_the_digest_its_journal_reports(tmp_path):
    from emulator.journal import Journal

    j = Journal(tmp_path / "j.sqlite", seed=3, run_id="0123456789ab", now=lambda: 1700000000.25)
    j.record("comet", "connect", dev_id=15, user_id=5, conn_id=1, data="auth=hash authorized=True")
    j.record("bench", "mark", dev_id=15, data='{"mark":"on_call","t":1.25,"who":"Zoë"}')
    j.flush()
    assert journal_sha256(tmp_path / "j.sqlite") == j.sha256()
    j.close()


def test_digest_of_a_file_without_a_journal(tmp_path):
    sqlite3.connect(tmp_path / "empty.sqlite").close()
    assert journal_sha256(tmp_path / "empty.sqlite") == __import__("hashlib").sha256(b"").hexdigest()


def test_the_schema_is_a_valid_json_schema():
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["properties"]["schema"]["const"] == "cometbench-report/1"


def test_percentiles_are_the_packages_own():
    import random

    from bench.metrics import percentile_values

    rng = random.Random(1)
    for n in (1, 2, 7, 1000, 20000):
        h = new_histogram()
        for _ in range(n):
            h.record_value(int(rng.lognormvariate(13, 1.5)))
        ps = [1, 50, 90, 95, 99, 99.9, 100]
        assert percentile_values(h, ps) == {p: h.get_value_at_percentile(p) for p in ps}
    assert percentile_values(new_histogram(), [50]) == {50: 0}


def test_percentile_values_equal_the_packages_own_answer():
    """The one-pass percentiles (which start at the minimum's bucket) give what HdrHistogram's
    get_value_at_percentile gives, for values near 0, within one bucket, and spread wide."""
    import random

    from bench.metrics import new_histogram, percentile_values

    rng = random.Random(7)
    cases = [[0, 0, 5], [1], [650_000] * 3 + [651_234], [rng.randrange(1, 3_600_000_000) for _ in range(500)],
             [int(rng.lognormvariate(13, 1)) for _ in range(300)], [0] + [rng.randrange(1, 10_000) for _ in range(99)]]
    for values in cases:
        h = new_histogram()
        for v in values:
            h.record_value(v)
        got = percentile_values(h, (1, 50, 90, 95, 99, 100))
        assert got == {p: h.get_value_at_percentile(p) for p in (1, 50, 90, 95, 99, 100)}, values[:5]


def test_summaries_follow_every_new_value():
    m = Metrics()
    m.add("join_total", 600, scenario="a", network="lan")
    m.add("join_total", 700, scenario="b", network="lan")
    assert m.summary()["join_total"]["count"] == 2
    assert m.summary(scenario="a")["join_total"]["max"] == pytest.approx(600, rel=1e-3)
    m.summary(scenario="b")["join_total"]["count"] = 99          # a caller's copy, not the cache
    m.add("join_total", 900, scenario="a", network="3g")
    assert m.summary()["join_total"]["count"] == 3
    assert m.summary(scenario="a")["join_total"]["max"] == pytest.approx(900, rel=1e-3)
    assert m.summary(scenario="a", network="lan")["join_total"]["count"] == 1
    assert m.summary(scenario="b")["join_total"]["count"] == 1
    other = Metrics()
    other.add("push", 2, scenario="b", network="lan")
    m.merge(other)
    assert m.summary(scenario="b")["push"]["count"] == 1
def test_a_log_reads_back_whatever_the_fraction_of_its_start_time(tmp_path):
    # a StartTime rounded up past the interval's start made HdrHistogram's reader skip every interval
    from bench.metrics import Metrics as _Metrics

    for start in (1_796_528_887.747958, 1_796_528_887.7431, 1_700_000_000.0):
        m = _Metrics()
        m.add("join_total", 650.0, scenario="s", network="loopback")
        m.write_log(tmp_path / "h.hlog", start=start, end=start + 1)
        back = _Metrics.read_log(tmp_path / "h.hlog")
        assert back.summary()["join_total"]["count"] == 1, start
