"""A browser actor that cannot do its part fails its scenario clearly, and leaves nothing running.

Each case: the scenario fails with a cause that names the actor and what went wrong; the run
directory gets the actor's screenshot (when a page exists) and console log; the other scenarios of
the run go on; no Chromium process is left (``no_chromium_left``, tests/browser/conftest.py, checks
every test of this folder).

* a page that never loads (nothing listens at the profile's URL);
* a control that is not on the page (a Join selector that matches nothing);
* the browser process killed in the middle of a call;
* a fake camera file that does not exist.
"""

from __future__ import annotations

import os
import signal
import socket
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from bench.browser import procs
from bench.browser.participant import BrowserSettings
from bench.browser.profile import AppProfile, Selectors, load_profile
from bench.scenario.loader import ScenarioSpec
from bench.scenario.runner import Run, RunSettings
from tests.browser.conftest import tell_story

pytestmark = pytest.mark.compat

OWN_APP = Path(__file__).resolve().parents[2] / "examples" / "demo_as_own_app.toml"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def patient_opens_the_page(s):
    """The patient opens the page and joins."""
    with s.step("the patient opens the page"):
        await s.patient.open_page()
        await s.patient.join("101")


async def doctor_alone(s):
    """A virtual doctor alone in a room: this one has no browser actor."""
    with s.step("the doctor joins alone"):
        await s.doctor.open_page()
        await s.doctor.join("101")
        await s.wait("doctor.media_self")


def test_a_page_that_never_loads_fails_its_scenario_and_the_run_goes_on(browser_tools, tmp_path):
    port = closed_port()
    app = AppProfile(name="nowhere", kind="page", url=f"http://127.0.0.1:{port}/chat.html", load_timeout=5)
    specs = [ScenarioSpec("never_loads", Path(__file__), story=patient_opens_the_page, timeout=60),
             ScenarioSpec("doctor_alone", Path(__file__), story=doctor_alone, timeout=60)]
    run = Run(specs, RunSettings(seed=0, clock="real", browser=BrowserSettings(actors=("patient",), app=app)),
              tmp_path / "run")
    assert run.execute() == "complete"
    first, second = run.results
    assert first.status == "failed" and first.browsers == ["patient"]
    assert f"patient (browser): the page http://127.0.0.1:{port}/chat.html did not load within 5 s" in first.failure
    assert "ERR_CONNECTION_REFUSED" in first.failure
    assert first.step == "the patient opens the page"
    assert second.passed and second.browsers == [], second.failure     # the run went on
    folder = tmp_path / "run" / "browser" / "never_loads-seed0"
    assert (folder / "patient.png").stat().st_size > 0
    console = (folder / "patient.console.log").read_text()
    assert "ERR_CONNECTION_REFUSED" in console and "FAILED: patient (browser)" in console
    assert "did not load" in (folder / "failure.txt").read_text()


async def test_a_missing_selector_fails_with_its_name(browser_tools, tmp_path):
    app = replace(load_profile(OWN_APP), selectors=Selectors(join="#no-such-button", hangup="#hangup",
                                                             status="#status"), selector_timeout=1.0)
    result = await tell_story(patient_opens_the_page, browsers=("patient",), tmp_path=tmp_path, app=app)
    assert not result.passed
    assert "patient (browser): join: the control '#no-such-button' was not found or could not be clicked" \
        in result.failure
    assert "the page's status line: 'Ready: click Join'" in result.failure
    folder = tmp_path / "browser" / "patient_opens_the_page-seed1"
    assert (folder / "patient.png").stat().st_size > 0 and (folder / "patient.console.log").is_file()


async def test_a_browser_that_crashes_mid_call(browser_tools, tmp_path):
    seen: dict = {}

    async def story(s):
        with s.step("the doctor and the patient meet"):
            await s.meet("101", s.doctor, s.patient)
        with s.step("the patient's browser process dies"):
            host = s.patient.participant.host
            seen["pid"] = host.browser_pid()
            seen["group"] = set(host.stats.groups)
            seen["t"] = trio.current_time()
            os.kill(seen["pid"], signal.SIGKILL)
            await s.sleep(30)

    started = trio.current_time()
    result = await tell_story(story, browsers=("patient",), tmp_path=tmp_path)
    assert not result.passed
    assert "BrowserCrashed: the browser crashed: the browser process exited" in result.failure, result.failure
    assert result.step == "the patient's browser process dies"
    assert trio.current_time() - seen["t"] < 25          # the crash ended the story, not its 30 s sleep
    assert trio.current_time() - started < 60
    assert seen["group"] and all(not procs.live_in_group(g) for g in seen["group"])
    folder = tmp_path / "browser" / "story-seed1"
    assert "crashed" in (folder / "failure.txt").read_text()
    assert (folder / "patient.console.log").is_file()


async def test_a_missing_camera_file(browser_tools, tmp_path):
    missing = tmp_path / "no-camera.y4m"
    result = await tell_story(patient_opens_the_page, browsers=("patient",), tmp_path=tmp_path, camera=missing)
    assert not result.passed
    assert f"patient (browser): the fake camera file {missing} does not exist" in result.failure
    folder = tmp_path / "browser" / "patient_opens_the_page-seed1"
    assert (folder / "patient.png").stat().st_size > 0 and (folder / "patient.console.log").is_file()
