"""Bring your own app: the demo app served as a user's folder, driven through an app profile.

The profile (examples/demo_as_own_app.toml) gives the bench nothing of the page's code: the page
keeps its built-in comet node (app.comet-server.ru), its backend URLs (the seed's
comet-server.com/doc/CometQL/videochat/auth.php and call.php) and takes its user id from
localStorage; it runs in "legacy" mode, attaching streams with URL.createObjectURL(MediaStream) as
CppComet's cometVideoApi.js does.  The bench redirects the node and the SIP address to the
emulator, routes the backend URLs to its endpoints, serves the user's copy of jssip.js, accepts
confirm() and clicks the profile's selectors.

* shim on: the call works -- onCallStart, the remote video attached through the shim's token,
  no page error;
* shim off (real-video-client.md 2): Chromium 156 throws in acceptCall's getUserMedia callback, so
  the page never sends ``accept`` and JsSIP never starts -- onCall fires, and that is all.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bench.browser.profile import load_profile
from tests.browser.conftest import journal_rows, tell_story

pytestmark = pytest.mark.compat

PROFILE = Path(__file__).resolve().parents[2] / "examples" / "demo_as_own_app.toml"


def own_app(**changes):
    return replace(load_profile(PROFILE), **changes)


async def test_own_app_with_the_shim(browser_tools, tmp_path):
    seen: dict = {}

    async def story(s):
        with s.step("the doctor (virtual) and the patient (your page in Chromium) meet"):
            await s.meet("101", s.doctor, s.patient)
            await s.sleep(1)
            seen["page"] = await s.patient.participant.evaluate("""() => ({
              legacy: cometVideoApi.legacy, node: cometApi.options.node,
              user: localStorage.getItem('user_id'),
              remoteSrc: document.getElementById('video-remote').getAttribute('src'),
              remoteAttached: !!document.getElementById('video-remote').srcObject,
              localAttached: !!document.getElementById('video-local').srcObject})""")
            seen["errors"] = list(s.patient.participant.video.page_errors)
            seen["user_id"] = s.patient.user_id

    result = await tell_story(story, browsers=("patient",), tmp_path=tmp_path, app=own_app())
    assert result.passed, result.failure
    page = seen["page"]
    assert page["legacy"] is True and page["node"] == "app.comet-server.ru"   # the page's own settings ...
    assert page["user"] == str(seen["user_id"])                                # ... and the user the bench chose
    assert page["localAttached"] and page["remoteAttached"]                    # src = token -> srcObject
    assert seen["errors"] == []
    auths = [r for r in journal_rows(tmp_path / "journal.sqlite", service="cometql", kind="query")
             if "users_auth" in str(r["data"])]
    assert any(f"PassForUser{seen['user_id']}" in str(r["data"]) for r in auths)   # routed to the bench's auth.php


async def test_own_app_without_the_shim_never_accepts(browser_tools, tmp_path):
    seen: dict = {}

    async def story(s):
        patient = s.patient
        with s.step("the patient's page rings, accepts, and dies in getUserMedia's callback"):
            await patient.open_page()
            await patient.join("101")
            await s.wait("patient.onCall")
            await s.sleep(8)
            seen["marks"] = dict(patient.marks)
            seen["errors"] = [m for _, m in patient.participant.video.page_errors]
            seen["sent"] = await patient.participant.evaluate(
                "() => ({accepted: !!cometVideoApi.opt.activeCallEvent, phones: cometVideoApi.phones.length})")

    result = await tell_story(story, browsers=("patient",), tmp_path=tmp_path, app=own_app(shim=False))
    assert result.passed, result.failure
    marks = seen["marks"]
    assert {"push_received", "on_call", "accept_call", "gum1"} <= set(marks)
    assert "accept_sent" not in marks and "ua_created" not in marks and "registered" not in marks, sorted(marks)
    assert any("createObjectURL" in m for m in seen["errors"]), seen["errors"]
    assert seen["sent"] == {"accepted": True, "phones": 0}    # acceptCall ran, JsSIP never started
    rows = journal_rows(tmp_path / "journal.sqlite")
    frames = [r["data"] for r in rows if r["service"] == "comet" and r["kind"] == "frame" and r["direction"] == "in"]
    assert any("\npong\n" in f for f in frames) and not any("\naccept\n" in f for f in frames)
    assert not [r for r in rows if r["service"] == "sip" and r["kind"] == "ws_open"]   # nothing reached 7443
