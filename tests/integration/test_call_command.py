"""``cometbench call`` and its runner (bench/call.py): one doctor-patient call per network profile in
virtual time (join_total in the seed's 3-15 s band on the realistic profiles, under 1 s on loopback),
the determinism of the journal (same seed, same SHA-256), the JSON line, the exit statuses, and every
kind of bad input the command takes: a clear line naming the field or the address, exit status 2,
never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from bench.call import STAGE_NAMES, CallOptions, CallSetupError, parse_network, parse_target, run_call
from bench.cli import main
from tests.integration.test_cli_usage import usage_error

REALISTIC = ("wifi", "dsl", "4g", "3g", "bad-wifi", "lossy")
CLI = [sys.executable, "-m", "bench.cli"]
ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


# --- the runner --------------------------------------------------------------------------------------


@pytest.mark.parametrize("network", REALISTIC)
def test_realistic_profiles_join_within_the_seeds_band(network):
    for seed in (1, 2):
        result = run_call(CallOptions(seed=seed, network=network, duration=5))
        assert result.passed, result.failure
        assert 3000 <= result.stages["join_total"] <= 15000, (network, seed, result.stages["join_total"])
        for side in result.sides.values():
            assert 3000 <= side["join_total"] <= 15000


def test_loopback_joins_under_a_second():
    result = run_call(CallOptions(seed=1, network="loopback", duration=5))
    assert result.passed and result.stages["join_total"] < 1000
    assert set(result.sides) == {"doctor", "patient"}
    assert result.stages["join_total"] == max(s["join_total"] for s in result.sides.values())


def test_the_same_seed_gives_the_same_journal_byte_for_byte():
    first = run_call(CallOptions(seed=11, network="4g", duration=30))
    second = run_call(CallOptions(seed=11, network="4g", duration=30))
    other = run_call(CallOptions(seed=12, network="4g", duration=30))
    assert first.passed and second.passed and other.passed
    assert len(first.journal_sha256) == 64
    assert first.journal_sha256 == second.journal_sha256
    assert first.stages == second.stages and first.names == second.names
    assert other.journal_sha256 != first.journal_sha256 and other.names != first.names


def test_a_long_call_in_virtual_time():
    result = run_call(CallOptions(seed=3, network="lan", duration=600))
    assert result.passed and result.simulated_s > 600
    assert result.wall_s < result.simulated_s / 10     # virtual time: far faster than the clock


def test_call_drop_is_a_link_the_call_barely_survives():
    result = run_call(CallOptions(seed=1, network="call-drop", duration=5))
    assert result.stages.get("join_total", 0) > 15000 or not result.passed


def test_network_and_target_parsing():
    links = parse_network("doctor=lan,patient=3g")
    assert links["doctor"].rtt_ms == 1.0 and links["patient"].rtt_ms == 250.0
    assert parse_network("4g", {"loss": 0.05})["doctor"].loss == 0.05
    spec = parse_target("ws=10.0.0.5:8087,cometql=10.0.0.5:3307,dev_id=7,password=pw,insecure")
    assert (spec.ws_host, spec.ws_port, spec.cometql_port, spec.dev_id, spec.password, spec.insecure) == (
        "10.0.0.5", 8087, 3307, 7, "pw", True)
    for bad, message in (("nurse=4g", "unknown actor 'nurse'"), ("moon", "unknown network profile 'moon'")):
        with pytest.raises(CallSetupError, match=message):
            parse_network(bad)
    with pytest.raises(CallSetupError, match="rtt_ms must be >= 0"):
        parse_network("4g", {"rtt_ms": -1})
    for bad, message in (("ws=host", "ws='host': expected HOST:PORT"), ("cometql=a:1", "ws=HOST:PORT is required"),
                         ("ws=a:1,cometql=a:2,dev_id=x", "dev_id='x'"),
                         ("ws=a:1,cometql=a:2,colour=red", "unknown key 'colour'")):
        with pytest.raises(CallSetupError, match=message):
            parse_target(bad)


# --- the command -------------------------------------------------------------------------------------


def test_the_command_prints_a_summary_and_one_json_line():
    run = subprocess.run([*CLI, "call", "--network", "4g", "--seed", "2", "--duration", "3"], env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert {"passed", "seed", "network", "simulated_s", "wall_s", "journal_sha256", "stages", "failure"} <= set(line)
    assert line["passed"] is True and line["failure"] is None and line["seed"] == 2 and line["network"] == "4g"
    assert set(line["stages"]) == set(STAGE_NAMES)
    assert all(l.startswith("cometbench: ") for l in run.stderr.splitlines())
    assert "join_total" in run.stderr and "passed" in run.stderr and "Traceback" not in run.stderr


def test_a_call_that_does_not_go_through_exits_1(capsys):
    status = main(["call", "--network", "loopback", "--loss", "100%", "--duration", "1"])
    captured = capsys.readouterr()
    assert status == 1
    line = json.loads(captured.out)
    assert line["passed"] is False and line["failure"]
    assert "FAILED" in captured.err and "Traceback" not in captured.err


def test_only_the_stages_asked_for(capsys):
    assert main(["call", "--stage", "join_total", "--stage", "push", "--duration", "0"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert set(line["stages"]) == {"join_total", "push"}


def test_unknown_profile(capsys):
    err = usage_error(capsys, "call", "--network", "5g")
    assert "unknown network profile '5g'" in err and "4g" in err


def test_unknown_actor(capsys):
    err = usage_error(capsys, "call", "--network", "nurse=4g")
    assert "unknown actor 'nurse'" in err and "doctor" in err


def test_unknown_stage(capsys):
    err = usage_error(capsys, "call", "--stage", "join_totl")
    assert "unknown stage 'join_totl'" in err and "did you mean join_total" in err


def test_negative_latency(capsys):
    err = usage_error(capsys, "call", "--rtt-ms", "-50")
    assert "--rtt-ms" in err and ">= 0" in err


def test_loss_over_100_percent(capsys):
    err = usage_error(capsys, "call", "--loss", "150%")
    assert "--loss" in err and "over 100 %" in err
    err = usage_error(capsys, "call", "--loss", "1.5")
    assert "--loss" in err and "over 100 %" in err


def test_negative_duration(capsys):
    err = usage_error(capsys, "call", "--duration", "-1")
    assert "--duration" in err


def test_a_target_that_does_not_answer(capsys):
    with socket.socket() as s:      # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = usage_error(capsys, "call", "--target", f"ws=127.0.0.1:{port},cometql=127.0.0.1:{port}")
    assert f"target ws=127.0.0.1:{port} does not answer" in err


def test_a_malformed_target(capsys):
    err = usage_error(capsys, "call", "--target", "ws=127.0.0.1")
    assert "target ws='127.0.0.1'" in err and "HOST:PORT" in err


def test_tls_options_need_a_target(capsys):
    err = usage_error(capsys, "call", "--insecure")
    assert "--target" in err


def test_a_target_takes_no_link_conditions(capsys):
    """Link conditions need both ends in this process: with a target they would silently not apply."""
    err = usage_error(capsys, "call", "--target", "ws=127.0.0.1:1,cometql=127.0.0.1:1", "--network", "4g")
    assert "--network 4g: link conditions need both ends of a connection in this process" in err
    err = usage_error(capsys, "call", "--target", "ws=127.0.0.1:1,cometql=127.0.0.1:1", "--rtt-ms", "50")
    assert "link conditions need both ends" in err


def test_loopback_is_no_conditions_and_the_parser_is_runs():
    from bench.options import parse_network_spec

    assert parse_network("loopback") == {"doctor": None, "patient": None}
    assert parse_network("loopback", {"loss": 1.0})["patient"].loss == 1.0
    spec = parse_network_spec("4g,patient=3g")
    assert (spec.profile_of("doctor"), spec.profile_of("patient"), spec.profile_of("nurse")) == ("4g", "3g", "4g")
    assert spec.label == "patient:3g+*:4g"
    for bad, message in (("4g,3g", "two profiles for everyone"), ("patient=3g,patient=4g", "given twice"),
                         ("4g,", "an empty entry")):
        with pytest.raises(CallSetupError, match=message):
            parse_network(bad)
