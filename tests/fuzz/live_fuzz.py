"""The live-socket fuzzer: random, truncated and mutated inputs on every listener of a running
``cometbench serve``, in batches, with a health check after each batch.

    .venv/bin/python -m tests.fuzz.live_fuzz --minutes 15 [--batch 400] [--seed 1] [--counts FILE]
                                             [--service sip ...]

The emulator runs as a child process (``--free-ports --state :memory: --no-journal``, its stderr
kept).  Each batch sends ``--batch`` inputs to each listener, ``--concurrency`` connections at a
time, each on its own connection (or datagram):

=========== =========================================================================================
``ws``      upgrade requests with mutated paths and headers, then mutated / random WebSocket frames
``cometql`` mutated HandshakeResponses; or a valid login, then packets with mutated CometQL or
            mutated packets
``directory`` mutated HTTP requests (mod_xml_curl's as seed), sometimes half-closed or cut
``sip_ws``  TLS, a valid upgrade, then mutated SIP in text or binary frames (or a mutated upgrade)
``sip``     mutated SIP over TCP, cut anywhere, sometimes reset
``sip_udp`` mutated SIP datagrams
``esl``     mutated command streams, half of them after a valid ``auth``
``sdp``     digest-authenticated INVITEs over TCP whose SDP offer is mutated (the SDP parser, end
            to end)
=========== =========================================================================================

After each batch every listener must answer a normal client (``tests/hostile.py``'s probes), and
the child's stderr must hold no traceback or error line; either failure is a finding.  Each batch
prints the child's RSS and open descriptors, so growth shows.  At the end: inputs per protocol,
findings, and the RSS trend; ``--counts`` adds the inputs to a JSON file (``make fuzz`` sums them
with the hypothesis tests and the mutation campaign).  Exit status 1 if anything was found.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import struct
import sys
import tempfile
import time
from pathlib import Path

import trio

from emulator.net.network import Endpoint, OSNetwork, release_ssl_stream
from emulator.wire import mysql as m
from tests.fuzz.corpus import COMETQL, SEEDS, handshake_response
from tests.fuzz.mutate import Mutator
from tests.fuzz.sipua import InviteClient
from tests.hostile import COMET_PATH, HASH, PROBES, Ports, insecure_client_context, upgrade_request
from tests.perf.emulator_process import start_emulator, stop_emulator
from tests.rawws import frame

PROTOCOL_OF = {"ws": "comet-ws", "cometql": "cometql", "directory": "http", "sip_ws": "sip", "sip": "sip",
               "sip_udp": "sip", "esl": "esl", "sdp": "sdp"}
BAD_LINES = ("Traceback", "ERROR", "Error in ASGI", "Exception")
_EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Group|Exit|Interrupt)\b")


class Fuzzer:
    def __init__(self, ports: dict[str, int], seed: int, host: str = "127.0.0.1") -> None:
        self.net = OSNetwork()
        self.ports = ports
        self.host = host
        self.rng = random.Random(seed)
        self.mut = {p: Mutator(random.Random(self.rng.getrandbits(64)), SEEDS[p]) for p in SEEDS}
        self.counts: collections.Counter[str] = collections.Counter()
        self.p = Ports(self.net, ports, host=host, sip_tls=True)

    def mutated(self, protocol: str) -> bytes:
        rng, mut = self.rng, self.mut[protocol]
        if rng.random() < 0.1:
            return rng.randbytes(rng.randint(0, 400))
        return mut.mutate(rng.choice(SEEDS[protocol]))

    async def _exchange(self, stream, chunks: list[bytes], *, half_close: bool = False, reset: bool = False,
                        wait: float = 0.25) -> bytes:
        """Send ``chunks`` (with tiny pauses), read until the server closes or is quiet for ``wait``."""
        received = b""
        try:
            for chunk in chunks:
                await stream.send_all(chunk)
                if len(chunks) > 1:
                    await trio.sleep(0.005)
            if half_close and hasattr(stream, "send_eof"):
                await stream.send_eof()
            while True:
                with trio.move_on_after(wait):
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    received += chunk
                    continue
                break
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            if reset and hasattr(stream, "socket"):
                stream.socket.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_LINGER,
                                         struct.pack("ii", 1, 0))
            await trio.aclose_forcefully(stream)
            release_ssl_stream(stream)
        return received

    def _cut(self, data: bytes) -> list[bytes]:
        if self.rng.random() < 0.5 or len(data) < 2:
            return [data]
        cuts = sorted(self.rng.sample(range(1, len(data)), min(len(data) - 1, self.rng.randint(1, 3))))
        return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]

    # -- one input per listener --------------------------------------------------------------------
    async def ws(self) -> None:
        rng = self.rng
        stream = await self.net.connect(self.host, self.ports["ws"])
        if rng.random() < 0.3:
            data = self.mut["comet-ws"].mutate(upgrade_request(COMET_PATH))
        else:
            frames = [frame(self.mutated("comet-ws"), opcode=rng.choice((1, 1, 1, 2, 8, 9, 10, 0, 3)),
                            fin=rng.random() < 0.9, mask=rng.random() < 0.95) for _ in range(rng.randint(1, 4))]
            data = upgrade_request(COMET_PATH.replace("p" * 32, f"{rng.getrandbits(128):032x}")) + b"".join(frames)
            if rng.random() < 0.2:
                data = data[:rng.randint(0, len(data))]
        await self._exchange(stream, self._cut(data), reset=rng.random() < 0.1)

    async def cometql(self) -> None:
        rng = self.rng
        stream = await self.net.connect(self.host, self.ports["cometql"])
        try:
            greeting = await stream.receive_some(65536)
        except (trio.BrokenResourceError, OSError):
            await trio.aclose_forcefully(stream)
            return
        if rng.random() < 0.3:  # a mutated HandshakeResponse
            self.counts["mysql"] += 1
            payload = self.mut["mysql"].mutate(handshake_response())
            await self._exchange(stream, self._cut(m.frame_packet(payload, 1)))
            return
        try:
            scramble = _scramble(bytes(greeting[4:]))
        except ValueError:
            scramble = b"\x01" * 20
        login = m.frame_packet(handshake_response(scramble=scramble), 1)
        if rng.random() < 0.5:  # valid packets around mutated CometQL
            body = m.frame_packet(b"\x03" + self.mut["cometql"].mutate(rng.choice(COMETQL).encode()), 0)
        else:  # mutated packets
            self.counts["mysql"] += 1
            body = self.mutated("mysql")
        await self._exchange(stream, [login, *self._cut(body)], half_close=rng.random() < 0.3)

    async def directory(self) -> None:
        stream = await self.net.connect(self.host, self.ports["directory"])
        await self._exchange(stream, self._cut(self.mutated("http")), half_close=self.rng.random() < 0.4,
                             reset=self.rng.random() < 0.1)

    async def sip_ws(self) -> None:
        rng = self.rng
        raw = await self.net.connect(self.host, self.ports["sip_ws"])
        if rng.random() < 0.05:  # not TLS at all
            await self._exchange(raw, [self.mutated("sip")])
            return
        stream = trio.SSLStream(raw, insecure_client_context(), server_hostname=self.host)
        try:
            await stream.do_handshake()
        except (trio.BrokenResourceError, OSError):
            await trio.aclose_forcefully(stream)
            release_ssl_stream(stream)
            return
        upgrade = upgrade_request("/", "Sec-WebSocket-Protocol: sip\r\n")
        if rng.random() < 0.15:
            await self._exchange(stream, [self.mut["http"].mutate(upgrade)])
            return
        frames = [frame(self.mutated("sip"), opcode=rng.choice((1, 1, 2)), mask=rng.random() < 0.97)
                  for _ in range(rng.randint(1, 3))]
        await self._exchange(stream, [upgrade, *frames])

    async def sip(self) -> None:
        stream = await self.net.connect(self.host, self.ports["sip"])
        data = b"".join(self.mutated("sip") for _ in range(self.rng.randint(1, 2)))
        await self._exchange(stream, self._cut(data), half_close=self.rng.random() < 0.3,
                             reset=self.rng.random() < 0.1)

    async def sip_udp(self) -> None:
        endpoint = await self.net.udp_socket("fuzz", self.host, 0)
        try:
            for _ in range(4):
                await endpoint.sendto(self.mutated("sip")[:60000], Endpoint(self.host, self.ports["sip"]))
            with trio.move_on_after(0.1):
                while True:
                    await endpoint.recvfrom()
        finally:
            await endpoint.aclose()

    async def esl(self) -> None:
        rng = self.rng
        stream = await self.net.connect(self.host, self.ports["esl"])
        prefix = [b"auth ClueCon\n\n"] if rng.random() < 0.5 else []
        data = b"".join(self.mutated("esl") for _ in range(rng.randint(1, 3)))
        await self._exchange(stream, [*prefix, *self._cut(data)], half_close=rng.random() < 0.3,
                             reset=rng.random() < 0.1)

    async def sdp(self) -> None:
        stream = await self.net.connect(self.host, self.ports["sip"])
        client = InviteClient(stream, password=HASH, rng=random.Random(self.rng.getrandbits(64)),
                              room=str(self.rng.randint(1, 30)))
        try:
            with trio.fail_after(10):
                for _ in range(self.rng.randint(1, 3)):
                    status, _ = await client.invite(self.mutated("sdp"))
                    self.counts["sdp"] += 1
                    if status not in (200, 488):
                        raise AssertionError(f"an authenticated INVITE got {status}")
        finally:
            await trio.aclose_forcefully(stream)

    async def batch(self, service: str, n: int, concurrency: int) -> list[str]:
        fn = getattr(self, service)
        limiter = trio.CapacityLimiter(concurrency)
        problems: list[str] = []

        async def one() -> None:
            async with limiter:
                try:
                    with trio.fail_after(30):
                        await fn()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, EOFError):
                    pass  # the server hung up on us: that is its right
                except trio.TooSlowError:
                    problems.append(f"{service}: one input took over 30 s")
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"{service}: {type(exc).__name__}: {exc}"[:300])
                if service != "sdp":
                    self.counts[PROTOCOL_OF[service]] += 1

        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(one)
        return problems

    async def health(self) -> list[str]:
        problems = []
        for name, probe in PROBES.items():
            try:
                with trio.fail_after(10):
                    await probe(self.p)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"listener {name} did not answer a normal client: {type(exc).__name__}: {exc}"[:300])
        return problems


def _scramble(greeting: bytes) -> bytes:
    """The 20 scramble bytes of a v10 greeting payload."""
    end = greeting.index(b"\0", 1)
    pos = end + 1 + 4
    part1 = greeting[pos:pos + 8]
    part2 = greeting[pos + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10:][:12]
    return part1 + part2


def stderr_problems(text: str) -> list[str]:
    """One line per log record on the emulator's stderr that is an error or carries a traceback:
    the record's first line (which names the listener, e.g. ``comet: connection handler failed``)
    and the exception it ends with."""
    problems: list[str] = []
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        continues = line[:1].isspace() or line.startswith(("Traceback", "During", "The above")) \
            or _EXCEPTION_LINE.match(line) is not None
        if block and (not line or not continues):
            joined = "\n".join(block)
            if any(marker in joined for marker in BAD_LINES):
                errors = [b.strip(" |") for b in block if b.strip(" |") and b.strip(" |")[0] not in "^~"
                          and not b.strip(" |").startswith("File ") and ("Error" in b or "Exception" in b)
                          and "Traceback" not in b and "Exception Group" not in b and "[ERROR]" not in b]
                problems.append(f"{block[0].strip()[:120]} -> {(errors[-1] if errors else block[-1].strip())[:200]}")
            block = []
        if line:
            block.append(line)
    return problems


def proc_stats(pid: int) -> tuple[int, int]:
    """(RSS in KiB, open descriptors) of a process."""
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


async def campaign(args, ready: dict, pid: int, stderr_path: Path) -> tuple[collections.Counter, list[str], list]:
    ports = {k: v for k, v in ready.items() if isinstance(v, int) and k not in ("ready",)}
    fuzzer = Fuzzer(ports, args.seed)
    await fuzzer.p.prepare()
    findings: list[str] = []
    trend = []
    services = args.service or list(PROTOCOL_OF)
    deadline = time.monotonic() + args.minutes * 60
    stderr_seen = 0
    batch_no = 0
    repeats: collections.Counter[str] = collections.Counter()
    while time.monotonic() < deadline:
        batch_no += 1
        for service in services:
            found = await fuzzer.batch(service, args.batch if service != "sdp" else max(1, args.batch // 4),
                                       args.concurrency)
            findings += found
            if time.monotonic() >= deadline:
                break
        await trio.sleep(0.5)
        findings += await fuzzer.health()
        text = stderr_path.read_text(errors="replace")
        new, stderr_seen = text[stderr_seen:], len(text)
        for problem in stderr_problems(new):
            key = "stderr: " + problem.split("(", 1)[0][:160]  # one entry per listener and exception
            if not any(f.startswith(key) for f in findings):
                findings.append(f"{key} (first after batch {batch_no}): {problem}")
            repeats[key] += 1
        rss, fds = proc_stats(pid)
        trend.append((batch_no, rss, fds))
        print(f"batch {batch_no:3d}: inputs {sum(fuzzer.counts.values()):>9,}  RSS {rss / 1024:7.1f} MiB  "
              f"fds {fds:4d}  findings {len(findings)}", flush=True)
        if len(findings) > 50:
            break
    findings += [f"{key}: seen {n} times" for key, n in repeats.items() if n > 1]
    return fuzzer.counts, findings, trend


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--batch", type=int, default=400, help="inputs per listener and batch (default 400)")
    ap.add_argument("--concurrency", type=int, default=48)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--counts", help="JSON file of inputs per protocol to add this run's to")
    ap.add_argument("--service", action="append", choices=sorted(PROTOCOL_OF),
                    help="fuzz only these listeners (repeatable; default all)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cometbench-livefuzz-") as tmp:
        stderr_path = Path(tmp) / "stderr.txt"
        with open(stderr_path, "w") as stderr:
            proc, ready = start_emulator(stderr=stderr)
        try:
            started = time.monotonic()
            counts, findings, trend = trio.run(campaign, args, ready, proc.pid, stderr_path)
            elapsed = time.monotonic() - started
            alive = proc.poll() is None
        finally:
            stop_emulator(proc)
        tail = stderr_path.read_text(errors="replace")[-3000:]
    if not alive:
        findings.append("the emulator process died")
    for protocol in sorted(counts):
        print(f"live {protocol:9s} {counts[protocol]:>9,} inputs")
    if trend:
        first, last = trend[0], trend[-1]
        peak = max(r for _, r, _ in trend)
        print(f"live: {sum(counts.values()):,} inputs in {elapsed:.0f} s; RSS {first[1] / 1024:.1f} -> "
              f"{last[1] / 1024:.1f} MiB (peak {peak / 1024:.1f}), descriptors {first[2]} -> {last[2]}")
    for finding in findings[:30]:
        print("FINDING", finding)
    if findings and tail.strip():
        print("emulator stderr (tail):\n" + tail)
    if args.counts:
        path = Path(args.counts)
        total = collections.Counter(json.loads(path.read_text()) if path.exists() else {})
        total.update(counts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(sorted(total.items())), indent=1) + "\n")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
