"""Copy this file into your own test suite: cometbench's pytest plugin gives it the emulator.

Installing cometbench (``pip install cometbench``, or this repository's ``make setup``) registers the
plugin; nothing to import or configure.  Each test gets a fresh in-process emulator.  Ask for
pytest-trio's ``autojump_clock`` to run in virtual time (a minute of call in milliseconds); leave
it out to run on loopback sockets in real time.

Run it: ``pytest examples/test_my_app.py`` (``--cometbench-seed N``, ``--cometbench-profile lenient``).
"""

import pytest

pytestmark = pytest.mark.trio          # or `trio_mode = true` in your pytest configuration


async def test_the_patient_comes_back_after_a_reload(cometbench_scenario, autojump_clock):
    """A story told inside the test: the app's restore brings a reloaded page back into the call."""
    s = cometbench_scenario
    s.app.restore = True                          # your app re-joins rooms on page load (spec 6.2)
    doctor, patient = s.doctor, s.patient

    with s.step("the doctor and the patient meet in room 101"):
        await s.meet("101", doctor, patient)

    with s.step("the patient reloads the page"):
        s.this_step().expect_no("doctor.onOut", note="nobody tells the doctor")
        await patient.refresh()
        await s.wait("patient.first_remote_frame", within=15)
        assert patient.in_call and doctor.in_call
        assert s.measure("restore", "patient.refresh", "patient.first_remote_frame") < 5000


async def test_the_call_survives_a_short_network_drop(cometbench_scenario, autojump_clock):
    """Faults and links: the patient's Wi-Fi drops for 10 s; the page's comet connection comes back,
    the doctor is told nothing, and both pages still show the call."""
    s = cometbench_scenario
    await s.meet("101")
    with s.step("the patient's network drops for 10 s"):
        s.this_step().expect_no("doctor.onOut", note="the doctor is never told")
        s.link(s.patient).lose_network(10)       # s.faults.restart_comet(), s.link(p).partition(5) ...
        await s.wait("link.online", within=11)
        await s.wait("patient.comet_open", within=2)
        assert s.patient.in_call and s.doctor.in_call


async def test_the_default_pack_story_passes(cometbench_run, autojump_clock):
    """A scenario of the pack (or a path to your own scenario file) on its own fresh emulator."""
    result = await cometbench_run("two_member_limit")
    assert result.passed, result.failure


async def test_my_backend_sees_both_in_conference_members(cometbench_stack, autojump_clock):
    """The bare emulator: talk to it over CometQL as your backend does (here with the bench's own
    CometQL client; your code would use mysqli or node's mysql on real sockets)."""
    from bench.clients.cometql import CometQLClient

    stack = cometbench_stack
    client = await CometQLClient.connect(stack.network, "127.0.0.1", stack.ports["cometql"], user="15",
                                         password="CometQLPassword", database="CometQL_v1")
    try:
        await client.query("INSERT INTO users_auth (id, hash) VALUES (5, 'secret')")
        assert stack.store.get_hash(15, 5) == "secret"
    finally:
        await client.close()
