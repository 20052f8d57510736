"""--shard i/N: the partition by call, and what a shard records of it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.distributed.partition import ShardArgError, ShardSpec, call_range, parse_shard, plan_digest
from bench.scenario.loader import resolve


@settings(max_examples=400, deadline=None)
@given(total=st.integers(min_value=0, max_value=5000), count=st.integers(min_value=1, max_value=300))
def test_partitions_cover_every_call_exactly_once(total, count):
    ranges = [call_range(i, count, total) for i in range(count)]
    calls = [call for r in ranges for call in r]
    assert calls == list(range(total))                  # every call once, in order, none twice
    sizes = [len(r) for r in ranges]
    assert max(sizes) - min(sizes) <= 1                 # balanced
    assert all(r.start == i * total // count and r.stop == (i + 1) * total // count for i, r in enumerate(ranges))


def test_the_issue_formula_on_small_cases():
    assert [list(call_range(i, 3, 10)) for i in range(3)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    assert [list(call_range(i, 4, 2)) for i in range(4)] == [[], [0], [], [1]]
    assert list(call_range(0, 1, 7)) == list(range(7))


@pytest.mark.parametrize("bad", [(3, 3, 10), (-1, 3, 10), (0, 0, 10), (0, 2, -1)])
def test_call_range_refuses_impossible_shards(bad):
    with pytest.raises(ValueError):
        call_range(*bad)


def test_parse_shard_numbers_and_environment():
    assert parse_shard("2/5") == ShardSpec(2, 5)
    assert parse_shard(" 0 / 1 ") == ShardSpec(0, 1)
    assert parse_shard("JOB_COMPLETION_INDEX/10", {"JOB_COMPLETION_INDEX": "7"}) == ShardSpec(7, 10)


@pytest.mark.parametrize("text, why", [
    ("5/5", "not in 0..4"), ("1/0", "at least one shard"), ("a-b", "expects INDEX/N"), ("", "expects INDEX/N"),
    ("JOB_COMPLETION_INDEX/4", "is not set"), ("IDX/4", "not a shard index"), ("1/2/3", "expects INDEX/N"),
])
def test_parse_shard_says_why(text, why):
    with pytest.raises(ShardArgError, match=why):
        parse_shard(text, {"IDX": "x"})


def test_plan_digest_changes_with_the_plan_and_the_files(tmp_path):
    a, b = resolve(["two_party_call", "hold_resume"])
    assert plan_digest([a, b], 2) == plan_digest([a, b], 2)
    assert plan_digest([a, b], 2) != plan_digest([a, b], 3)
    assert plan_digest([a, b], 2) != plan_digest([b, a], 2)
    copy = tmp_path / "two_party_call.py"
    copy.write_text(a.path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    (edited,) = resolve([str(copy)])
    assert edited.name == a.name
    assert plan_digest([edited], 1) != plan_digest([a], 1)
