"""The demo app in a real Chromium, in one call with a virtual actor (bench/browser, fixtures/demo_app).

* :func:`test_a_browser_and_a_virtual_actor_in_one_call` -- the doctor is virtual, the patient a
  real Chromium with the demo app (JsSIP 2.0.6): the page's comet leg logs in, the push rings it,
  its JsSIP registers and its INVITE reaches the fake FreeSWITCH over WSS (the emulator's journal has
  REGISTER, 401, INVITE, 407, 200 from the patient's SIP user); Chromium's setRemoteDescription
  accepts the answer (signalling stable, remote description an answer with the emulator's DTLS
  fingerprint), the JsSIP session is confirmed, both get onCallStart.  Then what the page does while
  ICE cannot complete (the fake FreeSWITCH has no media endpoint): ICE goes ``checking`` at the
  answer and ``disconnected`` about 15 s later, never ``failed``, so JsSIP never ends the call --
  both pages stay in it, no remote frame is ever decoded, and ``first_remote_frame`` is the media
  model's (``media: bridge``).  Page time and server time are one clock: the page's
  ``sip_invite_sent`` is no later than the emulator's receipt of that INVITE, its ``registered`` and
  ``answered`` no earlier than the 200s the emulator sent (each within the mapping's error bound).
* :func:`test_jssip3` -- the same page with JsSIP 3.x (``demo-jssip3``) through REGISTER, INVITE and
  onCallStart.
* :func:`test_the_fake_camera_is_what_the_page_captures` -- the local preview shows the generated
  pattern: the frame number strip of bench/browser/media.py, read back from the page's canvas.
"""

from __future__ import annotations

import pytest

from bench.actors.participant import MARKS
from tests.browser.conftest import journal_rows, tell_story

pytestmark = pytest.mark.compat

PAGE_STATE = """() => {
  const call = cometVideoApi.opt.activeCallEvent;
  const session = call && call.jssipRTCSession;
  const conn = session && session.connection;
  const pc = conn && (conn.pc || conn);
  return {jssip: JsSIP.version, status: session ? session.status : null,
          signaling: pc ? pc.signalingState : null, ice: pc ? pc.iceConnectionState : null,
          remote: pc && pc.remoteDescription ? {type: pc.remoteDescription.type, sdp: pc.remoteDescription.sdp} : null,
          remoteVideo: document.getElementById('video-remote').srcObject ? true : false,
          statusLine: document.getElementById('status').dataset.state};
}"""
JSSIP_CONFIRMED = 9          # JsSIP's RTCSession C.STATUS_CONFIRMED (2.x and 3.x)


