"""The media worker: a separate process that runs the fake FreeSWITCH's real media endpoint (aiortc).

``python -m emulator.freeswitch.media_worker --host 127.0.0.1`` is started by the stack when
``media = "real"`` (emulator/freeswitch/real_media.py owns it).  It runs asyncio, aiortc and PyAV;
the emulator's trio process never imports them.  A process rather than a thread keeps aiortc's CPU
(VP8 encoding, SRTP) and the GIL away from the trio loop whose timings the bench reports, and a
crash of the endpoint cannot take the emulator with it.

Protocol: JSON, one object per line.  stdin carries requests ``{"id": n, "op": ..., ...}``; stdout
carries their replies ``{"id": n, "ok": true, ...}`` / ``{"id": n, "ok": false, "error": "..."}``
and unsolicited events ``{"ev": ..., "call": key, "t": <worker monotonic s>, ...}``.  Nothing else
may write to stdout: the real stdout is kept for the protocol and ``sys.stdout`` points at stderr.

Requests:

* ``hello`` -- versions and pid (the start-up health check); ``ping`` -- the periodic one (number
  of calls);
* ``answer`` ``{call, sdp}`` -- a new peer connection answers this offer (the caller has already
  narrowed it to what FreeSWITCH accepts: one codec per m-line); reply ``{sdp}``, aiortc's answer;
* ``route`` ``{call, video, audio}`` -- which call's video and audio this call receives (``null``:
  the floor clip / silence).  The emulator decides (mod_conference's passthrough: the floor holder);
* ``hangup`` ``{call}``; ``stats`` -- per-call counters and the worker's CPU time.

Events: ``ice_connected``, ``dtls_connected``, ``first_rtp_in`` (``kind``: the first frame the
receiver delivers), ``first_rtp_out`` (``kind``: the first frame handed to the sender, after DTLS),
``level`` (``dbov``: the loudest received audio of the last 200 ms), ``failed`` (``reason``: ICE
or DTLS failed, the connection closed) and ``closed``.

Video out: the routed call's decoded video re-encoded (VP8; the first frame after a switch is a key
frame), or, while there is none, the floor clip: a VP8 test pattern made here with PyAV (lavfi's
``testsrc2``; two seconds at 640x480, 30 fps, one key frame per loop) at first use, sent as
pre-encoded packets (nothing to encode per call).  Audio out: the routed call's decoded audio, or
silence; it is not a mix (with two members, the peer is the whole mix).
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import math
import os
import sys
import time
from array import array
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from emulator.freeswitch.aioice_loopback import gather_only

VIDEO_RATE = 90000
FPS = 30
AUDIO_RATE = 48000
AUDIO_SAMPLES = 960        # 20 ms
LEVEL_INTERVAL = 0.2       # s between level events
SILENCE_DBOV = -127.0
CLIP_SECONDS = 2
CLIP_SIZE = (640, 480)

_clip: list[bytes] | None = None


def floor_clip() -> list[bytes]:
    """The pre-encoded VP8 floor clip (made once per process, at first use)."""
    global _clip
    if _clip is None:
        _clip = make_clip()
    return _clip


def _pattern_frames(n: int, width: int, height: int) -> list[av.VideoFrame]:
    try:
        source = av.open(f"testsrc2=size={width}x{height}:rate={FPS}", format="lavfi")
    except (av.FFmpegError, ValueError):   # a PyAV build without lavfi: moving bars instead
        frames = []
        for i in range(n):
            frame = av.VideoFrame(width, height, "yuv420p")
            row = bytes(((x + 8 * i) // 40 % 8) * 32 for x in range(frame.planes[0].line_size))
            frame.planes[0].update(row * height)
            frame.planes[1].update(bytes([(i * 4) & 255]) * frame.planes[1].buffer_size)
            frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
            frames.append(frame)
        return frames
    with source:
        frames = []
        for frame in source.decode(video=0):
            frames.append(frame.reformat(format="yuv420p"))
            if len(frames) == n:
                break
        return frames


def make_clip(seconds: int = CLIP_SECONDS, size: tuple[int, int] = CLIP_SIZE) -> list[bytes]:
    """A looping VP8 test pattern: ``seconds * 30`` encoded frames, the first a key frame, no other."""
    width, height = size
    n = seconds * FPS
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.bit_rate = 600_000
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.gop_size = n + 1
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    packets: list[bytes] = []
    for i, frame in enumerate(_pattern_frames(n, width, height)):
        frame.pts, frame.time_base, frame.pict_type = i, encoder.time_base, av.video.frame.PictureType.NONE
        packets += [bytes(p) for p in encoder.encode(frame)]
    packets += [bytes(p) for p in encoder.encode(None)]
    return packets


def dbov(frame: av.AudioFrame) -> float:
    """The frame's RMS level in dBov (s16 samples)."""
    samples = array("h", bytes(frame.planes[0])[: frame.samples * len(frame.layout.channels) * 2])
    if not samples:
        return SILENCE_DBOV
    rms = math.sqrt(sum(s * s for s in samples[::4]) / len(samples[::4]))
    return SILENCE_DBOV if rms < 1 else max(SILENCE_DBOV, 20 * math.log10(rms / 32768))


