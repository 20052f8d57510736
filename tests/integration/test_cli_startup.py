"""What ``cometbench serve`` says when it starts, ``-v``, and ``cometbench journal``.

The ready line on stdout stays one JSON object (new keys only); the facts a user needs to connect
go to stderr: profile (and what ``+custom`` means), state and journal paths, ws or wss for SIP,
the CA certificate.  ``-v`` logs connections and queries as they happen; ``cometbench journal``
reads a journal file from the terminal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.cli import main

CLI = [sys.executable, "-m", "bench.cli"]
ENV = {**os.environ, "PYTHONPATH": os.getcwd()}
TIMEOUT = 20


class Serve:
    """``cometbench serve`` as a child process: its ready line, then its stderr once stopped."""

    def __init__(self, *args: str, cwd=None) -> None:
        self.proc = subprocess.Popen([*CLI, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=cwd, env=ENV)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=TIMEOUT)
            raise AssertionError(f"no ready line; stderr: {self.proc.stderr.read()}")
        self.ready = json.loads(line)

    def stop(self) -> tuple[str, str]:
        """SIGTERM; (the rest of stdout, stderr)."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=TIMEOUT)
        assert self.proc.returncode == 0, err
        return out, err


def query(port: int, sql: str, user: str = "1") -> None:
    """One CometQL statement with pymysql (the lenient profile lets it connect)."""
    import pymysql

    db = pymysql.connect(host="127.0.0.1", port=port, user=user, password="CometQLPassword", database="CometQL_v1",
                         ssl_disabled=True, autocommit=True, connect_timeout=5, read_timeout=5)
    try:
        with db.cursor() as cur:
            try:
                cur.execute(sql)
            except pymysql.MySQLError:
                pass
    finally:
        db.close()


def test_start_up_says_what_is_running(tmp_path):
    state = tmp_path / "state" / "cb.sqlite"
    serve = Serve("--free-ports", "--state", str(state))
    out, err = serve.stop()
    ready = serve.ready
    assert out == ""  # the ready line is the only stdout line
    assert ready["ready"] is True and ready["ws"] > 0 and ready["sip_ws"] > 0
    assert ready["state"] == str(state) and ready["journal"] == str(state.with_name("journal.sqlite"))
    assert ready["sip_ws_scheme"] == "wss"
    ca = Path(ready["ca_cert"])
    assert ca == state.parent / "certs" / "cometbench-ca.pem" and ca.read_text().startswith("-----BEGIN CERTIFICATE")
    lines = [line for line in err.splitlines() if line.startswith("cometbench: ")]
    assert len(lines) == len(err.splitlines()) and "Traceback" not in err
    text = "\n".join(lines)
    assert f"state {state.resolve()}" in text
    assert f"journal {state.with_name('journal.sqlite').resolve()}" in text
    assert f"SIP over wss://127.0.0.1:{ready['sip_ws']}" in text
    assert f"CA certificate {ca}" in text and f"NODE_EXTRA_CA_CERTS={ca}" in text
    assert "profile cppcomet-4.09 " in text and "no config file: built-in defaults and flags" in text


def test_memory_state_prints_the_temporary_ca_and_ws_without_tls():
    serve = Serve("--free-ports", "--no-sip-tls")
    try:
        ca = Path(serve.ready["ca_cert"])
        assert ca.is_file()  # exists while serve runs, so NODE_EXTRA_CA_CERTS can point at it
        assert serve.ready["sip_ws_scheme"] == "ws" and serve.ready["state"] == ":memory:"
    finally:
        _, err = serve.stop()
    assert f"SIP over ws://127.0.0.1:{serve.ready['sip_ws']}" in err and "no TLS" in err
    assert f"CA certificate {ca}" in err and "temporary folder" in err
    assert "state in memory" in err and "journal in memory" in err


def test_custom_profile_suffix_is_explained():
    serve = Serve("--free-ports", "--no-journal", "--quirk", "queue_ten_per_login=off")
    _, err = serve.stop()
    assert serve.ready["profile"] == "cppcomet-4.09+custom" and serve.ready["journal"] is None
    assert "profile cppcomet-4.09+custom: cppcomet-4.09 with quirks switched" in err
    assert "queue_ten_per_login=off" in err and "'+custom'" in err
    assert "journal off" in err


def test_config_from_the_working_directory_is_named(tmp_path):
    (tmp_path / "cometbench.toml").write_text('profile = "lenient"\n')
    serve = Serve("--free-ports", "--no-journal", cwd=tmp_path)
    _, err = serve.stop()
    assert serve.ready["profile"] == "lenient"
    assert f"config file {(tmp_path / 'cometbench.toml').resolve()} (picked up from the working directory" in err


