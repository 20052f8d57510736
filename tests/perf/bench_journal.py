"""How much the journal costs: records per second and the flush time, in memory and on disk.

Run: .venv/bin/python tests/perf/bench_journal.py [--records 200000]    (make bench-journal ARGS=...)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from emulator.journal import Journal

N = 200_000
FRAME = '{"data":"hello","event":"ev","message_send_time":1700000000,"pipe":"web_test"}'


def measure(path: str) -> tuple[float, float]:
    journal = Journal(path, batch=10**9)
    start = time.perf_counter()
    for i in range(N):
        journal.record("comet", "frame", direction="out", dev_id=1, user_id=i, conn_id=i, data=FRAME)
    recorded = time.perf_counter() - start
    start = time.perf_counter()
    journal.flush()
    flushed = time.perf_counter() - start
    journal.close()
    return recorded, flushed


def main() -> None:
    global N
    parser = argparse.ArgumentParser(description="cost of the journal per record")
    parser.add_argument("--records", type=int, default=N, help="records per measurement")
    N = parser.parse_args().records
    off = Journal(enabled=False)
    start = time.perf_counter()
    for i in range(N):
        off.record("comet", "frame", direction="out", dev_id=1, user_id=i, conn_id=i, data=FRAME)
    disabled = time.perf_counter() - start
    print(f"{N} records; per record:")
    print(f"  journal off:          {disabled / N * 1e6:6.2f} us")
    for label, path in ((":memory:", ":memory:"), ("file (WAL)", str(Path(tempfile.mkdtemp()) / "j.sqlite"))):
        recorded, flushed = measure(path)
        print(f"  {label:<21} {recorded / N * 1e6:6.2f} us to record + {flushed / N * 1e6:6.2f} us to flush "
              f"({N / (recorded + flushed):,.0f} records/s)")


if __name__ == "__main__":
    main()
