"""Conference recording on the fake FreeSWITCH: WAV files written as time passes, streams noted.

``auto-record`` starts when a conference's member count reaches
``min-required-recording-participants``; ``record <path>`` / ``norecord <path|all>`` come from the
conference API.  A file target gets a real WAV (mono, 16-bit, the conference rate) whose length
equals the recorded time: silence, with a quiet seeded tone while somebody talks (the loudest
talker's), written as time passes -- every ``flush`` seconds by a timer, and up to the moment of
every change of who talks (:meth:`Recorder.catch_up`).  ``rtmp://`` and ``shout://`` targets are
only noted (journal + events).  Relative paths are under ``recordings_dir``; absolute paths outside
it are re-rooted inside it (the emulator never writes elsewhere).  Recording nodes take a member
id from the node's pool and appear in ``xml_list`` as ``<member type="recording_node">``.
"""

from __future__ import annotations

import array
import math
import re
import time
import wave
from collections.abc import Callable, Iterable
from pathlib import Path

from emulator.clock import Timers
from emulator.freeswitch.events import Header
from emulator.freeswitch.model import Channel, Conference, Recording, tenant_ids
from emulator.journal import Journal

__all__ = ["Recorder", "WAV_AMPLITUDE"]

WAV_AMPLITUDE = 800          # the talking tone: about -32 dBFS
_CHANNEL_VAR = re.compile(r"\$\{([^}]*)\}")

#: ``emit(conference, action, extra headers)``: fire a conference event (start-/stop-recording).
Emit = Callable[[Conference, str, Iterable[Header]], None]


def _tf(flag: bool) -> str:
    return "true" if flag else "false"


