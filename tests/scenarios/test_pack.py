"""The scenario pack, each story in virtual time, through the pytest plugin (``cometbench_run``), in
every fidelity profile the story names (``PROFILES``: where the servers' behaviour changes the story).

A scenario's own expectations are the assertions: a failure here carries the scenario, the step and
the cause.  The pack's completeness is checked too: every scenario issue 11 names exists, the four
it names first are in the default pack, and each says what it needs of the in-process stack.
"""

from __future__ import annotations

import pytest

from bench.scenario.loader import pack

PACK = pack()
CASES = [pytest.param(spec.name, profile, id=f"{spec.name}[{profile}]",
                      marks=[pytest.mark.slow] if not spec.default else [])
         for spec in PACK for profile in spec.profiles]

ISSUE = {"refresh_mid_call", "dropped_network", "two_member_limit", "mute_propagation", "hold_resume",
         "hangup_rejoin", "esl_kick", "freeswitch_restart", "comet_restart", "two_devices", "jwt_revoked",
         "three_party_floor", "join_storm", "two_party_call"}
DEFAULT_FOUR = {"refresh_mid_call", "dropped_network", "two_member_limit", "mute_propagation"}


def test_the_pack_holds_every_story_of_the_issue():
    names = {spec.name for spec in PACK}
    assert names == ISSUE
    assert all(spec.error is None for spec in PACK), [spec.error for spec in PACK if spec.error]
    assert all(spec.summary for spec in PACK)
    assert DEFAULT_FOUR <= {spec.name for spec in PACK if spec.default}
    assert {spec.name for spec in PACK if not spec.default} == {"join_storm", "jwt_revoked"}
    assert {spec.name for spec in PACK if len(spec.profiles) > 1} == {"refresh_mid_call", "dropped_network",
                                                                       "freeswitch_restart"}


def test_what_each_story_needs_of_the_in_process_stack():
    """NEEDS says what a run against a deployment (--target) must skip: only the plainest call needs
    nothing but the servers."""
    needs = {spec.name: set(spec.needs) for spec in PACK}
    assert needs["two_party_call"] == set()
    assert needs["dropped_network"] == {"freeswitch", "links"}
    assert needs["comet_restart"] == needs["freeswitch_restart"] == {"faults", "freeswitch"}
    assert all(needs[name] for name in ISSUE - {"two_party_call"})


@pytest.mark.parametrize("name, profile", CASES)
async def test_scenario(cometbench_run, autojump_clock, name, profile):
    result = await cometbench_run(name, profile=profile, seed=0)
    assert result.passed, result.failure
    assert result.expectations > 0 or name == "join_storm"