def test_no_freeswitch_says_so():
    serve = Serve("--free-ports", "--no-journal", "--no-freeswitch")
    _, err = serve.stop()
    assert "ca_cert" not in serve.ready and "sip_ws_scheme" not in serve.ready
    assert "fake FreeSWITCH off" in err


def test_verbose_logs_connections_and_queries_as_they_happen():
    serve = Serve("--free-ports", "--no-journal", "--profile", "lenient", "-v")
    try:
        query(serve.ready["cometql"], "SELECT * FROM users_auth")
    finally:
        _, err = serve.stop()
    assert "cometql connect dev=1" in err
    assert "cometql query in dev=1 conn=" in err and "SELECT * FROM users_auth" in err
    assert "Selection without transferring the requested values of the primary key" in err  # the answer
    assert "Traceback" not in err


def test_without_verbose_nothing_is_logged_per_connection():
    serve = Serve("--free-ports", "--no-journal", "--profile", "lenient")
    try:
        query(serve.ready["cometql"], "SELECT * FROM users_auth WHERE id = 1")
    finally:
        _, err = serve.stop()
    assert "SELECT * FROM users_auth" not in err and "cometql connect" not in err


# --- cometbench journal ---------------------------------------------------------------------------------


@pytest.fixture
def recorded(tmp_path):
    """A state file whose journal holds one run with a CometQL connect and two queries."""
    state = tmp_path / "cb.sqlite"
    serve = Serve("--free-ports", "--state", str(state), "--profile", "lenient")
    try:
        query(serve.ready["cometql"], "INSERT INTO users_auth (id, hash) VALUES (5, 'abc')")
        query(serve.ready["cometql"], "SELECT * FROM users_auth WHERE id = 5")
    finally:
        serve.stop()
    return state


def test_journal_prints_the_entries_of_the_state_files_journal(recorded, capsys):
    assert main(["journal", "--state", str(recorded), "--kind", "query"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.endswith("SET NAMES utf8mb4")]
    assert len(lines) == 2  # (pymysql sends SET NAMES on each connect)
    assert "cometql  query  in  dev=1" in lines[0]
    assert lines[0].endswith("INSERT INTO users_auth (id, hash) VALUES (5, 'abc')")
    assert lines[1].endswith("SELECT * FROM users_auth WHERE id = 5")


def test_journal_by_path_as_json(recorded, capsys):
    assert main(["journal", str(recorded.with_name("journal.sqlite")), "--service", "cometql", "--json"]) == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {e["service"] for e in entries} == {"cometql"}
    assert {"connect", "query", "answer"} <= {e["kind"] for e in entries}


def test_journal_without_a_journal_file_is_a_usage_error(capsys):
    assert main(["journal"]) == 2  # default state :memory: -> no file
    err = capsys.readouterr().err
    assert err.startswith("cometbench: no journal file to read") and "--state PATH" in err


def test_journal_missing_file(capsys, tmp_path):
    assert main(["journal", str(tmp_path / "nope.sqlite")]) == 2
    assert capsys.readouterr().err.startswith(f"cometbench: no journal at {tmp_path / 'nope.sqlite'}")


def test_journal_file_that_is_not_a_journal(capsys, tmp_path):
    other = tmp_path / "other.sqlite"
    other.write_text("not a database")
    assert main(["journal", str(other)]) == 2
    assert capsys.readouterr().err.startswith(f"cometbench: {other} is not a cometbench journal")


def test_journal_off_in_the_config(capsys, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('state = "s.sqlite"\njournal = false\n')
    assert main(["journal", "--config", str(config)]) == 2
    assert "the journal is off" in capsys.readouterr().err


def test_journal_follow_prints_new_entries_until_ctrl_c(tmp_path):
    state = tmp_path / "cb.sqlite"
    serve = Serve("--free-ports", "--state", str(state), "--profile", "lenient")
    follow = subprocess.Popen([*CLI, "journal", "--state", str(state), "--kind", "query", "--follow"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    watchdog = threading.Timer(TIMEOUT, follow.kill)  # a follow that never prints fails, never hangs
    watchdog.start()
    try:
        time.sleep(0.5)
        query(serve.ready["cometql"], "SELECT * FROM users_auth WHERE id = 77")
        seen = [follow.stdout.readline() for _ in range(2)]  # pymysql's SET NAMES, then the query
        assert seen[-1].rstrip().endswith("SELECT * FROM users_auth WHERE id = 77"), seen
    finally:
        watchdog.cancel()
        follow.send_signal(signal.SIGINT)
        _, err = follow.communicate(timeout=TIMEOUT)
        serve.stop()
    assert follow.returncode == 0 and "Traceback" not in err
