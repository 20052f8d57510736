"""A real browser call against the fake FreeSWITCH: JsSIP 2.0.6 in Debian's Chromium (Playwright).

``fixtures/pages/jssip-call.html`` loads JsSIP 2.0.6's own browser bundle (npm ``jssip@2.0.6``,
``dist/jssip.js``, aliased as ``jssip2``) and calls the way cometVideoApi.js does
(video-call-flow.md 2.5-2.7): REGISTER over WSS with digest auth, Chromium's own offer from fake
camera/microphone devices, INVITE ``sip:15*101*video@127.0.0.1`` (407 challenge), and the
cometVideoApi ``sdp`` listener that puts ``b=AS`` lines into the offer and into the answer.

* :func:`test_answered_call_then_bye`: the 200's SDP answer is applied by Chromium's
  ``setRemoteDescription`` (the page records the call and its outcome: it must resolve, and the
  peer connection's remoteDescription must carry the emulator's DTLS fingerprint) -- this is the
  direct proof that the emulator's answer is one a browser accepts; JsSIP's ``accepted`` and
  ``confirmed`` fire, the caller is a member of ``15*101-FSdefaultDomain``, and hanging up sends
  BYE, ends the session and removes the member.
* :func:`test_cancel_before_the_answer`: with ``sip_answer_delay`` the page hangs up after
  ``100 Trying``: CANCEL → 200 + 487 → ACK, session ``failed`` (cause ``Canceled``), no member.

Playwright's sync API runs in one worker thread per test (the emulator stays on trio's thread and
is inspected through ``trio.from_thread``); every wait has a timeout.  The browser is Debian's
``/usr/bin/chromium`` (Playwright never downloads one); the emulator's certificate is accepted with
the context option ``ignore_https_errors`` (real-video-client.md 4.1).
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Callable

import pytest
import trio

from bench.browser.host import CHROMIUM
from emulator.config import Config
from emulator.fixtures import path as fixture_path
from emulator.stack import open_stack
from tests.compat.conftest import NODE_MODULES

pytestmark = pytest.mark.compat

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
PAGE = fixture_path("pages", "jssip-call.html")
JSSIP2 = NODE_MODULES / "jssip2" / "dist" / "jssip.js"
DEV, USER, HASH = 15, 503, "PassForUser503"
SIP_USER = f"{DEV:06d}{USER}"
NUMBER = f"{DEV}*101*video"
CONFERENCE = f"{DEV}*101-FSdefaultDomain"
WAIT_MS = 10_000         # each Playwright wait
BROWSER_DEADLINE = 45    # seconds, a whole browser scenario


# --- a tiny static server for the page and the JsSIP bundle --------------------------------------

FILES = {"/jssip-call.html": (PAGE, "text/html; charset=utf-8"),
         "/vendor/jssip-2.0.6.js": (JSSIP2, "application/javascript; charset=utf-8")}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        entry = FILES.get(self.path.split("?", 1)[0])
        if entry is None:
            self.send_error(404)
            return
        body = entry[0].read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", entry[1])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def page_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- SIP frames seen by the browser --------------------------------------------------------------


def start_line(text: str) -> str:
    return text.split("\r\n", 1)[0]


def header(text: str, name: str) -> str | None:
    m = re.search(rf"^{name}:[ \t]*(.*?)\r?$", text.split("\r\n\r\n", 1)[0], re.IGNORECASE | re.MULTILINE)
    return m.group(1) if m else None


def cseq_method(text: str) -> str:
    parts = (header(text, "CSeq") or "").split()
    return parts[1] if len(parts) > 1 else ""


def branch(text: str) -> str | None:
    via = header(text, "Via") or ""
    m = re.search(r";branch=([^;,\s]+)", via)
    return m.group(1) if m else None


class Frames:
    """Every SIP message on the page's WebSocket(s), in order: ("out"|"in", text)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def attach(self, ws) -> None:
        ws.on("framesent", lambda payload: self.items.append(("out", _text(payload))))
        ws.on("framereceived", lambda payload: self.items.append(("in", _text(payload))))

    def lines(self) -> list[str]:
        return [f"{d} {start_line(t)}" for d, t in self.items]

    def find(self, direction: str, prefix: str) -> list[str]:
        return [t for d, t in self.items if d == direction and t.startswith(prefix)]


def _text(payload) -> str:
    return payload.decode("utf-8", "replace") if isinstance(payload, (bytes, bytearray)) else payload


# --- the browser, in one worker thread -----------------------------------------------------------