async def test_a_browser_and_a_virtual_actor_in_one_call(browser_tools, tmp_path):
    seen: dict = {}

    async def story(s):
        doctor, patient = s.doctor, s.patient
        with s.step("the doctor (virtual) and the patient (Chromium) meet in room 101"):
            await s.meet("101", doctor, patient)
            seen["in_call"] = await patient.participant.evaluate(PAGE_STATE)
            seen["fingerprint"] = s.stack.certificates.media_fingerprint
            seen["sip_user"] = patient.participant.sip_user
            seen["kinds"] = (type(doctor.participant).__name__, type(patient.participant).__name__)
        with s.step("twenty seconds with no media path (ICE cannot complete)"):
            s.this_step().expect_no("patient.onCallEnd")
            s.this_step().expect_no("doctor.onOut")
            await s.sleep(20)
            s.check(patient.in_call and doctor.in_call, "both pages still in the call")
            seen["after"] = await patient.participant.evaluate(PAGE_STATE)
            seen["ice"] = list(patient.participant.video.ice)
            seen["frames"] = list(patient.participant.video.remote_frames)
            seen["marks"] = dict(patient.marks)
            seen["stages"] = patient.participant.stages()
        with s.step("the patient hangs up"):
            s.after("patient.hangup", within=5).expect("doctor.onOut", count=1, status="hangup")
            patient.hangup()
            await s.wait("patient.onCallEnd", status="hangup")

    result = await tell_story(story, browsers=("patient",), tmp_path=tmp_path)
    assert result.passed, result.failure
    assert result.browsers == ["patient"]
    assert seen["kinds"] == ("Participant", "BrowserParticipant")

    # the answer was applied by Chromium and the session confirmed
    page = seen["in_call"]
    assert page["jssip"] == "2.0.6"
    assert page["status"] == JSSIP_CONFIRMED
    assert page["signaling"] == "stable"
    assert page["remote"]["type"] == "answer"
    assert f"a=fingerprint:sha-256 {seen['fingerprint']}" in page["remote"]["sdp"]
    assert "b=AS:256" in page["remote"]["sdp"]          # the answer went through the demo's sdp listener
    assert page["remoteVideo"] and page["statusLine"] == "in-call"

    # while ICE cannot complete: checking, then disconnected, never failed; the call stays up
    states = [state for _, state in seen["ice"]]
    assert states[0] == "checking", seen["ice"]
    assert "disconnected" in states and "failed" not in states, seen["ice"]
    answered = seen["marks"]["answered"]
    t_disconnected = next(t for t, state in seen["ice"] if state == "disconnected")
    assert 5.0 < t_disconnected - answered < 21.0, seen["ice"]
    after = seen["after"]
    assert after["status"] == JSSIP_CONFIRMED and after["ice"] == "disconnected"
    assert seen["frames"] == []                           # no media: no remote frame is ever decoded

    # every page-side stage of a join is marked, in the order of the call flow
    order = ["push_received", "on_call", "accept_call", "subscribed", "gum1", "accept_sent", "ua_created",
             "sip_connected", "registered", "gum2", "sip_invite_sent", "answered", "addstream", "media_self",
             "call_start", "video_attached"]
    marks = seen["marks"]
    assert all(name in marks for name in order), sorted(marks)
    times = [marks[name] for name in ["backend_invite_start", "backend_insert_sent", *order[:3]]]
    assert times == sorted(times)
    chain = ["accept_call", "gum1", "accept_sent", "ua_created", "sip_connected", "registered", "gum2",
             "sip_invite_sent", "answered", "media_self", "call_start", "video_attached"]
    assert [marks[n] for n in chain] == sorted(marks[n] for n in chain), {n: marks[n] for n in chain}
    assert marks["first_remote_frame"] >= max(marks["video_attached"], marks["media_flowing"]) - 1e-6
    assert 0 < seen["stages"]["join_total"] < 10_000

    # the journal: page marks under service "browser", on the journal's clock (jt), with the error bound
    rows = journal_rows(tmp_path / "journal.sqlite")
    browser_marks = [r for r in rows if r["service"] == "browser" and r["kind"] == "mark"]
    names = {r["data"]["mark"] for r in browser_marks}
    assert set(order) <= names and names <= set(MARKS) | {"ice", "received", "call_accept", "session_ended",
                                                          "out_sent", "gum_failed", "rejoin_ignored"}
    assert all(r["data"]["actor"] == "patient" and 0 <= r["data"]["err_ms"] < 50 for r in browser_marks)
    bench_marks = {r["data"]["mark"] for r in rows if r["service"] == "bench" and r["kind"] == "mark"
                   and r["data"]["actor"] == "patient"}
    assert {"backend_insert_sent", "media_flowing", "first_remote_frame"} <= bench_marks
    assert {"backend_invite_start", "backend_invite_ok"} <= names     # the click and the answer, page-side

    def page_jt(name: str) -> tuple[float, float]:
        row = next(r for r in browser_marks if r["data"]["mark"] == name)
        return row["data"]["jt"], row["data"]["err_ms"] / 1000.0

    sip = [r for r in rows if r["service"] == "sip" and r["kind"] == "message"]
    sip_user = seen["sip_user"]
    registered_ok = [r for r in rows if r["service"] == "sip" and r["kind"] == "registered"
                     and r["data"].startswith(sip_user)]
    assert registered_ok, "the fake FreeSWITCH registered the patient's SIP user over WSS"
    jt, err = page_jt("registered")
    assert jt + err >= registered_ok[0]["t"]              # the page heard the 200 after it was sent
    invites = [r for r in sip if r["direction"] == "in" and r["data"].startswith("INVITE sip:15*101*video@")
               and r["t"] > registered_ok[0]["t"]]
    jt, err = page_jt("sip_invite_sent")
    assert jt - err <= invites[0]["t"]                    # ... and sent its INVITE before it arrived
    okays = [r for r in sip if r["direction"] == "out" and r["data"].startswith("SIP/2.0 200 OK")
             and r["t"] > invites[0]["t"]]
    jt, err = page_jt("answered")
    assert jt + err >= okays[0]["t"]
    members = [r for r in rows if r["service"] == "conference" and r["kind"] == "invite" and r["user_id"]]
    assert len(members) == 2                              # both users invited over CometQL (auth.php/call.php)


