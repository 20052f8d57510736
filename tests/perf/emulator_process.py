"""What the benchmark scripts share: the emulator as a child process, a control-plane poller, and
percentiles.

The scripts run as ``python tests/perf/bench_*.py``, so this module is imported by plain name.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
CLI = str(Path(sys.executable).with_name("cometbench"))


def die_with_parent() -> None:
    """In the child: get SIGTERM if the benchmark process dies, so no emulator outlives it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_emulator(*args: str, command: list[str] | None = None, stderr: int | IO | None = None,
                   journal: str | None = None) -> tuple[subprocess.Popen, dict]:
    """``cometbench serve --free-ports --host 127.0.0.1 --state :memory: --no-journal <args>``;
    returns the process and its ready line.  ``command`` replaces the ``cometbench`` executable;
    ``journal`` (a file path) records the journal there instead of ``--no-journal``."""
    journal_args = ["--no-journal"] if journal is None else ["--journal-path", journal]
    cmd = [*(command or [CLI]), "serve", "--free-ports", "--host", HOST, "--state", ":memory:", *journal_args, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, cwd=ROOT,
                            text=True, start_new_session=True, preexec_fn=die_with_parent)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    try:
        ready = json.loads(line)
    except ValueError:
        proc.kill()
        raise SystemExit(f"emulator did not start: {line!r}") from None
    assert ready.get("ready") and ready.get("host") == HOST, ready
    return proc, ready


def stop_emulator(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank); NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


# A separate process that asks the control plane for /api/state, /api/conferences and /metrics every
# 100 ms on one keep-alive connection until SIGTERM, then writes {"requests", "failed", "ms": [the
# time of each request as it saw it]} to OUT.  Run as ``python -c POLLER PORT TOKEN OUT``.
POLLER = '''
import http.client, json, signal, sys, time
port, token, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
paths = ["/api/state", "/api/conferences", "/metrics"]
done = failed = 0
spent = []
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
def save():
    with open(out, "w") as f:
        json.dump({"requests": done, "failed": failed, "ms": spent}, f)
signal.signal(signal.SIGTERM, lambda *a: (save(), sys.exit(0)))
while True:
    t0 = time.perf_counter()
    for path in paths:
        a = time.perf_counter()
        try:
            conn.request("GET", path, headers={"Authorization": "Bearer " + token})
            r = conn.getresponse(); r.read()
            done += 1
            failed += r.status != 200
        except Exception:
            failed += 1
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        spent.append((time.perf_counter() - a) * 1000)
    time.sleep(max(0.0, 0.1 - (time.perf_counter() - t0)))
'''
