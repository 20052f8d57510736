"""The fake camera and microphone of a browser actor: a Y4M video and a WAV file made here.

Chromium's fake capture devices (``--use-fake-device-for-media-stream``) play a file in a loop
when given ``--use-file-for-fake-video-capture=<file.y4m>`` and
``--use-file-for-fake-audio-capture=<file.wav>``.  The bench generates both on first use -- never
downloads them -- with a pattern a reader (or a frame analyser) can recognise:

* **video** (:func:`write_y4m`): 320x240, 15 frames per second, 30 frames (a 2 s loop), 4:2:0.
  Eight vertical colour bars; across the top a 16-cell strip that spells the frame number in
  binary (white = 1, black = 0, most significant bit first); a white square that moves one step
  to the right per frame along the bottom.  Frame ``i`` can be told from frame ``j`` by its top strip;
  :func:`frame_number` reads it back from the luma plane.
* **audio** (:func:`write_wav`): 48 kHz, mono, 16-bit, 2 s: a 1 kHz beep in the first 100 ms of
  each second, silence otherwise.

:func:`fake_media` returns the two paths, making them when missing.  They live in a cache folder
(``$COMETBENCH_CACHE``, else ``$XDG_CACHE_HOME/cometbench``, else ``~/.cache/cometbench``) under a
name that carries the generator's version, and are written to a temporary name and renamed, so
concurrent runs never see half a file.  Small files on purpose: Chromium decodes the whole loop and
a 2-core machine runs several browsers.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FakeMedia", "fake_media", "cache_dir", "write_y4m", "write_wav", "frame_number", "read_y4m_frames",
           "WIDTH", "HEIGHT", "FPS", "FRAMES"]

GENERATOR_VERSION = 1
WIDTH, HEIGHT, FPS, FRAMES = 320, 240, 15, 30
SAMPLE_RATE, SECONDS, BEEP_HZ, BEEP_MS = 48_000, 2, 1000, 100
STRIP_CELLS, STRIP_HEIGHT = 16, 16
# BT.601 (Y, U, V) of eight bars: white, yellow, cyan, green, magenta, red, blue, black
BARS = [(235, 128, 128), (210, 16, 146), (170, 166, 16), (145, 54, 34),
        (106, 202, 222), (81, 90, 240), (41, 240, 110), (16, 128, 128)]
SQUARE = 16


@dataclass(frozen=True)
class FakeMedia:
    camera: Path
    microphone: Path


def cache_dir() -> Path:
    explicit = os.environ.get("COMETBENCH_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cometbench"


def _frame_planes(index: int) -> tuple[bytes, bytes, bytes]:
    """One frame's Y, U and V planes."""
    bar_w = WIDTH // len(BARS)
    y_row = b"".join(bytes([y]) * bar_w for y, _, _ in BARS)
    u_row = b"".join(bytes([u]) * (bar_w // 2) for _, u, _ in BARS)
    v_row = b"".join(bytes([v]) * (bar_w // 2) for _, _, v in BARS)
    y = bytearray(y_row * HEIGHT)
    u = bytearray(u_row * (HEIGHT // 2))
    v = bytearray(v_row * (HEIGHT // 2))
    cell = WIDTH // STRIP_CELLS
    for bit in range(STRIP_CELLS):                    # the frame number, most significant bit first
        on = (index >> (STRIP_CELLS - 1 - bit)) & 1
        value = 235 if on else 16
        for row in range(STRIP_HEIGHT):
            start = row * WIDTH + bit * cell
            y[start:start + cell] = bytes([value]) * cell
        for row in range(STRIP_HEIGHT // 2):
            start = row * (WIDTH // 2) + bit * cell // 2
            u[start:start + cell // 2] = b"\x80" * (cell // 2)
            v[start:start + cell // 2] = b"\x80" * (cell // 2)
    x0 = (index * (WIDTH - SQUARE)) // max(1, FRAMES - 1)   # the moving square
    for row in range(HEIGHT - 2 * SQUARE, HEIGHT - SQUARE):
        y[row * WIDTH + x0:row * WIDTH + x0 + SQUARE] = b"\xeb" * SQUARE
    return bytes(y), bytes(u), bytes(v)


def write_y4m(path: Path, frames: int = FRAMES) -> None:
    header = f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode()
    with open(path, "wb") as out:
        out.write(header)
        for i in range(frames):
            out.write(b"FRAME\n")
            for plane in _frame_planes(i):
                out.write(plane)


def read_y4m_frames(path: Path) -> list[bytes]:
    """The luma planes of a Y4M file written by :func:`write_y4m` (for checks)."""
    data = Path(path).read_bytes()
    header, _, rest = data.partition(b"\n")
    fields = {f[:1]: f[1:] for f in header.split()[1:]}
    width, height = int(fields[b"W"]), int(fields[b"H"])
    frame_size = width * height * 3 // 2
    frames = []
    while rest.startswith(b"FRAME"):
        _, _, rest = rest.partition(b"\n")
        frames.append(rest[:width * height])
        rest = rest[frame_size:]
    return frames


def frame_number(luma: bytes, width: int = WIDTH) -> int:
    """Read the frame number back from the top strip of a luma plane."""
    cell = width // STRIP_CELLS
    number = 0
    for bit in range(STRIP_CELLS):
        sample = luma[(STRIP_HEIGHT // 2) * width + bit * cell + cell // 2]
        number = (number << 1) | (1 if sample > 128 else 0)
    return number


def write_wav(path: Path) -> None:
    total = SAMPLE_RATE * SECONDS
    beep = SAMPLE_RATE * BEEP_MS // 1000
    samples = bytearray()
    for i in range(total):
        in_beep = (i % SAMPLE_RATE) < beep
        value = int(12000 * math.sin(2 * math.pi * BEEP_HZ * i / SAMPLE_RATE)) if in_beep else 0
        samples += struct.pack("<h", value)
    header = b"RIFF" + struct.pack("<I", 36 + len(samples)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
    header += b"data" + struct.pack("<I", len(samples))
    Path(path).write_bytes(header + bytes(samples))


def _atomic(path: Path, writer) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fake_media(directory: Path | None = None) -> FakeMedia:
    """The camera and microphone files, generated into ``directory`` (default :func:`cache_dir`)
    if they are not there yet."""
    base = Path(directory) if directory is not None else cache_dir()
    camera = base / f"fake-camera-v{GENERATOR_VERSION}-{WIDTH}x{HEIGHT}-{FPS}fps.y4m"
    microphone = base / f"fake-microphone-v{GENERATOR_VERSION}-{SAMPLE_RATE}hz.wav"
    if not camera.is_file():
        _atomic(camera, write_y4m)
    if not microphone.is_file():
        _atomic(microphone, write_wav)
    return FakeMedia(camera, microphone)


if __name__ == "__main__":  # pragma: no cover
    media = fake_media()
    print(media.camera)
    print(media.microphone)