class Worker:
    def __init__(self, out: Any, host: str) -> None:
        self.out = out
        self.host = host
        self.calls: dict[str, Call] = {}

    def send(self, message: dict) -> None:
        self.out.write(json.dumps(message, separators=(",", ":")) + "\n")
        self.out.flush()

    def event(self, ev: str, call: str, **fields: Any) -> None:
        self.send({"ev": ev, "call": call, "t": time.monotonic(), **fields})

    async def handle(self, request: dict) -> dict:
        op = request.get("op")
        if op == "hello":
            import aioice
            import aiortc

            floor_clip()   # made before the worker says it is up: no call waits for it

            return {"pid": os.getpid(), "aiortc": aiortc.__version__, "aioice": aioice.__version__,
                    "av": av.__version__}
        if op == "ping":
            return {"calls": len(self.calls)}
        if op == "stats":
            cpu = os.times()
            return {"cpu_s": cpu.user + cpu.system, "calls": {k: c.stats() for k, c in self.calls.items()}}
        key = str(request.get("call", ""))
        if op == "answer":
            if key in self.calls:
                raise ValueError(f"call {key} exists")
            call = Call(self, key)
            self.calls[key] = call
            try:
                return {"sdp": await call.answer(str(request["sdp"]))}
            except Exception:
                await self.hangup(key)
                raise
        if op == "route":
            routed = self.calls.get(key)
            if routed is None:
                raise KeyError(f"no call {key}")
            routed.route(request.get("video"), request.get("audio"))
            return {}
        if op == "hangup":
            await self.hangup(key)
            return {}
        raise ValueError(f"unknown op {op!r}")

    async def hangup(self, key: str) -> None:
        call = self.calls.pop(key, None)
        if call is not None:
            await call.close()
            for other in self.calls.values():   # whoever watched it falls back to the clip / silence
                other.route(None if other.video_from == key else other.video_from,
                            None if other.audio_from == key else other.audio_from)


class Call:
    """One member's peer connection and what it receives."""

    def __init__(self, worker: Worker, key: str) -> None:
        self.worker, self.key = worker, key
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.video_from: str | None = None
        self.audio_from: str | None = None
        self.latest_video: av.VideoFrame | None = None
        self.video_seq = 0
        self.audio_queues: list[asyncio.Queue[av.AudioFrame]] = []
        self.frames_in = {"audio": 0, "video": 0}
        self.frames_out = {"audio": 0, "video": 0}
        self.tasks: list[asyncio.Task[None]] = []
        self.sent: set[str] = set()
        self.closed = False
        self.level = SILENCE_DBOV

    def stats(self) -> dict:
        return {"in": dict(self.frames_in), "out": dict(self.frames_out), "video_from": self.video_from,
                "audio_from": self.audio_from, "ice": self.pc.iceConnectionState,
                "state": self.pc.connectionState}

    def once(self, ev: str, **fields: Any) -> None:
        name = ev + str(fields.get("kind", ""))
        if name not in self.sent:
            self.sent.add(name)
            self.worker.event(ev, self.key, **fields)

    async def answer(self, offer: str) -> str:
        pc = self.pc

        @pc.on("iceconnectionstatechange")
        def on_ice() -> None:
            if pc.iceConnectionState in ("connected", "completed"):
                self.once("ice_connected")
            elif pc.iceConnectionState == "failed":
                self.once("failed", reason="ICE failed")

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                self.once("dtls_connected")
            elif pc.connectionState == "failed":
                self.once("failed", reason="DTLS failed" if pc.iceConnectionState == "completed" else "ICE failed")
            elif pc.connectionState == "closed" and not self.closed:
                self.once("failed", reason="connection closed")

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.tasks.append(asyncio.ensure_future(self._consume(track)))

        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        for transceiver in pc.getTransceivers():   # addTrack takes over the offer's transceiver: sendrecv
            if transceiver.kind == "video":
                pc.addTrack(RoutedVideo(self))
            elif transceiver.kind == "audio":
                pc.addTrack(RoutedAudio(self))
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return pc.localDescription.sdp

    def route(self, video: str | None, audio: str | None) -> None:
        calls = self.worker.calls
        self.video_from = video if video in calls else None
        new_audio = audio if audio in calls else None
        if new_audio != self.audio_from:
            source_call = calls.get(self.audio_from) if self.audio_from is not None else None
            if source_call is not None:
                source = source_call
                source.audio_queues = [q for q in source.audio_queues if q is not getattr(self, "_audio_q", None)]
            self.audio_from = new_audio
            self._audio_q: asyncio.Queue[av.AudioFrame] = asyncio.Queue(maxsize=10)
            if new_audio is not None:
                calls[new_audio].audio_queues.append(self._audio_q)

    async def _consume(self, track: MediaStreamTrack) -> None:
        kind = track.kind
        loop = asyncio.get_running_loop()
        next_level, loudest = loop.time() + LEVEL_INTERVAL, SILENCE_DBOV
        try:
            while True:
                frame: Any = await track.recv()   # av.VideoFrame or av.AudioFrame, by the track's kind
                self.frames_in[kind] += 1
                if self.frames_in[kind] == 1:
                    self.once("first_rtp_in", kind=kind)
                if kind == "video":
                    self.latest_video = frame
                    self.video_seq += 1
                    continue
                loudest = max(loudest, dbov(frame))
                if loop.time() >= next_level:
                    self.level = loudest
                    self.worker.event("level", self.key, dbov=round(loudest, 1))
                    next_level, loudest = loop.time() + LEVEL_INTERVAL, SILENCE_DBOV
                for queue in self.audio_queues:
                    if queue.full():
                        queue.get_nowait()
                    queue.put_nowait(frame)
        except MediaStreamError:
            return

    async def close(self) -> None:
        self.closed = True
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