class Recorder:
    """The recordings of one node (see the module docstring)."""

    def __init__(self, *, recordings_dir: Path, now: Callable[[], float], timers: Timers, journal: Journal,
                 next_id: Callable[[], int], emit: Emit, flush: float = 5.0, group: str = "") -> None:
        self.recordings_dir = recordings_dir
        self.now = now
        self.timers = timers
        self.journal = journal
        self.next_id = next_id
        self.emit = emit
        self.flush = flush
        self.group = group
        self.recordings: list[Recording] = []        # every recording ever started (inspection)
        self._tones: dict[int, bytes] = {}

    # -- paths -----------------------------------------------------------------------------------------
    def expand(self, template: str, channel: Channel | None, conf: Conference) -> str:
        """``$${recordings_dir}``, ``${strftime(...)}``, ``${conference_name}`` and channel variables."""
        text = template.replace("$${recordings_dir}", str(self.recordings_dir))
        now = self.now()

        def var(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("strftime(") and name.endswith(")"):
                return time.strftime(name[len("strftime("):-1], time.gmtime(now))
            if name == "conference_name":
                return conf.name
            if channel is None:
                return ""
            builtin = {"uuid": channel.uuid, "caller_id_name": channel.caller_id_name,
                       "caller_id_number": channel.caller_id_number,
                       "destination_number": channel.destination_number}
            return channel.variables.get(name, builtin.get(name, ""))
        return _CHANNEL_VAR.sub(var, text)

    def resolve_path(self, path: str) -> Path:
        """Where a recording path lands on disk: under ``recordings_dir``, never outside it."""
        base = self.recordings_dir.resolve()
        p = Path(path)
        if p.is_absolute():
            try:
                p.resolve().relative_to(base)
            except ValueError:
                p = base / p.relative_to(p.anchor)
        else:
            p = base / p
        resolved = p.resolve()
        try:
            resolved.relative_to(base)
        except ValueError:
            resolved = base / (Path(path).name or "recording.wav")
        if resolved == base:
            resolved = base / "recording.wav"
        return resolved

    # -- start / stop ------------------------------------------------------------------------------------
    def check_auto_record(self, conf: Conference) -> None:
        """Start ``auto-record`` once the conference has enough members."""
        if not conf.auto_record or conf.auto_recording or conf.count < conf.min_recording:
            return
        conf.auto_recording = True
        head = conf.members[0] if conf.members else None
        path = self.expand(conf.auto_record, head.channel if head else None, conf)
        for m in conf.members:
            m.channel.variables["conference_recording"] = path
        self.start(conf, path, autorec=True)

    def start(self, conf: Conference, path: str, *, autorec: bool) -> Recording:
        now = self.now()
        stream = "://" in path
        rec = Recording(id=self.next_id(), conference=conf, path=path,
                        file=None if stream else self.resolve_path(path), started=now,
                        start_epoch=int(now), autorec=autorec, rate=conf.rate)
        if rec.file is not None:
            try:
                rec.file.parent.mkdir(parents=True, exist_ok=True)
                rec.wav = wave.open(str(rec.file), "wb")  # open for the recording's life
                rec.wav.setnchannels(1)
                rec.wav.setsampwidth(2)
                rec.wav.setframerate(rec.rate)
            except OSError as exc:
                rec.wav = None
                if self.journal.enabled:
                    self.journal.record("freeswitch", "recording_failed", data=f"{conf.name} {path}: {exc}")
        conf.nodes.insert(0, rec)
        conf.record_count += 1
        self.recordings.append(rec)
        if self.journal.enabled:
            dev_id, _ = tenant_ids(conf.name, None)
            kind = "stream" if stream else "file"
            target = path if stream else str(rec.file)
            self.journal.record("freeswitch", "recording", dev_id=dev_id,
                                data=f"start {kind} {target} conference={conf.name} auto={autorec}")
        self.emit(conf, "start-recording", [("Path", path)])
        if rec.wav is not None and self.flush > 0:
            rec.timer = self.timers.after(self.flush, self._flush, rec, group=self.group)
        return rec

    def stop(self, conf: Conference, rec: Recording) -> None:
        if rec.stopped is not None:
            return
        now = self.now()
        if rec.wav is not None:
            self._write(rec, now)
            rec.wav.close()
            rec.wav = None
        if rec.timer is not None:
            rec.timer.cancel()
        rec.stopped = now
        samples = rec.frames if rec.file is not None else round(rec.duration() * rec.rate)
        if rec in conf.nodes:
            conf.nodes.remove(rec)
        conf.record_count = max(0, conf.record_count - 1)
        if self.journal.enabled:
            dev_id, _ = tenant_ids(conf.name, None)
            self.journal.record("freeswitch", "recording", dev_id=dev_id,
                                data=f"stop {rec.path} conference={conf.name} seconds={rec.duration():.3f}")
        self.emit(conf, "stop-recording", [
            ("Path", rec.path), ("Other-Recordings", _tf(conf.record_count > 0)), ("Samples-Out", str(samples)),
            ("Samplerate", str(rec.rate)), ("Milliseconds-Elapsed", str(samples // max(1, rec.rate // 1000)))])

    # -- writing -------------------------------------------------------------------------------------------
    def catch_up(self, conf: Conference) -> None:
        """Write ``conf``'s files up to now (before who talks changes)."""
        for rec in conf.recordings:
            if rec.wav is not None:
                self._write(rec, self.now())

    def flush_all(self) -> None:
        """Write every open file up to now."""
        for rec in self.recordings:
            if rec.stopped is None and rec.wav is not None:
                self._write(rec, self.now())

    def close(self) -> None:
        """Write every open file up to now and close it (no events)."""
        for rec in self.recordings:
            if rec.wav is not None:
                self._write(rec, self.now())
                rec.wav.close()
                rec.wav = None

    def restart(self) -> None:
        """The process died: files closed as they are (after :meth:`close`), every recording stopped."""
        for rec in self.recordings:
            if rec.stopped is None:
                rec.stopped = self.now()

    def _flush(self, rec: Recording) -> None:
        if rec.stopped is not None or rec.wav is None:
            return
        self._write(rec, self.now())
        rec.timer = self.timers.after(self.flush, self._flush, rec, group=self.group)

    def _tone(self, hz: int, rate: int) -> bytes:
        key = hz * 100_000 + rate
        if key not in self._tones:
            samples = array.array("h", (int(WAV_AMPLITUDE * math.sin(2 * math.pi * hz * i / rate))
                                        for i in range(rate)))
            self._tones[key] = samples.tobytes()
        return self._tones[key]

    def _write(self, rec: Recording, until: float) -> None:
        target = round((until - rec.started) * rec.rate)
        count = target - rec.frames
        if count <= 0 or rec.wav is None:
            return
        talkers = [m for m in rec.conference.members if m.talking]
        tone = self._tone(max(talkers, key=lambda m: m.score).tone_hz, rec.rate) if talkers else None
        position = rec.frames
        while count > 0:
            offset = position % rec.rate
            n = min(count, rec.rate - offset)
            rec.wav.writeframes(b"\x00\x00" * n if tone is None else tone[2 * offset:2 * (offset + n)])
            position += n
            count -= n
        rec.frames = target
