"""SQLite state survives restarts; the journal records, batches, and can be switched off."""

from __future__ import annotations

from emulator.journal import Journal
from emulator.state import StateStore


def test_state_file_survives_reopen(tmp_path):
    path = tmp_path / "state.sqlite"
    s = StateStore(path)
    s.set_hash(1, 5, "h")
    s.set_user_data(1, 5, "d")
    s.queue_message(1, 5, "u1", 100, "e", "m")
    s.set_pipe_log_length(1, "web_p", 3)
    s.append_history(1, "web_p", "u2", 100, "e", "m", 0, 3)
    s.revoke_token(1, "t", 100)
    s.set_last_online(1, 5, 123)
    s.close()
    s = StateStore(path)
    assert s.get_hash(1, 5) == "h" and s.get_user_data(1, 5) == "d"
    assert [m["message"] for m in s.queued_messages(1, 5)] == ["m"]
    assert s.pipe_log_length(1, "web_p") == 3 and len(s.history(1, "web_p")) == 1
    assert s.is_revoked(1, "t") and s.last_online(1, 5) == 123
    # tenants are keyed apart
    assert s.get_hash(2, 5) is None and s.queued_messages(2, 5) == [] and not s.is_revoked(2, "t")


def test_history_is_trimmed_to_length():
    s = StateStore()
    for i in range(10):
        s.append_history(1, "p", f"u{i}", 100 + i, "e", f"m{i}", 0, 4)
    assert [m["message"] for m in s.history(1, "p")] == ["m6", "m7", "m8", "m9"]
    s.delete_pipe_settings(1, "p")
    assert s.history(1, "p") == []


def test_journal_records_and_filters(tmp_path):
    j = Journal(tmp_path / "j.sqlite", seed=7, now=lambda: 42.0)
    j.record("comet", "frame", direction="in", dev_id=1, user_id=2, conn_id=3, data="subscription\nx")
    j.record("comet", "connect", dev_id=1, data=b"bytes too")
    rows = j.entries()
    assert [r["kind"] for r in rows] == ["frame", "connect"]
    assert rows[0]["t"] == 42.0 and rows[0]["data"] == "subscription\nx" and rows[1]["data"] == "bytes too"
    assert [r["kind"] for r in j.entries(kind="connect")] == ["connect"]
    run = j.db["runs"].get(j.run_id)
    assert run["seed"] == 7
    j.close()


def test_disabled_journal_records_nothing():
    j = Journal(enabled=False)
    j.record("comet", "frame", data="x")
    assert j.entries() == [] and j.db is None


def test_a_run_id_the_file_holds_is_refused_with_a_clear_error_and_nothing_lost(tmp_path):
    import sqlite3

    import pytest

    from emulator.journal import JournalError

    path = tmp_path / "journal.sqlite"
    first = Journal(path, seed=3, clock="virtual", run_id="abc123")
    first.record("comet", "connect", data="x")
    first.close()
    with pytest.raises(JournalError) as caught:
        Journal(path, seed=3, clock="virtual", run_id="abc123")
    message = str(caught.value)
    assert "abc123" in message and str(path) in message and "seed" in message
    # the first run is untouched, and a new file or a new id works
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT run_id FROM runs").fetchall() == [("abc123",)]
        assert conn.execute("SELECT count(*) FROM entries").fetchone() == (1,)
    Journal(path, seed=3, clock="virtual", run_id="def456").close()
    Journal(tmp_path / "other.sqlite", seed=3, clock="virtual", run_id="abc123").close()


def test_a_virtual_scenario_twice_in_one_journal_fails_with_that_message(tmp_path):
    import trio
    import trio.testing

    from bench.scenario.loader import resolve
    from bench.scenario.runner import tell

    spec = resolve(["two_party_call"])[0]
    path = str(tmp_path / "journal.sqlite")

    def once():
        return trio.run(lambda: tell(spec, seed=5, journal_path=path),
                        clock=trio.testing.MockClock(autojump_threshold=0))

    assert once().passed
    again = once()
    assert not again.passed
    assert "already holds run" in again.failure and "two_party_call" in again.failure
    assert "UNIQUE" not in again.failure
