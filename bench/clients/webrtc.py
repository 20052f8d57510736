"""What the browser's media stack contributes to a call, for virtual clients: device and WebRTC
timings, and SDP offers shaped like Chrome 156's.

No RTP flows anywhere in the bench; what matters for join latency is *when* things happen and what
the SDP looks like, because the fake FreeSWITCH answers it (``emulator/wire/sdp.py``) and reads the
``b=AS`` cap for its media model.

Timings (:class:`DeviceTimings`) are the costs the real client pays inside the browser, measured in
headless Chromium 156 with fake media devices (real-video-client.md, the timing table of section
4.2 and rows 2, 4 and 8 of section 2):

=====================  =========  ===============================================================
``gum_first``          0.090 s    getUserMedia #1 in acceptCall ("success after about 90 ms")
``gum_again``          0.015 s    getUserMedia #2 in ``_sipCall`` ("about 10-20 ms")
``ice_gathering``      0.145 s    createOffer + non-trickle ICE gathering until complete
                                  ("about 130-160 ms" with an unresolvable STUN host)
``addstream``          0.015 s    setRemoteDescription -> ``onaddstream`` ("about 15 ms after SRD")
``set_remote_description`` 0.040 s  the 200 OK -> SRD success -> ACK (200 at +0.47 s, ACK at +0.51 s)
``attach_poll``        0.300 s    the interval that attaches the remote video after onCallStart
=====================  =========  ===============================================================

A real camera permission prompt, a real STUN server or a slow machine change them; every field is a
parameter.  ``deny_media`` makes getUserMedia fail (the "no-media-stream" path).

:class:`LocalMedia` makes the offer: one per RTCPeerConnection, with its identifiers (session id,
ICE ufrag/pwd, DTLS fingerprint, msid, SSRCs, CNAME, host candidate port) drawn from the seeded
``random.Random`` it is given, so the same seed gives byte-identical INVITEs.  The shape follows the
capture in real-video-client.md 4.2: BUNDLE 0 1, ``extmap-allow-mixed``, opus 111 first among
``111 63 9 0 8 13 110 126``, VP8 96 first among Chrome 156's 23 video payload types (rtx, H264,
AV1, VP9, red, ulpfec), host candidates only (UDP and TCP active), ``ice-options:trickle`` still
advertised, ``setup:actpass``, rtcp-mux/rsize, msid and ssrc lines.  ``b=AS`` lines are not
written here: cometVideoApi's ``sdp`` listener inserts them (``bench/clients/video.py``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["DeviceTimings", "LocalMedia", "AUDIO_PAYLOADS", "VIDEO_PAYLOADS"]


@dataclass(frozen=True)
class DeviceTimings:
    """Browser-side delays of one page (seconds); defaults from real-video-client.md section 4."""

    gum_first: float = 0.090
    gum_again: float = 0.015
    ice_gathering: float = 0.145
    addstream: float = 0.015
    set_remote_description: float = 0.040
    attach_poll: float = 0.300
    deny_media: bool = False

    def __post_init__(self) -> None:
        for name in ("gum_first", "gum_again", "ice_gathering", "addstream", "set_remote_description",
                     "attach_poll"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"DeviceTimings.{name} must be a number >= 0, not {value!r}")
        if self.attach_poll == 0:
            raise ValueError("DeviceTimings.attach_poll must be > 0 (it is an interval)")


AUDIO_PAYLOADS = "111 63 9 0 8 13 110 126"
VIDEO_PAYLOADS = "96 97 102 103 104 107 108 109 114 115 116 117 39 40 45 46 98 99 100 101 118 119 120"

_AUDIO_EXTMAPS = (
    "1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "4 urn:ietf:params:rtp-hdrext:sdes:mid",
)
_VIDEO_EXTMAPS = (
    "14 urn:ietf:params:rtp-hdrext:toffset",
    "2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "13 urn:3gpp:video-orientation",
    "3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
    "6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type",
    "7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing",
    "8 http://www.webrtc.org/experiments/rtp-hdrext/color-space",
    "4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
)
_AUDIO_CODEC_LINES = (
    "rtpmap:111 opus/48000/2", "rtcp-fb:111 transport-cc", "fmtp:111 minptime=10;useinbandfec=1",
    "rtpmap:63 red/48000/2", "fmtp:63 111/111", "rtpmap:9 G722/8000", "rtpmap:0 PCMU/8000",
    "rtpmap:8 PCMA/8000", "rtpmap:13 CN/8000", "rtpmap:110 telephone-event/48000",
    "rtpmap:126 telephone-event/8000",
)
_FEEDBACK = ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli")
# (payload, codec, fmtp or None, rtx payload)
_VIDEO_CODECS = (
    (96, "VP8", None, 97),
    (102, "H264", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", 103),
    (104, "H264", "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f", 107),
    (108, "H264", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", 109),
    (114, "H264", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f", 115),
    (116, "H264", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f", 117),
    (39, "AV1", "level-idx=5;profile=0;tier=0", 40),
    (45, "AV1", "level-idx=5;profile=1;tier=0", 46),
    (98, "VP9", "profile-id=0", 99),
    (100, "VP9", "profile-id=2", 101),
)


def _video_codec_lines() -> tuple[str, ...]:
    lines: list[str] = []
    for pt, name, fmtp, rtx in _VIDEO_CODECS:
        lines.append(f"rtpmap:{pt} {name}/90000")
        lines.extend(f"rtcp-fb:{pt} {fb}" for fb in _FEEDBACK)
        if fmtp:
            lines.append(f"fmtp:{pt} {fmtp}")
        lines.append(f"rtpmap:{rtx} rtx/90000")
        lines.append(f"fmtp:{rtx} apt={pt}")
    lines += ["rtpmap:118 red/90000", "rtpmap:119 rtx/90000", "fmtp:119 apt=118", "rtpmap:120 ulpfec/90000"]
    return tuple(lines)


_VIDEO_CODEC_LINES = _video_codec_lines()
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ICE = _ALNUM + "+/"


def _token(rng: random.Random, n: int, alphabet: str = _ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:32]}"


@dataclass
class LocalMedia:
    """One RTCPeerConnection's local side: stable identifiers and the offers it makes.

    ``send_audio`` / ``send_video`` say which tracks getUserMedia gave (an ``audio`` call still
    offers a receive-only video m-line, because cometVideoApi passes ``offerToReceiveVideo: true``).
    """

    rng: random.Random
    send_audio: bool = True
    send_video: bool = True
    host_ip: str = ""
    session_id: int = 0
    version: int = 1
    ufrag: str = ""
    pwd: str = ""
    fingerprint: str = ""
    stream_id: str = ""
    audio_track: str = ""
    video_track: str = ""
    audio_ssrc: int = 0
    video_ssrc: int = 0
    video_rtx_ssrc: int = 0
    cname: str = ""
    port: int = 0
    foundations: tuple[int, int] = (0, 0)
    offers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = self.rng
        if not self.host_ip:
            self.host_ip = f"192.168.{rng.randrange(0, 256)}.{rng.randrange(2, 255)}"
        self.session_id = rng.randrange(10 ** 18, 10 ** 19)
        self.ufrag = _token(rng, 4, _ICE)
        self.pwd = _token(rng, 24, _ICE)
        self.fingerprint = ":".join(f"{rng.randrange(256):02X}" for _ in range(32))
        self.stream_id = _uuid(rng)
        self.audio_track = _uuid(rng)
        self.video_track = _uuid(rng)
        self.audio_ssrc, self.video_ssrc, self.video_rtx_ssrc = (rng.randrange(1, 2 ** 32) for _ in range(3))
        self.cname = _token(rng, 16)
        self.port = rng.randrange(49152, 65536)
        self.foundations = (rng.randrange(1, 2 ** 32), rng.randrange(1, 2 ** 32))

    def offer(self, direction: str = "sendrecv") -> str:
        """A complete (non-trickle) offer; ``direction`` is ``sendrecv``, or ``sendonly`` for hold.
        Each call after the first bumps the o= session version, as a re-offer does."""
        if direction not in ("sendrecv", "sendonly", "recvonly", "inactive"):
            raise ValueError(f"bad direction {direction!r}")
        if self.offers:
            self.version += 1
        lines = ["v=0", f"o=- {self.session_id} {self.version} IN IP4 127.0.0.1", "s=-", "t=0 0",
                 "a=group:BUNDLE 0 1", "a=extmap-allow-mixed", f"a=msid-semantic: WMS {self.stream_id}"]
        lines += self._media("audio", "0", direction if self.send_audio else _receive_only(direction))
        lines += self._media("video", "1", direction if self.send_video else _receive_only(direction))
        text = "\r\n".join(lines) + "\r\n"
        self.offers.append(text)
        return text

    def _media(self, kind: str, mid: str, direction: str) -> list[str]:
        payloads = AUDIO_PAYLOADS if kind == "audio" else VIDEO_PAYLOADS
        ip, port = self.host_ip, self.port
        out = [f"m={kind} {port} UDP/TLS/RTP/SAVPF {payloads}", f"c=IN IP4 {ip}", "a=rtcp:9 IN IP4 0.0.0.0",
               f"a=candidate:{self.foundations[0]} 1 udp 2122260223 {ip} {port} typ host generation 0 "
               "network-id 1",
               f"a=candidate:{self.foundations[1]} 1 tcp 1518280447 {ip} 9 typ host tcptype active "
               "generation 0 network-id 1",
               f"a=ice-ufrag:{self.ufrag}", f"a=ice-pwd:{self.pwd}", "a=ice-options:trickle",
               f"a=fingerprint:sha-256 {self.fingerprint}", "a=setup:actpass", f"a=mid:{mid}"]
        out += [f"a=extmap:{e}" for e in (_AUDIO_EXTMAPS if kind == "audio" else _VIDEO_EXTMAPS)]
        out.append(f"a={direction}")
        sending = direction in ("sendrecv", "sendonly")
        track = self.audio_track if kind == "audio" else self.video_track
        if sending:
            out.append(f"a=msid:{self.stream_id} {track}")
        out += ["a=rtcp-mux", "a=rtcp-rsize"]
        out += [f"a={line}" for line in (_AUDIO_CODEC_LINES if kind == "audio" else _VIDEO_CODEC_LINES)]
        if sending:
            if kind == "audio":
                ssrcs = [self.audio_ssrc]
            else:
                ssrcs = [self.video_ssrc, self.video_rtx_ssrc]
                out.append(f"a=ssrc-group:FID {self.video_ssrc} {self.video_rtx_ssrc}")
            for ssrc in ssrcs:
                out.append(f"a=ssrc:{ssrc} cname:{self.cname}")
                out.append(f"a=ssrc:{ssrc} msid:{self.stream_id} {track}")
        return out


def _receive_only(direction: str) -> str:
    return {"sendrecv": "recvonly", "sendonly": "inactive"}.get(direction, direction)
