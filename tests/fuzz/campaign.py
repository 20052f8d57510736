"""The mutation campaign: millions of fuzzed inputs per protocol, in process, without hypothesis.

    .venv/bin/python -m tests.fuzz.campaign --seconds 600 [--target 1000000] [--seed 1] [--counts FILE]
                                            [--already OTHER.json ...] [--protocol sip ...]

Each protocol has a target that feeds one input to everything of ours that reads that protocol
and checks the result, starting from the seeds of ``tests/fuzz/corpus.py`` mutated by
``tests/fuzz/mutate.py`` (90 %) or plain random bytes (10 %):

* ``sip``: ``parse_message`` (a parsed message must re-encode and parse to the same), the 400
  builder, the stream framer, and the SIP core itself (``SipCore.receive`` on a live core with
  registrations and calls; it must never raise);
* ``sdp``: ``parse_sdp`` and both answer builders; every 10th input also as the body of a
  digest-authenticated INVITE through the SIP core (the path an INVITE takes over any transport);
* ``esl``: the command parser in random chunks, then each ``api``/``bgapi`` command through the
  ESL server's API on a real mod_conference bridge, ``event`` commands through the subscription
  matcher;
* ``mysql``: the packet reader in random chunks, the HandshakeResponse / auth / command parsers;
* ``cometql``: the CometQL executor on the hub (every statement must give a well-formed result);
* ``comet-ws``: URL and command parsing, then the hub executing the frame for a live connection;
* ``http``: the directory's pre-read (``classify``, ``directory_user``, ``head_without_body``).

An exception that is not the input's documented error is a finding: it is printed once per
(protocol, exception type, place) and the input saved under ``reports/fuzz/findings/``.  The run
goes round-robin in slices of 2,000 inputs until every protocol has ``--target`` inputs or the time
is up; it prints the inputs run per protocol and exits 1 if anything was found.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from emulator.clock import ManualClock, WallClock
from emulator.comet.directory import classify, directory_user, head_without_body, lookup_directory
from emulator.comet.hub import Hub
from emulator.cometql.tables import Executor, Result, Session
from emulator.freeswitch.conference import Bridge
from emulator.freeswitch.esl import EslServer
from emulator.freeswitch.flow import Flow
from emulator.freeswitch.sip_core import SipCore, plain_answer
from emulator.journal import Journal
from emulator.net.network import Endpoint
from emulator.profiles import get_profile
from emulator.state import StateStore
from emulator.wire import comet as w
from emulator.wire import esl as e
from emulator.wire import mysql as m
from emulator.wire import sdp as s
from emulator.wire import sip
from tests.fuzz.corpus import SEEDS
from tests.fuzz.mutate import Mutator
from tests.sipkit import CorePhone

ROOT = Path(__file__).resolve().parents[2]
FINDINGS = ROOT / "reports" / "fuzz" / "findings"
USER, HASH = "000001015", "campaignhash"
SLICE = 2000


class Finding(Exception):
    """A property violation found by a target (not a crash, but as serious)."""


# --- a SIP core with a clock we move by hand ---------------------------------------------------------


class CoreHarness:
    """A SIP core, its bridge and two flows (UDP and WSS); timers run as the clock moves."""

    def __init__(self, seed: int) -> None:
        self.t = 100.0
        wall = WallClock(1_700_000_000, monotonic=lambda: self.t)
        self.bridge = Bridge(clock=wall, rng=random.Random(seed), profile=get_profile("cppcomet-4.09"))
        self.core = SipCore(self.bridge, lambda user: HASH if user == USER else None, rng=random.Random(seed + 1),
                            clock=lambda: self.t)
        self.sent: list[bytes] = []
        self.flows = [Flow(kind, Endpoint("10.0.0.9", 5070 + i), Endpoint("127.0.0.1", 5060),
                           send_bytes=self.sent.append) for i, kind in enumerate(("UDP", "WSS", "TCP"))]
        self.rng = random.Random(seed + 2)
        self.n = 0

    def tick(self, seconds: float = 0.3) -> None:
        self.t += seconds
        self.core.timers.run_due()  # the node's timers, by hand (the stack runs them as a task)

    def receive(self, data: bytes) -> None:
        flow = self.flows[self.n % len(self.flows)]
        self.n += 1
        self.core.receive(flow, data)
        self.tick()
        for answer in self.sent:
            if not answer.startswith((b"SIP/2.0 ", b"\r\n")) and b" SIP/2.0\r\n" not in answer[:300]:
                raise Finding(f"the core sent something that is not SIP: {answer[:80]!r}")
        self.sent.clear()

    def invite(self, body: bytes) -> int:
        """An authenticated INVITE carrying ``body`` through the core, sent by the project's SIP
        client (tests/sipkit.py: the JsSIP-like UA on a TCP flow; a new phone per INVITE, so a long
        campaign keeps no sessions); the final status.  A 200 is ACKed and hung up."""
        self.n += 1
        phone = CorePhone(self.core, user=USER, password=HASH, transport="TCP", now=lambda: self.t,
                          seed=self.rng.getrandbits(32))
        answers = phone.invite(f"1*{self.n % 50}*video", body)   # the 407 is ACKed and answered
        finals = [m for m in answers if isinstance(m, sip.SipResponse) and m.status >= 200]
        final = finals[0] if len(finals) == 1 else None
        if final is None or final.status not in (200, 488):
            raise Finding(f"an authenticated INVITE got {[f.start_line for f in finals]}")
        if final.status == 200:
            s.parse_sdp(final.body)  # our answer must parse
            phone.ack()
            phone.bye()
        self.tick()
        return final.status


# --- targets ----------------------------------------------------------------------------------------


def _check_sip_message(msg: sip.SipMessage) -> None:
    _ = (msg.call_id, msg.cseq, msg.from_addr, msg.to_addr, msg.from_tag, msg.to_tag, msg.vias, msg.top_via,
         msg.branch, msg.contacts, msg.content_type)
    wire = msg.encode()
    again = sip.parse_message(wire)
    if again.encode() != wire:
        raise Finding("a parsed SIP message does not survive encode -> parse -> encode")


class Targets:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Fresh state (called every few thousand inputs, so state does not grow without bound)."""
        self.core = CoreHarness(self.rng.getrandbits(32))
        self.store = StateStore(":memory:")
        self.hub = Hub(self.store, get_profile(self.rng.choice(["cppcomet-4.09", "lenient"])), clock=ManualClock())
        self.executor = Executor(self.hub, self.hub.profile, sessions_of=lambda dev: 1)
        self.session = Session(dev_id=1, database="CometQL_v1")
        for sql in ("INSERT INTO users_auth (id, hash) VALUES (5, 'h5')",
                    "INSERT INTO pipes_settings (name, length) VALUES ('web_chat', 5)"):
            self.executor.execute(self.session, sql)
        self.frames: list[str] = []
        self.conn = self.hub.connect(w.parse_url(f"/ws/sesion=h5&myid=5&devid=1&v=4.08&uuid={'a' * 32}&api=js"),
                                     deliver=lambda text, wire: self.frames.append(text), drop=lambda: None)
        self.esl = EslServer(self.core.bridge, network=None, journal=Journal(enabled=False),  # type: ignore[arg-type]
                             clock=lambda: self.core.t)

    # -- one input per protocol -------------------------------------------------------------------
    def sip(self, data: bytes) -> None:
        try:
            msg = sip.parse_message(data)
        except sip.SipParseError:
            msg = None
        if msg is not None:
            _check_sip_message(msg)
        answer = sip.error_response(data, to_tag="ftag")
        if answer is not None and not answer.startswith(b"SIP/2.0 400 "):
            raise Finding(f"error_response built {answer[:40]!r}")
        parser = sip.SipStreamParser(max_header_bytes=8192, max_body_bytes=8192)
        cut = self.rng.randint(0, len(data))
        try:
            for chunk in (data[:cut], data[cut:]):
                for msg in parser.feed(chunk):
                    _check_sip_message(msg)
            parser.feed_eof()
        except sip.SipParseError:
            pass
        self.core.receive(data)

    def sdp(self, data: bytes) -> None:
        try:
            offer = s.parse_sdp(data)
        except s.SdpError:
            offer = None
        if offer is not None:
            again = s.parse_sdp(offer.encode())
            if again.to_text() != offer.to_text():
                raise Finding("a parsed SDP does not survive encode -> parse")
            for build in (lambda: s.build_webrtc_answer(offer, host_ip="127.0.0.1", port=16384, ice_ufrag="abcd1234",
                                                         ice_pwd="p" * 24, fingerprint_sha256="00" + ":00" * 31,
                                                         rng=self.rng),
                          lambda: plain_answer(offer, "127.0.0.1", 16384, self.rng)):
                try:
                    answer = build()
                except s.SdpError as exc:
                    if exc.status != 488:
                        raise Finding(f"SdpError {exc.status} from an answer builder") from None
                    continue
                s.parse_sdp(answer if isinstance(answer, bytes) else answer.encode())
        if self.rng.random() < 0.1:
            self.core.invite(data)

    def esl_(self, data: bytes) -> None:
        parser = e.CommandParser()
        cut = self.rng.randint(0, len(data))
        try:
            for chunk in (data[:cut], data[cut:]):
                parser.feed(chunk)
                while (command := parser.next_command()) is not None:
                    if command.word in ("api", "bgapi"):
                        reply = self.esl.api(command.rest)
                        if not isinstance(reply, str):
                            raise Finding(f"api {command.rest!r} returned {type(reply).__name__}")
                        e.api_response(reply)
                    elif command.word == "event":
                        parsed = e.parse_event_command(command.rest)
                        if parsed is not None:
                            sub = e.Subscription(format=parsed[0])
                            sub.add(parsed[1])
                            sub.matches("CUSTOM", "conference::maintenance")
                            e.EVENT_FORMATS[sub.format]([("Event-Name", command.rest)], command.body)
        except e.EslError:
            pass

    def mysql(self, data: bytes) -> None:
        reader = m.PacketReader(max_payload=1 << 16)
        cut = self.rng.randint(0, len(data))
        try:
            for chunk in (data[:cut], data[cut:]):
                reader.feed(chunk)
                for packet in reader:
                    payload = packet.payload
                    m.is_ssl_request(payload)
                    try:
                        response = m.parse_handshake_response(payload)
                        m.check_auth(response, b"\x01" * 20, "CometQLPassword", auth_switch=True)
                        m.dev_id_from_username(response.username)
                    except m.ProtocolError:
                        pass
                    m.check_auth_switch_response(payload, b"\x01" * 20, "CometQLPassword")
                    m.parse_command(payload)
            reader.feed_eof()
        except m.ProtocolError:
            pass

    def cometql(self, data: bytes) -> None:
        result = self.executor.execute(self.session, data.decode("utf-8", "surrogateescape"))
        if not isinstance(result, Result) or result.kind not in ("rows", "ok", "ok_constant", "err"):
            raise Finding(f"execute returned {result!r}")
        if result.kind == "rows":
            m.build_result_set(result.columns, result.rows)
            if any(len(row) != len(result.columns) for row in result.rows):
                raise Finding("a row with the wrong number of columns")
        elif result.kind == "err":
            m.build_err(result.code, result.message)

    def comet(self, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        w.parse_url(text)
        command = w.parse_command(text)
        w.parse_subscription(command.body)
        w.parse_web_pipe2(command.body)
        if self.conn.open:
            self.hub.command(self.conn, text)
        for frame in self.frames:
            if not isinstance(frame, str):
                raise Finding(f"a frame that is not text: {frame!r}")
        self.frames.clear()
        if not self.conn.open:
            self.conn = self.hub.connect(w.parse_url(f"/ws/sesion=h5&myid=5&devid=1&v=4.08&uuid={'b' * 32}&api=js"),
                                         deliver=lambda text, wire: self.frames.append(text), drop=lambda: None)

    def http(self, data: bytes) -> None:
        kind, user = classify(data)
        if kind not in ("options", "directory", "page", "close"):
            raise Finding(f"classify gave {kind!r}")
        directory_user(data)
        head = head_without_body(data)
        if b"\r\n\r\n" in data and not head.endswith(b"\r\n\r\n"):
            raise Finding("head_without_body lost the end of the head")
        if user is not None:
            lookup_directory(self.store, user.decode("utf-8", "surrogateescape"))


# --- the loop ---------------------------------------------------------------------------------------


def run(seconds: float, target: int, seed: int, done: dict[str, int] | None = None,
        protocols: tuple[str, ...] = tuple(SEEDS)) -> tuple[collections.Counter, list[dict]]:
    targets = Targets(seed)
    functions: dict[str, Callable[[bytes], None]] = {
        "sip": targets.sip, "sdp": targets.sdp, "esl": targets.esl_, "mysql": targets.mysql,
        "cometql": targets.cometql, "comet-ws": targets.comet, "http": targets.http}
    rng = random.Random(seed)
    counts: collections.Counter[str] = collections.Counter()
    already = collections.Counter(done or {})
    findings: list[dict] = []
    seen: set[tuple] = set()
    deadline = time.monotonic() + seconds
    mutators = {p: Mutator(random.Random(rng.getrandbits(64)), SEEDS[p]) for p in protocols}
    while time.monotonic() < deadline:
        pending = [p for p in protocols if counts[p] + already[p] < target]
        if not pending:
            break
        for protocol in pending:
            fn, mutator, seeds = functions[protocol], mutators[protocol], SEEDS[protocol]
            for _ in range(SLICE):
                roll = rng.random()
                if roll < 0.1:
                    data = rng.randbytes(rng.randint(0, 300))
                elif roll < 0.3:
                    data = mutator.mutate(mutator.mutate(rng.choice(seeds)))
                else:
                    data = mutator.mutate(rng.choice(seeds))
                counts[protocol] += 1
                try:
                    fn(data)
                except Exception as exc:  # noqa: BLE001 - every escape is a finding
                    frame = traceback.extract_tb(exc.__traceback__)[-1]
                    key = (protocol, type(exc).__name__, frame.filename, frame.lineno)
                    if key not in seen:
                        seen.add(key)
                        findings.append(_record(protocol, exc, data))
                    targets.reset()
            if counts[protocol] % 20000 < SLICE:
                targets.reset()
            if time.monotonic() >= deadline:
                break
    return counts, findings


def _record(protocol: str, exc: BaseException, data: bytes) -> dict:
    FINDINGS.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(data).hexdigest()[:12]
    path = FINDINGS / f"{protocol}-{digest}.bin"
    path.write_bytes(data)
    where = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])
    print(f"FINDING {protocol}: {type(exc).__name__}: {exc} (input {path.relative_to(ROOT)})\n{where}",
          file=sys.stderr, flush=True)
    return {"protocol": protocol, "error": f"{type(exc).__name__}: {exc}"[:300], "input": str(path.relative_to(ROOT))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="time budget (default 60)")
    ap.add_argument("--target", type=int, default=1_000_000, help="inputs per protocol to reach (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--counts", help="JSON file this run's inputs per protocol are added to")
    ap.add_argument("--already", nargs="*", default=[], help="JSON files of inputs other fuzzers ran per "
                                                              "protocol (they count towards --target)")
    ap.add_argument("--protocol", action="append", choices=sorted(SEEDS), help="only these (repeatable)")
    args = ap.parse_args(argv)
    done: collections.Counter[str] = collections.Counter()
    for path in args.already:
        if Path(path).exists():
            done.update(json.loads(Path(path).read_text()))
    started = time.monotonic()
    counts, findings = run(args.seconds, args.target, args.seed, done,
                           tuple(args.protocol) if args.protocol else tuple(SEEDS))
    elapsed = time.monotonic() - started
    for protocol in sorted(counts):
        print(f"campaign {protocol:9s} {counts[protocol]:>10,} inputs ({counts[protocol] / elapsed:,.0f}/s)")
    print(f"campaign: {sum(counts.values()):,} inputs in {elapsed:.0f} s, {len(findings)} finding(s)")
    if args.counts:
        total = collections.Counter(json.loads(Path(args.counts).read_text()) if Path(args.counts).exists() else {})
        total.update(counts)
        Path(args.counts).parent.mkdir(parents=True, exist_ok=True)
        Path(args.counts).write_text(json.dumps(dict(sorted(total.items())), indent=1) + "\n")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