async def test_jssip3(browser_tools, tmp_path):
    seen: dict = {}

    async def story(s):
        with s.step("the patient's page runs JsSIP 3"):
            await s.meet("101", s.doctor, s.patient)
            seen["page"] = await s.patient.participant.evaluate(PAGE_STATE)
            seen["marks"] = dict(s.patient.marks)

    result = await tell_story(story, browsers=("patient",), tmp_path=tmp_path, app="demo-jssip3")
    assert result.passed, result.failure
    assert seen["page"]["jssip"].startswith("3.")
    assert seen["page"]["status"] == JSSIP_CONFIRMED and seen["page"]["remote"]["type"] == "answer"
    assert {"registered", "sip_invite_sent", "answered", "addstream", "media_self", "call_start"} <= set(seen["marks"])


async def test_the_fake_camera_is_what_the_page_captures(browser_tools, tmp_path):
    from bench.browser.media import STRIP_CELLS, STRIP_HEIGHT, WIDTH

    seen: dict = {}
    read_strip = """async ([cells, height, width]) => {
      const video = document.getElementById('video-local');
      for (let i = 0; i < 50 && !(video.videoWidth > 0); i++) { await new Promise(r => setTimeout(r, 100)); }
      const canvas = document.createElement('canvas');
      canvas.width = video.videoWidth; canvas.height = video.videoHeight;
      const ctx = canvas.getContext('2d');
      const numbers = [];
      for (let k = 0; k < 3; k++) {
        ctx.drawImage(video, 0, 0);
        const cell = canvas.width / cells;
        let n = 0;
        for (let b = 0; b < cells; b++) {
          const px = ctx.getImageData(Math.floor(b * cell + cell / 2), Math.floor(height / 2), 1, 1).data;
          n = (n << 1) | ((px[0] + px[1] + px[2]) / 3 > 128 ? 1 : 0);
        }
        numbers.push(n);
        await new Promise(r => setTimeout(r, 250));
      }
      return {width: canvas.width, height: canvas.height, numbers};
    }"""

    async def story(s):
        with s.step("the patient joins alone: the local preview runs"):
            await s.patient.open_page()
            await s.patient.join("101")
            await s.wait("patient.media_self")
            seen["strip"] = await s.patient.participant.evaluate(read_strip, [STRIP_CELLS, STRIP_HEIGHT, WIDTH])

    result = await tell_story(story, browsers=("patient",), tmp_path=tmp_path)
    assert result.passed, result.failure
    strip = seen["strip"]
    assert (strip["width"], strip["height"]) == (320, 240)
    assert all(0 <= n < 30 for n in strip["numbers"]), strip      # frame numbers of the 30-frame loop
    assert len(set(strip["numbers"])) > 1, strip                     # ... and the picture moves
