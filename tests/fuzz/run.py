"""``make fuzz``: the long fuzz run (about an hour) and its report.

    .venv/bin/python -m tests.fuzz.run [--scale 40] [--live-minutes 15] [--campaign-minutes 25]
                                       [--target 1000000] [--seed 1]

Three parts, each counting the inputs it runs per protocol into ``reports/fuzz/``:

1. every hypothesis fuzz test (``pytest -m fuzz``) in the long profile: ``COMETBENCH_FUZZ=long``,
   ``max_examples`` times ``--scale``;
2. the live-socket fuzzer against a ``cometbench serve`` child (``tests/fuzz/live_fuzz.py``);
3. the mutation campaign (``tests/fuzz/campaign.py``) until every protocol has ``--target``
   inputs in total, or its time is up.

It prints a table (protocol x part) and the findings of each part, writes
``reports/fuzz/summary.json`` and exits 1 if any part found something.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "reports" / "fuzz"
PROTOCOLS = ("comet-ws", "mysql", "cometql", "sip", "sdp", "esl", "http")


def _run(title: str, cmd: list[str], env: dict | None = None) -> tuple[int, float]:
    print(f"== {title}: {' '.join(cmd)}", flush=True)
    started = time.monotonic()
    code = subprocess.call(cmd, cwd=ROOT, env={**os.environ, **(env or {})})
    elapsed = time.monotonic() - started
    print(f"== {title}: exit {code} after {elapsed / 60:.1f} min", flush=True)
    return code, elapsed


def _load(path: Path) -> dict[str, int]:
    return json.loads(path.read_text()) if path.exists() else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=40, help="hypothesis max_examples multiplier (default 40)")
    ap.add_argument("--live-minutes", type=float, default=15.0)
    ap.add_argument("--campaign-minutes", type=float, default=25.0)
    ap.add_argument("--target", type=int, default=1_000_000, help="inputs per protocol in total (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    files = {part: OUT / f"counts-{part}.json" for part in ("hypothesis", "live", "campaign")}
    for path in files.values():
        path.unlink(missing_ok=True)
    python = sys.executable
    results = {}
    results["hypothesis"] = _run("hypothesis, long profile",
                                 [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "fuzz", "tests"],
                                 {"COMETBENCH_FUZZ": "long", "COMETBENCH_FUZZ_SCALE": str(args.scale),
                                  "COMETBENCH_FUZZ_COUNTS": str(files["hypothesis"])})
    results["live"] = _run("live-socket fuzzer", [python, "-m", "tests.fuzz.live_fuzz", "--minutes",
                                                  str(args.live_minutes), "--seed", str(args.seed),
                                                  "--counts", str(files["live"])])
    results["campaign"] = _run("mutation campaign", [python, "-m", "tests.fuzz.campaign", "--seconds",
                                                     str(args.campaign_minutes * 60), "--target", str(args.target),
                                                     "--seed", str(args.seed), "--counts", str(files["campaign"]),
                                                     "--already", str(files["hypothesis"]), str(files["live"])])
    counts = {part: _load(path) for part, path in files.items()}
    print(f"\n{'protocol':10s} {'hypothesis':>12s} {'live':>10s} {'campaign':>12s} {'total':>12s}")
    summary = {}
    for protocol in (*PROTOCOLS, *sorted(set().union(*counts.values()) - set(PROTOCOLS))):
        row = [counts[part].get(protocol, 0) for part in ("hypothesis", "live", "campaign")]
        summary[protocol] = {"hypothesis": row[0], "live": row[1], "campaign": row[2], "total": sum(row)}
        print(f"{protocol:10s} {row[0]:>12,} {row[1]:>10,} {row[2]:>12,} {sum(row):>12,}")
    for part, (code, elapsed) in results.items():
        print(f"{part}: {'no finding' if code == 0 else f'FINDINGS (exit {code})'}, {elapsed / 60:.1f} min")
    (OUT / "summary.json").write_text(json.dumps({"counts": summary, "exit": {k: v[0] for k, v in results.items()},
                                                  "minutes": {k: round(v[1] / 60, 1) for k, v in results.items()}},
                                                 indent=1) + "\n")
    return 0 if all(code == 0 for code, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
