"""Bounded per-participant memory: one shared Faker for names, and the comet client's frame history.

A participant used to build a Faker instance of its own (about 40 KB and 3 ms) and every page kept
every frame it sent and received; a thousand pages or a simulated hour (about 22,000 frames a page)
grew without bound.  ``Participant(history=N)`` keeps the newest N records while the counters keep
counting everything; ``history=None`` (the default) keeps all of them, as the tests read them.
"""

from __future__ import annotations

import pytest
import trio
from faker import Faker

from bench.actors.participant import Participant, Target, fake_name
from emulator.net.network import VirtualNetwork
from tests.actorkit import doctor_and_patient, in_call, stack_and_target


def test_fake_name_depends_on_the_seed_only_and_matches_a_fresh_faker():
    fresh = Faker()
    fresh.seed_instance(12345)
    expected = fresh.name()
    fake_name(999)                       # names drawn before do not change the next one
    assert fake_name(12345) == expected
    assert fake_name(12345) == expected
    assert fake_name(12346) != expected or fake_name(12347) != expected


def test_participants_share_one_faker_and_keep_their_seeded_names():
    target = Target("127.0.0.1", 1, "127.0.0.1", 2, 15)
    net = VirtualNetwork()
    a = Participant(target, net, user_id=1, actor="doctor", seed=7)
    b = Participant(target, net, user_id=2, actor="patient", seed=7)
    a2 = Participant(target, net, user_id=1, actor="doctor", seed=7)
    assert a.display_name == a2.display_name          # same seed and actor: same name
    assert a.display_name != b.display_name            # another actor: another draw
    import bench.actors.participant as participant_module
    assert isinstance(participant_module._FAKER, Faker)   # one instance, made once


@pytest.mark.parametrize("bad", [0, -3])
def test_history_must_be_none_or_positive(bad):
    target = Target("127.0.0.1", 1, "127.0.0.1", 2, 15)
    with pytest.raises(ValueError, match="history"):
        Participant(target, VirtualNetwork(), user_id=1, history=bad)


async def test_bounded_history_keeps_the_newest_frames_and_the_call_goes_on(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net, journal=False) as (_stack, target):
        async with doctor_and_patient(target, net, history=8) as (doctor, patient):
            await in_call(doctor, patient)
            await trio.sleep(120)            # two minutes of heartbeat: hundreds of frames a page
            for p in (doctor, patient):
                comet = p.comet
                assert comet.frames_received > 100 and comet.frames_sent > 100
                assert len(comet.received) == 8 and len(comet.sent) == 8 and len(comet.messages) <= 8
                assert comet.received[-1][0] <= trio.current_time()
                assert p.video.is_in_call()
            # the newest is kept: a frame sent now is the last record
            before = doctor.comet.frames_sent
            await trio.sleep(5)
            assert doctor.comet.frames_sent > before
            assert doctor.comet.sent[-1][0] > trio.current_time() - 5


async def test_unbounded_history_is_the_default(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net, journal=False) as (_stack, target):
        async with doctor_and_patient(target, net) as (doctor, patient):
            await in_call(doctor, patient)
            await trio.sleep(30)
            assert len(doctor.comet.received) == doctor.comet.frames_received
            assert len(doctor.comet.sent) == doctor.comet.frames_sent