class RoutedVideo(MediaStreamTrack):
    """What a member sees: the routed call's video re-encoded, else the floor clip (pre-encoded)."""

    kind = "video"

    def __init__(self, call: Call) -> None:
        super().__init__()
        self.call = call
        self.start: float | None = None
        self.n = 0
        self.clip_index = 0
        self.showing: str | None = "clip"
        self.time_base = fractions.Fraction(1, VIDEO_RATE)

    async def recv(self) -> av.VideoFrame | av.Packet:
        loop = asyncio.get_running_loop()
        if self.start is None:
            self.start = loop.time()
        due = self.start + self.n / FPS
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        pts = int(self.n * VIDEO_RATE / FPS)
        self.n += 1
        call = self.call
        source = call.worker.calls.get(call.video_from) if call.video_from else None
        frame = source.latest_video if source is not None else None
        out: av.VideoFrame | av.Packet
        if frame is not None:
            out = frame.reformat(format="yuv420p")
            out.pict_type = av.video.frame.PictureType.I if self.showing != call.video_from \
                else av.video.frame.PictureType.NONE
            self.showing = call.video_from
        else:
            if self.showing != "clip":
                self.showing, self.clip_index = "clip", 0   # restart at the clip's key frame
            clip = floor_clip()
            out = av.Packet(clip[self.clip_index])
            self.clip_index = (self.clip_index + 1) % len(clip)
        out.pts, out.time_base = pts, self.time_base
        call.frames_out["video"] += 1
        call.once("first_rtp_out", kind="video")
        return out


class RoutedAudio(MediaStreamTrack):
    """What a member hears: the routed call's audio, else silence (20 ms frames, 48 kHz stereo)."""

    kind = "audio"

    def __init__(self, call: Call) -> None:
        super().__init__()
        self.call = call
        self.start: float | None = None
        self.n = 0
        self.time_base = fractions.Fraction(1, AUDIO_RATE)
        self.silence = bytes(AUDIO_SAMPLES * 2 * 2)

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        if self.start is None:
            self.start = loop.time()
        due = self.start + self.n * AUDIO_SAMPLES / AUDIO_RATE
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        queue = getattr(self.call, "_audio_q", None)
        frame: av.AudioFrame | None = None
        if self.call.audio_from is not None and queue is not None and not queue.empty():
            frame = queue.get_nowait()
        if frame is None:
            frame = av.AudioFrame(format="s16", layout="stereo", samples=AUDIO_SAMPLES)
            frame.planes[0].update(self.silence)
            frame.sample_rate = AUDIO_RATE
        frame.pts, frame.time_base = self.n * AUDIO_SAMPLES, self.time_base
        self.n += 1
        self.call.frames_out["audio"] += 1
        self.call.once("first_rtp_out", kind="audio")
        return frame


async def serve(host: str) -> None:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)          # anything a library prints goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    gather_only(host)
    worker = Worker(out, host)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def run(request: dict) -> None:
        rid = request.get("id")
        try:
            reply = {"id": rid, "ok": True, **await worker.handle(request)}
        except Exception as exc:   # noqa: BLE001 - any failure of one request is that request's answer
            reply = {"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        worker.send(reply)

    pending: set[asyncio.Task[None]] = set()
    while True:
        line = await reader.readline()
        if not line:
            break       # the emulator closed our stdin: stop
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            worker.send({"id": None, "ok": False, "error": f"bad request: {exc}"})
            continue
        task = asyncio.ensure_future(run(request))
        pending.add(task)
        task.add_done_callback(pending.discard)
    for key in list(worker.calls):
        await worker.hangup(key)


def main() -> None:
    parser = argparse.ArgumentParser(description="cometbench's media worker (JSON lines on stdin/stdout)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to gather ICE candidates on")
    args = parser.parse_args()
    asyncio.run(serve(args.host))


if __name__ == "__main__":
    main()
