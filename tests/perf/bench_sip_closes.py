"""Benchmark: what a storm of closed SIP connections costs the SIP core.

N JsSIP-like UAs (the project's UA on in-memory flows straight into the core, no sockets) each
register a different user over its own WSS connection; then every connection closes, and the
script prints the time the core spent in ``flow_closed`` for all of them.  A close used to visit
every AOR of the server (quadratic in a drop storm); it now visits the AORs its connection
registered.

Run: ``.venv/bin/python tests/perf/bench_sip_closes.py [--uas 1000,2000]``.
"""

from __future__ import annotations

import argparse
import pathlib
import random
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from emulator.clock import WallClock
from emulator.freeswitch.conference import Bridge
from emulator.freeswitch.sip_core import SipCore
from emulator.profiles import get_profile
from emulator.wire import sip
from tests.sipkit import CorePhone


def closes(uas: int) -> tuple[int, float]:
    """Registered bindings before the closes, and the seconds all closes took."""
    now = {"t": 100.0}
    bridge = Bridge(clock=WallClock(1_700_000_000, monotonic=lambda: now["t"]), rng=random.Random(1),
                    profile=get_profile("cppcomet-4.09"))
    core = SipCore(bridge, lambda user: "pw", rng=random.Random(2), clock=lambda: now["t"])
    phones = []
    for i in range(uas):
        phone = CorePhone(core, user=f"{15_000_000 + i:09d}", password="pw", transport="WSS", seed=i)
        (answer,) = phone.register()
        assert isinstance(answer, sip.SipResponse) and answer.status == 200
        phones.append(phone)
    bindings = len(core.registrations())
    started = time.perf_counter()
    for phone in phones:
        core.flow_closed(phone.flow)
    spent = time.perf_counter() - started
    assert core.registrations() == []
    return bindings, spent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uas", default="1000,2000", help="comma-separated numbers of UAs (default 1000,2000)")
    args = parser.parse_args()
    for uas in (int(n) for n in args.uas.split(",")):
        bindings, spent = closes(uas)
        print(f"{uas} UAs, {bindings} bindings: all connections closed in {1000 * spent:.1f} ms "
              f"({1e6 * spent / uas:.1f} µs per close)")


if __name__ == "__main__":
    main()
