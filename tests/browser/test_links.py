"""A browser actor's connections are on the network seam: link faults aimed at it reach its page.

The page's comet and SIP WebSockets pass the actor's relays (bench/browser/relay.py), which connect
to the emulator with ``network.connect(..., client=<actor>)``.  So the emulator's link table
(emulator/net/links.py, ``stack.links``) acts on the browser exactly as on a virtual actor:

* ``partition(client="patient")``: nothing reaches the page (the doctor's heartbeat pings stall), and
  after it heals the stalled frames arrive (at the sender's next TCP retransmission);
* ``reset(client="patient")``: both WebSockets of the page are reset -- the comet client sees an
  unclean close (1006) and reconnects 1000 ms later, as CometServerApi.js does; JsSIP's transport
  closes and reconnects too -- while the doctor's connections are untouched.

And Chromium's own offline emulation (``patient.go_offline()``) turns ``navigator.onLine`` false but
closes nothing: open WebSockets stay open and carry nothing until the context is back online, then
the frames that came meanwhile arrive at once (docs/decisions.md).
"""

from __future__ import annotations

import pytest
import trio

from tests.browser.conftest import tell_story

pytestmark = pytest.mark.compat


def received_between(video, start: float, end: float) -> list[str]:
    return [d.get("event") for t, d in video.received if start <= t < end]


async def test_link_faults_and_offline_emulation_reach_the_page(browser_tools, tmp_path):
    seen: dict = {}

    async def story(s):
        doctor, patient = s.doctor, s.patient
        links = s.stack.links
        with s.step("the doctor (virtual) and the patient (Chromium) are in a call"):
            await s.meet("101", doctor, patient)
        video = patient.participant.video
        with s.step("the patient's links are partitioned for 4 s"):
            t0 = trio.current_time()
            links.partition(client="patient", duration=4)
            await s.sleep(10)           # stalled bytes come at the sender's next retransmission (RTO doubling)
            await patient.participant.flush()
            seen["partition"] = (received_between(video, t0 + 0.5, t0 + 3.5),
                                 received_between(video, t0 + 3.5, t0 + 10))
        with s.step("Chromium goes offline for 4 s"):
            t1 = trio.current_time()
            patient.go_offline()
            await s.sleep(4)
            seen["online"] = await patient.participant.evaluate("() => navigator.onLine")
            patient.go_online()
            await s.sleep(2)
            await patient.participant.flush()
            seen["offline"] = (received_between(video, t1 + 0.5, t1 + 4), received_between(video, t1 + 4, t1 + 6))
            seen["closes_offline"] = list(patient.participant.comet.closes)
        with s.step("the patient's connections are reset"):
            doctor_closes = len(doctor.comet.closes)
            seen["reset"] = links.reset(client="patient")
            await s.sleep(3)
            seen["history"] = await patient.participant.evaluate("() => cometApi.history")
            seen["doctor_closes"] = len(doctor.comet.closes) - doctor_closes
            seen["sip"] = await patient.participant.evaluate(
                "() => cometVideoApi.coolPhone ? cometVideoApi.coolPhone.isConnected() : null")
            s.check(doctor.in_call and patient.in_call, "both pages keep their calls")

    result = await tell_story(story, browsers=("patient",), tmp_path=tmp_path)
    assert result.passed, result.failure

    during, after = seen["partition"]
    assert during == [], during                                  # the page heard nothing while partitioned
    assert "ping" in after                                       # ... and the stalled frames came after

    assert seen["online"] is False
    during, after = seen["offline"]
    assert during == [] and "ping" in after                      # offline holds frames, online delivers them
    assert seen["closes_offline"] == []                          # and closes nothing

    assert seen["reset"] >= 2                                    # the comet and the SIP connection at least
    history = seen["history"]
    close = next(h for h in reversed(history) if h["what"] == "close")
    assert close["clean"] is False and close["code"] == 1006
    again = [h for h in history if h["what"] == "attempt" and h["t"] > close["t"]]
    assert again and 1000 <= again[0]["t"] - close["t"] < 1300
    assert history[-1]["what"] == "open"
    assert seen["doctor_closes"] == 0
    assert seen["sip"] is True                                   # JsSIP's transport is back
