"""The scenario pack, each story in virtual time, through the pytest plugin (``cometbench_run``), in
every fidelity profile the story names (``PROFILES``: where the servers' behaviour changes the story).

A scenario's own expectations are the assertions: a failure here carries the scenario, the step and
the cause.  The pack's completeness is checked too: the scenarios issue 11 names for part A exist,
and the ones that wait for link conditions and faults are only planned, not faked.
"""

from __future__ import annotations

import pytest

from bench.scenario.loader import pack

PACK = pack()
CASES = [pytest.param(spec.name, profile, id=f"{spec.name}[{profile}]",
                      marks=[pytest.mark.slow] if not spec.default else [])
         for spec in PACK for profile in spec.profiles]

PART_A = {"refresh_mid_call", "two_member_limit", "mute_propagation", "hold_resume", "hangup_rejoin", "esl_kick",
          "two_devices", "jwt_revoked", "three_party_floor", "join_storm", "two_party_call"}
PLANNED = {"dropped_network", "freeswitch_restart", "comet_restart"}


def test_the_pack_holds_the_part_a_stories_and_no_fake_ones():
    names = {spec.name for spec in PACK}
    assert names == PART_A
    assert not names & PLANNED
    assert all(spec.error is None for spec in PACK), [spec.error for spec in PACK if spec.error]
    assert all(spec.summary for spec in PACK)
    assert {spec.name for spec in PACK if not spec.default} == {"join_storm", "jwt_revoked"}
    assert {spec.name for spec in PACK if len(spec.profiles) > 1} == {"refresh_mid_call"}


@pytest.mark.parametrize("name, profile", CASES)
async def test_scenario(cometbench_run, autojump_clock, name, profile):
    result = await cometbench_run(name, profile=profile, seed=0)
    assert result.passed, result.failure
    assert result.expectations > 0 or name == "join_storm"
