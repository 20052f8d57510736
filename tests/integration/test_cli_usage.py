"""Every mistake a user can make with ``cometbench``: one clear line, the right exit status, no traceback.

Usage errors (flags, the config file, names) exit with status 2 and a message that starts with
``cometbench:`` and names the flag, file or key; a service that cannot start exits with status 1 and
names the service and the port.  Each case has its own test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from bench.cli import main
from emulator.profiles import QUIRKS

CLI = [sys.executable, "-m", "bench.cli"]
ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


def usage_error(capsys, *argv: str) -> str:
    """Run ``cometbench argv``; assert a usage error (status 2, one prefixed message); its stderr."""
    status: int | str | None
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    captured = capsys.readouterr()
    assert status == 2, captured
    assert captured.err.startswith("cometbench: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return captured.err


def write_config(tmp_path, text: str):
    path = tmp_path / "cometbench.toml"
    path.write_text(text)
    return path


# --- flags ------------------------------------------------------------------------------------------


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("cometbench ") and out.split()[1][0].isdigit()


def test_help_lists_examples_and_defaults(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    top = capsys.readouterr().out
    assert top.startswith("usage: cometbench") and "examples:" in top and "``" not in top
    assert "--version" in top and "serve" in top and "journal" in top
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    serve = " ".join(capsys.readouterr().out.split())  # help text is wrapped to the terminal width
    for default in ("(default: 127.0.0.1)", "(default: 8087)", "(default: 3307)", "(default: 7443)",
                    "(default: cppcomet-4.09)", "(default: :memory:)", "(default: CometQLPassword)",
                    "(default: loopback)", "--free-ports", "-v, --verbose", "examples:"):
        assert default in serve, default


def test_port_flag_out_of_range(capsys):
    err = usage_error(capsys, "serve", "--ws-port", "70000")
    assert "--ws-port" in err and "0-65535" in err


def test_port_flag_not_a_number(capsys):
    err = usage_error(capsys, "serve", "--cometql-port", "abc")
    assert "--cometql-port" in err and "'abc'" in err


def test_quirk_flag_with_a_state_other_than_on_or_off(capsys):
    err = usage_error(capsys, "serve", "--quirk", "queue_ten_per_login=maybe")
    assert "--quirk" in err and "NAME=on|off" in err and "'queue_ten_per_login=maybe'" in err


def test_unknown_quirk_flag_lists_the_valid_names(capsys):
    err = usage_error(capsys, "serve", "--quirk", "nope=off")
    assert "unknown quirk 'nope'" in err and "--quirk" in err
    assert all(name in err for name in QUIRKS)


def test_misspelt_quirk_gets_a_suggestion(capsys):
    err = usage_error(capsys, "serve", "--quirk", "queue_ten_per_logn=off")
    assert "did you mean queue_ten_per_login?" in err


def test_unknown_profile_flag(capsys):
    err = usage_error(capsys, "serve", "--profile", "nope")
    assert "--profile" in err and "cppcomet-4.09" in err and "lenient" in err


def test_unknown_media_link(capsys):
    err = usage_error(capsys, "serve", "--media-link", "moon")
    assert "unknown --media-link 'moon'" in err and "4g" in err


def test_unknown_command(capsys):
    err = usage_error(capsys, "srve")
    assert "srve" in err and "serve" in err


# --- the config file --------------------------------------------------------------------------------


def test_config_file_not_found(capsys, tmp_path):
    err = usage_error(capsys, "serve", "--config", str(tmp_path / "missing.toml"))
    assert "config file not found" in err and "missing.toml" in err


def test_malformed_config_file_is_named(capsys, tmp_path):
    path = write_config(tmp_path, 'profile = "lenient\n')
    err = usage_error(capsys, "serve", "--config", str(path))
    assert str(path) in err and "not valid TOML" in err and "line 1" in err
    assert "working directory" not in err


def test_config_picked_up_from_the_working_directory_says_so(capsys, tmp_path, monkeypatch):
    write_config(tmp_path, 'profile = "lenient\n')
    monkeypatch.chdir(tmp_path)
    err = usage_error(capsys, "serve")
    assert str(tmp_path / "cometbench.toml") in err and "picked up from the working directory" in err


def test_config_port_of_the_wrong_type_names_file_and_key(capsys, tmp_path):
    path = write_config(tmp_path, '[ports]\nws = "abc"\n')
    err = usage_error(capsys, "serve", "--config", str(path))
    assert str(path) in err and "[ports] ws" in err and "'abc'" in err and "0-65535" in err


def test_config_port_out_of_range(capsys, tmp_path):
    path = write_config(tmp_path, "[ports]\ncometql = 70000\n")
    err = usage_error(capsys, "serve", "--config", str(path))
    assert "[ports] cometql" in err and "70000" in err


@pytest.mark.parametrize("line, key, kind", [
    ('handshake_timeout = "ten"', "handshake_timeout", "a number"),
    ('journal = "yes"', "journal", "true or false"),
    ("state = 5", "state", "a string"),
    ("seed = 1.5", "seed", "an integer"),
    ("sip_public_port = 99999", "sip_public_port", "0-65535"),
])
def test_config_value_of_the_wrong_type(capsys, tmp_path, line, key, kind):
    path = write_config(tmp_path, line + "\n")
    err = usage_error(capsys, "serve", "--config", str(path))
    assert str(path) in err and key in err and kind in err


def test_config_quirk_value_must_be_a_boolean(capsys, tmp_path):
    path = write_config(tmp_path, '[quirks]\nqueue_ten_per_login = "off"\n')
    err = usage_error(capsys, "serve", "--config", str(path))
    assert "[quirks] queue_ten_per_login" in err and "true or false" in err


def test_config_unknown_key_lists_the_known_ones(capsys, tmp_path):
    path = write_config(tmp_path, "bogus = 1\n")
    err = usage_error(capsys, "serve", "--config", str(path))
    assert "unknown configuration key 'bogus'" in err and "handshake_timeout" in err and "ports" in err


def test_config_unknown_quirk(capsys, tmp_path):
    path = write_config(tmp_path, "[quirks]\nnope = false\n")
    err = usage_error(capsys, "serve", "--config", str(path))
    assert "unknown quirk 'nope'" in err and "[quirks]" in err and str(path) in err and "queue_ten_per_login" in err


def test_config_unknown_profile(capsys, tmp_path):
    path = write_config(tmp_path, 'profile = "nope"\n')
    err = usage_error(capsys, "serve", "--config", str(path))
    assert "unknown profile 'nope'" in err and str(path) in err and "lenient" in err


def test_config_malformed_conference_profiles(capsys, tmp_path):
    xml = tmp_path / "conference.conf.xml"
    xml.write_text("<configuration><profiles>")
    path = write_config(tmp_path, f'conference_profiles = "{xml}"\n')
    err = usage_error(capsys, "serve", "--config", str(path))
    assert "conference_profiles" in err and str(xml) in err


# --- start-up failures --------------------------------------------------------------------------------


def test_port_in_use_names_the_service_and_the_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run([*CLI, "serve", "--free-ports", "--cometql-port", str(port), "--no-journal"],
                             capture_output=True, text=True, timeout=30, env=ENV)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("cometbench: ") and "Traceback" not in out.stderr
    assert "cometql" in out.stderr and f"127.0.0.1:{port}" in out.stderr and "already in use" in out.stderr
    assert "--free-ports" in out.stderr and "--cometql-port" in out.stderr


def test_a_reader_that_goes_away_ends_the_output_quietly():
    """`cometbench quirks | head -1`: the closed pipe stops the command without a traceback."""
    reader, writer = os.pipe()
    os.close(reader)  # nobody will ever read what the command prints
    try:
        done = subprocess.run([*CLI, "quirks"], stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(writer)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 141
