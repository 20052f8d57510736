"""Benchmark: real media (``media = "real"``) -- the media worker and real Chromium pages on this machine.

Prints:

* **capacity** -- for each N of ``--calls``: N two-page calls at once (2N pages of one headless
  Chromium, one context each, Chromium's fake camera or the bench's 320x240 clip, the flags the
  browser actors use with real media).  Each page offers audio and video, the media worker answers it
  (the worker process the stack runs, driven here over its JSON-lines pipe) and each page receives
  its partner's video and audio, re-encoded by the worker, as in a two-member conference.  After a
  warm-up, for ``--hold`` seconds: the frames each page decodes per second (the lowest page), the
  freezes (Chromium's ``freezeCount``) over all pages, the worker's CPU per call (its /proc CPU
  seconds over the hold, divided by N), Chromium's CPU per page, and the load average.  "Sustained"
  = every page decodes >= 15 fps and no page froze;
* **L12-L14** -- per page, from ``setRemoteDescription(answer)`` (the browser applying the 200 OK):
  ICE connected, DTLS connected (``connectionState``) and the first decoded remote frame
  (``requestVideoFrameCallback``): percentiles over every page of the run, next to the media model's
  prediction for the loopback link (emulator/freeswitch/media.py: its ICE and DTLS terms and its
  ``media_start_delay`` at quality sd).  The gap is what calibrating the model against real
  browsers would change.
* **floor clip** -- one page alone per call (it receives the pre-encoded floor clip, nothing is
  encoded per call): the worker's CPU per call in that case.

Run: ``.venv/bin/python tests/perf/bench_real_media.py [--calls 1,2,4] [--hold 20] [--camera clip|chromium]``
(``make bench-media ARGS=...``).  One Chromium at a time; it is closed (its process group reaped)
before the script ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.browser import procs  # noqa: E402
from bench.browser.media import fake_media  # noqa: E402
from emulator.freeswitch.media import QUALITY_PRESETS, link_presets, media_path_terms, media_start_delay  # noqa: E402

PAGE = """<!doctype html><html><body><video id=v autoplay playsinline muted></video><script>
var pc, t = {}, srdAt = 0;
async function offer() {
  var stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
  pc = new RTCPeerConnection({iceServers: []});
  stream.getTracks().forEach(function (tr) { pc.addTrack(tr, stream); });
  pc.oniceconnectionstatechange = function () {
    if (!t.ice && (pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed'))
      t.ice = performance.now() - srdAt; };
  pc.onconnectionstatechange = function () {
    if (!t.dtls && pc.connectionState === 'connected') t.dtls = performance.now() - srdAt; };
  pc.ontrack = function (e) {
    if (e.track.kind !== 'video') return;
    var v = document.getElementById('v'); v.srcObject = new MediaStream([e.track]);
    v.requestVideoFrameCallback(function () { t.frame = performance.now() - srdAt; });
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(function (ok) {
    if (pc.iceGatheringState === 'complete') return ok();
    pc.onicegatheringstatechange = function () { if (pc.iceGatheringState === 'complete') ok(); };
  });
  return pc.localDescription.sdp;
}
async function answer(sdp) { srdAt = performance.now(); await pc.setRemoteDescription({type: 'answer', sdp: sdp}); }
async function stats() {
  var out = {frames: 0, freezes: 0, energy: 0};
  (await pc.getStats()).forEach(function (s) {
    if (s.type !== 'inbound-rtp') return;
    if (s.kind === 'video') {
      out.frames = s.framesDecoded || 0; out.freezes = s.freezeCount || 0; out.width = s.frameWidth;
    }
    else out.energy = s.totalAudioEnergy || 0;
  });
  out.t = t; return out;
}
</script></body></html>"""


class Worker:
    """The media worker process, spoken to over its pipe (the protocol of emulator/freeswitch/media_worker.py)."""

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "emulator.freeswitch.media_worker", "--host", "127.0.0.1", cwd=str(ROOT),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        self.n = 0
        self.waiting: dict[int, asyncio.Future] = {}
        self.reader = asyncio.ensure_future(self._read())
        await self.request("hello")

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            msg = json.loads(line)
            if "id" in msg and msg["id"] in self.waiting:
                self.waiting.pop(msg["id"]).set_result(msg)

    async def request(self, op: str, **fields: object) -> dict:
        self.n += 1
        future = asyncio.get_running_loop().create_future()
        self.waiting[self.n] = future
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"id": self.n, "op": op, **fields}) + "\n").encode())
        reply = await asyncio.wait_for(future, 30)
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error"))
        return reply

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        await self.proc.wait()
        self.reader.cancel()


def group_cpu(groups: set[int]) -> float:
    total = 0.0
    for p in procs.processes().values():
        if p.pgid in groups:
            try:
                fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except OSError:
                continue
    return total


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run_round(browser, worker: Worker, groups: set[int], calls: int, hold: float, alone: bool,
                    timings: dict[str, list[float]]) -> dict:
    pages, contexts = [], []
    n_pages = calls if alone else 2 * calls
    for _ in range(n_pages):
        context = await browser.new_context()
        await context.route("http://localhost/**", lambda route: route.fulfill(body=PAGE, content_type="text/html"))
        page = await context.new_page()
        await page.goto("http://localhost/media.html")
        contexts.append(context)
        pages.append(page)
    offers = await asyncio.gather(*(p.evaluate("offer()") for p in pages))
    keys = [f"k{random.getrandbits(32)}-{i}" for i in range(n_pages)]
    answers = await asyncio.gather(*(worker.request("answer", call=k, sdp=o) for k, o in zip(keys, offers)))
    if not alone:
        for i in range(0, n_pages, 2):
            a, b = keys[i], keys[i + 1]
            await worker.request("route", call=a, video=b, audio=b)
            await worker.request("route", call=b, video=a, audio=a)
    await asyncio.gather(*(p.evaluate("sdp => answer(sdp)", r["sdp"]) for p, r in zip(pages, answers)))
    await asyncio.sleep(4)    # warm-up: connections up, first key frames, encoders at their rate
    first = await asyncio.gather(*(p.evaluate("stats()") for p in pages))
    w0, c0, t0 = worker.cpu(), group_cpu(groups), time.monotonic()
    await asyncio.sleep(hold)
    last = await asyncio.gather(*(p.evaluate("stats()") for p in pages))
    w1, c1, t1 = worker.cpu(), group_cpu(groups), time.monotonic()
    span = t1 - t0
    fps = [(b["frames"] - a["frames"]) / span for a, b in zip(first, last)]
    freezes = sum(b["freezes"] - a["freezes"] for a, b in zip(first, last))
    for s in last:
        for k in ("ice", "dtls", "frame"):
            if k in s["t"]:
                timings[k].append(s["t"][k])
    for k in keys:
        await worker.request("hangup", call=k)
    for context in contexts:
        await context.close()
    return {"calls": calls, "pages": n_pages, "min_fps": min(fps), "mean_fps": statistics.mean(fps),
            "freezes": freezes, "worker_cpu_per_call": (w1 - w0) / span / calls,
            "chromium_cpu_per_page": (c1 - c0) / span / n_pages, "load": load(),
            "widths": sorted({s.get("width") for s in last})}


async def main(args: argparse.Namespace) -> None:
    from playwright.async_api import async_playwright

    media = fake_media()
    flags = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             "--allow-loopback-in-peer-connection"]
    if args.camera == "clip":
        flags += [f"--use-file-for-fake-video-capture={media.camera}",
                  f"--use-file-for-fake-audio-capture={media.microphone}"]
    worker = Worker()
    await worker.start()
    timings: dict[str, list[float]] = {"ice": [], "dtls": [], "frame": []}
    before = procs.chromium_groups()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=flags)
        groups = procs.chromium_groups() - before
        try:
            print(f"camera: {args.camera}; hold {args.hold:g} s; load average at start {load()}")
            print("calls pages  min_fps mean_fps freezes worker_cpu/call chromium_cpu/page sustained  load")
            for n in [int(x) for x in args.calls.split(",")]:
                r = await run_round(browser, worker, groups, n, args.hold, False, timings)
                ok = r["min_fps"] >= 15 and r["freezes"] == 0
                print(f"{r['calls']:>5} {r['pages']:>5} {r['min_fps']:>8.1f} {r['mean_fps']:>8.1f} "
                      f"{r['freezes']:>7} "
                      f"{100 * r['worker_cpu_per_call']:>14.1f}% {100 * r['chromium_cpu_per_page']:>16.1f}% "
                      f"{'yes' if ok else 'NO':>9}  {r['load']}")
            r = await run_round(browser, worker, groups, 2, args.hold, True, {"ice": [], "dtls": [], "frame": []})
            print(f"floor clip only (2 lone pages): worker CPU per call {100 * r['worker_cpu_per_call']:.1f}% "
                  f"of a core, "
                  f"min fps {r['min_fps']:.1f}, widths {r['widths']}, load {r['load']}")
        finally:
            await browser.close()
            for group in groups:
                procs.reap_group(group)
    await worker.stop()
    print()
    print(f"L12-L14 measured, ms after setRemoteDescription(answer), {len(timings['frame'])} pages:")
    for name, label in (("ice", "ICE connected"), ("dtls", "DTLS connected"), ("frame", "first remote frame")):
        v = timings[name]
        if v:
            print(f"  {label:<20} p50 {pct(v, 50):7.1f}  p90 {pct(v, 90):7.1f}  max {max(v):7.1f}")
    link = link_presets()["loopback"]
    terms = media_path_terms(link, QUALITY_PRESETS["sd"])
    delays = [media_start_delay(link, QUALITY_PRESETS["sd"], random.Random(seed)) * 1000 for seed in range(200)]
    print("the media model for the loopback link (quality sd):")
    print(f"  ICE term {terms['ice'] * 1000:.1f} ms, DTLS term {terms['dtls'] * 1000:.1f} ms, "
          f"media_start_delay p50 {pct(delays, 50):.1f} ms, p90 {pct(delays, 90):.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="1,2,4", help="numbers of concurrent two-page calls (default 1,2,4)")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds measured per size (default 20)")
    parser.add_argument("--camera", choices=("clip", "chromium"), default="clip",
                        help="clip: the bench's 320x240 15 fps camera (default); chromium: Chromium's own 640x480 one")
    asyncio.run(main(parser.parse_args()))
