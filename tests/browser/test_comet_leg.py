"""The demo app's comet leg (fixtures/demo_app/comet-api.js) on the wire, in Chromium, against the emulator.

What CometServerApi.js 4.08 does (spec comet-ws-protocol.md 1, 3, 6.1, 7; the virtual client
bench/clients/comet.py) and the demo's client must do the same, as the emulator's journal sees it:

* the URL: ``/ws/sesion=<key>&myid=<user>&devid=<dev>&v=4.08&uuid=<32 chars>&api=js``;
* the tab-election wait: the socket opens 1.2 s after ``start()``;
* ``statistics`` 5 s after the open: ``{"url", "dev_id", "version": "4.08"}``;
* the callPipe's subscription leaves at least 50 ms after the push (the debounce), as the full list;
* every callPipe event three times, one second apart, with one ``_cometApi_uuid``;
* after the server drops the connection (``DELETE FROM users_auth`` closes the user's sockets
  without a Close frame), the client reconnects after 1000 ms and logs in again -- now refused.
"""

from __future__ import annotations

import itertools
import json
import re

import pytest

from tests.browser.conftest import journal_rows, tell_story

pytestmark = pytest.mark.compat


async def test_the_comet_leg_on_the_wire(browser_tools, tmp_path):
    seen: dict = {}

    async def story(s):
        patient = s.patient
        with s.step("the patient's page loads, logs in, joins"):
            await patient.open_page()
            await patient.join("101")
            await s.wait("patient.media_self")
            await s.sleep(6)                       # the statistics frame, the three copies of accept
            seen["marks"] = dict(patient.marks)
        with s.step("the server drops the patient's comet connection"):
            await s.app.backend.execute(f"DELETE FROM users_auth WHERE id = {patient.user_id}")
            await s.sleep(3)
            seen["history"] = await patient.participant.evaluate("() => cometApi.history")
            seen["infos"] = list(patient.participant.comet.server_infos)
            seen["user"] = patient.user_id

    result = await tell_story(story, browsers=("patient",), tmp_path=tmp_path)
    assert result.passed, result.failure
    rows = journal_rows(tmp_path / "journal.sqlite", service="comet")
    user = seen["user"]

    history = seen["history"]
    start = next(h for h in history if h["what"] == "start")
    attempts = [h for h in history if h["what"] == "attempt"]
    opens = [h for h in history if h["what"] == "open"]
    assert re.fullmatch(rf"ws://127\.0\.0\.1:\d+/ws/sesion=PassForUser{user}&myid={user}&devid=15&v=4\.08"
                        r"&uuid=[A-Za-z0-9_-]{32}&api=js", attempts[0]["url"]), attempts[0]["url"]
    assert 1200 <= attempts[0]["t"] - start["t"] < 1500              # the tab election
    closes = [h for h in history if h["what"] == "close"]
    assert closes and closes[0]["clean"] is False
    reconnect = next(h for h in history if h["what"] == "reconnect")
    assert reconnect["delay"] == 1000
    assert 1000 <= attempts[1]["t"] - closes[0]["t"] < 1300
    assert len(opens) == 2 and [ok for _, ok in seen["infos"]] == [True, False]   # logged in; then refused

    frames = [r for r in rows if r["kind"] == "frame" and r["direction"] == "in" and r["user_id"] == user]
    statistics = [r for r in frames if r["data"].startswith("statistics\n")]
    assert len(statistics) == 1
    body = json.loads(statistics[0]["data"].split("\n", 1)[1])
    assert body["version"] == "4.08" and body["dev_id"] == 15 and body["url"].endswith("/demo/index.html")
    connects = [r for r in rows if r["kind"] == "connect" and r["user_id"] == user]
    assert 4.8 <= statistics[0]["t"] - connects[0]["t"] < 5.6

    marks = seen["marks"]
    assert marks["subscribed"] - marks["push_received"] >= 0.05
    subscriptions = [r["data"] for r in frames if r["data"].startswith("subscription\n")]
    assert subscriptions and subscriptions[0].split("\n")[1].startswith("web_syscall_vA_")
    accepts = [r for r in frames if "\naccept\n*\n" in r["data"]]
    uuids = {json.loads(r["data"].split("\n*\n", 1)[1])["_cometApi_uuid"] for r in accepts}
    assert len(accepts) == 3 and len(uuids) == 1
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(accepts)]
    assert all(0.9 < g < 1.3 for g in gaps), gaps
