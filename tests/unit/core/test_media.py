"""The media model: presets, the delay's properties (monotonic, bounded, calibrated to the seed)."""

from __future__ import annotations

import random
import statistics
from dataclasses import replace

import pytest

from emulator.freeswitch import media
from emulator.freeswitch.media import (
    CLEAN_LINKS,
    QUALITY_PRESETS,
    REALISTIC_LINKS,
    LinkConditions,
    Quality,
    delay_table,
    link_presets,
    load_network_profiles,
    media_path_terms,
    media_start_delay,
)

SEEDS = range(200)


def delays(link: LinkConditions, quality: Quality, seeds=SEEDS) -> list[float]:
    return [media_start_delay(link, quality, random.Random(seed)) for seed in seeds]


def test_presets():
    links = load_network_profiles()
    assert list(links) == ["loopback", "lan", "dsl", "4g", "3g", "bad-wifi"]
    assert links["loopback"] == LinkConditions(0.1, 0.0, 0.0, 1_000_000)
    assert links["3g"].loss == 0.03 and links["dsl"].bandwidth_kbps == 768 and links["4g"].description
    assert link_presets() == links
    assert set(QUALITY_PRESETS) == {"low", "sd", "hd"}
    assert QUALITY_PRESETS["low"] == Quality(320, 240, 15, 256, 32)
    assert QUALITY_PRESETS["sd"] == Quality(640, 480, 30, 512, 32)
    assert QUALITY_PRESETS["hd"] == Quality(1280, 720, 30, 1500, 32) and QUALITY_PRESETS["hd"].pixels == 921600


def test_loader_reads_any_file_and_validates(tmp_path):
    path = tmp_path / "links.toml"
    path.write_text('[sat]\nrtt_ms = 600\nloss = 0.02\nbandwidth_kbps = 2000\n')
    assert load_network_profiles(path) == {"sat": LinkConditions(600.0, 0.0, 0.02, 2000.0)}
    for bad in (dict(rtt_ms=-1), dict(rtt_ms=1, loss=1.0), dict(rtt_ms=1, bandwidth_kbps=0),
                dict(rtt_ms=1, jitter_ms=-2)):
        with pytest.raises(ValueError):
            LinkConditions(**bad)


def test_clean_links_are_well_under_a_second():
    links = link_presets()
    for name in CLEAN_LINKS:
        for quality in QUALITY_PRESETS.values():
            assert max(delays(links[name], quality)) < 1.0
    assert max(delays(links["loopback"], QUALITY_PRESETS["hd"])) < 0.6


def test_realistic_links_land_in_the_seeds_band():
    links = link_presets()
    everything = []
    for name in REALISTIC_LINKS:
        sd = delays(links[name], QUALITY_PRESETS["sd"])
        assert 3.0 <= min(sd) and max(sd) <= 15.0, name             # the default quality: always 3-15 s
        for quality in QUALITY_PRESETS.values():
            values = delays(links[name], quality)
            assert max(values) <= 15.0
            everything += values
    assert 4.5 <= statistics.median(everything) <= 6.5             # "about 5 s typical"
    q05, q95 = statistics.quantiles(everything, n=20)[0], statistics.quantiles(everything, n=20)[-1]
    assert 2.5 <= q05 and q95 <= 12.0


@pytest.mark.parametrize("seed", [0, 1, 17])
def test_monotonic_in_rtt_jitter_loss_and_bandwidth(seed):
    base = LinkConditions(rtt_ms=50, jitter_ms=10, loss=0.01, bandwidth_kbps=768)
    sd = QUALITY_PRESETS["sd"]

    def at(**change):
        return media_start_delay(replace(base, **change), sd, random.Random(seed))

    rtts = [at(rtt_ms=r) for r in (0.1, 5, 20, 50, 100, 200, 400, 800)]
    jitters = [at(jitter_ms=j) for j in (0, 5, 10, 40, 100)]
    losses = [at(loss=p) for p in (0.0, 0.001, 0.01, 0.03, 0.05, 0.1, 0.2)]
    bandwidths = [at(bandwidth_kbps=b) for b in (100, 200, 384, 768, 1500, 3000, 100_000)]
    assert rtts == sorted(rtts) and len(set(rtts)) == len(rtts)
    assert jitters == sorted(jitters) and len(set(jitters)) == len(jitters)
    assert losses == sorted(losses) and len(set(losses)) == len(losses)
    assert bandwidths == sorted(bandwidths, reverse=True)
    assert bandwidths[0] > bandwidths[3] > bandwidths[-1]          # strictly better while below the b=AS cap


def test_higher_quality_takes_longer_on_a_thin_link():
    link = link_presets()["3g"]
    low, sd, hd = (statistics.median(delays(link, q)) for q in QUALITY_PRESETS.values())
    assert low < sd < hd


def test_one_draw_per_call_and_seeded():
    rng, twin = random.Random(3), random.Random(3)
    link, quality = link_presets()["dsl"], QUALITY_PRESETS["sd"]
    first = media_start_delay(link, quality, rng)
    twin.random()
    assert rng.getstate() == twin.getstate()
    assert first == media_start_delay(link, quality, random.Random(3))
    spread = delays(link, quality)
    assert max(spread) / min(spread) > 1.2                          # the seeded variation is visible


def test_terms_add_up():
    for link in link_presets().values():
        terms = media_path_terms(link, QUALITY_PRESETS["sd"])
        assert terms["raw"] == pytest.approx(terms["ice"] + terms["dtls"] + terms["keyframe"] + terms["jitter_buffer"])
        assert terms["fixed"] + terms["link"] == pytest.approx(terms["raw"])
        assert all(v >= 0 for v in terms.values())
    clean = media_path_terms(link_presets()["loopback"], QUALITY_PRESETS["sd"])
    assert clean["link"] < 0.01
    assert clean["fixed"] == pytest.approx(media.ICE_PACING * media.ICE_PAIRS + 307200 / (2.5 * 544_000)
                                           + media.JB_BASE + 1 / 30)


def test_delay_table():
    table = delay_table(seeds=50)
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["link", "low", "sd", "hd"]
    assert [line.split()[0] for line in lines[1:]] == list(link_presets())
    print("\n" + table)