def run_in_browser(base_url: str, ws_port: int, scenario: Callable) -> dict:
    """Open Chromium on the page, start the call, then run ``scenario(page, frames)``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                                    timeout=WAIT_MS)
        try:
            context = browser.new_context(ignore_https_errors=True)
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            frames = Frames()
            page.on("websocket", frames.attach)
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.goto(f"{base_url}/jssip-call.html")
            version = page.evaluate(
                "o => startCall(o)",
                {"wsUrl": f"wss://127.0.0.1:{ws_port}", "serverName": "127.0.0.1", "sipUser": SIP_USER,
                 "password": HASH, "number": NUMBER, "bandwidth": {"video": 256, "audio": 32}, "iceServers": []})
            assert version == "2.0.6"
            result = scenario(page, frames)
            return {"result": result, "frames": frames, "console": console}
        finally:
            browser.close()


def wait_event(page, kind: str, frames: Frames | None = None) -> dict:
    """The first page event of ``kind``; fails at once if the session ends (failed/ended) first."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    stop = sorted({kind, "failed", "ended"})
    problem = "timed out"
    try:
        page.wait_for_function(f"state.events.some(e => {json.dumps(stop)}.includes(e.kind))")
        event = next(e for e in page.evaluate("state.events") if e["kind"] in stop)
        if event["kind"] == kind:
            return event
        problem = f"the session ended first ({event})"
    except PlaywrightTimeout:
        pass
    snap = page.evaluate("snapshot()")
    srd = [(x["type"], x["result"], x.get("error")) for x in snap["srd"]]
    raise AssertionError(f"{problem} waiting for the page event {kind!r}; events: {snap['events']}; "
                         f"setRemoteDescription: {srd}; errors: {snap['errors']}; "
                         f"frames: {frames.lines() if frames else '?'}")


def wait_frame(page, frames: Frames, predicate, what: str, timeout: float = WAIT_MS / 1000) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d, t in frames.items:
            if predicate(d, t):
                return t
        page.wait_for_timeout(20)  # lets Playwright deliver the frame events
    raise AssertionError(f"timed out waiting for {what}; frames: {frames.lines()}")


def members(stack) -> list[tuple[int, str, str]]:
    """(id, caller_id_name, caller_id_number) of the room's members, read on trio's thread."""
    return trio.from_thread.run_sync(lambda: [(m.id, m.channel.caller_id_name, m.channel.caller_id_number)
                                              for m in stack.bridge.members(CONFERENCE)])


async def browse(stack, base_url: str, scenario: Callable) -> dict:
    """:func:`run_in_browser` in a worker thread.  Every Playwright wait has its own timeout; the
    outer deadline only stops a hung driver from hanging the suite."""
    with trio.fail_after(BROWSER_DEADLINE):
        return await trio.to_thread.run_sync(run_in_browser, base_url, stack.ports["sip_ws"], scenario,
                                             abandon_on_cancel=True)


def fingerprint_line(fp: str) -> str:
    return f"a=fingerprint:sha-256 {fp}"


# --- tests ----------------------------------------------------------------------------------------


