"""The parts of bench/browser that need no browser: fake media, app profiles, URL patterns, the
page-clock mapping, JsSIP sources, the page server's endpoints, the CLI's usage errors."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from bench.browser.media import FRAMES, fake_media, frame_number, read_y4m_frames, write_wav
from bench.browser.page import Calibration
from bench.browser.participant import glob_to_regex
from bench.browser.profile import BUILTIN_PROFILES, ProfileError, fill, load_profile

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "demo_as_own_app.toml"


# --- fake media ---------------------------------------------------------------------------------------

def test_the_fake_camera_spells_each_frame_number(tmp_path):
    media = fake_media(tmp_path)
    header = media.camera.read_bytes()[:60].split(b"\n")[0]
    assert header == b"YUV4MPEG2 W320 H240 F15:1 Ip A1:1 C420jpeg"
    frames = read_y4m_frames(media.camera)
    assert [frame_number(f) for f in frames] == list(range(FRAMES))
    assert media.camera.stat().st_size == len(header) + 1 + FRAMES * (6 + 320 * 240 * 3 // 2)


def test_the_fake_microphone_is_a_beep_each_second(tmp_path):
    path = tmp_path / "m.wav"
    write_wav(path)
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt "
    channels, rate = struct.unpack("<HI", data[22:28])
    assert (channels, rate) == (1, 48000)
    samples = struct.unpack(f"<{(len(data) - 44) // 2}h", data[44:])
    assert len(samples) == 2 * 48000
    assert max(abs(s) for s in samples[:4800]) > 10000            # the first 100 ms beep
    assert max(abs(s) for s in samples[4800:48000]) == 0           # silence until the next second
    assert max(abs(s) for s in samples[48000:52800]) > 10000


def test_fake_media_is_made_once(tmp_path):
    first = fake_media(tmp_path)
    stamp = first.camera.stat().st_mtime_ns
    second = fake_media(tmp_path)
    assert second == first and second.camera.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


# --- app profiles -----------------------------------------------------------------------------------------

def test_builtin_profiles():
    for name in BUILTIN_PROFILES:
        profile = load_profile(name)
        assert profile.is_demo and profile.selectors.join == "#join"
    assert load_profile("demo-legacy").legacy and load_profile("demo-jssip3").jssip == "3"
    assert not load_profile("demo").legacy and load_profile("demo").jssip == "2.0.6"


def test_the_example_profile():
    profile = load_profile(EXAMPLE)
    assert profile.kind == "page" and profile.folder == ROOT / "fixtures" / "demo_app"
    assert profile.comet_nodes == ["app.comet-server.ru"] and profile.user_storage_key == "user_id"
    assert profile.backend_call.endswith("call.php*") and profile.shim is True
    assert profile.scripts["**/jssip.js"] == ROOT / "node_modules" / "jssip2" / "dist" / "jssip.js"


@pytest.mark.parametrize("text, message", [
    ('url = "http://x/"\nfolder = "."', "either url"),
    ('name = "x"', "either url"),
    ('url = "http://x/"\ncolour = "red"', "unknown keys colour"),
    ('url = "http://x/"\n[selectors]\njoin = 5', "join must be a string"),
    ('url = "http://x/"\n[selectors]\nleave = "#l"', "[selectors] unknown keys leave"),
    ('url = "http://x/"\n[scripts]\n"**/a.js" = "missing.js"', "no such file"),
    ('url = "http://x/"\n[browser]\nload_timeout = 0', "load_timeout must be a positive number"),
    ('url = "http://x/"\n[comet]\nnodes = "app.comet-server.ru"', "nodes must be a list"),
    ('url = "http://x/"\n[backend]\nforward = "http://y/"', "[backend] unknown keys forward"),
    ('kind = "robot"', "kind must be 'page' or 'demo'"),
    ('url = "http://x/', "cannot read it"),
])
def test_bad_profiles_name_the_key(tmp_path, text, message):
    path = tmp_path / "app.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_json_profiles_and_unknown_names(tmp_path):
    path = tmp_path / "app.json"
    path.write_text(json.dumps({"url": "https://chat.example.com/", "query": "u={user_id}&r={room}",
                                "selectors": {"join": "text=Join"}}))
    profile = load_profile(path)
    assert profile.url == "https://chat.example.com/" and profile.selectors.join == "text=Join"
    assert fill(profile.query, {"user_id": 5, "room": "101"}) == "u=5&r=101"
    with pytest.raises(ProfileError, match="no such file"):
        load_profile(tmp_path / "nope.toml")


# --- URL patterns, the page clock -------------------------------------------------------------------------

def test_glob_to_regex_matches_like_playwright():
    rx = re.compile(glob_to_regex("https://comet-server.com/doc/CometQL/videochat/call.php*"))
    assert rx.match("https://comet-server.com/doc/CometQL/videochat/call.php?user_id=1&room=101")
    assert not rx.match("https://comet-server.com/doc/CometQL/videochat/call.php/x")
    rx = re.compile(glob_to_regex("**/call.php*"))
    assert rx.match("http://127.0.0.1:5/any/where/call.php?x=1") and not rx.match("http://h/callXphp")


def test_page_time_maps_onto_the_bench_clock():
    # a page read 1_000_000.500 s (epoch ms 1e9 + 500) at trio time 100.0
    cal = Calibration(origin=1e9, offset=(1e9 + 500.0) / 1000.0 - 100.0, error=0.0005, samples=7)
    assert cal.to_trio(1e9, 500.0) == pytest.approx(100.0)
    assert cal.to_trio(1e9, 1750.0) == pytest.approx(101.25)


# --- JsSIP sources ------------------------------------------------------------------------------------------

def test_jssip_sources_and_their_errors(tmp_path):
    from bench.browser.bundle import BundleError, commonjs_bundle, jssip_source

    with pytest.raises(BundleError, match="unknown JsSIP version"):
        jssip_source("1.0", modules=tmp_path)
    with pytest.raises(BundleError, match=r"jssip 2\.0\.6 not found"):
        jssip_source("2.0.6", modules=tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "package.json").write_text('{"main": "lib/main.js"}')
    (tmp_path / "pkg" / "lib").mkdir()
    (tmp_path / "pkg" / "lib" / "main.js").write_text(
        "module.exports = {a: require('./a'), v: require('../package.json')};")
    (tmp_path / "pkg" / "lib" / "a.js").write_text("exports.x = 1;")
    source = commonjs_bundle(tmp_path / "pkg" / "lib" / "main.js", "Pkg", tmp_path)
    assert len(re.findall(r"(?m)^defs\[\d+\] = ", source)) == 3 and "window.Pkg = load(0);" in source
    (tmp_path / "pkg" / "lib" / "a.js").write_text("require('nowhere');")
    with pytest.raises(BundleError, match="cannot find module 'nowhere'"):
        commonjs_bundle(tmp_path / "pkg" / "lib" / "main.js", "Pkg", tmp_path)


# --- the page server ----------------------------------------------------------------------------------------

class _Backend:
    def __init__(self):
        self.calls = []

    async def auth(self, actor, user_id, user_key):
        self.calls.append(("auth", actor, user_id, user_key))

    async def call(self, actor, user_id, room, profile, message):
        if room == "boom":
            raise RuntimeError("CometQL went away")
        self.calls.append(("call", actor, user_id, room, profile, message))


async def test_page_server_endpoints():
    from bench.browser.server import PageServer

    backend = _Backend()
    client = PageServer(backend).app.test_client()
    page = await client.get("/demo/index.html")
    assert page.status_code == 200 and b'<script src="video-api.js">' in await page.get_data()
    assert (await client.get("/demo/../../pyproject.toml")).status_code == 404
    assert (await client.get("/app/index.html")).status_code == 404          # no app folder in this run
    assert (await client.get("/vendor/jssip-9.js")).status_code == 404
    bad = await client.get("/api/auth.php?user_id=abc&user_key=k")
    assert bad.status_code == 400 and "user_id" in (await bad.get_json())["error"]
    assert (await client.get("/api/call.php?user_id=5")).status_code == 400
    ok = await client.get("/api/auth.php?user_id=5&user_key=PassForUser5", headers={"X-Cometbench-Actor": "doctor"})
    assert ok.status_code == 200 and (await ok.get_json()) == {"ok": True}
    assert ok.headers["Access-Control-Allow-Origin"] == "*"
    await client.get("/api/call.php?user_id=5&room=101&profile=video-2")
    await client.get("/api/call.php?user_id=6&room=102")
    failed = await client.get("/api/call.php?user_id=6&room=boom")
    assert failed.status_code == 502 and "CometQL went away" in (await failed.get_json())["error"]
    assert backend.calls == [("auth", "doctor", 5, "PassForUser5"), ("call", None, 5, "101", "video-2", "{}"),
                             ("call", None, 6, "102", None, "{}")]


# --- the CLI ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["run", "two_party_call", "--browser", "patient"], "add --real-time"),
    (["run", "two_party_call", "--real-time", "--browser", "pat-ient"], "an actor name"),
    (["run", "two_party_call", "--real-time", "--browser", "patient", "--app", "nope.toml"], "no such file"),
    (["run", "two_party_call", "--real-time", "--browser", "patient", "--camera", "nope.y4m"], "--camera nope.y4m"),
    (["run", "two_party_call", "--no-shim"], "--no-shim applies to real browsers"),
    (["run", "two_party_call", "--app", "demo-legacy"], "--app applies to real browsers"),
])
def test_cli_usage_errors(argv, message, capsys):
    from bench.cli import main

    assert main(argv) == 2
    assert message in capsys.readouterr().err
