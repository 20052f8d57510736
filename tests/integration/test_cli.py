"""``cometbench serve`` and ``cometbench quirks`` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from bench.cli import main

CLI = [sys.executable, "-m", "bench.cli"]


def _start(*args, cwd=None):
    proc = subprocess.Popen([*CLI, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, env={**os.environ, "PYTHONPATH": os.getcwd()})
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise AssertionError(f"serve printed no ready line; stderr: {proc.stderr.read()}")
    return proc, json.loads(line)


def test_serve_prints_ready_line_and_stops_on_sigterm(tmp_path):
    proc, ready = _start("--free-ports", "--state", str(tmp_path / "s.sqlite"))
    try:
        assert ready["ready"] is True and ready["ws"] > 0 and ready["host"] == "127.0.0.1"
        import socket
        with socket.create_connection(("127.0.0.1", ready["ws"]), timeout=2) as s:
            s.sendall(b"GET /info HTTP/1.1\r\n\r\n")
            assert b'"status":"ok"' in s.recv(4096)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert (tmp_path / "s.sqlite").exists() and (tmp_path / "journal.sqlite").exists()


def test_serve_ctrl_c(tmp_path):
    proc, ready = _start("--free-ports", "--no-journal")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0


def test_config_file_and_flags(tmp_path):
    (tmp_path / "cometbench.toml").write_text('profile = "lenient"\nstate = ":memory:"\n'
                                              '[ports]\nws = 0\ncometql = 0\ndirectory = 0\n'
                                              'sip_ws = 0\nsip = 0\nesl = 0\n'
                                              '[quirks]\nshort_frame_truncation = true\n')
    proc, ready = _start("--ws-port", "0", cwd=tmp_path)
    try:
        assert ready["profile"] == "lenient+custom" and ready["ws"] > 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_port_in_use_is_a_clear_error():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run([*CLI, "serve", "--ws-port", str(port), "--no-journal"], capture_output=True,
                             text=True, timeout=20)
    assert out.returncode == 1 and "cometbench:" in out.stderr and "Traceback" not in out.stderr


def test_bad_profile_and_quirk_names(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--profile", "nope"])
    assert main(["serve", "--quirk", "no_such_quirk=on"]) == 2
    assert "unknown quirk" in capsys.readouterr().err


def test_quirks_lists_every_quirk(capsys):
    from emulator.profiles import QUIRKS
    assert main(["quirks"]) == 0
    out = capsys.readouterr().out
    for name, q in QUIRKS.items():
        assert name in out and q.spec in out


def test_ready_line_names_every_service_and_no_freeswitch_drops_them():
    proc, ready = _start("--free-ports", "--no-journal")
    try:
        assert {"ws", "cometql", "directory", "sip_ws", "sip", "esl"} <= set(ready)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    proc, ready = _start("--free-ports", "--no-journal", "--no-freeswitch")
    try:
        assert "sip_ws" not in ready and "esl" not in ready and ready["cometql"] > 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_unknown_media_link_is_refused(capsys):
    assert main(["serve", "--media-link", "moon"]) == 2
    assert "unknown --media-link" in capsys.readouterr().err