async def test_answered_call_then_bye(browser_tools, page_server):
    cfg = Config()
    cfg.free_ports()
    async with open_stack(cfg) as stack:
        stack.hub.set_hash(DEV, USER, HASH)

        def scenario(page, frames: Frames) -> dict:
            accepted = wait_event(page, "accepted", frames)
            wait_event(page, "confirmed", frames)
            in_call = page.evaluate("snapshot()")
            in_call["members"] = members(stack)
            page.evaluate("hangup()")
            ended = wait_event(page, "ended", frames)
            wait_frame(page, frames, lambda d, t: d == "in" and t.startswith("SIP/2.0 200")
                       and "BYE" in (header(t, "CSeq") or ""), "the 200 to BYE")
            return {"accepted": accepted, "in_call": in_call, "ended": ended,
                    "after": page.evaluate("snapshot()")}

        out = await browse(stack, page_server, scenario)
        r, frames = out["result"], out["frames"]
        in_call = r["in_call"]

        # SIP: register (401), INVITE (407, ACK), INVITE with credentials, 100, 200, ACK; BYE, 200
        flow = frames.lines()
        expected = ["out REGISTER sip:127.0.0.1 SIP/2.0", "in SIP/2.0 401 Unauthorized",
                    "out REGISTER sip:127.0.0.1 SIP/2.0", "in SIP/2.0 200 OK",
                    f"out INVITE sip:{NUMBER}@127.0.0.1 SIP/2.0", "in SIP/2.0 407 Proxy Authentication Required",
                    f"out ACK sip:{NUMBER}@127.0.0.1 SIP/2.0",
                    f"out INVITE sip:{NUMBER}@127.0.0.1 SIP/2.0", "in SIP/2.0 100 Trying", "in SIP/2.0 200 OK"]
        assert flow[:len(expected)] == expected, flow
        # the ACK and the BYE go to the 200's Contact, on the same socket; the BYE gets its 200
        answer_200 = [t for d, t in frames.items if d == "in" and t.startswith("SIP/2.0 200")
                      and "INVITE" in (header(t, "CSeq") or "")][0]
        contact = re.fullmatch(r"<([^>]+)>", header(answer_200, "Contact") or "").group(1)
        assert flow[len(expected):] == [f"out ACK {contact} SIP/2.0", f"out BYE {contact} SIP/2.0",
                                        "in SIP/2.0 200 OK"], flow
        invite = frames.find("out", "INVITE ")[-1]
        assert header(invite, "Proxy-Authorization")
        offer = invite.split("\r\n\r\n", 1)[1]
        assert "UDP/TLS/RTP/SAVPF" in offer and "a=fingerprint:sha-256" in offer  # Chromium's own offer
        assert re.search(r"m=video [^\r\n]*\r\nb=AS:256\r\n", offer)
        assert header(answer_200, "Content-Type") == "application/sdp"
        emulator_fp = fingerprint_line(stack.certificates.media_fingerprint)
        assert emulator_fp in answer_200

        # the browser applied the answer: setRemoteDescription resolved, remoteDescription is set
        assert r["accepted"]["status"] == 200
        srd = in_call["srd"]
        assert [(s["type"], s["form"], s["result"]) for s in srd] == [("answer", "callback", "ok")], srd
        assert emulator_fp in srd[0]["sdp"]
        pc = in_call["pc"]
        assert pc["signalingState"] == "stable"
        assert pc["remoteDescription"]["type"] == "answer"
        assert emulator_fp in pc["remoteDescription"]["sdp"]
        assert "b=AS:256" in pc["remoteDescription"]["sdp"]  # the answer went through the sdp listener
        kinds = [e["kind"] for e in in_call["events"]]
        assert kinds.index("registered") < kinds.index("accepted") < kinds.index("confirmed")
        assert "addstream" in kinds  # Chromium fired onaddstream for the remote stream

        # the emulator: one member while in the call, none after the BYE
        assert len(in_call["members"]) == 1
        assert in_call["members"][0][1:] == (SIP_USER, SIP_USER)
        assert r["ended"]["originator"] == "local" and r["ended"]["cause"] == "Terminated"
        assert stack.bridge.members(CONFERENCE) == []
        assert not stack.sip.dialogs
        assert r["after"]["errors"] == [], r["after"]["errors"]
        assert not any(line.startswith(("pageerror", "error")) for line in out["console"]), out["console"]


async def test_cancel_before_the_answer(browser_tools, page_server):
    cfg = Config(sip_answer_delay=5.0)
    cfg.free_ports()
    async with open_stack(cfg) as stack:
        stack.hub.set_hash(DEV, USER, HASH)

        def scenario(page, frames: Frames) -> dict:
            wait_frame(page, frames, lambda d, t: d == "in" and t.startswith("SIP/2.0 100"), "100 Trying")
            page.evaluate("hangup()")
            failed = wait_event(page, "failed", frames)
            wait_frame(page, frames, lambda d, t: d == "in" and t.startswith("SIP/2.0 487"), "487")
            wait_frame(page, frames, lambda d, t: d == "out" and t.startswith("ACK ")
                       and cseq_method(t) == "ACK" and branch(t) == branch(frames.find("out", "CANCEL ")[0]),
                       "the ACK of the 487")
            return {"failed": failed, "members": members(stack), "snapshot": page.evaluate("snapshot()")}

        out = await browse(stack, page_server, scenario)
        r, frames = out["result"], out["frames"]
        assert r["failed"]["cause"] == "Canceled" and r["failed"]["originator"] == "local"

        invite = frames.find("out", "INVITE ")[-1]
        cancel = frames.find("out", "CANCEL ")
        assert len(cancel) == 1
        assert start_line(cancel[0]) == f"CANCEL sip:{NUMBER}@127.0.0.1 SIP/2.0"
        assert branch(cancel[0]) == branch(invite)
        assert (header(cancel[0], "CSeq") or "").split()[0] == (header(invite, "CSeq") or "").split()[0]
        responses = [start_line(t) + " / " + (header(t, "CSeq") or "") for d, t in frames.items if d == "in"]
        cseq_no = (header(invite, "CSeq") or "").split()[0]
        assert f"SIP/2.0 200 OK / {cseq_no} CANCEL" in responses, responses
        assert f"SIP/2.0 487 Request Terminated / {cseq_no} INVITE" in responses, responses
        assert not any(t.startswith("SIP/2.0 200") and "INVITE" in (header(t, "CSeq") or "")
                       for d, t in frames.items if d == "in")

        assert r["members"] == []
        assert not stack.sip.pending and not stack.sip.dialogs  # the delayed answer can no longer happen
        assert stack.sip.stats["answered"] == 0
        assert stack.bridge.members(CONFERENCE) == []
        assert r["snapshot"]["srd"] == []  # no answer was ever applied
        assert r["snapshot"]["errors"] == []
        assert not any(line.startswith(("pageerror", "error")) for line in out["console"]), out["console"]

