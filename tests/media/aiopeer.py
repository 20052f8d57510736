"""A browser-like WebRTC peer for tests: aiortc on an asyncio loop in its own thread, driven from trio.

It offers audio (a 440 Hz tone, or silence once :meth:`AioPeer.mute` is called) and video (aiortc's
test frames), non-trickle like Chromium, with host candidates on 127.0.0.1 (through the same adapter
as the media worker), and counts what it receives: frames per kind and the loudest audio level.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import threading
from array import array
from typing import Any

import trio

AUDIO_RATE, SAMPLES = 48000, 960


class AioPeer:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.frames = {"audio": 0, "video": 0}
        self.levels: list[float] = []     # dBov of each received audio frame
        self.muted = False
        self.pc: Any = None
        self.tasks: list[asyncio.Future] = []

    async def _call(self, coro: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await trio.to_thread.run_sync(future.result)

    async def offer(self, *, video: bool = True, audio: bool = True) -> str:
        return await self._call(self._offer(video, audio))

    async def _offer(self, video: bool, audio: bool) -> str:
        import av
        from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection
        from aiortc.mediastreams import VideoStreamTrack

        from emulator.freeswitch.aioice_loopback import gather_only
        from emulator.freeswitch.media_worker import dbov

        gather_only("127.0.0.1")
        peer = self

        class Tone(MediaStreamTrack):
            kind = "audio"

            def __init__(self) -> None:
                super().__init__()
                self.n = 0
                self.start: float | None = None

            async def recv(self) -> av.AudioFrame:
                loop = asyncio.get_running_loop()
                self.start = self.start or loop.time()
                wait = self.start + self.n * SAMPLES / AUDIO_RATE - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                amp = 0 if peer.muted else 8000
                samples = array("h", (int(amp * math.sin(2 * math.pi * 440 * (self.n * SAMPLES + i) / AUDIO_RATE))
                                      for i in range(SAMPLES)))
                frame = av.AudioFrame(format="s16", layout="mono", samples=SAMPLES)
                frame.planes[0].update(samples.tobytes())
                frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, self.n * SAMPLES, fractions.Fraction(
                    1, AUDIO_RATE)
                self.n += 1
                return frame

        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        if audio:
            pc.addTrack(Tone())
        if video:
            pc.addTrack(VideoStreamTrack())

        @pc.on("track")
        def on_track(track: Any) -> None:
            async def consume() -> None:
                while True:
                    try:
                        frame = await track.recv()
                    except Exception:   # noqa: BLE001 - the track ended
                        return
                    self.frames[track.kind] += 1
                    if track.kind == "audio":
                        self.levels.append(dbov(frame))
            self.tasks.append(asyncio.ensure_future(consume()))

        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp

    async def answer(self, sdp: str) -> None:
        from aiortc import RTCSessionDescription

        await self._call(self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer")))

    def recent_level(self, n: int = 25) -> float:
        return max(self.levels[-n:]) if self.levels else -127.0

    async def close(self) -> None:
        if self.pc is not None:
            await self._call(self.pc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        await trio.to_thread.run_sync(self.thread.join, 5)
