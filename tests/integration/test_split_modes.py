"""The emulator in parts, and the actors against a separate deployment:

* ``cometbench call --target`` against a separate ``cometbench serve`` process on OS sockets (the same
  clients, pointed at a deployment instead of the in-process stack);
* two emulator processes: a comet side alone (``--no-freeswitch --freeswitch-node ...``) whose
  FreeSWITCH node is a fake FreeSWITCH alone (``--freeswitch-only --directory-url ...``): the comet side
  asks it for members over ESL, it asks the comet side for SIP passwords over HTTP, and a whole call goes
  across them;
* the same split in process (virtual network), with the ESL link rules of a real CppComet."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from contextlib import asynccontextmanager, contextmanager

import pytest
import trio

from bench.actors.participant import Target
from bench.clients.cometql import CometQLClient, ResultSet
from emulator.config import Config, ConfigError
from emulator.net.network import VirtualNetwork
from emulator.stack import open_stack
from tests.actorkit import DEV, ROOM, doctor_and_patient, in_call

CLI = [sys.executable, "-m", "bench.cli"]
ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(*args: str):
    """A ``cometbench serve`` process; yields its ready line."""
    proc = subprocess.Popen([*CLI, "serve", *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"serve did not start: {proc.stderr.read()}")
        yield json.loads(line)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
        err = proc.stderr.read()
        assert "Traceback" not in err, err


def call(*args: str) -> tuple[dict, str]:
    run = subprocess.run([*CLI, "call", *args], env=ENV, capture_output=True, text=True, timeout=180)
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 0, run.stderr + run.stdout
    return json.loads(run.stdout), run.stderr


@pytest.mark.slow
def test_the_actors_against_a_separate_serve_process():
    with serve("--free-ports", "--no-journal") as ready:
        line, err = call("--target", f"ws=127.0.0.1:{ready['ws']},cometql=127.0.0.1:{ready['cometql']},dev_id=15",
                         "--ca", ready["ca_cert"], "--duration", "2")
    assert line["passed"] and line["mode"] == "target"
    assert line["stages"]["join_total"] > 0 and "media" not in line["stages"]   # media is not observable there
    assert "target ws=127.0.0.1" in err


@pytest.mark.slow
def test_a_comet_side_alone_with_a_freeswitch_alone_carry_a_call():
    directory, esl, sip_ws, sip, control = free_port(), free_port(), free_port(), free_port(), free_port()
    # every port chosen, the control plane's too: its default (8088) is shared by every cometbench
    # serve on the machine, so another one running made this test fail
    with serve("--freeswitch-only", "--directory-url", f"http://127.0.0.1:{directory}", "--sip-ws-port", str(sip_ws),
               "--esl-port", str(esl), "--sip-port", str(sip), "--control-port", str(control),
               "--no-journal") as fs:
        assert set(fs) >= {"sip_ws", "esl", "sip"} and "ws" not in fs and "cometql" not in fs
        node = f"server=127.0.0.1,esl_port={esl},ws_port={sip_ws},esl_password=ClueCon"
        with serve("--no-freeswitch", "--freeswitch-node", node, "--free-ports", "--directory-port",
                   str(directory), "--no-journal") as comet:
            assert "sip_ws" not in comet and comet["directory"] == directory
            line, _ = call("--target", f"ws=127.0.0.1:{comet['ws']},cometql=127.0.0.1:{comet['cometql']}",
                           "--ca", fs["ca_cert"], "--duration", "3")
            assert line["passed"], line["failure"]

            async def members_during_a_call() -> list:
                # conference_members on the comet side is FreeSWITCH's answer over ESL
                async with await CometQLClient.connect(
                        __import__("emulator.net.network", fromlist=["OSNetwork"]).OSNetwork(), "127.0.0.1",
                        comet["cometql"], user="15", password="CometQLPassword") as client:
                    members = await client.query("SELECT * FROM conference_members")
                    assert isinstance(members, ResultSet)
                    return members.rows

            assert trio.run(members_during_a_call) == []   # the call is over: nobody left in the room


def test_a_freeswitch_alone_needs_a_directory_url():
    with pytest.raises(ConfigError, match="needs directory_url"):
        Config.from_dict({"comet_emulated": False})
    with pytest.raises(ConfigError, match="nothing would run"):
        Config.from_dict({"comet_emulated": False, "freeswitch_emulated": False})
    with pytest.raises(ConfigError, match="must start with http://"):
        Config.from_dict({"directory_url": "ftp://x"})


@asynccontextmanager
async def split_stacks(net, **comet_config):
    """A FreeSWITCH alone and a comet side alone on one virtual network."""
    fs_config = Config(comet_emulated=False, directory_url="http://127.0.0.1:30082")
    fs_config.free_ports()
    fs_config.ports.update({"sip_ws": 30443, "esl": 30021})
    comet_config = Config(freeswitch_emulated=False, freeswitch=[
        {"server": "127.0.0.1", "esl_port": 30021, "ws_port": 30443, "esl_password": "ClueCon"}], **comet_config)
    comet_config.free_ports()
    comet_config.ports["directory"] = 30082
    async with open_stack(fs_config, network=net) as fs, open_stack(comet_config, network=net) as comet:
        target = Target.from_stack(comet, dev_id=DEV)
        target.ssl_context = fs.certificates.client_context()
        target.bridge = fs.bridge
        yield fs, comet, target


async def test_in_process_split_members_over_esl_and_passwords_over_http(autojump_clock):
    net = VirtualNetwork()
    async with split_stacks(net) as (fs, comet, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            rows = await doctor.app.backend.members(ROOM)
            assert sorted(r[1] for r in rows.rows) == ["501", "502"]
            lookups = [e["data"] for e in comet.journal.entries(service="directory", kind="lookup")]
            assert len(lookups) >= 4                    # REGISTER and INVITE of both, over HTTP
            commands = [e["data"] for e in fs.journal.entries(service="esl", kind="command")]
            assert any("conference xml_list" in c for c in commands)
            # FreeSWITCH restarts: the comet side's ESL link is dead until the comet side restarts
            await fs.faults.restart_freeswitch()
            assert (await doctor.app.backend.members(ROOM)).rows == []
            await trio.sleep(40)
            assert (await doctor.app.backend.members(ROOM)).rows == []
            await comet.faults.restart_comet()
            assert len((await doctor.app.backend.members(ROOM)).rows) >= 1


async def test_in_process_split_lenient_link_comes_back(autojump_clock):
    net = VirtualNetwork()
    async with split_stacks(net, quirks={"comet_esl_link_not_restored": False}) as (fs, comet, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            await fs.faults.restart_freeswitch()
            await trio.sleep(40)      # JsSIP reconnects and dials again
            assert len((await doctor.app.backend.members(ROOM)).rows) >= 1


async def test_the_parsers_default_esl_password_is_refused_and_the_link_stays_dead(autojump_clock):
    """A [[freeswitch]] entry without Pwd gets the parser's default "CueCon" (sic), which FreeSWITCH's
    "ClueCon" refuses: conference_members is empty and the link is never tried again."""
    net = VirtualNetwork()
    fs_config = Config(comet_emulated=False, directory_url="http://127.0.0.1:30082")
    fs_config.free_ports()
    fs_config.ports["esl"] = 30021
    comet_config = Config(freeswitch_emulated=False, freeswitch=[{"server": "127.0.0.1", "esl_port": 30021}])
    comet_config.free_ports()
    async with open_stack(fs_config, network=net) as fs, open_stack(comet_config, network=net) as comet:
        async with await CometQLClient.connect(net, "127.0.0.1", comet.ports["cometql"], user=str(DEV),
                                               password="CometQLPassword") as client:
            for _ in range(3):
                assert (await client.query("SELECT * FROM conference_members")).rows == []
        failures = [e["data"] for e in comet.journal.entries(service="conference", kind="xml_list_failed")]
        assert len(failures) == 3 and all("authentication refused" in f for f in failures)
        assert len(fs.journal.entries(service="esl", kind="auth_failed")) == 1


async def test_a_wrong_password_from_the_http_directory_is_refused(autojump_clock):
    net = VirtualNetwork()
    async with split_stacks(net) as (fs, comet, target):
        comet.hub.set_hash(DEV, 777, "right")
        import random

        from bench.clients.sip import UAConfig
        from bench.clients.sip_ua import SipPhone

        async with trio.open_nursery() as nursery:
            config = UAConfig(uri="sip:000015777@127.0.0.1", password="wrong", authorization_user="000015777",
                              display_name="000015777", registrar_server="sip:127.0.0.1")
            phone = SipPhone(net, "127.0.0.1", 30443, config, nursery=nursery, rng=random.Random(1), name="mallory",
                             ssl_context=fs.certificates.client_context())
            phone.start()
            event = await phone.wait_event("registrationFailed", timeout=30)
            assert event.response is not None and event.response.status == 403
            assert fs.journal.entries(service="sip", kind="auth_failed")
            phone.close()
            nursery.cancel_scope.cancel()
